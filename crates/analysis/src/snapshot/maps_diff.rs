//! The `pmap -x` diff: which mappings and regions grew between two samples.
//!
//! [`diff`] takes two lists of classified mappings, wherever they came from
//! (two samples of a recording today; a snapshot's smaps summary later), so
//! that every source shares one matcher.
//!
//! # Matching
//!
//! Addresses are not identities: a restarted process has new ones (ASLR),
//! and an anonymous mapping that grows downwards, or merges with a
//! neighbour, keeps its end but not its start. We match within groups of
//! the same *kind*: for files the path, offset and permissions; for
//! everything else the region, pseudo-name and permissions. Within a group,
//! first the pairs that share a start or an end address (the same mapping,
//! grown or shrunk), then the rest in address order. What is left over was
//! added (only in B) or removed (only in A).

use std::collections::BTreeMap;

use leaktrail_recording::maps::{Mapping, Region};

/// Whether a mapping was in both samples or only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// In both.
    Both,
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
}

/// One mapping's change.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingDelta {
    /// The path, pseudo-name, or `[anon]`.
    pub name: String,
    /// Its region.
    pub region: Region,
    /// Permissions (B's when in both).
    pub perms: String,
    /// Where it is in B (or A when removed).
    pub start: u64,
    /// End in B (or A when removed).
    pub end: u64,
    /// Size in A, bytes (0 when added).
    pub size_a: u64,
    /// Size in B, bytes (0 when removed).
    pub size_b: u64,
    /// Resident bytes in A.
    pub rss_a: u64,
    /// Resident bytes in B.
    pub rss_b: u64,
    /// `rss_b - rss_a`.
    pub delta: i64,
    /// Whether it was in both.
    pub presence: Presence,
}

/// One region's change.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionDelta {
    /// The region's name.
    pub name: String,
    /// Resident bytes in A.
    pub rss_a: u64,
    /// Resident bytes in B.
    pub rss_b: u64,
    /// `rss_b - rss_a`.
    pub delta: i64,
}

/// The whole diff, largest changes first.
#[derive(Debug, Clone, PartialEq)]
pub struct MapsDiff {
    /// Total resident bytes in A.
    pub rss_a: u64,
    /// Total resident bytes in B.
    pub rss_b: u64,
    /// `rss_b - rss_a`.
    pub delta: i64,
    /// Every region, by absolute change, largest first.
    pub regions: Vec<RegionDelta>,
    /// Every mapping, by absolute change, largest first.
    pub mappings: Vec<MappingDelta>,
    /// leaktrail's own resident bytes in A and B (the tracer's audit
    /// region), left out of the totals, regions and mappings above.
    pub tracer_a: u64,
    /// …in B.
    pub tracer_b: u64,
}

/// The kind a mapping is matched by.
fn kind(m: &Mapping) -> (u8, String, u64, String) {
    if m.region == Region::File || m.inode != 0 {
        (0, m.path.clone(), m.offset, m.perms.clone())
    } else {
        (1 + m.region as u8, m.path.clone(), 0, m.perms.clone())
    }
}

