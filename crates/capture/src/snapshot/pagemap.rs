//! Which pages of a mapping exist, from `/proc/PID/pagemap`, so that large
//! untouched stretches of anonymous memory (the unused depth of every
//! thread's stack, a reserved arena) become PT_LOAD segments without file
//! bytes instead of megabytes of copied zeros.
//!
//! A private anonymous page that is neither present nor swapped has never
//! been written (or was given back with `MADV_DONTNEED`): it reads as
//! zeros, which is exactly what a segment's `p_memsz` past `p_filesz`
//! means. The present and swapped bits need no privilege beyond the ptrace
//! access we already have.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const PAGE: u64 = 4096;
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
/// Written since the last `4` into `/proc/PID/clear_refs`
/// (`CONFIG_MEM_SOFT_DIRTY`).
const SOFT_DIRTY: u64 = 1 << 55;
/// Holes shorter than this stay inside the data: a segment per small hole
/// would cost more in program headers than it saves.
pub(crate) const MIN_HOLE_PAGES: usize = 16;

/// A stretch of a mapping: `len` bytes at `start`, with data or all zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub start: u64,
    pub len: u64,
    pub data: bool,
}

/// Reads the pagemap entries of `start..end` of `pid`.
pub(crate) fn entries(pagemap: &File, start: u64, end: u64) -> io::Result<Vec<u64>> {
    let pages = ((end - start) / PAGE) as usize;
    let mut raw = vec![0u8; pages * 8];
    pagemap.read_exact_at(&mut raw, start / PAGE * 8)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

/// Whether this kernel keeps soft-dirty bits: a page we write in a fresh
/// mapping of our own must show one (kernels without
/// `CONFIG_MEM_SOFT_DIRTY` report none, ever).
pub(crate) fn soft_dirty_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let mut page = Box::new([0u8; PAGE as usize * 2]);
        // SAFETY: a volatile write into our own buffer, so the page is
        // really faulted in before we look at it.
        unsafe { std::ptr::write_volatile(&mut page[PAGE as usize], 1) };
        let addr = (page.as_ptr() as u64 + PAGE) / PAGE * PAGE;
        File::open("/proc/self/pagemap")
            .and_then(|f| entries(&f, addr, addr + PAGE))
            .is_ok_and(|e| e.first().is_some_and(|&e| e & SOFT_DIRTY != 0))
    })
}

/// Starts a new soft-dirty epoch in `pid`: every page reads clean until
/// written again.
pub(crate) fn clear_soft_dirty(pid: i32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"4")
}

/// The pages of `start..end` that are present (or swapped) and not soft-dirty:
/// unchanged since the last [`clear_soft_dirty`]. `[start, end)` ranges.
pub(crate) fn clean_ranges(pagemap: &File, start: u64, end: u64) -> io::Result<Vec<[u64; 2]>> {
    let e = entries(pagemap, start, end)?;
    let mut out: Vec<[u64; 2]> = Vec::new();
    for (i, &e) in e.iter().enumerate() {
        if e & (PRESENT | SWAPPED) == 0 || e & SOFT_DIRTY != 0 {
            continue;
        }
        let a = start + i as u64 * PAGE;
        match out.last_mut() {
            Some(last) if last[1] == a => last[1] = a + PAGE,
            _ => out.push([a, a + PAGE]),
        }
    }
    Ok(out)
}

/// Cuts a mapping starting at `start` into data and zero runs, given one
/// pagemap entry per page. Zero runs shorter than `min_hole` pages are
/// folded into the data around them, unless there is no data at all.
pub(crate) fn runs(start: u64, entries: &[u64], min_hole: usize) -> Vec<Run> {
    if entries.iter().all(|&e| e & (PRESENT | SWAPPED) == 0) {
        return match entries.len() {
            0 => Vec::new(),
            n => vec![Run {
                start,
                len: n as u64 * PAGE,
                data: false,
            }],
        };
    }
    let mut out: Vec<Run> = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let data = entries[i] & (PRESENT | SWAPPED) != 0;
        let mut j = i + 1;
        while j < entries.len() && (entries[j] & (PRESENT | SWAPPED) != 0) == data {
            j += 1;
        }
        let run = Run {
            start: start + i as u64 * PAGE,
            len: (j - i) as u64 * PAGE,
            data: data || (j - i) < min_hole,
        };
        match out.last_mut() {
            Some(last) if last.data == run.data => last.len += run.len,
            _ => out.push(run),
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PRESENT;

    #[test]
    fn long_holes_split_short_holes_fold() {
        // 20 absent, 2 present, 3 absent, 1 swapped, 16 absent.
        let mut e = vec![0u64; 20];
        e.extend([P, P, 0, 0, 0, SWAPPED]);
        e.extend(vec![0u64; 16]);
        let r = runs(0x10000, &e, 16);
        assert_eq!(
            r,
            vec![
                Run {
                    start: 0x10000,
                    len: 20 * PAGE,
                    data: false
                },
                Run {
                    start: 0x10000 + 20 * PAGE,
                    len: 6 * PAGE,
                    data: true
                },
                Run {
                    start: 0x10000 + 26 * PAGE,
                    len: 16 * PAGE,
                    data: false
                },
            ]
        );
        assert_eq!(r.iter().map(|r| r.len).sum::<u64>(), e.len() as u64 * PAGE);
    }

    #[test]
    fn all_present_or_all_absent_is_one_run() {
        assert_eq!(
            runs(0, &[P; 4], 16),
            vec![Run {
                start: 0,
                len: 4 * PAGE,
                data: true
            }]
        );
        assert_eq!(
            runs(0, &[0; 40], 16),
            vec![Run {
                start: 0,
                len: 40 * PAGE,
                data: false
            }]
        );
        assert_eq!(
            runs(0, &[0; 3], 16),
            vec![Run {
                start: 0,
                len: 3 * PAGE,
                data: false
            }]
        );
        assert_eq!(
            runs(0, &[0, 0, P], 16),
            vec![Run {
                start: 0,
                len: 3 * PAGE,
                data: true
            }]
        );
        assert!(runs(0, &[], 16).is_empty());
    }

    #[test]
    fn reads_our_own_pagemap() {
        let len = 64 * PAGE as usize;
        let base = crate::snapshot::memory::test_mapping(len);
        // SAFETY: writing the last page of our own mapping.
        unsafe { base.add(len - 1).write_volatile(1) };
        let f = File::open("/proc/self/pagemap").unwrap();
        let start = base as u64;
        let e = entries(&f, start, start + len as u64).unwrap();
        let r = runs(start, &e, MIN_HOLE_PAGES);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(!r[0].data && r[1].data);
        // SAFETY: unmapping what we mapped.
        unsafe { libc::munmap(base.cast(), len) };
    }
}
