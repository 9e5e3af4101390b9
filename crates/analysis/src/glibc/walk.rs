//! Every malloc chunk in use, from glibc's own state (issue 12, item 1).
//!
//! For each arena of the `next` list from `main_arena`: its heaps chunk by
//! chunk (the main arena's brk heap from `mp_.sbrk_base` to its top chunk;
//! a non-main arena's heaps from the top's back through `heap_info.prev`,
//! each to its top or its fenceposts). A chunk is in use when the next
//! chunk's `PREV_INUSE` bit says so and it is in no per-thread cache
//! (`tcache`, safe-linked: `next` is stored as `(pos >> 12) ^ next`) and
//! no fastbin (likewise); the unsorted, small and large bins' chunks have
//! the bit clear already, and every one found in a bin is checked to be
//! free. mmapped chunks have no list: anonymous mappings are read page by
//! page for an `IS_MMAPPED` header whose size fits, and the count is
//! checked against `mp_.n_mmaps`.
//!
//! A walk never trusts a size it has not checked: a chunk whose size does
//! not fit its heap ends that heap's walk (what follows is not counted), a
//! list longer than its count or leaving the heap is cut, and each such
//! thing is one line in [`Walk::problems`] (a core taken while a thread was
//! inside malloc shows them; the locked arena is named too).

use std::collections::{BTreeMap, HashSet};

use leaktrail_format::{class_of, SizeClass, StackId};

use super::layout::*;
use super::locate::{self, arena_list, Allocator};
use crate::heap::model::{ProcessImage, REG_FS_BASE};
use crate::Error;
use leaktrail_recording::audit::{Audit, AuditCounters, Block, ClassStats};
use leaktrail_recording::Memory;

/// One chunk in use: its user memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Its user address (what malloc returned).
    pub addr: u64,
    /// Its usable size (`malloc_usable_size`).
    pub size: u64,
    /// Whether glibc mmapped it on its own.
    pub mmapped: bool,
}

impl Chunk {
    /// The chunk as a block without stack, time or thread.
    fn block(&self) -> Block {
        Block {
            addr: self.addr,
            size: self.size,
            time_ns: 0,
            stack: StackId::NONE,
            tid: 0,
        }
    }
}

/// What a walk found.
#[derive(Clone, Debug)]
pub struct Walk {
    /// Where the state was.
    pub allocator: Allocator,
    /// The chunks in use, by address.
    pub chunks: Vec<Chunk>,
    /// How many arenas.
    pub arenas: usize,
    /// How many heaps (the brk heap and each non-main heap).
    pub heaps: usize,
    /// Free chunks held in per-thread caches.
    pub tcache_chunks: u64,
    /// Free chunks in fastbins.
    pub fastbin_chunks: u64,
    /// Other free chunks (bins, top chunks).
    pub free_chunks: u64,
    /// The allocator's own state, `[start, end)`: each arena's
    /// `malloc_state`, `mp_`, each thread's tcache struct.
    pub state: Vec<(u64, u64)>,
    /// What did not fit, one line each.
    pub problems: Vec<String>,
}

impl Walk {
    /// Adds to `audit` (a tracer's, loaded into the running process by
    /// `leaktrail attach`) every chunk in use that it lacks: the blocks
    /// allocated before the attach, without stacks, times or threads, at
    /// their usable sizes, counted in their size classes. Returns their
    /// addresses, sorted.
    pub fn merge_before_attach(&self, audit: &mut Audit) -> Vec<u64> {
        self.merge_missing(audit, true)
    }

    /// Adds to `audit` (a sampled one: `run --sample`, `attach --sample`)
    /// every chunk in use that it lacks: the blocks that were not sampled
    /// (and, attached, those from before the attach), without stacks, at
    /// their usable sizes. Not counted in the size classes: a sampled
    /// audit's class counters count every block already. Returns their
    /// addresses, sorted.
    pub fn merge_unsampled(&self, audit: &mut Audit) -> Vec<u64> {
        self.merge_missing(audit, false)
    }

    /// Sets `audit`'s live counts per size class to the chunks in use, by
    /// their usable sizes (for a sampled audit attached late, whose
    /// counters count from the attach on).
    pub fn count_classes(&self, audit: &mut Audit) {
        for c in &mut audit.classes {
            c.live_count = 0;
            c.live_bytes = 0;
        }
        for chunk in &self.chunks {
            let b = chunk.block();
            if let Some(c) = audit.classes.get_mut(class_of(b.size).index()) {
                c.live_count += 1;
                c.live_bytes += b.size;
            }
        }
    }

