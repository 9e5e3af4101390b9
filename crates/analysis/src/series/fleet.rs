//! [`growth`](super::growth) across a fleet: many processes' recordings
//! under one folder (or store prefix), ranked per host and combined.
//!
//! **Which recordings.** Every directory under the root that holds a
//! `meta.json` or a `snapshots/` folder is one process's recording (what
//! `leaktrail run` writes); the search does not descend into a recording.
//! Its **host** is the value of the deepest `host=NAME` folder on its path
//! below the root (the Hive layout `service=api/host=web-1/...`), else
//! that path itself (`web-1`, `web-1/leaktrail-app-42-...`).
//!
//! **Combined.** Each recording is compared over its own snapshots, as
//! `growth` does (one process's series: snapshots of different processes
//! are not points of one series). A site (its [`site_identity`], so the
//! same code in the same binary lines up across hosts) and size class then
//! sums, over the processes where it rose, its slope, rise and score; sites
//! that grow above noise on some host rank first, by how many hosts, then
//! by the summed score and rise. The sums are those of the example query
//! `growth_per_site` of `docs/parquet.md`, so SQL over the exported tables
//! and this agree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::growth::{self, site_identity, Growth};
use crate::profile::SiteKey;
use crate::symbolize::Frame;
use crate::Error;

/// One process's recording and its growth.
#[derive(Clone, Debug)]
pub struct HostGrowth {
    /// The host (see the module documentation).
    pub host: String,
    /// The recording's directory.
    pub recording: PathBuf,
    /// Its growth across its snapshots.
    pub growth: Growth,
}

/// A recording left out, and why (fewer than two snapshots, unreadable).
#[derive(Clone, Debug)]
pub struct Skipped {
    /// The recording's directory.
    pub recording: PathBuf,
    /// Why.
    pub why: String,
}

/// One site's share on one process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Share {
    /// Index into [`FleetGrowth::hosts`].
    pub host: usize,
    /// The site's rank among that process's suspects.
    pub rank: usize,
    /// Its Theil–Sen slope there, bytes per hour.
    pub slope_bytes_per_hour: f64,
    /// Its rise there (newest minus oldest), bytes.
    pub rise_bytes: f64,
    /// Its score there.
    pub score: f64,
    /// Whether it grows above that process's noise.
    pub significant: bool,
}

/// A site and size class across the fleet.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetSite {
    /// 1 for the strongest.
    pub rank: usize,
    /// The allocation stack, innermost first (as the first process that
    /// has the site symbolized it).
    pub stack: Vec<Frame>,
    /// The size class, by its largest size.
    pub class: u64,
    /// Summed slope, bytes per hour.
    pub slope_bytes_per_hour: f64,
    /// Summed rise, bytes.
    pub rise_bytes: f64,
    /// Summed score, bytes.
    pub score: f64,
    /// How many hosts see it grow above their noise.
    pub significant_hosts: usize,
    /// Each process where it rose.
    pub shares: Vec<Share>,
}

/// The whole comparison.
#[derive(Clone, Debug)]
pub struct FleetGrowth {
    /// Each process's recording and growth, by host then path.
    pub hosts: Vec<HostGrowth>,
    /// Recordings left out.
    pub skipped: Vec<Skipped>,
    /// Every site that rose somewhere, strongest first.
    pub sites: Vec<FleetSite>,
}

/// Whether `dir` is one process's recording.
pub fn is_recording(dir: &Path) -> bool {
    dir.join("meta.json").is_file() || dir.join("snapshots").is_dir()
}

/// The recordings under `root` (see the module documentation), sorted.
pub fn recordings_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        if is_recording(&d) {
            out.push(d);
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir())
                && !e.file_name().to_string_lossy().starts_with('.')
            {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The host of the recording at `rel`, its path below the root.
pub fn host_of(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts
        .iter()
        .rev()
        .find_map(|p| p.strip_prefix("host=").map(str::to_string))
        .unwrap_or_else(|| parts.join("/"))
}

/// Compares each recording under `root` over its own snapshots, then
/// combines them.
pub fn open(root: &Path) -> Result<FleetGrowth, Error> {
    let mut hosts = Vec::new();
    let mut skipped = Vec::new();
    for rec in recordings_under(root) {
        let rel = rec.strip_prefix(root).unwrap_or(&rec);
        match growth::open(std::slice::from_ref(&rec)) {
            Ok(g) => hosts.push(HostGrowth {
                host: host_of(rel),
                recording: rec,
                growth: g,
            }),
            Err(e) => skipped.push(Skipped {
                recording: rec,
                why: e.to_string(),
            }),
        }
    }
    if hosts.is_empty() {
        return Err(Error::Insufficient(format!(
            "{}: no recording under it with two snapshots or more (a recording is a folder with meta.json or snapshots/)",
            root.display()
        )));
    }
    hosts.sort_by(|a, b| a.host.cmp(&b.host).then(a.recording.cmp(&b.recording)));
    let sites = combine(&hosts);
    Ok(FleetGrowth {
        hosts,
        skipped,
        sites,
    })
}

/// Sums each site's growth over the processes where it rose, and ranks.
pub fn combine(hosts: &[HostGrowth]) -> Vec<FleetSite> {
    let mut by_key: HashMap<(SiteKey, u64), usize> = HashMap::new();
    let mut sites: Vec<FleetSite> = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        for s in &host.growth.suspects {
            let key = (site_identity(&s.stack), s.class);
            let i = *by_key.entry(key).or_insert_with(|| {
                sites.push(FleetSite {
                    rank: 0,
                    stack: s.stack.clone(),
                    class: s.class,
                    slope_bytes_per_hour: 0.0,
                    rise_bytes: 0.0,
                    score: 0.0,
                    significant_hosts: 0,
                    shares: Vec::new(),
                });
                sites.len() - 1
            });
            let site = &mut sites[i];
            site.slope_bytes_per_hour += s.stats.slope_bytes_per_hour;
            site.rise_bytes += s.stats.rise_bytes;
            site.score += s.score;
            if s.stats.significant && !site.shares.iter().any(|x| x.host == h && x.significant) {
                site.significant_hosts += 1;
            }
            site.shares.push(Share {
                host: h,
                rank: s.rank,
                slope_bytes_per_hour: s.stats.slope_bytes_per_hour,
                rise_bytes: s.stats.rise_bytes,
                score: s.score,
                significant: s.stats.significant,
            });
        }
    }
    sites.sort_by(|a, b| {
        b.significant_hosts
            .cmp(&a.significant_hosts)
            .then(b.score.total_cmp(&a.score))
            .then(b.rise_bytes.total_cmp(&a.rise_bytes))
            .then(a.class.cmp(&b.class))
    });
    for (i, s) in sites.iter_mut().enumerate() {
        s.rank = i + 1;
    }
    sites
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_the_deepest_host_folder_else_the_path() {
        assert_eq!(host_of(Path::new("service=api/host=web-1/rec")), "web-1");
        assert_eq!(host_of(Path::new("host=a/host=b")), "b");
        assert_eq!(
            host_of(Path::new("web-2/leaktrail-x-1")),
            "web-2/leaktrail-x-1"
        );
    }
}
