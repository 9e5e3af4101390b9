//! Everything a recording says, gathered for the one-page report: the
//! trend of the watch series, the size classes across snapshots, the
//! ranked growth suspects, the latest and first snapshots' live memory by
//! site (for the flame graph and its diff), and what reachability finds in
//! the latest snapshot that holds the process's memory.
//!
//! [`open`] reads each snapshot once (its audit, symbolized by site) and
//! keeps only what grows with sites and classes, not with buffers: the
//! profile and the per-class counters; findleaks runs once, on the
//! newest snapshot taken with `--memory full`. A snapshot that cannot be
//! read is left out with a note rather than failing the whole report: the
//! page should still show what the rest say.
//!
//! ```no_run
//! let inv = leaktrail_analysis::investigation::open("rec".as_ref())?;
//! println!("{} snapshots, verdict {}", inv.snapshots.len(), inv.trend.verdict);
//! # Ok::<(), leaktrail_analysis::Error>(())
//! ```

use std::path::{Path, PathBuf};

use leaktrail_format::MemoryMode;
use leaktrail_recording::dir::{self as recording, Meta, Recording, Sample};

use crate::caches::{self, Caches};
use crate::growth::{self, ClassGrowth, Growth, Suspect};
use crate::heap::model::Heap;
use crate::leaks::{self, Group, LeakKind, Leaks, LeaksOptions};
use crate::profile::{self, Profile, SiteKey};
use crate::symbolize::Symbolizer;
use crate::trend::{self, Trend};
use crate::Error;
use leaktrail_recording::audit::Audit;
use leaktrail_recording::Snapshot;

/// One snapshot of the recording, as captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The file.
    pub path: PathBuf,
    /// When it was taken, ns since the epoch.
    pub time_unix_ns: u64,
    /// What memory it holds: `full`, `tables`, `none`, or `unknown` (a
    /// core leaktrail did not write).
    pub memory: String,
    /// How long the process was stopped, ns (0 if unknown).
    pub pause_ns: u64,
    /// Bytes of memory in the file.
    pub captured_bytes: u64,
    /// The process's resident bytes then (0 if unknown).
    pub rss: u64,
    /// Live malloc'd bytes the tracer knew of.
    pub live_bytes: u64,
    /// Live buffers.
    pub live_count: u64,
    /// Whether it is in the time series of the running program (growth,
    /// size classes, flame graphs); the exit snapshot usually is not.
    pub in_series: bool,
}

/// The findleaks result of one snapshot.
#[derive(Clone, Debug)]
pub struct LeakSummary {
    /// The snapshot scanned.
    pub path: PathBuf,
    /// What was found.
    pub leaks: Leaks,
}

/// Everything the report shows.
#[derive(Clone, Debug)]
pub struct Investigation {
    /// The recording directory.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: Meta,
    /// The watch series.
    pub samples: Vec<Sample>,
    /// Its verdict.
    pub trend: Trend,
    /// Snapshots read, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// Size classes across the snapshots taken while the program ran (none
    /// without snapshots).
    pub caches: Option<Caches>,
    /// Growth ranking (needs two snapshots).
    pub growth: Option<Growth>,
    /// Live memory by site in the newest snapshot.
    pub latest: Option<Profile>,
    /// ... and in the oldest, when there are two or more.
    pub first: Option<Profile>,
    /// Live memory by site in every snapshot of the series, in time order
    /// (the report's snapshot slider).
    pub profiles: Vec<Profile>,
    /// Reachability in the newest snapshot taken with `--memory full`.
    pub leaks: Option<LeakSummary>,
    /// For a traced Node.js process: memory by owner across the snapshots.
    pub owners: Option<crate::owner::OwnerTrend>,
    /// For Node.js, snapshots taken with `--memory full`: JS objects by
    /// constructor and V8's own heap numbers across the series.
    pub js_heap: Option<crate::v8::JsHeapGrowth>,
    /// What could not be done, and why.
    pub notes: Vec<String>,
}

/// What grows most: a malloc site or the JS heap, ranked together so that
/// every view (the headline, `growth`'s text and JSON, the report) names
/// the same one.
#[derive(Clone, Copy, Debug)]
pub enum FirstSuspect<'a> {
    /// The significant malloc site that grows most.
    Site(&'a Suspect),
    /// The JS heap: some constructor's objects grow steadily, by more bytes
    /// than any significant malloc site rose (V8's own small malloc blocks
    /// that grow with the objects are not the story).
    JsHeap(&'a crate::v8::JsHeapGrowth),
}

impl FirstSuspect<'_> {
    /// The bytes it rose by, first to last snapshot (a site's fitted rise).
    pub fn rise_bytes(&self) -> f64 {
        match self {
            FirstSuspect::Site(s) => s.stats.rise_bytes,
            FirstSuspect::JsHeap(j) => j.bytes_delta() as f64,
        }
    }
}

