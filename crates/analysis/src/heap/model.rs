//! One snapshot seen as a heap: its live buffers indexed by address and its
//! memory divided into areas (thread stacks, module data, malloc arenas,
//! other anonymous memory, the audit region).
//!
//! [`Heap::open`] is what every single-snapshot analysis (`leaks`, `bufs`,
//! `whatis`, `refs`, `dump`) starts from. Building it decodes the audit and
//! indexes the blocks once (a page table over each cluster of blocks, so a
//! lookup is one array read plus a short scan); reuse it.
//!
//! The analyses see the process only through a [`ProcessImage`]: its
//! memory (a [`Memory`] that can lend slices), its threads, its mappings
//! and how much memory was captured. [`Snapshot`] is one; tests build
//! synthetic images in memory and call [`Heap::new`] with a block table of
//! their own, so reachability can be checked without a compiler or a
//! process. Scans borrow whole slices from the image (one dynamic call per
//! slice, never per word).
//!
//! ```no_run
//! use leaktrail_recording::Snapshot;
//! use leaktrail_analysis::Heap;
//! use leaktrail_analysis::leaks::{self, LeaksOptions};
//! use leaktrail_analysis::symbolize::Symbolizer;
//! let snap = Snapshot::open("app.core".as_ref())?;
//! let heap = Heap::open(&snap)?; // fails if the process was not traced
//! let found = leaks::find(&heap, &LeaksOptions::default(), &Symbolizer::for_snapshot(&snap));
//! println!("{} bytes definitely lost", found.definite.bytes);
//! if let Some(b) = heap.block_at(0x5555_0000_1010) {
//!     println!("a buffer of {} bytes at {:#x}", b.size, b.addr);
//! }
//! # Ok::<(), leaktrail_analysis::Error>(())
//! ```

use leaktrail_format::StackId;
use std::collections::{BTreeSet, HashMap};

use leaktrail_format::MemoryMode;

use crate::heap::exit_roots;
use crate::heap_walk::{self, Walk};
use crate::symbolize::Symbolizer;
use crate::Error;
use leaktrail_recording::audit::{self, Audit, Block};
use leaktrail_recording::snapshot::Thread;
use leaktrail_recording::{Mapping, Memory, Region, Snapshot};

/// What the heap analyses need of a stopped process: a snapshot core, or
/// a synthetic image in tests.
///
/// Shared by the scanning threads, hence `Sync`.
pub trait ProcessImage: Sync {
    /// Its memory. [`Memory::borrow`] should lend every range of
    /// [`ProcessImage::present`]: the scanners skip what it does not.
    fn memory(&self) -> &(dyn Memory + Sync);

    /// The ranges `[start, end)` whose bytes the image holds (not zero
    /// tails or holes), sorted and disjoint.
    fn present(&self) -> Vec<(u64, u64)>;

    /// The threads, with their registers (`user_regs_struct` as words).
    fn threads(&self) -> &[Thread];

    /// Every mapping, classified by the one classifier
    /// (`leaktrail_recording::maps::classify`), in any order.
    fn mappings(&self) -> Vec<Mapping>;

    /// `--memory` of the capture (`full`, `tables`, `none`), when known.
    fn memory_mode(&self) -> Option<MemoryMode>;

    /// How to name the image in messages (a path).
    fn name(&self) -> String;
}

impl ProcessImage for Snapshot {
    fn memory(&self) -> &(dyn Memory + Sync) {
        self
    }

    fn present(&self) -> Vec<(u64, u64)> {
        self.segments()
            .iter()
            .filter(|s| s.filesz > 0)
            .map(|s| (s.vaddr, s.vaddr + s.filesz))
            .collect()
    }

    fn threads(&self) -> &[Thread] {
        Snapshot::threads(self)
    }

    fn mappings(&self) -> Vec<Mapping> {
        Snapshot::mappings(self)
    }

    fn memory_mode(&self) -> Option<MemoryMode> {
        self.metadata().map(|m| m.options.memory)
    }

    fn name(&self) -> String {
        self.path().display().to_string()
    }
}

/// `fs_base` in `user_regs_struct`: the thread pointer, where x86_64 puts
/// the TCB with the static TLS block just below it.
pub(crate) const REG_FS_BASE: usize = 21;
/// glibc's `HEAP_MAX_SIZE` on 64-bit: non-main arenas' heaps are mapped at
/// this alignment and start with a `heap_info`.
const ARENA_HEAP_ALIGN: u64 = 64 << 20;
/// How much below a thread pointer we treat as static TLS when the mapping
/// around it is not scanned whole.
const TLS_WINDOW_BELOW: u64 = 64 << 10;
/// And above it (the TCB).
const TLS_WINDOW_ABOVE: u64 = 4 << 10;

/// What an area of the address space holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AreaKind {
    /// A thread's stack; `sp` is where its live part starts.
    Stack {
        /// The thread.
        tid: i32,
        /// Its stack pointer at the stop.
        sp: u64,
    },
    /// Writable data or bss of a loaded file.
    ModuleData,
    /// Anonymous memory holding the main thread's static TLS (and whatever
    /// else the loader put there).
    Tls {
        /// The thread whose thread pointer lies here.
        tid: i32,
    },
    /// The brk heap (`[heap]`).
    Heap,
    /// A glibc malloc arena's heap (64 MiB aligned, `heap_info` first).
    Arena,
    /// Anonymous memory holding live buffers that is not an arena: glibc's
    /// mmap'd chunks (128 KiB and up), which the kernel may have merged
    /// with neighbouring anonymous memory of the program's. The parts
    /// outside live buffers count as anonymous memory.
    Chunks,
    /// Other anonymous memory (a runtime's own heap, program mmaps).
    Anon,
    /// A finished thread's stack that glibc keeps for reuse, with its
    /// descriptor and static TLS: not a root (valgrind frees these through
    /// `__libc_freeres` before it scans).
    CachedStack,
    /// The tracer's audit region.
    Audit,
    /// A read-only or executable file mapping.
    File,
    /// `[vdso]`, `[vvar]` and the like.
    Special,
}

