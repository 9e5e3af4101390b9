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
pub(crate) fn diff(
    loads: Vec<Load>,
    src: &mut Source,
    base: &Snapshot,
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
        let mut same = Vec::with_capacity((l.filesz / PAGE) as usize);
        let mut at = l.start;
        while at < l.start + l.filesz {
            let n = (l.start + l.filesz - at).min(STREAM_BATCH);
            let chunk = &mut buf[..n as usize];
            src.read(&[Piece { addr: at, len: n }], chunk)?;
            for (i, page) in chunk.chunks_exact(PAGE as usize).enumerate() {
                same.push(equal_in(base, at + i as u64 * PAGE, page));
            }
            at += n;
        }
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
}