/// The first suspect of a growth and a JS heap's growth: the JS heap when
/// it leaks and rose by more than the first significant site, else that
/// site; `None` when nothing grows above noise.
pub fn first_suspect<'a>(
    growth: Option<&'a Growth>,
    js_heap: Option<&'a crate::v8::JsHeapGrowth>,
) -> Option<FirstSuspect<'a>> {
    let site = growth.and_then(|g| g.suspects.first().filter(|s| s.stats.significant));
    let js = js_heap.filter(|j| {
        j.verdict == crate::v8::JsVerdict::Leak
            && site.is_none_or(|s| j.bytes_delta() as f64 > s.stats.rise_bytes)
    });
    js.map(FirstSuspect::JsHeap)
        .or(site.map(FirstSuspect::Site))
}

/// The short answer: what grows, who allocates it, what is truly lost.
#[derive(Clone, Debug)]
pub struct Diagnosis<'a> {
    /// What grows most, malloc sites and the JS heap ranked together
    /// ([`first_suspect`]).
    pub first: Option<FirstSuspect<'a>>,
    /// The size class that grows most steadily, when its growth is
    /// significant (see [`crate::growth`]).
    pub class: Option<&'a ClassGrowth>,
    /// The strongest malloc site, when its growth is significant: above
    /// the noise of the whole heap by a statistic, not a byte constant.
    /// Not the culprit when the JS heap leads: views name [`Self::first`].
    pub suspect: Option<&'a Suspect>,
    /// Whether growth was compared at all, and over how many snapshots
    /// with what noise: `(snapshots, noise bytes)`.
    pub compared: Option<(usize, f64)>,
    /// Every definitely lost site (group), ranked by its loss record's
    /// total (its bytes and the indirectly lost bytes it owns), largest
    /// first; empty when nothing is lost or findleaks did not run.
    pub lost: Vec<&'a Group>,
    /// All the definitely lost memory, when findleaks ran.
    pub lost_total: Option<leaks::Tally>,
    /// All the indirectly lost memory, when findleaks ran.
    pub indirect_total: Option<leaks::Tally>,
    /// The snapshot findleaks scanned.
    pub leaks_snapshot: Option<&'a Path>,
    /// Whether findleaks found the suspect's buffers still reachable (and
    /// none of them lost): growth that reachability cannot see.
    pub suspect_reachable: Option<bool>,
}

impl Investigation {
    /// An investigation that holds nothing but findleaks' answer for the
    /// snapshot at `path` (no watch samples, no snapshots to compare): what
    /// a renderer shows for one core. `dir` names the recording.
    pub fn of_leaks(dir: PathBuf, path: PathBuf, leaks: Leaks) -> Investigation {
        let meta = Meta {
            format: recording::FORMAT.into(),
            version: recording::VERSION,
            pid: 0,
            comm: String::new(),
            cmdline: Vec::new(),
            launched: false,
            start_unix_ms: 0,
            interval_ms: 0,
            memory_limit: None,
            end: None,
        };
        Investigation {
            dir,
            trend: trend::analyse_samples(&meta, &[]),
            meta,
            samples: Vec::new(),
            snapshots: Vec::new(),
            caches: None,
            growth: None,
            latest: None,
            first: None,
            profiles: Vec::new(),
            leaks: Some(LeakSummary { path, leaks }),
            owners: None,
            js_heap: None,
            notes: Vec::new(),
        }
    }

    /// The short answer, picked from the analyses.
    pub fn diagnosis(&self) -> Diagnosis<'_> {
        let g = self.growth.as_ref();
        let suspect = g.and_then(|g| g.suspects.first().filter(|s| s.stats.significant));
        let suspect_reachable = match (suspect, &self.leaks) {
            (Some(s), Some(l)) => {
                // Findleaks may expand inlined calls; profiles do not.
                let key = SiteKey::physical(&s.stack);
                let kinds: Vec<LeakKind> = l
                    .leaks
                    .groups
                    .iter()
                    .filter(|g| SiteKey::physical(&g.stack) == key)
                    .map(|g| g.kind)
                    .collect();
                Some(!kinds.is_empty() && kinds.iter().all(|k| *k == LeakKind::Reachable))
            }
            _ => None,
        };
        Diagnosis {
            first: first_suspect(g, self.js_heap.as_ref()),
            class: g.and_then(|g| g.classes.first().filter(|c| c.stats.significant)),
            suspect,
            compared: g.map(|g| (g.snapshots.len(), g.noise_bytes)),
            suspect_reachable,
            lost: self
                .leaks
                .as_ref()
                .map(|l| l.leaks.lost_sites())
                .unwrap_or_default(),
            lost_total: self.leaks.as_ref().map(|l| l.leaks.definite),
            indirect_total: self.leaks.as_ref().map(|l| l.leaks.indirect),
            leaks_snapshot: self.leaks.as_ref().map(|l| l.path.as_path()),
        }
    }
}