fn delta(a: u64, b: u64) -> i64 {
    (b as i128 - a as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The delta of a pair; `m` is the side that describes it (B's when both).
fn entry(m: &Mapping, a: Option<&Mapping>, b: Option<&Mapping>) -> MappingDelta {
    let (rss_a, rss_b) = (a.map_or(0, |m| m.rss), b.map_or(0, |m| m.rss));
    MappingDelta {
        name: m.display_name(),
        region: m.region,
        perms: m.perms.clone(),
        start: m.start,
        end: m.end,
        size_a: a.map_or(0, Mapping::size),
        size_b: b.map_or(0, Mapping::size),
        rss_a,
        rss_b,
        delta: delta(rss_a, rss_b),
        presence: match (a, b) {
            (Some(_), Some(_)) => Presence::Both,
            (None, _) => Presence::Added,
            (_, None) => Presence::Removed,
        },
    }
}

/// Compares two lists of classified mappings (each in address order).
pub fn diff(a: &[Mapping], b: &[Mapping]) -> MapsDiff {
    // The tracer's memory is not the program's (issue 13): keep it apart.
    let tracer = |ms: &[Mapping]| -> u64 {
        ms.iter()
            .filter(|m| m.region == Region::Tracer)
            .map(|m| m.rss)
            .sum()
    };
    let (tracer_a, tracer_b) = (tracer(a), tracer(b));
    let own = |ms: &[Mapping]| -> Vec<Mapping> {
        ms.iter()
            .filter(|m| m.region != Region::Tracer)
            .cloned()
            .collect()
    };
    let (a, b) = (&own(a)[..], &own(b)[..]);
    type Group<'a> = (Vec<&'a Mapping>, Vec<&'a Mapping>);
    let mut groups: BTreeMap<(u8, String, u64, String), Group> = BTreeMap::new();
    for m in a {
        groups.entry(kind(m)).or_default().0.push(m);
    }
    for m in b {
        groups.entry(kind(m)).or_default().1.push(m);
    }
    let mut out = Vec::new();
    for (_, (xs, ys)) in groups {
        let mut used_b = vec![false; ys.len()];
        let mut pair_of: Vec<Option<usize>> = vec![None; xs.len()];
        // Same start or same end: the same mapping, grown or shrunk.
        for (i, x) in xs.iter().enumerate() {
            if let Some(j) = (0..ys.len())
                .find(|&j| !used_b[j] && (ys[j].start == x.start || ys[j].end == x.end))
            {
                used_b[j] = true;
                pair_of[i] = Some(j);
            }
        }
        // The rest in address order.
        let mut free_b = (0..ys.len())
            .filter(|&j| !used_b[j])
            .collect::<Vec<_>>()
            .into_iter();
        for p in pair_of.iter_mut().filter(|p| p.is_none()) {
            if let Some(j) = free_b.next() {
                used_b[j] = true;
                *p = Some(j);
            }
        }
        for (i, x) in xs.iter().enumerate() {
            let y = pair_of[i].map(|j| ys[j]);
            out.push(entry(y.unwrap_or(x), Some(x), y));
        }
        for (j, y) in ys.iter().enumerate() {
            if !used_b[j] {
                out.push(entry(y, None, Some(y)));
            }
        }
    }
    out.sort_by(|x, y| {
        y.delta
            .unsigned_abs()
            .cmp(&x.delta.unsigned_abs())
            .then(y.rss_b.cmp(&x.rss_b))
            .then(x.start.cmp(&y.start))
    });
    let mut regions: Vec<RegionDelta> = Region::ALL
        .iter()
        .map(|&r| {
            let sum = |ms: &[Mapping]| {
                ms.iter()
                    .filter(|m| m.region == r)
                    .map(|m| m.rss)
                    .sum::<u64>()
            };
            let (ra, rb) = (sum(a), sum(b));
            RegionDelta {
                name: r.name().to_string(),
                rss_a: ra,
                rss_b: rb,
                delta: delta(ra, rb),
            }
        })
        .collect();
    regions.sort_by_key(|r| std::cmp::Reverse(r.delta.unsigned_abs()));
    let rss_a = a.iter().map(|m| m.rss).sum();
    let rss_b = b.iter().map(|m| m.rss).sum();
    MapsDiff {
        rss_a,
        rss_b,
        delta: delta(rss_a, rss_b),
        regions,
        mappings: out,
        tracer_a,
        tracer_b,
    }
}

/// The mappings a snapshot recorded (leaktrail's note keeps every mapping
/// with its resident size), classified into regions as a watch sample's
/// are, so that two snapshots, or a snapshot and a sample, can be diffed.
pub fn snapshot_mappings(
    snap: &leaktrail_recording::Snapshot,
) -> Result<Vec<Mapping>, crate::Error> {
    let meta = snap.metadata().ok_or_else(|| {
        crate::Error::Insufficient(format!(
            "{} has no leaktrail note (a core from gcore or the kernel): it does not say how much of each mapping was resident",
            snap.path().display()
        ))
    })?;
    // A note always lists the mappings; without any there is nothing to
    // diff (the segments would carry no resident sizes).
    Ok(if meta.regions.is_empty() {
        Vec::new()
    } else {
        snap.mappings()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrail_recording::maps::{classify, parse_smaps};

    fn maps(text: &str) -> Vec<Mapping> {
        let mut m = parse_smaps(text).unwrap();
        classify(&mut m, &[]);
        m
    }

    #[test]
    fn matches_moved_mappings_and_ranks_growth() {
        let a = maps(
            "\
555500000000-555500001000 r-xp 00000000 08:01 7 /usr/bin/server
Rss: 4 kB
555500100000-555500200000 rw-p 00000000 00:00 0 [heap]
Rss: 1000 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Rss: 100 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0 
Rss: 50 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss: 20 kB
",
        );
        // Restarted elsewhere (ASLR), heap grew, the second anon region
        // grew downwards (same end), a new anon mapping appeared.
        let b = maps(
            "\
565600000000-565600001000 r-xp 00000000 08:01 7 /usr/bin/server
Rss: 4 kB
565600100000-565600900000 rw-p 00000000 00:00 0 [heap]
Rss: 9000 kB
7e0000000000-7e0000010000 rw-p 00000000 00:00 0 
Rss: 64 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Rss: 100 kB
7f0000100000-7f0000300000 rw-p 00000000 00:00 0 
Rss: 1050 kB
7ffe00000000-7ffe00021000 rw-p 00000000 00:00 0 [stack]
Rss: 24 kB
",
        );
        let d = diff(&a, &b);
        let names: Vec<(&str, i64, Presence)> = d
            .mappings
            .iter()
            .map(|m| (m.name.as_str(), m.delta / 1024, m.presence))
            .collect();
        assert_eq!(
            names,
            vec![
                ("[heap]", 8000, Presence::Both),
                ("[anon]", 1000, Presence::Both),
                ("[anon]", 64, Presence::Added),
                ("[stack]", 4, Presence::Both),
                ("[anon]", 0, Presence::Both),
                ("/usr/bin/server", 0, Presence::Both),
            ]
        );
        assert_eq!(d.mappings[1].start, 0x7f0000100000);
        assert_eq!(d.regions[0].name, "heap");
        assert_eq!(d.regions[0].delta, 8000 * 1024);
        assert_eq!(d.regions[1].name, "anon");
        assert_eq!(d.regions[1].delta, 1064 * 1024);
        assert_eq!(d.delta, (9000 + 64 + 100 + 1050 + 24 + 4 - 1174) * 1024);
    }

    #[test]
    fn removed_and_empty() {
        let a = maps("7f0000000000-7f0000100000 rw-s 00000000 00:01 5 /dev/shm/x\nRss: 8 kB\n");
        let d = diff(&a, &[]);
        assert_eq!(d.mappings[0].presence, Presence::Removed);
        assert_eq!(d.mappings[0].delta, -8192);
        assert_eq!(d.mappings[0].region, Region::Shmem);
        let d = diff(&[], &[]);
        assert!(d.mappings.is_empty());
        assert_eq!(d.delta, 0);
    }
}