impl AreaKind {
    /// A short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            AreaKind::Stack { .. } => "stack",
            AreaKind::ModuleData => "module-data",
            AreaKind::Tls { .. } => "tls",
            AreaKind::Heap => "heap",
            AreaKind::Arena => "arena",
            AreaKind::Chunks => "chunks",
            AreaKind::Anon => "anon",
            AreaKind::CachedStack => "cached-stack",
            AreaKind::Audit => "audit",
            AreaKind::File => "file",
            AreaKind::Special => "special",
        }
    }
}

/// One mapping of the process, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// `rwxp`, when known.
    pub perms: String,
    /// Backing file or pseudo-path (`[heap]`), empty for anonymous memory.
    pub path: String,
    /// What it holds.
    pub kind: AreaKind,
}

/// The live buffers sorted by address, with a page index for lookups.
pub struct BlockIndex {
    starts: Vec<u64>,
    ends: Vec<u64>,
    clusters: Vec<Cluster>,
    lo: u64,
    hi: u64,
}

/// A run of blocks with no gap wider than [`CLUSTER_GAP`] between them,
/// with `first[p]` = the first block whose end lies past page `p`.
struct Cluster {
    base: u64,
    end: u64,
    /// log2 of the "page" size of this cluster's table: 4 KiB, or coarser
    /// where the blocks span more pages than [`MAX_CLUSTER_PAGES`].
    shift: u32,
    first: Vec<u32>,
}

/// The most entries a cluster's page table gets (4 MiB of table, blocks
/// spanning 4 GiB at 4 KiB a page). A wider span (one huge block, or a
/// corrupt size in the audit) gets coarser pages instead: lookups there
/// scan more blocks, but the table stays bounded whatever the sizes say.
const MAX_CLUSTER_PAGES: u64 = 1 << 20;

/// Gaps wider than this start a new cluster, so the page table stays
/// proportional to the memory blocks occupy, not to the address span.
const CLUSTER_GAP: u64 = 16 << 20;
const PAGE_SHIFT: u32 = 12;

impl BlockIndex {
    /// Indexes `blocks`, which must be sorted by address and not overlap
    /// (the audit's live table is). Cost: one pass plus 4 bytes per page
    /// the blocks span.
    pub fn new(blocks: &[Block]) -> BlockIndex {
        let starts: Vec<u64> = blocks.iter().map(|b| b.addr).collect();
        let ends: Vec<u64> = blocks
            .iter()
            .map(|b| b.addr.saturating_add(b.size.max(1)))
            .collect();
        let mut clusters = Vec::new();
        let mut i = 0;
        while i < starts.len() {
            let base = starts[i] & !((1 << PAGE_SHIFT) - 1);
            let mut j = i;
            let mut end = ends[i];
            while j + 1 < starts.len() && starts[j + 1] < end.saturating_add(CLUSTER_GAP) {
                j += 1;
                end = end.max(ends[j]);
            }
            let mut shift = PAGE_SHIFT;
            while ((end - base) >> shift) >= MAX_CLUSTER_PAGES {
                shift += 1;
            }
            let pages = ((end - base) >> shift) as usize + 1;
            let mut first = vec![0u32; pages + 1];
            let mut k = i;
            for (p, slot) in first.iter_mut().enumerate() {
                let page_start = base.saturating_add((p as u64) << shift);
                while k <= j && ends[k] <= page_start {
                    k += 1;
                }
                *slot = k as u32;
            }
            clusters.push(Cluster {
                base,
                end,
                shift,
                first,
            });
            i = j + 1;
        }
        let lo = starts.first().copied().unwrap_or(0);
        let hi = clusters.last().map_or(0, |c| c.end);
        BlockIndex {
            starts,
            ends,
            clusters,
            lo,
            hi,
        }
    }

    /// How many blocks.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Start address of block `i`.
    #[inline]
    pub fn start(&self, i: usize) -> u64 {
        self.starts[i]
    }

    /// End address (exclusive) of block `i`; zero-sized blocks count as one
    /// byte so that their start can be pointed at.
    #[inline]
    pub fn end(&self, i: usize) -> u64 {
        self.ends[i]
    }

    /// The block containing `addr`, by index. This is the scanner's hot
    /// path: a range check, a cluster pick, a page-table read and a scan
    /// of the few blocks that touch that page.
    #[inline]
    pub fn find(&self, addr: u64) -> Option<usize> {
        if addr.wrapping_sub(self.lo) >= self.hi.wrapping_sub(self.lo) {
            return None;
        }
        let c = if self.clusters.len() == 1 {
            &self.clusters[0]
        } else {
            let i = self.clusters.partition_point(|c| c.base <= addr);
            &self.clusters[i.checked_sub(1)?]
        };
        if addr >= c.end {
            return None;
        }
        let p = ((addr - c.base) >> c.shift) as usize;
        let mut k = c.first[p] as usize;
        let last = c.first[p + 1] as usize;
        // Blocks that reach into page p, in address order; the one
        // containing addr, if any, is the last that starts at or before it.
        while k <= last && k < self.starts.len() && self.starts[k] <= addr {
            if addr < self.ends[k] {
                return Some(k);
            }
            k += 1;
        }
        None
    }

    /// Index of the first block starting at or after `addr`.
    pub fn first_at_or_after(&self, addr: u64) -> usize {
        self.starts.partition_point(|&s| s < addr)
    }
}

/// A process image with its audit decoded and its areas classified.
pub struct Heap<'a> {
    /// The process image (a snapshot).
    pub image: &'a dyn ProcessImage,
    /// Its memory.
    pub memory: &'a (dyn Memory + Sync),
    /// Its audit.
    pub audit: Audit,
    /// `audit.live`, indexed.
    pub index: BlockIndex,
    /// Every mapping, classified, by address.
    pub areas: Vec<Area>,
    /// [`ProcessImage::present`], kept for the scanners.
    present: Vec<(u64, u64)>,
    /// Threads waiting in the tracer's hand-over, with the SP of the
    /// program's frame below the tracer's (see `exit_roots`).
    program_sp: HashMap<i32, u64>,
    /// glibc malloc's own state (arenas' `malloc_state`, `mp_`, tcache
    /// structs), `[start, end)` sorted: never a root.
    pub allocator_state: Vec<(u64, u64)>,
    /// When the blocks come from a walk of glibc's heap (an untraced
    /// process), what the walk found besides them (its `chunks` emptied:
    /// they are `audit.live`).
    pub walk: Option<Walk>,
    /// The blocks that are threads' dynamic TLS vectors (glibc's DTVs,
    /// calloc'd by `pthread_create`), by address, sorted: libc's own.
    pub thread_dtvs: Vec<u64>,
    /// With a tracer `leaktrail attach` loaded: the addresses of the
    /// blocks allocated before it, which the walk gave (no stacks), sorted.
    pub before_attach: Vec<u64>,
    /// In a sampled audit opened with [`Heap::open_every_block`]: the
    /// addresses of the blocks the walk found that the sample lacks (not
    /// sampled, or, attached, allocated before the attach; no stacks),
    /// sorted.
    pub unsampled: Vec<u64>,
}