struct Read {
    info: SnapshotInfo,
    audit: Audit,
    profile: Profile,
}

fn read(path: &Path) -> Result<Read, Error> {
    let snap = Snapshot::open(path)?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let (profile, audit) = profile::profile_all(&snap, &symbolizer)?;
    let meta = snap.metadata();
    // Only the per-class counters are needed from here on; the live table
    // (32 bytes a buffer) and the stacks would make memory grow with the
    // number of snapshots times their buffers.
    let mut audit = audit;
    audit.live = Vec::new();
    audit.maps = Vec::new();
    audit.stacks.clear();
    audit.ranges = Vec::new();
    Ok(Read {
        info: SnapshotInfo {
            path: path.to_path_buf(),
            time_unix_ns: profile.time_unix_ns,
            memory: meta.map_or_else(|| "unknown".into(), |m| m.options.memory.name().into()),
            pause_ns: meta.map_or(0, |m| m.pause_ns),
            captured_bytes: snap.captured_bytes(),
            rss: meta.map_or(0, |m| m.smaps.total.rss),
            live_bytes: profile.bytes(),
            live_count: profile.count(),
            in_series: true,
        },
        audit,
        profile,
    })
}

/// Reachability in `path` (a snapshot with the process's memory).
pub fn find_leaks(path: &Path) -> Result<Leaks, Error> {
    let snap = Snapshot::open(path)?;
    let heap = Heap::open_every_block(&snap)?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let mut found = leaks::find(&heap, &LeaksOptions::default(), &symbolizer);
    found.warnings.extend(symbolizer.warnings());
    Ok(found)
}

