//! `::umem_cache` for malloc: per size class, live buffers and bytes and
//! the total allocations and frees, over one or several snapshots, with the
//! change between the first and the last and the classes that grew most
//! flagged.

use leaktrail_recording::audit::Audit;

/// One class in one snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Live buffers.
    pub live_count: u64,
    /// Their requested bytes.
    pub live_bytes: u64,
    /// Allocations ever made in the class.
    pub allocs: u64,
    /// Frees ever made.
    pub frees: u64,
}

/// The change of a class from the first snapshot to the last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassDelta {
    /// Change in live buffers.
    pub live_count: i64,
    /// Change in live bytes.
    pub live_bytes: i64,
    /// Allocations between the two.
    pub allocs: i64,
    /// Frees between the two.
    pub frees: i64,
}

/// One size class across the snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRow {
    /// Largest request size in the class.
    pub size: u64,
    /// Live buffers in the last snapshot.
    pub live_count: u64,
    /// Live bytes in the last snapshot.
    pub live_bytes: u64,
    /// Allocations in the last snapshot.
    pub allocs: u64,
    /// Frees in the last snapshot.
    pub frees: u64,
    /// The counts in each snapshot, in the order given.
    pub snapshots: Vec<ClassCounts>,
    /// Last minus first (absent with one snapshot).
    pub delta: Option<ClassDelta>,
    /// Among the classes that grew the most.
    pub grew_most: bool,
}

/// The table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caches {
    /// Classes with any activity: with several snapshots ordered by growth
    /// of live bytes, else by live bytes.
    pub classes: Vec<ClassRow>,
    /// Live buffers and bytes per snapshot.
    pub totals: Vec<ClassCounts>,
    /// The sampling rate of the newest snapshot's audit (0: a full audit).
    /// The class counters count every block either way; when sampling,
    /// unsampled blocks are counted by the allocator's usable size.
    pub sample_rate: u64,
}

/// At most this many classes are flagged as growing the most.
const FLAGGED: usize = 3;