    fn merge_missing(&self, audit: &mut Audit, count_classes: bool) -> Vec<u64> {
        let known: HashSet<u64> = audit.live.iter().map(|b| b.addr).collect();
        let missing: Vec<Block> = self
            .chunks
            .iter()
            .filter(|c| !known.contains(&c.addr))
            .map(Chunk::block)
            .collect();
        if count_classes {
            for b in &missing {
                if let Some(c) = audit.classes.get_mut(class_of(b.size).index()) {
                    c.live_count += 1;
                    c.live_bytes += b.size;
                }
            }
        }
        let addrs = missing.iter().map(|b| b.addr).collect();
        audit.live.extend(missing);
        audit.live.sort_unstable_by_key(|b| b.addr);
        addrs
    }

    /// The chunks as an audit without stacks, times or threads: its live
    /// blocks are the chunks in use (usable sizes), its size classes
    /// counted from them (no allocation or free counts), its state
    /// `"walked"`. What the heap analyses read for an untraced process.
    pub fn audit(&self, pid: u32) -> Audit {
        let live: Vec<Block> = self.chunks.iter().map(Chunk::block).collect();
        let mut classes: Vec<ClassStats> = SizeClass::all()
            .map(|class| ClassStats {
                class,
                size: class.size(),
                live_count: 0,
                live_bytes: 0,
                allocs: 0,
                frees: 0,
            })
            .collect();
        for b in &live {
            let c = &mut classes[class_of(b.size).index()];
            c.live_count += 1;
            c.live_bytes += b.size;
        }
        Audit {
            header_addr: 0,
            pid,
            state: WALKED.to_string(),
            unwind: String::new(),
            max_depth: 0,
            sample_rate: 0,
            exit_tid: 0,
            allocator: leaktrail_format::Allocator::Glibc,
            attached: false,
            bypassed: 0,
            start_realtime_ns: 0,
            counters: AuditCounters::default(),
            classes,
            live,
            maps: Vec::new(),
            stacks: BTreeMap::new(),
            sites: None,
            peak: None,
            busy_shards: 0,
            corrupt: 0,
            ranges: Vec::new(),
        }
    }
}

/// [`Audit::state`] of an audit made from a walk.
pub const WALKED: &str = "walked";

/// Words of one range, borrowed when the image lends it, read otherwise.
struct Reader<'m> {
    mem: &'m dyn Memory,
    lo: u64,
    bytes: &'m [u8],
}