impl<'a> Heap<'a> {
    /// Decodes the audit of `snap` and classifies its memory. Fails with
    /// [`Error::Insufficient`] when the snapshot has no audit region (the
    /// process was not traced) and says what to run instead.
    ///
    /// Without an audit region (an untraced process: `leaktrail snapshot`
    /// of a plain program, `gcore`, a kernel core) the blocks are glibc's
    /// chunks in use, from a walk of its heap ([`crate::heap_walk`]):
    /// without stacks, sizes the usable ones.
    pub fn open(snap: &'a Snapshot) -> Result<Heap<'a>, Error> {
        let pid = snap.pid().map(|p| p as u32);
        match audit::find(snap, pid)? {
            Some(audit) => Ok(Heap::with_audit(snap, audit)),
            None => Heap::open_walked(snap),
        }
    }

    /// The heap of `snap` whose audit, already decoded, is `audit`. When
    /// `leaktrail attach` loaded the tracer late, the blocks from before
    /// the attach come from a walk of glibc's heap and are added to the
    /// audit ([`Heap::before_attach`]); not when the audit is sampled,
    /// where the walk's chunks the audit lacks are mostly later blocks
    /// that were not sampled (see [`Heap::open_every_block`]); the walk
    /// then gives the classes' live counts, which the tracer counted from
    /// the attach on.
    pub fn with_audit(snap: &'a Snapshot, audit: Audit) -> Heap<'a> {
        Heap::build(snap, audit, false)
    }

    /// [`Heap::open`], with every block in a sampled audit: the chunks in
    /// use that were not sampled come from a walk of glibc's heap, as
    /// blocks without stacks ([`Heap::unsampled`]), so reachability is
    /// computed over every block (`leaks`, `refs`, `whatis`). Views that
    /// estimate from the sample (`bufs`, growth, the flame graph) use
    /// [`Heap::open`].
    pub fn open_every_block(snap: &'a Snapshot) -> Result<Heap<'a>, Error> {
        let pid = snap.pid().map(|p| p as u32);
        match audit::find(snap, pid)? {
            Some(audit) => Ok(Heap::build(snap, audit, true)),
            None => Heap::open_walked(snap),
        }
    }

    fn build(snap: &'a Snapshot, mut audit: Audit, unsampled: bool) -> Heap<'a> {
        // glibc's state is kept out of the roots only where it is the
        // program's allocator's; another allocator's own memory is kept
        // out instead.
        let program = crate::glibc::locate::program_allocator(snap, audit.allocator);
        let glibc = program.is_glibc();
        let keeps_memory = snap
            .metadata()
            .is_none_or(|m| m.options.memory.keeps_memory());
        // Attached late: what was allocated before is in the heap, not in
        // the audit.
        // Sampled, and asked: what was not sampled is in the heap too.
        let sampled = audit.sample_rate != 0;
        let walk = (glibc && keeps_memory && (audit.attached || sampled && unsampled))
            .then(|| heap_walk::walk(snap, &audit.ranges).ok())
            .flatten();
        if let Some(w) = walk.as_ref().filter(|_| sampled && audit.attached) {
            // The tracer's class counters of a sampled attach count from
            // the attach: frees of earlier blocks took them below what is
            // live. The walk counts every chunk in use.
            w.count_classes(&mut audit);
        }
        let merged = match &walk {
            Some(w) if sampled && unsampled => w.merge_unsampled(&mut audit),
            Some(w) if !sampled => w.merge_before_attach(&mut audit),
            _ => Vec::new(),
        };
        let mut heap = Heap::new(snap, audit);
        if sampled {
            heap.unsampled = merged;
        } else {
            heap.before_attach = merged;
        }
        heap.allocator_state = if glibc {
            match walk {
                Some(w) => w.state,
                None => heap_walk::state(snap),
            }
        } else {
            heap.foreign_allocator_state(program.path.as_deref())
        };
        heap
    }

    /// The heap of a snapshot without an audit region: glibc's chunks in
    /// use, from a walk of its heap, as the blocks (see [`Heap::open`]).
    pub fn open_walked(snap: &'a Snapshot) -> Result<Heap<'a>, Error> {
        let pid = snap.pid().map(|p| p as u32);
        if !snap
            .metadata()
            .is_none_or(|m| m.options.memory.keeps_memory())
        {
            return Err(no_audit(snap));
        }
        let mut walk = heap_walk::walk(snap, &[]).map_err(|e| {
            Error::Insufficient(format!(
                "{} has no leaktrail audit region and its malloc heap could not be walked: {e}; \
                 start the program with `leaktrail run -- CMD`, then `leaktrail snapshot -p PID`",
                snap.path().display()
            ))
        })?;
        let audit = walk.audit(pid.unwrap_or(0));
        walk.chunks = Vec::new();
        let mut heap = Heap::new(snap, audit);
        heap.allocator_state = walk.state.clone();
        heap.walk = Some(walk);
        Ok(heap)
    }

    /// The memory of a program's allocator that is not glibc's, as
    /// `[start, end)` sorted, kept out of the roots as glibc's
    /// `malloc_state` is (issue 16, item 2): every anonymous mapping that
    /// holds its blocks (jemalloc's extents, which hold its tcache stacks
    /// and slab metadata beside the blocks, and whose stale copies of
    /// handed-out addresses kept every leak "still reachable"; mimalloc's
    /// segments; tcmalloc's spans), and the anonymous mappings the tracer
    /// saw the allocator's file (`allocator_path`) map. Kept as roots
    /// within them: what the tracer saw the program itself map (the kernel
    /// merges neighbouring anonymous mappings) and the windows around
    /// thread pointers (a thread's static TLS merged in). Only the blocks
    /// there are scanned, when reached: a block the audit does not have
    /// (allocated through an API we do not hook) no longer keeps what it
    /// points to reachable, as an unaudited chunk in a glibc arena does not.
    fn foreign_allocator_state(&self, allocator_path: Option<&str>) -> Vec<(u64, u64)> {
        let maps = self.image.mappings();
        let by_allocator = |b: &Block| {
            let frame0 = self
                .audit
                .stacks
                .get(&b.stack)
                .and_then(|s| s.first().copied());
            frame0
                .map(leaktrail_format::frame_address)
                .is_some_and(|pc| {
                    maps.iter().any(|m| {
                        m.start <= pc && pc < m.end && Some(m.path.as_str()) == allocator_path
                    })
                })
        };
        let whole = |start: u64, end: u64| RootRange {
            start,
            end,
            kind: "allocator",
        };
        let mut own: Vec<RootRange> = self
            .areas
            .iter()
            .filter(|a| a.kind == AreaKind::Chunks)
            .map(|a| whole(a.start, a.end))
            .chain(
                self.audit
                    .maps
                    .iter()
                    .filter(|b| by_allocator(b))
                    .map(|b| whole(b.addr, b.addr.saturating_add(b.size))),
            )
            .collect();
        own.sort_by_key(|r| r.start);
        let mut keep: Vec<(u64, u64)> = self
            .audit
            .maps
            .iter()
            .filter(|b| !by_allocator(b))
            .map(|b| (b.addr, b.addr.saturating_add(b.size)))
            .chain(self.image.threads().iter().filter_map(|t| {
                let fs = t.regs.get(REG_FS_BASE).copied().filter(|&fs| fs != 0)?;
                Some((
                    fs.saturating_sub(TLS_WINDOW_BELOW),
                    fs.saturating_add(TLS_WINDOW_ABOVE),
                ))
            }))
            .collect();
        keep.sort_unstable();
        let mut cuts: Vec<(u64, u64)> = without(own, &keep)
            .into_iter()
            .map(|r| (r.start, r.end))
            .collect();
        cuts.sort_unstable();
        cuts
    }

    /// Whether the blocks come from a heap walk (no stacks).
    pub fn walked(&self) -> bool {
        self.walk.is_some()
    }

    /// Whether the block at `addr` was allocated before `leaktrail attach`
    /// loaded the tracer (the walk found it; it has no stack).
    pub fn is_before_attach(&self, addr: u64) -> bool {
        self.before_attach.binary_search(&addr).is_ok()
    }

    /// Whether the block at `addr` is known from the walk alone, so views
    /// group it by its type ([`crate::types::Label`]) rather than by a
    /// stack: every block of an untraced process, and those from before an
    /// attach.
    pub fn typed_by_label(&self, addr: u64) -> bool {
        self.walked() || self.is_before_attach(addr) || self.is_unsampled(addr)
    }

    /// Whether the block at `addr` is one the sample lacks, found by the
    /// walk ([`Heap::unsampled`]).
    pub fn is_unsampled(&self, addr: u64) -> bool {
        self.unsampled.binary_search(&addr).is_ok()
    }

    /// Whether some blocks are known from the walk alone beside blocks
    /// with stacks (before an attach, or not sampled).
    pub fn has_stackless(&self) -> bool {
        !self.before_attach.is_empty() || !self.unsampled.is_empty()
    }

    /// A heap over `image` whose live blocks (sorted by address, not
    /// overlapping), stacks and region ranges are `audit`: indexes the
    /// blocks and classifies the mappings. Costs one pass over the blocks
    /// and the mappings.
    pub fn new(image: &'a dyn ProcessImage, audit: Audit) -> Heap<'a> {
        let index = BlockIndex::new(&audit.live);
        let program_sp = exit_roots::program_frames(image, audit.exit_tid);
        let areas = areas_of(image, &audit, &index, &program_sp);
        let thread_dtvs = thread_dtvs(image, &audit, &index, &areas);
        Heap {
            image,
            memory: image.memory(),
            audit,
            index,
            areas,
            present: image.present(),
            program_sp,
            allocator_state: Vec::new(),
            walk: None,
            thread_dtvs,
            before_attach: Vec::new(),
            unsampled: Vec::new(),
        }
    }

    /// Fails with [`Error::Insufficient`] when the snapshot kept only the
    /// audit tables (`--memory tables` or `none`): reachability and
    /// reference searches need the process's memory.
    pub fn require_memory(&self) -> Result<(), Error> {
        match self.image.memory_mode() {
            Some(mode) if !mode.keeps_memory() => Err(Error::Insufficient(format!(
                "{} was taken with --memory {mode}: it holds the audit but not the process's memory;                  take one with `leaktrail snapshot -p PID` (--memory full, the default)",
                self.image.name()
            ))),
            _ => Ok(()),
        }
    }

    /// The ranges of memory the image holds, sorted.
    pub fn present(&self) -> &[(u64, u64)] {
        &self.present
    }

    /// Calls `f(addr, bytes)` for every piece of `[start, end)` the image
    /// holds, borrowed in place: one lookup and one borrow per piece, so
    /// the caller's loop over the words is monomorphic. Zero tails and
    /// holes are skipped: they hold no pointers.
    #[inline]
    pub fn for_each_slice(&self, start: u64, end: u64, mut f: impl FnMut(u64, &[u8])) {
        let mut i = self.present.partition_point(|&(_, e)| e <= start);
        while let Some(&(s, e)) = self.present.get(i) {
            if s >= end {
                break;
            }
            let a = start.max(s);
            let b = end.min(e);
            if a < b {
                if let Some(bytes) = self.memory.borrow(a, b - a) {
                    f(a, bytes);
                }
            }
            i += 1;
        }
    }

    /// The area containing `addr`.
    pub fn area_of(&self, addr: u64) -> Option<&Area> {
        let i = self.areas.partition_point(|a| a.start <= addr);
        let a = self.areas.get(i.checked_sub(1)?)?;
        (addr < a.end).then_some(a)
    }

    /// The live block containing `addr`.
    pub fn block_at(&self, addr: u64) -> Option<&Block> {
        self.index.find(addr).map(|i| &self.audit.live[i])
    }

    /// Whether `addr` lies in the audit region's own memory.
    pub fn in_audit(&self, addr: u64) -> bool {
        self.audit
            .ranges
            .iter()
            .any(|&(s, e)| s <= addr && addr < e)
    }
}

/// Maps each stack id to the lowest id with the same frames: the tracer
/// may intern one stack more than once (one per shard), and people group
/// by what the stack says, not by its id. Frames are compared as
/// `symbolizer` tells them apart ([`Symbolizer::canonical_word`]): a note
/// that names no line does not make another stack.
pub fn canonical_stacks(audit: &Audit, symbolizer: &Symbolizer) -> HashMap<StackId, StackId> {
    let mut first: HashMap<Vec<u64>, StackId> = HashMap::new();
    audit
        .stacks
        .iter()
        .map(|(&id, frames)| {
            let words = frames.iter().map(|&w| symbolizer.canonical_word(w));
            (id, *first.entry(words.collect()).or_insert(id))
        })
        .collect()
}

/// The error for a snapshot of an untraced process.
pub fn no_audit(snap: &Snapshot) -> Error {
    if snap
        .metadata()
        .is_some_and(|m| m.options.memory == MemoryMode::None)
    {
        return Error::Insufficient(format!(
            "{} was taken with --memory none: it holds the notes but not the audit region; \
             take one with `leaktrail snapshot -p PID --memory tables` (or full)",
            snap.path().display()
        ));
    }
    Error::Insufficient(format!(
        "{} has no leaktrail audit region (the process was not started under the tracer): \
         start it with `leaktrail run -- CMD`, then `leaktrail snapshot -p PID`",
        snap.path().display()
    ))
}

fn areas_of(
    image: &dyn ProcessImage,
    audit: &Audit,
    index: &BlockIndex,
    program_sp: &HashMap<i32, u64>,
) -> Vec<Area> {
    let mut raw = image.mappings();
    raw.sort_by_key(|m| m.start);
    // The kernel merges the tracer's anonymous mappings with neighbours of
    // the same protection (the loader's TLS block, a program's mmap): cut
    // the audit's ranges out as areas of their own.
    let mut cuts: Vec<(u64, u64)> = audit.ranges.clone();
    cuts.sort_unstable();
    // (start, end, perms, path, region, in the audit)
    let mut split: Vec<(u64, u64, String, String, Region, bool)> = Vec::with_capacity(raw.len());
    for m in raw {
        let (start, end) = (m.start, m.end);
        let mut at = start;
        for &(cs, ce) in cuts.iter().filter(|&&(cs, ce)| cs < end && start < ce) {
            let (cs, ce) = (cs.max(start), ce.min(end));
            if at < cs {
                split.push((at, cs, m.perms.clone(), m.path.clone(), m.region, false));
            }
            if at < ce {
                split.push((
                    cs.max(at),
                    ce,
                    m.perms.clone(),
                    m.path.clone(),
                    m.region,
                    true,
                ));
            }
            at = at.max(ce);
        }
        if at < end {
            split.push((at, end, m.perms, m.path, m.region, false));
        }
    }
    let raw = split;
    let stack_of = |start: u64, end: u64| {
        image
            .threads()
            .iter()
            .find(|t| start <= t.sp() && t.sp() < end)
            .map(|t| {
                let sp = program_sp.get(&t.tid).copied().unwrap_or(t.sp());
                (t.tid, sp)
            })
    };
    // glibc maps a thread's stack above a PROT_NONE guard. gdb's gcore
    // writes PROT_NONE mappings as readable segments (flags R), so in a
    // core leaktrail did not write an anonymous read-only one may be a
    // guard too (the descriptor check below still decides).
    let foreign = image.memory_mode().is_none();
    let guard_ends: BTreeSet<u64> = raw
        .iter()
        .filter(|m| m.2.starts_with("---") || (foreign && m.2.starts_with("r--") && m.3.is_empty()))
        .map(|m| m.1)
        .collect();
    let thread_pointers: Vec<u64> = image
        .threads()
        .iter()
        .map(|t| t.regs.get(REG_FS_BASE).copied().unwrap_or(0))
        .collect();
    let holds_blocks = |start: u64, end: u64| {
        let i = index.first_at_or_after(start);
        i < index.len() && index.start(i) < end
    };
    let mut areas: Vec<Area> = raw
        .into_iter()
        .map(|(start, end, perms, path, region, in_audit)| {
            let writable = perms.as_bytes().get(1) == Some(&b'w');
            let k = if in_audit {
                AreaKind::Audit
            } else if let Some((tid, sp)) = stack_of(start, end) {
                AreaKind::Stack { tid, sp }
            } else if path == "[heap]" {
                AreaKind::Heap
            } else if path.starts_with('[') && path != "[stack]" && !path.starts_with("[anon") {
                AreaKind::Special
            } else if path.starts_with('/') && !path.starts_with("/dev/zero") {
                if writable {
                    AreaKind::ModuleData
                } else {
                    AreaKind::File
                }
            } else if looks_like_arena_heap(image.memory(), start, end) {
                AreaKind::Arena
            } else if holds_blocks(start, end) {
                AreaKind::Chunks
            } else if writable
                && path.is_empty()
                && guard_ends.contains(&start)
                && exit_roots::is_cached_stack(image.memory(), start, end, &thread_pointers)
            {
                AreaKind::CachedStack
            } else if region == Region::Heap {
                // The classifier's arena heaps whose `heap_info` we could not
                // read, holding no live block: malloc's memory, not a root.
                AreaKind::Heap
            } else {
                AreaKind::Anon
            };
            Area {
                start,
                end,
                perms,
                path,
                kind: k,
            }
        })
        .collect();
    // The main thread's static TLS sits in anonymous memory of the loader's;
    // name it.
    for t in image.threads() {
        let fs = t.regs.get(REG_FS_BASE).copied().unwrap_or(0);
        if let Some(a) = areas
            .iter_mut()
            .find(|a| a.start <= fs && fs < a.end && a.kind == AreaKind::Anon)
        {
            a.kind = AreaKind::Tls { tid: t.tid };
        }
    }
    areas
}

/// The DTV of every thread descriptor, live (each thread's `fs_base`) or
/// cached with a finished thread's stack: the word after the TCB's `tcb`
/// points 16 bytes into it (glibc's `INSTALL_DTV` stores `dtv + 1`, past
/// the slot holding its length). Only blocks found so are returned.
fn thread_dtvs(
    image: &dyn ProcessImage,
    audit: &Audit,
    index: &BlockIndex,
    areas: &[Area],
) -> Vec<u64> {
    let live: Vec<u64> = image
        .threads()
        .iter()
        .map(|t| t.regs.get(REG_FS_BASE).copied().unwrap_or(0))
        .collect();
    let cached = areas
        .iter()
        .filter(|a| a.kind == AreaKind::CachedStack)
        .filter_map(|a| exit_roots::cached_descriptor(image.memory(), a.start, a.end, &live));
    let mut out: Vec<u64> = live
        .iter()
        .copied()
        .filter(|&tp| tp != 0)
        .chain(cached)
        .filter_map(|tp| {
            let dtv = image.memory().read_u64(tp + 8).ok()?.checked_sub(16)?;
            let i = index.find(dtv)?;
            (audit.live[i].addr == dtv).then_some(dtv)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A non-main arena's heap: 64 MiB aligned, starting with `heap_info`
/// `{ar_ptr, prev, size, mprotect_size}` whose size fits the mapping.
fn looks_like_arena_heap(mem: &dyn Memory, start: u64, end: u64) -> bool {
    if start % ARENA_HEAP_ALIGN != 0 {
        return false;
    }
    let (Ok(ar_ptr), Ok(size)) = (mem.read_u64(start), mem.read_u64(start + 16)) else {
        return false;
    };
    ar_ptr != 0 && size > 0 && size <= ARENA_HEAP_ALIGN && size % 4096 == 0 && start + size >= end
}

/// Which kinds of memory count as roots of reachability.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Roots {
    /// Every general-purpose register of every thread.
    pub registers: bool,
    /// Each thread's stack from its SP to the top of its mapping.
    pub stacks: bool,
    /// Writable data and bss of loaded files.
    pub globals: bool,
    /// Static TLS around each thread pointer.
    pub tls: bool,
    /// Anonymous memory that is neither a malloc arena nor the audit region.
    pub anon: bool,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            registers: true,
            stacks: true,
            globals: true,
            tls: true,
            anon: true,
        }
    }
}

impl Roots {
    /// The names `--roots` accepts.
    pub const NAMES: [&'static str; 5] = ["registers", "stacks", "globals", "tls", "anon"];

    /// Parses a comma-separated list of [`Roots::NAMES`] (or `all`).
    pub fn parse(list: &str) -> Result<Roots, Error> {
        let mut r = Roots {
            registers: false,
            stacks: false,
            globals: false,
            tls: false,
            anon: false,
        };
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "all" => r = Roots::default(),
                "registers" => r.registers = true,
                "stacks" => r.stacks = true,
                "globals" => r.globals = true,
                "tls" => r.tls = true,
                "anon" => r.anon = true,
                other => {
                    return Err(Error::Insufficient(format!(
                        "unknown root kind {other:?}; expected a comma-separated list of {} or all",
                        Roots::NAMES.join(", ")
                    )))
                }
            }
        }
        Ok(r)
    }
}

/// One range of root memory and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootRange {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// Why it is a root.
    pub kind: &'static str,
}

impl Heap<'_> {
    /// The memory ranges to scan as roots under `roots`, and the register
    /// values as `(tid, value)`.
    pub fn root_ranges(&self, roots: &Roots) -> (Vec<RootRange>, Vec<(i32, u64)>) {
        let mut ranges = Vec::new();
        let mut seen = BTreeSet::new();
        for a in &self.areas {
            if a.perms.starts_with('-') {
                continue;
            }
            let (start, kind) = match a.kind {
                AreaKind::Stack { sp, .. } if roots.stacks => (sp & !7, "stack"),
                AreaKind::ModuleData if roots.globals => (a.start, "global"),
                AreaKind::Tls { .. } if roots.tls => (a.start, "tls"),
                // Read-only anonymous memory (a reserve gcore dumps, a
                // sealed table) holds nothing a program still updates.
                AreaKind::Anon if roots.anon && a.perms.as_bytes().get(1) == Some(&b'w') => {
                    (a.start, "anon")
                }
                AreaKind::Chunks if roots.anon && a.perms.as_bytes().get(1) == Some(&b'w') => {
                    // Between the buffers: whatever else shares the mapping.
                    let mut at = a.start;
                    let mut i = self.index.first_at_or_after(a.start);
                    while i < self.index.len() && self.index.start(i) < a.end {
                        if at < self.index.start(i) {
                            ranges.push(RootRange {
                                start: at,
                                end: self.index.start(i),
                                kind: "anon",
                            });
                        }
                        at = at.max(self.index.end(i));
                        i += 1;
                    }
                    if at < a.end {
                        ranges.push(RootRange {
                            start: at,
                            end: a.end,
                            kind: "anon",
                        });
                    }
                    continue;
                }
                _ => continue,
            };
            if seen.insert(a.start) {
                ranges.push(RootRange {
                    start,
                    end: a.end,
                    kind,
                });
            }
        }
        if roots.tls {
            // A thread pointer in memory we do not scan whole (an arena, a
            // stack's unused part): scan a window around it.
            for t in self.image.threads() {
                let fs = t.regs.get(REG_FS_BASE).copied().unwrap_or(0);
                let Some(a) = self.area_of(fs) else { continue };
                let covered = ranges.iter().any(|r| r.start <= fs && fs < r.end);
                if !covered && a.kind != AreaKind::Audit {
                    ranges.push(RootRange {
                        start: fs.saturating_sub(TLS_WINDOW_BELOW).max(a.start) & !7,
                        end: (fs + TLS_WINDOW_ABOVE).min(a.end),
                        kind: "tls",
                    });
                }
            }
        }
        let ranges = without(ranges, &self.allocator_state);
        let regs = if roots.registers {
            self.image
                .threads()
                .iter()
                .flat_map(|t| {
                    let waiting = self.program_sp.contains_key(&t.tid);
                    t.regs
                        .iter()
                        .enumerate()
                        .filter(move |&(i, _)| !(waiting && exit_roots::is_tracers_register(i)))
                        .map(move |(_, &r)| (t.tid, r))
                })
                .collect()
        } else {
            Vec::new()
        };
        (ranges, regs)
    }
}

/// `ranges` with the parts inside any of `cuts` (sorted) removed: glibc's
/// `malloc_state` keeps `top` just past the newest block, and scanning it
/// as a root would keep a leaked newest block "possibly lost".
fn without(ranges: Vec<RootRange>, cuts: &[(u64, u64)]) -> Vec<RootRange> {
    if cuts.is_empty() {
        return ranges;
    }
    let mut out = Vec::with_capacity(ranges.len() + cuts.len());
    for r in ranges {
        let mut at = r.start;
        for &(cs, ce) in cuts.iter().filter(|&&(cs, ce)| cs < r.end && r.start < ce) {
            if at < cs {
                out.push(RootRange {
                    start: at,
                    end: cs,
                    kind: r.kind,
                });
            }
            at = at.max(ce);
        }
        if at < r.end {
            out.push(RootRange {
                start: at,
                end: r.end,
                kind: r.kind,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(addr: u64, size: u64) -> Block {
        Block {
            addr,
            size,
            time_ns: 0,
            stack: StackId::NONE,
            tid: 0,
        }
    }

    #[test]
    fn index_finds_containing_blocks_across_pages_and_clusters() {
        let blocks = vec![
            block(0x1000, 16),
            block(0x1010, 0),
            block(0x1020, 0x3000),
            block(0x5000, 8),
            block(0x7f00_0000_0000, 64),
        ];
        let ix = BlockIndex::new(&blocks);
        assert_eq!(ix.find(0xfff), None);
        assert_eq!(ix.find(0x1000), Some(0));
        assert_eq!(ix.find(0x100f), Some(0));
        assert_eq!(ix.find(0x1010), Some(1));
        assert_eq!(ix.find(0x1011), None);
        assert_eq!(ix.find(0x1020), Some(2));
        assert_eq!(ix.find(0x3fff), Some(2));
        assert_eq!(ix.find(0x4020), None);
        assert_eq!(ix.find(0x5007), Some(3));
        assert_eq!(ix.find(0x5008), None);
        assert_eq!(ix.find(0x7f00_0000_0020), Some(4));
        assert_eq!(ix.find(0x7f00_0000_0040), None);
        assert_eq!(ix.find(0x10_0000), None);
        assert_eq!(ix.first_at_or_after(0x1001), 1);
    }

    #[test]
    fn index_agrees_with_binary_search_on_dense_blocks() {
        let mut blocks = Vec::new();
        let mut a = 0x10_0000u64;
        for i in 0..5000u64 {
            let size = (i * 37) % 700;
            blocks.push(block(a, size));
            a += size.max(1) + (i % 5) * 16 + 8;
        }
        let ix = BlockIndex::new(&blocks);
        for probe in (0x10_0000 - 64..a + 64).step_by(3) {
            let want = {
                let i = blocks.partition_point(|b| b.addr <= probe);
                i.checked_sub(1)
                    .filter(|&i| probe < blocks[i].addr + blocks[i].size.max(1))
            };
            assert_eq!(ix.find(probe), want, "probe {probe:#x}");
        }
    }

    #[test]
    fn index_finds_the_last_byte_and_not_the_next_in_adjacent_blocks() {
        let blocks = vec![block(0x2000, 16), block(0x2010, 16), block(0x2020, 1)];
        let ix = BlockIndex::new(&blocks);
        assert_eq!(ix.find(0x200f), Some(0));
        assert_eq!(ix.find(0x2010), Some(1));
        assert_eq!(ix.find(0x201f), Some(1));
        assert_eq!(ix.find(0x2020), Some(2));
        assert_eq!(ix.find(0x2021), None);
        assert_eq!(ix.end(1), 0x2020);
    }

    #[test]
    fn index_keeps_clusters_far_apart_separate() {
        // Three clusters, gaps far wider than CLUSTER_GAP, one block
        // straddling a page boundary.
        let blocks = vec![
            block(0x1000_0ff8, 16),
            block(0x1000_2000, 64),
            block(0x5000_0000, 8),
            block(0x7f00_0000_0000, 0x2_0000),
        ];
        let ix = BlockIndex::new(&blocks);
        assert_eq!(ix.clusters.len(), 3);
        assert_eq!(ix.find(0x1000_1007), Some(0));
        assert_eq!(ix.find(0x1000_1008), None);
        assert_eq!(ix.find(0x1000_203f), Some(1));
        assert_eq!(ix.find(0x3000_0000), None, "between clusters");
        assert_eq!(ix.find(0x5000_0007), Some(2));
        assert_eq!(ix.find(0x5000_0008), None);
        assert_eq!(ix.find(0x7f00_0001_ffff), Some(3));
        assert_eq!(ix.find(0x7f00_0002_0000), None);
        assert_eq!(ix.find(u64::MAX), None);
        assert_eq!(ix.find(0), None);
        assert!(BlockIndex::new(&[]).find(0x1000).is_none());
    }

    #[test]
    fn synthetic_mappings_are_classified_by_what_they_hold() {
        use crate::synthetic::*;
        let s = HeapBuilder::new().build();
        let heap = s.heap();
        let kind = |a: u64| heap.area_of(a).map(|a| a.kind.clone());
        assert_eq!(kind(TEXT), Some(AreaKind::File));
        assert_eq!(kind(DATA + 8), Some(AreaKind::ModuleData));
        assert_eq!(kind(BRK), Some(AreaKind::Heap));
        assert_eq!(kind(ARENA + 0x40), Some(AreaKind::Arena));
        assert_eq!(kind(FS_BASE), Some(AreaKind::Tls { tid: TID }));
        assert_eq!(kind(ANON), Some(AreaKind::Anon));
        assert_eq!(kind(AUDIT), Some(AreaKind::Audit));
        assert_eq!(kind(SP - 64), Some(AreaKind::Stack { tid: TID, sp: SP }));
        assert_eq!(kind(0x1000), None);
        assert!(heap.in_audit(AUDIT + 8) && !heap.in_audit(ANON));
    }

    #[test]
    fn root_ranges_start_stacks_at_sp_and_skip_arenas_files_and_the_audit() {
        use crate::synthetic::*;
        let s = HeapBuilder::new().build();
        let heap = s.heap();
        let (ranges, regs) = heap.root_ranges(&Roots::default());
        let kinds: Vec<(u64, &str)> = ranges.iter().map(|r| (r.start, r.kind)).collect();
        assert!(kinds.contains(&(SP, "stack")));
        assert!(kinds.contains(&(DATA, "global")));
        assert!(kinds.contains(&(TLS, "tls")));
        assert!(kinds.contains(&(ANON, "anon")));
        for r in &ranges {
            for a in [ARENA, AUDIT, TEXT, BRK] {
                assert!(!(r.start <= a && a < r.end), "{a:#x} in {r:?}");
            }
        }
        assert_eq!(regs.len(), 27);
        let (ranges, regs) = heap.root_ranges(&Roots::parse("globals").unwrap());
        assert_eq!(ranges.len(), 1);
        assert!(regs.is_empty());
    }

    #[test]
    fn issue_16_another_allocators_memory_is_not_a_root_but_the_programs_maps_in_it_are() {
        use crate::synthetic::*;
        // jemalloc's extent: a block, and a stale copy of its address in
        // the allocator's own words beside it (a tcache stack's).
        let mut b = HeapBuilder::new();
        let block = b.place(ANON + 0x100, 64, 1, TID as u32);
        b.write(ANON + 0x800, block);
        let mut s = b.build();
        // A page of it the program mapped itself (the kernel merged the
        // mappings): a root.
        s.audit.maps.push(Block {
            addr: ANON + 0xc00,
            size: 0x400,
            time_ns: 0,
            stack: StackId(1),
            tid: TID as u32,
        });
        let mut heap = s.heap();
        assert_eq!(heap.area_of(ANON).map(|a| &a.kind), Some(&AreaKind::Chunks));
        let scanned = |heap: &Heap, at: u64| {
            let (ranges, _) = heap.root_ranges(&Roots::default());
            ranges.iter().any(|r| r.start <= at && at < r.end)
        };
        assert!(
            scanned(&heap, ANON + 0x800),
            "glibc's rule: between the chunks"
        );
        heap.allocator_state = heap.foreign_allocator_state(Some("/usr/lib/libjemalloc.so.2"));
        assert!(!scanned(&heap, ANON + 0x800));
        assert!(scanned(&heap, ANON + 0xc00));
        assert!(scanned(&heap, FS_BASE), "the thread pointer's window stays");
        // A mapping the allocator's own code made is its own too.
        let mut s = HeapBuilder::new().build();
        s.audit.maps.push(Block {
            addr: ANON,
            size: 0x1000,
            time_ns: 0,
            stack: StackId(1),
            tid: TID as u32,
        });
        let mut heap = s.heap();
        assert!(scanned(&heap, ANON + 8));
        heap.allocator_state = heap.foreign_allocator_state(Some("/usr/bin/app"));
        assert!(!scanned(&heap, ANON + 8));
    }

    #[test]
    fn issue_11_a_finished_threads_cached_stack_is_not_a_root() {
        use crate::synthetic::*;
        // (guard page below, descriptor at the top): only both make it a
        // cached stack.
        for (guard, descriptor) in [(true, false), (false, true), (true, true)] {
            let mut b = HeapBuilder::new();
            let a = b.block(64);
            b.anon_word(a);
            if guard {
                b.guard(ANON - 0x1000, 0x1000);
            }
            if descriptor {
                // glibc's descriptor of a thread that ended: `tcb` and
                // `self` hold its own address, no live thread's fs_base.
                let tcb = ANON + 0x800;
                b.write(tcb, tcb);
                b.write(tcb + 16, tcb);
            }
            let cached = guard && descriptor;
            let s = b.build();
            let heap = s.heap();
            let area = heap.area_of(ANON).expect("anon area");
            assert_eq!(area.kind == AreaKind::CachedStack, cached, "{area:?}");
            let (ranges, _) = heap.root_ranges(&Roots::default());
            let scanned = ranges.iter().any(|r| r.start <= ANON && ANON < r.end);
            assert_eq!(scanned, !cached);
        }
        // A live thread's descriptor is its TLS, a root.
        let mut b = HeapBuilder::new();
        b.write(FS_BASE, FS_BASE);
        b.write(FS_BASE + 16, FS_BASE);
        let s = b.build();
        assert!(matches!(
            s.heap().area_of(FS_BASE).map(|a| &a.kind),
            Some(AreaKind::Tls { .. })
        ));
    }

    #[test]
    fn mallocs_own_state_is_cut_out_of_the_roots() {
        use crate::synthetic::*;
        let s = HeapBuilder::new().build();
        let mut heap = s.heap();
        heap.allocator_state = vec![(DATA + 0x100, DATA + 0x200)];
        let (ranges, _) = heap.root_ranges(&Roots::default());
        let globals: Vec<(u64, u64)> = ranges
            .iter()
            .filter(|r| r.kind == "global")
            .map(|r| (r.start, r.end))
            .collect();
        assert_eq!(
            globals,
            vec![(DATA, DATA + 0x100), (DATA + 0x200, DATA + 0x1000)]
        );
    }

    #[test]
    fn a_block_of_brk_heap_memory_is_found_by_block_at() {
        use crate::synthetic::*;
        let mut b = HeapBuilder::new();
        let a = b.block(40);
        let s = b.build();
        let heap = s.heap();
        assert_eq!(heap.block_at(a + 39).map(|b| b.addr), Some(a));
        assert!(heap.block_at(a + 40).is_none());
    }

    #[test]
    fn only_full_captures_have_memory_for_reachability() {
        use crate::synthetic::*;
        assert!(HeapBuilder::new().build().heap().require_memory().is_ok());
        let mut b = HeapBuilder::new();
        b.memory_mode(MemoryMode::Tables);
        let s = b.build();
        let err = s.heap().require_memory().unwrap_err();
        assert!(err
            .to_string()
            .contains("synthetic.core was taken with --memory tables"));
    }

    #[test]
    fn roots_parse_lists_and_refuse_unknown_names() {
        assert_eq!(Roots::parse("all").unwrap(), Roots::default());
        let r = Roots::parse("stacks,registers").unwrap();
        assert!(r.stacks && r.registers && !r.anon && !r.globals && !r.tls);
        assert!(Roots::parse("stacks,heap").is_err());
    }
}