/// Compares the size classes of `audits` (oldest first).
pub fn compare(audits: &[&Audit]) -> Caches {
    let n = audits.iter().map(|a| a.classes.len()).max().unwrap_or(0);
    let mut classes: Vec<ClassRow> = (0..n)
        .filter_map(|c| {
            let per: Vec<ClassCounts> = audits
                .iter()
                .map(|a| {
                    a.classes
                        .get(c)
                        .map(|s| ClassCounts {
                            live_count: s.live_count,
                            live_bytes: s.live_bytes,
                            allocs: s.allocs,
                            frees: s.frees,
                        })
                        .unwrap_or_default()
                })
                .collect();
            if per.iter().all(|p| *p == ClassCounts::default()) {
                return None;
            }
            let size = audits.iter().find_map(|a| a.classes.get(c))?.size;
            let last = *per.last()?;
            let first = *per.first()?;
            let d = |a: u64, b: u64| a as i64 - b as i64;
            Some(ClassRow {
                size,
                live_count: last.live_count,
                live_bytes: last.live_bytes,
                allocs: last.allocs,
                frees: last.frees,
                delta: (per.len() > 1).then(|| ClassDelta {
                    live_count: d(last.live_count, first.live_count),
                    live_bytes: d(last.live_bytes, first.live_bytes),
                    allocs: d(last.allocs, first.allocs),
                    frees: d(last.frees, first.frees),
                }),
                snapshots: per,
                grew_most: false,
            })
        })
        .collect();
    if audits.len() > 1 {
        classes.sort_by(|a, b| {
            let g = |r: &ClassRow| r.delta.map_or(0, |d| d.live_bytes);
            g(b).cmp(&g(a)).then(a.size.cmp(&b.size))
        });
        // Flag the top growers, as long as they grew at least a quarter of
        // what the top one did: a table of many small ups is not a story.
        let top = classes
            .first()
            .and_then(|r| r.delta)
            .map_or(0, |d| d.live_bytes);
        for r in classes.iter_mut().take(FLAGGED) {
            let g = r.delta.map_or(0, |d| d.live_bytes);
            r.grew_most = g > 0 && g * 4 >= top;
        }
    } else {
        classes.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.size.cmp(&b.size)));
    }
    let totals = audits
        .iter()
        .map(|a| ClassCounts {
            // A sample's table holds only the sampled blocks; its counters
            // count them all.
            live_count: if a.sampled() {
                a.classes.iter().map(|c| c.live_count).sum()
            } else {
                a.live.len() as u64
            },
            live_bytes: if a.sampled() {
                a.classes.iter().map(|c| c.live_bytes).sum()
            } else {
                a.live_bytes()
            },
            allocs: a.classes.iter().map(|c| c.allocs).sum(),
            frees: a.classes.iter().map(|c| c.frees).sum(),
        })
        .collect();
    let sample_rate = audits.last().map_or(0, |a| a.sample_rate);
    Caches {
        classes,
        totals,
        sample_rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrail_recording::audit::{AuditCounters, ClassStats};

    fn audit(classes: &[(u64, u64, u64, u64, u64)]) -> Audit {
        Audit {
            header_addr: 0,
            pid: 1,
            state: "running".into(),
            unwind: leaktrail_format::UnwindMode::Dwarf.name().into(),
            max_depth: 64,
            sample_rate: 0,
            exit_tid: 0,
            allocator: leaktrail_format::Allocator::Unknown,
            attached: false,
            bypassed: 0,
            start_realtime_ns: 0,
            counters: AuditCounters::default(),
            classes: classes
                .iter()
                .enumerate()
                .map(
                    |(i, &(size, live_count, live_bytes, allocs, frees))| ClassStats {
                        class: leaktrail_format::SizeClass(i as u16),
                        size,
                        live_count,
                        live_bytes,
                        allocs,
                        frees,
                    },
                )
                .collect(),
            live: Vec::new(),
            maps: Vec::new(),
            stacks: Default::default(),
            sites: None,
            peak: None,
            busy_shards: 0,
            corrupt: 0,
            ranges: Vec::new(),
        }
    }

    #[test]
    fn one_snapshot_orders_by_live_bytes_and_skips_idle_classes() {
        let c = compare(&[&audit(&[
            (8, 0, 0, 0, 0),
            (64, 10, 640, 20, 10),
            (4096, 2, 8000, 2, 0),
        ])]);
        let sizes: Vec<u64> = c.classes.iter().map(|r| r.size).collect();
        assert_eq!(sizes, [4096, 64]);
        assert!(c.classes.iter().all(|r| r.delta.is_none() && !r.grew_most));
    }

    #[test]
    fn several_snapshots_rank_by_growth_and_flag_the_big_growers() {
        let a = audit(&[
            (64, 10, 640, 20, 10),
            (4096, 1700, 6_800_000, 1700, 0),
            (512, 5, 2500, 5, 0),
        ]);
        let b = audit(&[
            (64, 10, 640, 120, 110),
            (4096, 17000, 68_000_000, 17000, 0),
            (512, 6, 3000, 6, 0),
        ]);
        let c = compare(&[&a, &b]);
        let top = &c.classes[0];
        assert_eq!(top.size, 4096);
        assert_eq!(
            top.delta,
            Some(ClassDelta {
                live_count: 15300,
                live_bytes: 61_200_000,
                allocs: 15300,
                frees: 0
            })
        );
        assert!(top.grew_most);
        // A small rise is not flagged beside a big one; a level class is not.
        assert!(!c.classes[1].grew_most);
        let level = c.classes.iter().find(|r| r.size == 64).expect("64");
        assert_eq!(level.delta.map(|d| d.live_count), Some(0));
        assert_eq!(c.totals.len(), 2);
    }
}