impl<'m> Reader<'m> {
    fn over(mem: &'m dyn Memory, start: u64, end: u64) -> Reader<'m> {
        Reader {
            mem,
            lo: start,
            bytes: mem.borrow(start, end.saturating_sub(start)).unwrap_or(&[]),
        }
    }

    /// Asks the CPU for the cache line at `a`, when the image lends it. A
    /// heap walk is a chain of dependent loads (each chunk's size leads to
    /// the next header), so without this every header is a full miss;
    /// streaming the lines ahead of the walk makes it as fast as reading
    /// the heap.
    #[inline]
    fn prefetch(&self, a: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = self.bytes.get(a.wrapping_sub(self.lo) as usize..) {
            // SAFETY: a prefetch is only a hint: it reads nothing into the
            // program and never faults, and `p` is in bounds besides.
            #[allow(unused_unsafe)]
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    p.as_ptr().cast(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = a;
    }

    #[inline]
    fn u64(&self, a: u64) -> Option<u64> {
        let off = a.wrapping_sub(self.lo) as usize;
        match self.bytes.get(off..off.wrapping_add(8)) {
            Some(w) => Some(u64::from_le_bytes(w.try_into().ok()?)),
            None => self.mem.read_u64(a).ok(),
        }
    }
}

/// A chunk the heap walk saw: `(chunk address, size | in use)`, the low
/// bit (sizes are multiples of 16) set when its neighbour's `PREV_INUSE`
/// says it is in use: 16 bytes a chunk, for 10 M of them.
type Seen = (u64, u64);

/// How far ahead of the walk the heap's cache lines are asked for.
const PREFETCH_AHEAD: u64 = 4096;
/// A cache line.
const LINE: u64 = 64;

/// Walks glibc's heap in `image`. `exclude` are ranges that are known not
/// to hold malloc's chunks (the tracer's audit region). Fails when glibc's
/// state cannot be found; a state that is found but inconsistent gives
/// what is certain and says the rest in [`Walk::problems`].
pub fn walk(image: &dyn ProcessImage, exclude: &[(u64, u64)]) -> Result<Walk, Error> {
    Ok(walk_with(image, locate::locate(image)?, exclude))
}

/// [`walk`] with glibc's state already located.
pub fn walk_with(image: &dyn ProcessImage, allocator: Allocator, exclude: &[(u64, u64)]) -> Walk {
    let mem = image.memory();
    let mut problems = Vec::new();
    let arenas = arena_list(mem, allocator.main_arena).unwrap_or_default();
    let mut maps = image.mappings();
    maps.sort_by_key(|m| m.start);
    let mut seen: Vec<Seen> = Vec::new();
    let mut free = HashSet::new();
    let mut state: Vec<(u64, u64)> = arenas.iter().map(|&a| (a, a + ARENA_SIZE)).collect();
    if let Some(mp) = allocator.mp {
        state.push((mp, mp + MP_SIZE));
    }
    let mut heaps = 0;
    let mut heap_ranges: Vec<(u64, u64)> = Vec::new();
    let mut free_chunks = 0u64;
    let mut fastbin_chunks = 0u64;
    for (n, &a) in arenas.iter().enumerate() {
        let label = if n == 0 {
            "main arena".to_string()
        } else {
            format!("arena {n} at {a:#x}")
        };
        if mem.read_u64(a + ARENA_MUTEX).is_ok_and(|m| m as u32 != 0) {
            problems.push(format!(
                "{label} was locked at the snapshot (a thread was inside malloc): its lists may be mid-update"
            ));
        }
        let Ok(top) = mem.read_u64(a + ARENA_TOP) else {
            continue;
        };
        if top == bin_at(a, 1) {
            continue; // never used: top is the initial fake chunk.
        }
        if n == 0 {
            let brk = maps.iter().find(|m| m.path == "[heap]");
            let base = allocator
                .mp
                .and_then(|mp| mem.read_u64(mp + MP_SBRK_BASE).ok())
                .filter(|&b| b != 0)
                .or(brk.map(|m| m.start));
            let Some(base) = base else {
                problems.push(format!(
                    "{label}: no brk heap found; its chunks are not walked"
                ));
                continue;
            };
            let end = brk.map_or(top + MIN_CHUNK, |m| m.end);
            if !(base <= top && top < end) {
                problems.push(format!(
                    "{label}: its top chunk {top:#x} is outside the brk heap {base:#x}-{end:#x} \
                     (malloc fell back to mmap): only the brk heap is walked"
                ));
            }
            let first = base + ((ALIGN - (base + CHUNK_HDR) % ALIGN) % ALIGN);
            let top_in = (base <= top && top < end).then_some(top);
            heaps += 1;
            heap_ranges.push((base, end));
            walk_heap(
                mem,
                first,
                top_in.unwrap_or(end),
                top_in.is_some(),
                &label,
                &mut seen,
                &mut problems,
            );
            free_chunks += 1;
        } else {
            let mut h = top & !(HEAP_MAX - 1);
            let mut at_top = true;
            for _ in 0..(1 << 16) {
                if h == 0 {
                    break;
                }
                let (Ok(owner), Ok(size)) =
                    (mem.read_u64(h), mem.read_u64(h + HEAP_INFO_SIZE_FIELD))
                else {
                    problems.push(format!("{label}: its heap at {h:#x} is not in the image"));
                    break;
                };
                if owner != a || size == 0 || size > HEAP_MAX {
                    problems.push(format!(
                        "{label}: the heap_info at {h:#x} names arena {owner:#x} and size {size:#x}; its chain is cut there"
                    ));
                    break;
                }
                let first = if h + HEAP_INFO_SIZE == a {
                    let c = a + ARENA_SIZE;
                    c + ((ALIGN - c % ALIGN) % ALIGN)
                } else {
                    h + HEAP_INFO_SIZE
                };
                heaps += 1;
                heap_ranges.push((h, h + size));
                let stop = if at_top { top } else { h + size };
                walk_heap(mem, first, stop, at_top, &label, &mut seen, &mut problems);
                if at_top {
                    free_chunks += 1;
                }
                at_top = false;
                h = mem.read_u64(h + HEAP_INFO_PREV).unwrap_or(0);
            }
        }
        // Fastbins: chunk pointers, safe-linked through the fd word.
        for i in 0..NFASTBINS {
            let mut p = mem.read_u64(a + ARENA_FASTBINS + 8 * i).unwrap_or(0);
            let want = (i + 2) * ALIGN;
            let mut steps = 0u64;
            while p != 0 {
                let size = mem.read_u64(p + 8).ok().map(|s| s & !FLAGS);
                if p % ALIGN != 0 || size != Some(want) || steps > 1 << 24 {
                    problems.push(format!(
                        "{label}: fastbin {i} leads to {p:#x}, not a free {want}-byte chunk; the rest of that list is not read"
                    ));
                    break;
                }
                if !free.insert(p) {
                    problems.push(format!("{label}: fastbin {i} loops at {p:#x}"));
                    break;
                }
                fastbin_chunks += 1;
                steps += 1;
                p = mem
                    .read_u64(p + CHUNK_HDR)
                    .map_or(0, |s| reveal(p + CHUNK_HDR, s));
            }
        }
    }
    // The per-thread caches: each live thread's struct (a chunk of its
    // arena) whose lists are safe-linked.
    let mut tcache_chunks = 0u64;
    for (tid, tc) in tcaches(image, &allocator, &mut problems) {
        let chunk = tc - CHUNK_HDR;
        state.push((chunk, chunk + request2size(TCACHE_SIZE)));
        free.insert(chunk);
        let Some(counts) = read_bytes(mem, tc, TCACHE_ENTRIES) else {
            problems.push(format!(
                "thread {tid}: its tcache at {tc:#x} is not in the image"
            ));
            continue;
        };
        for i in 0..TCACHE_BINS {
            let k = 2 * i as usize;
            let count = u16::from_le_bytes([counts[k], counts[k + 1]]);
            let mut e = mem.read_u64(tc + TCACHE_ENTRIES + 8 * i).unwrap_or(0);
            let want = (i + 2) * ALIGN;
            let mut n = 0u64;
            while e != 0 {
                let size = mem.read_u64(e - 8).ok().map(|s| s & !FLAGS);
                if e % ALIGN != 0 || size != Some(want) || n >= u64::from(count) {
                    problems.push(format!(
                        "thread {tid}: tcache bin {i} (count {count}) leads to {e:#x}, not a free {want}-byte chunk; the rest of that list is not read"
                    ));
                    break;
                }
                free.insert(e - CHUNK_HDR);
                n += 1;
                e = mem.read_u64(e).map_or(0, |s| reveal(e, s));
            }
            tcache_chunks += n;
        }
    }
    // Sorted, a few thousand at most: a binary search per chunk beats
    // hashing 10 M addresses.
    let mut free: Vec<u64> = free.into_iter().collect();
    free.sort_unstable();
    let mut chunks: Vec<Chunk> = Vec::with_capacity(seen.len());
    for &(c, size_inuse) in &seen {
        let (size, inuse) = (size_inuse & !1, size_inuse & 1 != 0);
        if inuse && free.binary_search(&c).is_err() {
            chunks.push(Chunk {
                addr: c + CHUNK_HDR,
                size: size - 8,
                mmapped: false,
            });
        } else {
            free_chunks += 1;
        }
    }
    free_chunks -= fastbin_chunks.min(free_chunks);
    free_chunks -= tcache_chunks.min(free_chunks);
    chunks.sort_unstable_by_key(|c| c.addr);
    check_bins(mem, &arenas, &chunks, &mut problems);
    // mmapped chunks, in anonymous memory that is no heap, stack or
    // excluded range.
    let stacks: Vec<u64> = image.threads().iter().map(|t| t.sp()).collect();
    let mut skip: Vec<(u64, u64)> = heap_ranges.iter().chain(exclude).copied().collect();
    skip.sort_unstable();
    let mut mmapped = Vec::new();
    for m in &maps {
        let anon = m.path.is_empty() || m.path.starts_with("[anon");
        if !anon
            || m.perms.as_bytes().get(1) != Some(&b'w')
            || stacks.iter().any(|&sp| m.start <= sp && sp < m.end)
        {
            continue;
        }
        // The kernel merges neighbouring anonymous mappings: scan around
        // the heaps and excluded ranges inside this one.
        let mut at = m.start;
        for &(s, e) in skip.iter().filter(|&&(s, e)| s < m.end && m.start < e) {
            if at < s {
                scan_mmapped(mem, at, s, &mut mmapped);
            }
            at = at.max(e);
        }
        if at < m.end {
            scan_mmapped(mem, at, m.end, &mut mmapped);
        }
    }
    if let Some(mp) = allocator.mp {
        if let Ok(n) = mem.read_u64(mp + MP_N_MMAPS) {
            let n = n as u32 as u64;
            if n != mmapped.len() as u64 {
                problems.push(format!(
                    "mp_ counts {n} mmapped chunks; {} were found in the image",
                    mmapped.len()
                ));
            }
        }
    }
    if !mmapped.is_empty() {
        chunks.extend(mmapped);
        chunks.sort_unstable_by_key(|c| c.addr);
    }
    state.sort_unstable();
    Walk {
        allocator,
        chunks,
        arenas: arenas.len(),
        heaps,
        tcache_chunks,
        fastbin_chunks,
        free_chunks,
        state,
        problems,
    }
}

/// Each live thread's tcache struct (its user address), by thread id:
/// the `tcache` variable read at its thread pointer plus the offset.
fn tcaches(
    image: &dyn ProcessImage,
    allocator: &Allocator,
    problems: &mut Vec<String>,
) -> Vec<(i32, u64)> {
    let Some(off) = allocator.tcache_tpoff else {
        problems.push(
            "the per-thread caches (tcache) were not found: their free chunks count as in use"
                .into(),
        );
        return Vec::new();
    };
    let mem = image.memory();
    let mut out = Vec::new();
    for t in image.threads() {
        let fs = t.regs.get(REG_FS_BASE).copied().unwrap_or(0);
        match mem.read_u64(fs.wrapping_add(off)) {
            Ok(0) => {}
            Ok(tc) if tc % ALIGN == 0 => out.push((t.tid, tc)),
            _ => problems.push(format!(
                "thread {}: its tcache pointer is not in the image; its cached chunks count as in use",
                t.tid
            )),
        }
    }
    out
}

/// The allocator's own state in `image`, `[start, end)` sorted: every
/// arena's `malloc_state`, `mp_`, each live thread's tcache struct. Cheap
/// (no heap walk): what [`crate::Heap`] keeps out of the roots. Empty when
/// glibc's state is not found.
pub fn state(image: &dyn ProcessImage) -> Vec<(u64, u64)> {
    let Ok(allocator) = locate::locate(image) else {
        return Vec::new();
    };
    let mem = image.memory();
    let mut state: Vec<(u64, u64)> = arena_list(mem, allocator.main_arena)
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a, a + ARENA_SIZE))
        .collect();
    state.extend(allocator.mp.map(|mp| (mp, mp + MP_SIZE)));
    for (_, tc) in tcaches(image, &allocator, &mut Vec::new()) {
        let chunk = tc - CHUNK_HDR;
        state.push((chunk, chunk + request2size(TCACHE_SIZE)));
    }
    state.sort_unstable();
    state
}

fn read_bytes(mem: &dyn Memory, at: u64, len: u64) -> Option<Vec<u8>> {
    let mut b = vec![0u8; len as usize];
    mem.read(at, &mut b).ok()?;
    Some(b)
}

/// Walks one heap's chunks from `first` to `stop`: the arena's top chunk
/// when `to_top`, else the heap's end, where fenceposts (a 16-byte chunk,
/// then a 0-byte one) close it.
fn walk_heap(
    mem: &dyn Memory,
    first: u64,
    stop: u64,
    to_top: bool,
    label: &str,
    seen: &mut Vec<Seen>,
    problems: &mut Vec<String>,
) {
    let r = Reader::over(mem, first, stop + CHUNK_HDR);
    let mut c = first;
    let mut ahead = first & !(LINE - 1);
    while c < stop {
        while ahead < c + PREFETCH_AHEAD {
            r.prefetch(ahead);
            ahead += LINE;
        }
        let Some(raw) = r.u64(c + 8) else {
            problems.push(format!(
                "{label}: the chunk at {c:#x} is not in the image; the heap's rest is not walked"
            ));
            return;
        };
        let size = raw & !FLAGS;
        if !to_top && size < MIN_CHUNK {
            return; // the fenceposts
        }
        if size < MIN_CHUNK || size % ALIGN != 0 || size > stop - c {
            problems.push(format!(
                "{label}: the chunk at {c:#x} has size {raw:#x}, which does not fit its heap \
                 (a core taken mid-malloc?); the {} bytes after it are not counted",
                stop - c
            ));
            return;
        }
        let next = c + size;
        let next_raw = r.u64(next + 8).unwrap_or(0);
        if !to_top && next_raw & !FLAGS == 0 {
            return; // a remnant before the last fencepost
        }
        seen.push((c, size | u64::from(next_raw & PREV_INUSE != 0)));
        c = next;
    }
    if to_top && c != stop {
        problems.push(format!(
            "{label}: the chunks run past its top chunk {stop:#x} (to {c:#x})"
        ));
    }
}

/// Every chunk on a regular bin must be free: one line per bin that holds
/// an in-use chunk (or leads out of the heap), lists cut at 1 M entries.
fn check_bins(mem: &dyn Memory, arenas: &[u64], inuse: &[Chunk], problems: &mut Vec<String>) {
    for (n, &a) in arenas.iter().enumerate() {
        for i in 1..NBINS {
            let head = bin_at(a, i);
            let mut p = mem.read_u64(head + CHUNK_HDR).unwrap_or(head);
            let mut steps = 0;
            while p != head && steps < 1 << 20 {
                if inuse
                    .binary_search_by_key(&(p + CHUNK_HDR), |c| c.addr)
                    .is_ok()
                {
                    problems.push(format!(
                        "arena {n}: bin {i} holds {p:#x}, which the heap walk found in use"
                    ));
                    break;
                }
                let Ok(next) = mem.read_u64(p + CHUNK_HDR) else {
                    problems.push(format!(
                        "arena {n}: bin {i} leads to {p:#x}, not in the image"
                    ));
                    break;
                };
                p = next;
                steps += 1;
            }
        }
    }
}

/// mmapped chunks in `[start, end)`: at each page, a header with
/// `IS_MMAPPED` alone and a page-multiple size that fits (its `prev_size`
/// is the offset of an aligned chunk into its mapping, `memalign`'s).
fn scan_mmapped(mem: &dyn Memory, start: u64, end: u64, out: &mut Vec<Chunk>) {
    let r = Reader::over(mem, start, end);
    let mut p = start;
    while p + PAGE <= end {
        let prev = r.u64(p).unwrap_or(1);
        // Any word may be here (the program's own data): nothing is added
        // before it is known to be small.
        let c = p + prev % PAGE;
        let found = (prev % ALIGN == 0 && prev < PAGE)
            .then(|| r.u64(c + 8))
            .flatten()
            .filter(|raw| raw & FLAGS == IS_MMAPPED)
            .map(|raw| raw & !FLAGS)
            .filter(|&size| size > 0 && size <= end - c && (prev + size) % PAGE == 0);
        match found {
            Some(size) => {
                out.push(Chunk {
                    addr: c + CHUNK_HDR,
                    size: size - CHUNK_HDR,
                    mmapped: true,
                });
                p = c + size;
            }
            None => p += PAGE,
        }
    }
}

/// The chunks of `only_walked` that the tracer itself allocated before it
/// started recording (its module table, made by its constructor): those a
/// word of the tracer library's writable data points at, and those such a
/// chunk points at. Returns them, and leaves the rest in `only_walked`.
pub fn take_tracer_own(
    image: &dyn ProcessImage,
    only_walked: &mut Vec<(u64, u64)>,
) -> Vec<(u64, u64)> {
    let mem = image.memory();
    let data: Vec<(u64, u64)> = image
        .mappings()
        .into_iter()
        .filter(|m| {
            m.perms.as_bytes().get(1) == Some(&b'w')
                && m.path
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with("libleaktrail_preload"))
        })
        .map(|m| (m.start, m.end))
        .collect();
    let mut own = vec![false; only_walked.len()];
    let mut work: Vec<usize> = Vec::new();
    let visit = |start: u64, end: u64, own: &mut Vec<bool>, work: &mut Vec<usize>| {
        let Some(bytes) = read_bytes(mem, start, end - start) else {
            return;
        };
        for w in bytes.chunks_exact(8) {
            let v = u64::from_le_bytes(w.try_into().unwrap_or_default());
            if let Ok(i) = only_walked.binary_search_by_key(&v, |c| c.0) {
                if !own[i] {
                    own[i] = true;
                    work.push(i);
                }
            }
        }
    };
    for &(s, e) in &data {
        visit(s, e, &mut own, &mut work);
    }
    while let Some(i) = work.pop() {
        let (a, size) = only_walked[i];
        visit(a, a + size, &mut own, &mut work);
    }
    let mut mine = Vec::new();
    let mut k = 0;
    only_walked.retain(|&c| {
        let o = own[k];
        k += 1;
        if o {
            mine.push(c);
        }
        !o
    });
    mine
}