/// Reads the recording at `dir` and everything its snapshots say.
pub fn open(dir: &Path) -> Result<Investigation, Error> {
    let rec = Recording::open(dir)?;
    let trend = trend::analyse(&rec);
    let mut notes = Vec::new();
    let mut reads: Vec<Read> = Vec::new();
    for path in recording::snapshots::list(dir)? {
        match read(&path) {
            Ok(r) => reads.push(r),
            Err(e) => notes.push(format!("left out {}: {e}", path.display())),
        }
    }
    reads.sort_by(|a, b| {
        a.info
            .time_unix_ns
            .cmp(&b.info.time_unix_ns)
            .then(a.info.path.cmp(&b.info.path))
    });
    if reads.is_empty() {
        notes.push(
            "no snapshots: record with `leaktrail run` (snapshots every --every, and at exit) \
             or add one with `leaktrail snapshot --recording DIR`"
                .into(),
        );
    } else if reads.len() == 1 {
        notes.push("one snapshot: growth needs at least two".into());
    }
    // Growth, the size classes and the flame graphs follow the running
    // program: the snapshot at exit is left out of them when there are two
    // others (a runtime may have torn its heap down before the hand-over;
    // see `snapshots::series`). Findleaks takes it: what is live at exit is
    // its question.
    let series_paths = recording::snapshots::series(dir)?;
    for r in &mut reads {
        r.info.in_series = series_paths.contains(&r.info.path);
    }
    let series: Vec<&Read> = reads.iter().filter(|r| r.info.in_series).collect();
    if series.len() < reads.len() {
        notes.push(format!(
            "growth, size classes and flame graphs over the {} snapshots taken while the program ran; findleaks over the latest with its memory",
            series.len()
        ));
    }
    if reads.iter().any(|r| r.profile.stackless) {
        notes.push(profile::STACKLESS.into());
    }
    if let Some(t) = reads.iter().rev().find_map(|r| r.profile.before_attach) {
        notes.push(profile::before_attach_note(t));
    }
    let caches = (!series.is_empty()).then(|| {
        let audits: Vec<&Audit> = series.iter().map(|r| &r.audit).collect();
        let mut c = caches::compare(&audits);
        // The live tables were dropped after reading; the class counters,
        // which were counted from them, add up to the same totals.
        for (total, r) in c.totals.iter_mut().zip(&series) {
            total.live_count = r.audit.classes.iter().map(|k| k.live_count).sum();
            total.live_bytes = r.audit.classes.iter().map(|k| k.live_bytes).sum();
        }
        c
    });
    let profiles: Vec<Profile> = series.iter().map(|r| r.profile.clone()).collect();
    let growth = (profiles.len() >= 2).then(|| growth::analyse(&profiles));
    let leaks = match reads
        .iter()
        .rev()
        .find(|r| r.info.memory.parse().is_ok_and(MemoryMode::keeps_memory))
    {
        Some(r) => match find_leaks(&r.info.path) {
            Ok(leaks) => Some(LeakSummary {
                path: r.info.path.clone(),
                leaks,
            }),
            Err(e) => {
                notes.push(format!("findleaks on {}: {e}", r.info.path.display()));
                None
            }
        },
        None => {
            if !reads.is_empty() {
                notes.push(
                    "no snapshot holds the process's memory (--memory full): no findleaks".into(),
                );
            }
            None
        }
    };
    let snapshots = reads.iter().map(|r| r.info.clone()).collect();
    let all_profiles = profiles.clone();
    let mut profiles = profiles.into_iter();
    let first = profiles.next();
    let latest = profiles.next_back();
    let (first, latest) = match latest {
        Some(l) => (first, Some(l)),
        None => (None, first),
    };
    let owners = match crate::owner::trend_of_recording(dir) {
        Ok(o) => o,
        Err(e) => {
            notes.push(format!("Node.js owner split: {e}"));
            None
        }
    };
    // The JS heap needs the memory: over the series' full snapshots.
    let full: Vec<PathBuf> = series
        .iter()
        .filter(|r| r.info.memory.parse().is_ok_and(MemoryMode::keeps_memory))
        .map(|r| r.info.path.clone())
        .collect();
    let js_heap = match crate::v8::growth_of(&full) {
        Ok(j) => j,
        Err(e) => {
            notes.push(format!("JS heap: {e}"));
            None
        }
    };
    Ok(Investigation {
        dir: dir.to_path_buf(),
        meta: rec.meta,
        samples: rec.samples,
        trend,
        snapshots,
        caches,
        growth,
        latest,
        first,
        profiles: all_profiles,
        leaks,
        owners,
        js_heap,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, HeapBuilder};

    /// An investigation of nothing but one findleaks result.
    fn with_leaks(leaks: Leaks) -> Investigation {
        Investigation::of_leaks("rec".into(), "rec/exit.core".into(), leaks)
    }

    /// Issue 11 (item 4): the diagnosis lists every definitely lost site,
    /// ranked by its loss record's total (direct and the indirect bytes it
    /// owns), not by its direct bytes alone.
    #[test]
    fn issue_11_the_diagnosis_ranks_every_lost_site_by_its_total() {
        let mut b = HeapBuilder::new();
        b.stack(1, &[0x10])
            .stack(2, &[0x20])
            .stack(3, &[0x30])
            .stack(4, &[0x40])
            .stack(5, &[0x50]);
        // Stack 1: three lone lost blocks, 1500 direct, owning nothing.
        for _ in 0..3 {
            b.block_with(500, 1, 1);
        }
        // Stack 2: one lost block of 100 that owns a 2000-byte child
        // (stack 3): 2100 in all, the largest total, the smallest direct.
        let owner = b.block_with(100, 2, 1);
        let child = b.block_with(2000, 3, 1);
        b.write(owner, child);
        // Stack 4: one lone lost block of 200.
        b.block_with(200, 4, 1);
        // Stack 5: reachable, never a lost site.
        let kept = b.block_with(9000, 5, 1);
        b.register(kept);
        let s = b.build();
        let found = leaks::find(
            &s.heap(),
            &LeaksOptions::default(),
            &synthetic::symbolizer(),
        );
        let inv = with_leaks(found);
        let d = inv.diagnosis();
        let ranked: Vec<(u32, u64, u64, Option<u64>)> = d
            .lost
            .iter()
            .map(|g| (g.stack_id.0, g.total_bytes(), g.bytes, g.indirect_bytes))
            .collect();
        assert_eq!(
            ranked,
            [
                (2, 2100, 100, Some(2000)),
                (1, 1500, 1500, Some(0)),
                (4, 200, 200, Some(0)),
            ]
        );
        assert_eq!(d.lost[0].blocks, 1);
        assert_eq!(d.lost[1].blocks, 3);
        assert_eq!(
            d.lost_total,
            Some(leaks::Tally {
                bytes: 1800,
                blocks: 5
            })
        );
        assert_eq!(
            d.indirect_total,
            Some(leaks::Tally {
                bytes: 2000,
                blocks: 1
            })
        );
    }
}
