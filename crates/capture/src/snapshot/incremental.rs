//! Incremental snapshots: keeping only the pages that changed since a base
//! snapshot.
//!
//! [`diff`] reads every page the snapshot captures (from the still image,
//! after the target was let go, or from the staging area) and compares it
//! with the same address in the base, resolved through the base's own
//! chain. Runs of equal pages become PT_LOAD segments without file bytes
//! that the note lists as *inherited*: a reader takes their bytes from the
//! base. Comparing contents rather than trusting the kernel's soft-dirty
//! bits keeps the result exact whatever happened in between (pages given
//! back with `MADV_DONTNEED`, another tool clearing the bits, a kernel
//! built without `CONFIG_MEM_SOFT_DIRTY`, as on our CI machine); the reads
//! happen while the target runs, so they cost CPU, not pause.
//!
//! Where the kernel keeps soft-dirty bits, a recording's snapshots start a
//! new epoch each (`4` into `/proc/PID/clear_refs`, while stopped) and the
//! next one skips reading the private anonymous pages whose bit (55 of
//! `/proc/PID/pagemap`, read while stopped) says they were not written
//! since: [`diff`]'s `clean`.

use leaktrail_recording::{Memory, Snapshot};

use super::memory::{Piece, STREAM_BATCH};
use super::{Load, Source};
use crate::Error;

const PAGE: u64 = 4096;
/// Runs of equal pages shorter than this stay in the data: a segment per
/// short run would cost more in program headers than it saves.
const MIN_SAME_PAGES: u64 = 4;

/// Cuts the data loads of `loads` into changed runs (kept) and runs equal
/// to `base` (inherited); returns the new loads and the inherited ranges.
/// Pages in `clean` (sorted `[start, end)` ranges the kernel's soft-dirty
/// bits say were not written since `base` was taken) that `base` holds are
/// taken as equal without being read.
pub(crate) fn diff(
    loads: Vec<Load>,
    src: &mut Source,
    base: &Snapshot,
    clean: &[[u64; 2]],
) -> Result<(Vec<Load>, Vec<[u64; 2]>), Error> {
    let mut out = Vec::with_capacity(loads.len());
    let mut inherited = Vec::new();
    let mut buf = vec![0u8; STREAM_BATCH as usize];
    for l in loads {
        // Holes (no file bytes) are zeros in both; partial loads (a header
        // page of a larger mapping) are kept as they are.
        if l.filesz == 0 || l.filesz != l.memsz || l.start % PAGE != 0 || l.filesz % PAGE != 0 {
            out.push(l);
            continue;
        }
        let pages = (l.filesz / PAGE) as usize;
        let page_at = |i: usize| l.start + i as u64 * PAGE;
        // `Some(true)`: known unchanged; `None`: to read and compare.
        let mut same: Vec<Option<bool>> = (0..pages)
            .map(|i| {
                let a = page_at(i);
                (is_clean(clean, a) && base.segment_of(a).is_some_and(|s| a + PAGE <= s.end()))
                    .then_some(true)
            })
            .collect();
        let mut i = 0;
        while i < pages {
            if same[i].is_some() {
                i += 1;
                continue;
            }
            let mut j = i;
            while j < pages && same[j].is_none() && ((j - i) as u64 + 1) * PAGE <= STREAM_BATCH {
                j += 1;
            }
            let n = (j - i) as u64 * PAGE;
            let chunk = &mut buf[..n as usize];
            src.read(
                &[Piece {
                    addr: page_at(i),
                    len: n,
                }],
                chunk,
            )?;
            for (k, page) in chunk.chunks_exact(PAGE as usize).enumerate() {
                same[i + k] = Some(equal_in(base, page_at(i + k), page));
            }
            i = j;
        }
        let same: Vec<bool> = same.into_iter().map(|s| s.unwrap_or(false)).collect();
        for (start, pages, is_same) in runs(&same) {
            let start = l.start + start * PAGE;
            let len = pages * PAGE;
            if is_same {
                inherited.push([start, start + len]);
            }
            out.push(Load {
                start,
                memsz: len,
                filesz: if is_same { 0 } else { len },
                ..l
            });
        }
    }
    Ok((out, inherited))
}

/// Whether `addr` lies in one of the sorted ranges `clean`.
fn is_clean(clean: &[[u64; 2]], addr: u64) -> bool {
    let i = clean.partition_point(|r| r[0] <= addr);
    i > 0 && addr < clean[i - 1][1]
}

/// Whether `page` at `addr` reads the same in `base`.
fn equal_in(base: &Snapshot, addr: u64, page: &[u8]) -> bool {
    if let Some(b) = base.borrow(addr, PAGE) {
        return b == page;
    }
    let mut b = [0u8; PAGE as usize];
    base.read(addr, &mut b).is_ok() && b[..] == *page
}

/// `(first page, pages, same)` runs of `same`, runs of equal pages shorter
/// than [`MIN_SAME_PAGES`] folded into the changed ones around them (a
/// load with nothing changed is one inherited run however short).
fn runs(same: &[bool]) -> Vec<(u64, u64, bool)> {
    let mut out: Vec<(u64, u64, bool)> = Vec::new();
    let all_same = same.iter().all(|&s| s);
    let mut i = 0;
    while i < same.len() {
        let mut j = i + 1;
        while j < same.len() && same[j] == same[i] {
            j += 1;
        }
        let is_same = same[i] && (all_same || (j - i) as u64 >= MIN_SAME_PAGES);
        match out.last_mut() {
            Some(last) if last.2 == is_same => last.1 += (j - i) as u64,
            _ => out.push((i as u64, (j - i) as u64, is_same)),
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_equal_runs_fold_into_the_changes_around_them() {
        let (t, f) = (true, false);
        assert_eq!(
            runs(&[f, t, t, f, t, t, t, t, t, f]),
            vec![(0, 4, false), (4, 5, true), (9, 1, false)]
        );
        assert_eq!(runs(&[t, t]), vec![(0, 2, true)]);
        assert_eq!(runs(&[t, t, f]), vec![(0, 3, false)]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn clean_ranges_are_looked_up_by_address() {
        let clean = [[0x1000, 0x3000], [0x8000, 0x9000]];
        let hits: Vec<u64> = (0..10u64)
            .map(|p| p * PAGE)
            .filter(|&a| is_clean(&clean, a))
            .collect();
        assert_eq!(hits, vec![0x1000, 0x2000, 0x8000]);
        assert!(!is_clean(&[], 0));
    }
}