/// How a walk and an audit of one snapshot differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Difference {
    /// Chunks in use that the audit does not list (address, usable size).
    pub only_walked: Vec<(u64, u64)>,
    /// Audit blocks the walk did not find in use (address, size).
    pub only_audited: Vec<(u64, u64)>,
    /// Both, but the chunk is not the one malloc gives that size: (address,
    /// usable size, audit size).
    pub size_mismatch: Vec<(u64, u64, u64)>,
}

impl Difference {
    /// Whether they agree.
    pub fn is_empty(&self) -> bool {
        self.only_walked.is_empty() && self.only_audited.is_empty() && self.size_mismatch.is_empty()
    }
}

/// Compares a walk with an audit's live blocks (both sorted by address).
/// A chunk matches a block when its address is the block's and its usable
/// size is what malloc gives for the block's size: at least it, and less
/// than one more chunk (a page for mmapped chunks) over it.
pub fn compare(walk: &[Chunk], live: &[Block]) -> Difference {
    let mut d = Difference::default();
    let (mut i, mut j) = (0, 0);
    while i < walk.len() || j < live.len() {
        match (walk.get(i), live.get(j)) {
            (Some(c), Some(b)) if c.addr == b.addr => {
                let slack = if c.mmapped {
                    PAGE + MIN_CHUNK
                } else {
                    MIN_CHUNK
                };
                if c.size < b.size || c.size - b.size >= slack {
                    d.size_mismatch.push((c.addr, c.size, b.size));
                }
                i += 1;
                j += 1;
            }
            (Some(c), b) if b.is_none_or(|b| c.addr < b.addr) => {
                d.only_walked.push((c.addr, c.size));
                i += 1;
            }
            (_, Some(b)) => {
                d.only_audited.push((b.addr, b.size));
                j += 1;
            }
            _ => break,
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glibc::locate::Source;
    use crate::synthetic::*;

    /// The thread-pointer offset of `tcache` in these tests.
    const TPOFF: u64 = 0u64.wrapping_sub(0x100);

    /// A main arena at DATA over a brk heap at BRK:
    ///
    /// | chunk | at    | size  | what                             |
    /// |-------|-------|-------|----------------------------------|
    /// | A     | +0    | 0x290 | the thread's tcache struct       |
    /// | B     | +0x290| 0x30  | in use                           |
    /// | C     | +0x2c0| 0x30  | free, in tcache bin 1            |
    /// | D     | +0x2f0| 0x50  | free, in fastbin 3               |
    /// | E     | +0x340| 0x40  | in use                           |
    /// | F     | +0x380| 0x100 | free, in the unsorted bin        |
    /// | G     | +0x480| 0x30  | in use (PREV_INUSE clear: F)     |
    /// | top   | +0x4b0| 0x1000|                                  |
    ///
    /// and one mmapped chunk of a page at ANON.
    fn glibc_heap() -> (HeapBuilder, [u64; 7]) {
        let mut b = HeapBuilder::new();
        let [a, bb, c, d, e, f, g, top] =
            [0, 0x290, 0x2c0, 0x2f0, 0x340, 0x380, 0x480, 0x4b0].map(|o| BRK + o);
        for (at, size) in [
            (a, 0x291),
            (bb, 0x31),
            (c, 0x31),
            (d, 0x51),
            (e, 0x41),
            (f, 0x101),
            (g, 0x30),
            (top, 0x1001),
        ] {
            b.write(at + 8, size);
        }
        b.write(g, 0x100); // F's footer
                           // The tcache struct and its one entry, safe-linked to nothing.
        b.write(FS_BASE.wrapping_add(TPOFF), a + CHUNK_HDR);
        b.write_bytes(a + CHUNK_HDR + 2, &1u16.to_le_bytes());
        b.write(a + CHUNK_HDR + TCACHE_ENTRIES + 8, c + CHUNK_HDR);
        b.write(c + CHUNK_HDR, (c + CHUNK_HDR) >> 12);
        // The arena: alone in its list, D in fastbin 3, F unsorted.
        let m = DATA;
        b.write(m + ARENA_NEXT, m);
        b.write(m + ARENA_TOP, top);
        b.write(m + ARENA_FASTBINS + 3 * 8, d);
        b.write(d + CHUNK_HDR, (d + CHUNK_HDR) >> 12);
        for i in 1..NBINS {
            let head = bin_at(m, i);
            let first = if i == 1 { f } else { head };
            b.write(head + 16, first);
            b.write(head + 24, first);
        }
        b.write(f + 16, bin_at(m, 1));
        b.write(f + 24, bin_at(m, 1));
        // An mmapped chunk: prev_size 0, a page, IS_MMAPPED.
        b.write(ANON + 8, PAGE | IS_MMAPPED);
        (b, [a, bb, c, d, e, f, g])
    }

    fn allocator() -> Allocator {
        Allocator {
            libc: "/lib/libc.so.6".into(),
            main_arena: DATA,
            mp: None,
            tcache_tpoff: Some(TPOFF),
            source: Source::Layout,
        }
    }

    #[test]
    fn a_walk_keeps_chunks_in_use_and_drops_tcache_fastbin_bin_top_and_state() {
        let (b, [a, bb, _, _, e, _, g]) = glibc_heap();
        let s = b.build();
        let w = walk_with(&s.image, allocator(), &[]);
        let got: Vec<(u64, u64, bool)> = w
            .chunks
            .iter()
            .map(|c| (c.addr, c.size, c.mmapped))
            .collect();
        assert_eq!(
            got,
            vec![
                (bb + 16, 0x28, false),
                (e + 16, 0x38, false),
                (g + 16, 0x28, false),
                (ANON + 16, PAGE - 16, true),
            ],
            "{:?}",
            w.problems
        );
        assert_eq!((w.tcache_chunks, w.fastbin_chunks), (1, 1));
        assert_eq!(w.arenas, 1);
        assert_eq!(w.heaps, 1);
        assert!(w.state.contains(&(DATA, DATA + ARENA_SIZE)));
        assert!(w.state.contains(&(a, a + 0x290)));
        assert!(w.problems.is_empty(), "{:?}", w.problems);
        // Walked blocks are an audit without stacks.
        let audit = w.audit(7);
        assert_eq!(audit.live.len(), 4);
        assert!(audit.live.iter().all(|b| b.stack == StackId::NONE));
        assert_eq!(audit.classes.iter().map(|c| c.live_count).sum::<u64>(), 4);
    }

    #[test]
    fn a_size_that_does_not_fit_ends_the_heap_walk_and_is_reported() {
        let (mut b, [_, _, _, _, e, _, _]) = glibc_heap();
        b.write(e + 8, 0x7_0000_0041); // runs past the top chunk
        let s = b.build();
        let w = walk_with(&s.image, allocator(), &[]);
        assert_eq!(
            w.chunks.iter().filter(|c| !c.mmapped).count(),
            1,
            "only B is certain"
        );
        assert!(
            w.problems
                .iter()
                .any(|p| p.contains(&format!("{e:#x}")) && p.contains("does not fit")),
            "{:?}",
            w.problems
        );
    }

    #[test]
    fn a_locked_arena_and_a_bad_tcache_list_are_reported() {
        let (mut b, [_, _, c, ..]) = glibc_heap();
        b.write(DATA + ARENA_MUTEX, 1);
        b.write(c + CHUNK_HDR, ((c + CHUNK_HDR) >> 12) ^ 0x1234_5678); // junk next
        let s = b.build();
        let w = walk_with(&s.image, allocator(), &[]);
        let text = w.problems.join("\n");
        assert!(text.contains("main arena was locked"), "{text}");
        assert!(text.contains("tcache bin 1 (count 1)"), "{text}");
    }

    #[test]
    fn main_arena_is_found_by_its_layout() {
        let (b, _) = glibc_heap();
        let s = b.build();
        let found = super::locate::scan_main_arena(&s.image, &[(DATA, DATA + 0x1000)]);
        assert_eq!(found, Some(DATA));
        assert_eq!(
            super::locate::scan_main_arena(&s.image, &[(ANON, ANON + 0x1000)]),
            None
        );
    }

    #[test]
    fn compare_matches_addresses_and_the_sizes_malloc_gives() {
        let c = |addr, size, mmapped| Chunk {
            addr,
            size,
            mmapped,
        };
        let b = |addr, size| Block {
            addr,
            size,
            time_ns: 0,
            stack: StackId(1),
            tid: 1,
        };
        let walk = [
            c(0x100, 40, false),
            c(0x200, 56, false),
            c(0x300, 4080, true),
            c(0x400, 24, false),
        ];
        let live = [b(0x100, 33), b(0x200, 20), b(0x300, 3000), b(0x500, 8)];
        let d = compare(&walk, &live);
        assert_eq!(
            d.size_mismatch,
            vec![(0x200, 56, 20)],
            "56 usable is not malloc(20)'s 24"
        );
        assert_eq!(d.only_walked, vec![(0x400, 24)]);
        assert_eq!(d.only_audited, vec![(0x500, 8)]);
        assert!(compare(&walk[..1], &live[..1]).is_empty());
        assert_eq!(request2size(20), 32);
        assert_eq!(
            reveal(
                0x5555_0000_2010,
                (0x5555_0000_2010 >> 12) ^ 0x5555_0000_3000
            ),
            0x5555_0000_3000
        );
    }

    /// Words the program wrote where an mmapped chunk's header would be,
    /// as large as a word can be: no chunk, no overflow (a node snapshot's
    /// heap held one and aborted the debug build's census).
    #[test]
    fn mmapped_scan_takes_hostile_headers_as_no_chunk() {
        let mut words = vec![0u64; 4 * PAGE as usize / 8];
        let base = words.as_ptr() as u64;
        let first = base.div_ceil(PAGE) * PAGE;
        let at = |a: u64| ((a - base) / 8) as usize;
        // A prev_size past the address space; a size that is.
        words[at(first)] = !(ALIGN - 1);
        words[at(first + PAGE)] = 16;
        words[at(first + PAGE + 16 + 8)] = !FLAGS | IS_MMAPPED;
        // SAFETY: the range lies inside `words`, alive until the end.
        let mem = unsafe { leaktrail_recording::LocalMemory::new(vec![(base, base + 4 * PAGE)]) };
        let mut out = Vec::new();
        scan_mmapped(&mem, first, first + 3 * PAGE, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
