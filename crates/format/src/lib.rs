//! The shared vocabulary of leaktrail.
//!
//! The tracer (`libleaktrail_preload.so`) keeps an *audit region* inside the
//! traced process: every live malloc'd buffer with its size, allocation
//! stack, thread and time, the interned stacks, and per-size-class counters.
//! Every reader (the snapshot writer, the analyser) decodes that region from
//! another process or from a core file. This crate is the one place where
//! its layout is written down, so that each record is defined once.
//!
//! # The region
//!
//! * One page-aligned [`Header`] mapping, found by its [`MAGIC`] at the
//!   start of a mapping (an inaccessible page below it keeps the kernel
//!   from merging it into the mapping before). It holds
//!   the counters, the [`SizeClass`] table and the descriptors of every
//!   other mapping of the region.
//! * Live tables: [`LIVE_SHARDS`] open-addressing hash tables of
//!   [`LiveEntry`], keyed by buffer address. Each table is its own mapping,
//!   described by a [`ShardDesc`] in the header; a full table is replaced by
//!   a bigger one and the descriptor is switched with one store.
//! * A mapped-memory table: the same [`LiveEntry`] records for anonymous
//!   `mmap`s made by the program (a GC heap grows through these).
//! * The stack arena: interned stacks, addressed by [`StackId`] (a word
//!   offset), in fixed-size chunks listed in the header. Since version 2
//!   each stack's record ends with its [`SiteCounters`]: what the tracer
//!   counted for the allocation site (allocations, frees, temporary
//!   allocations, peak live bytes, a size histogram), which snapshots of
//!   live blocks alone cannot tell.
//!
//! # Consistency for outside readers
//!
//! Writers serialise per shard with a lock word and bump the shard's
//! sequence counter before and after every change (odd = a change is under
//! way). Every change is published by one store (an entry's `addr`, a
//! descriptor's `table`), written last, so a reader that finds a thread
//! stopped mid-update still sees a table that is either before or after that
//! change; the odd counter tells it which shard to re-read if it can resume
//! the process, and how many records may be off by one if it cannot (a core
//! file).
//!
//! # Modes and the tracer's contract
//!
//! The modes a user chooses ([`MemoryMode`], [`UnwindMode`], [`FailOn`]
//! over [`LeakKind`]) are spelled once, by their `name()`, which `FromStr`
//! reverses; [`handover`] holds the environment variables the supervisor
//! sets for the tracer and the start/exit line they exchange. None of it
//! allocates.
//!
//! # Example
//!
//! ```
//! use leaktrail_format::{class_of, class_size, SIZE_CLASSES};
//! assert_eq!(class_size(class_of(4000)), 4096);
//! assert_eq!(class_size(class_of(1)), 8);
//! assert_eq!(SIZE_CLASSES[0], 8);
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

mod allocator;
pub mod handover;
pub mod maps_line;
mod mode;

pub use allocator::Allocator;
pub use mode::{FailOn, LeakKind, MemoryMode, UnknownName, UnwindMode};

/// The first eight bytes of the region's header page.
pub const MAGIC: [u8; 8] = *b"LEAKTRL1";
/// Bumped on every incompatible change of anything in this crate.
///
/// 2: every stack record in the arena is followed by its [`SiteCounters`],
/// and [`Counters`] names the process-wide live and peak bytes. Readers
/// also read version 1 (no site counters, those counters 0).
///
/// 3: in a sampled region the site counters and the process-wide live and
/// peak bytes are estimates of the whole heap, not sums over the sampled
/// blocks (see [`SiteCounters`]). Readers read a sampled region of version
/// 2 as its sampled blocks' sums.
pub const VERSION: u32 = 3;
/// The oldest version readers still decode.
pub const OLDEST_VERSION: u32 = 1;
/// Page size the region is laid out for (x86_64 and aarch64 with 4 KiB pages).
pub const PAGE_SIZE: u64 = 4096;

/// Number of live-table shards. A power of two; shard = hash(addr) & (N-1).
pub const LIVE_SHARDS: usize = 64;
/// Number of stack-index shards.
pub const STACK_SHARDS: usize = 16;
/// Words per stack-arena chunk (1 MiB chunks: small programs capture little).
pub const STACK_CHUNK_WORDS: u64 = 1 << 17;
/// Most chunks the stack arena may grow to (2 GiB of stacks; ids stay below 2^28).
pub const STACK_CHUNKS: usize = 2048;
/// Deepest stack the tracer records.
pub const MAX_DEPTH: usize = 256;
/// Depth recorded when the user does not say.
pub const DEFAULT_DEPTH: usize = 64;

/// Key of an empty [`LiveEntry`] slot.
pub const EMPTY: u64 = 0;
/// Key of a deleted [`LiveEntry`] slot (no buffer lives at address 1).
pub const TOMBSTONE: u64 = 1;

/// umem-like size-class boundaries, in bytes: a buffer of `n` bytes belongs
/// to the first class whose size is at least `n`. Past the last one, classes
/// are powers of two ("oversize").
pub const SIZE_CLASSES: [u64; 29] = [
    8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896,
    1024, 1152, 1344, 1600, 2048, 2688, 3072, 4096, 8192,
];
/// Total number of classes: the table above, then 2^14 ..= 2^47, then one
/// class for anything larger.
pub const NUM_CLASSES: usize = SIZE_CLASSES.len() + (47 - 13) + 1;

/// A size class: its index, `0..NUM_CLASSES`. A type of its own so that a
/// class is never mistaken for a size in bytes (class 12 holds 256-byte
/// buffers); serialized as the bare index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct SizeClass(pub u16);

impl SizeClass {
    /// The class's index, for tables of [`NUM_CLASSES`] entries.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every class, smallest first.
    pub fn all() -> impl Iterator<Item = SizeClass> {
        (0..NUM_CLASSES as u16).map(SizeClass)
    }

    /// The largest buffer size in the class (`u64::MAX` for the last).
    #[inline]
    pub fn size(self) -> u64 {
        class_size(self)
    }
}

impl core::fmt::Display for SizeClass {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// The class of a buffer of `size` bytes. Cheap enough for the hook path.
#[inline]
pub fn class_of(size: u64) -> SizeClass {
    SizeClass(class_index(size) as u16)
}

#[inline]
fn class_index(size: u64) -> usize {
    if size <= 1024 {
        SMALL_CLASS[size.div_ceil(8) as usize] as usize
    } else if size <= 8192 {
        LARGE_CLASS[size.div_ceil(64) as usize] as usize
    } else {
        // Next power of two >= size, as an exponent in 14..
        let exp = 64 - (size - 1).leading_zeros() as usize;
        let idx = SIZE_CLASSES.len() + (exp - 14);
        if idx >= NUM_CLASSES {
            NUM_CLASSES - 1
        } else {
            idx
        }
    }
}

/// The class of every size up to 1024 bytes by its 8-byte granule, and up
/// to 8192 by its 64-byte one: every boundary in [`SIZE_CLASSES`] is a
/// multiple of its range's granule, so a granule never straddles two
/// classes. 258 bytes, hot in the cache of any program that allocates; the
/// scan of the table they replace cost a mispredicted branch on every
/// allocation and free of mixed sizes (its exit depends on the size).
static SMALL_CLASS: [u8; 129] = class_table(8);
static LARGE_CLASS: [u8; 129] = class_table(64);

const fn class_table(granule: u64) -> [u8; 129] {
    let mut table = [0u8; 129];
    let mut g = 0;
    while g < table.len() {
        let largest = g as u64 * granule;
        let mut i = 0;
        while SIZE_CLASSES[i] < largest {
            i += 1;
        }
        table[g] = i as u8;
        g += 1;
    }
    table
}

/// The largest buffer size in class `class` (`u64::MAX` for the last one).
pub fn class_size(class: SizeClass) -> u64 {
    let class = class.index();
    if class < SIZE_CLASSES.len() {
        SIZE_CLASSES[class]
    } else if class + 1 >= NUM_CLASSES {
        u64::MAX
    } else {
        1u64 << (14 + class - SIZE_CLASSES.len())
    }
}

/// Where the tracer is in its life. Stored as a `u32` in [`Header::state`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Loaded, not yet set up: allocations pass through unrecorded.
    Uninitialised = 0,
    /// Recording every allocation.
    Running = 1,
    /// Recording stopped because the region could not grow; counters go on.
    Full = 2,
    /// Turned off (by configuration, or after a fault); nothing is recorded.
    Disabled = 3,
}

impl Lifecycle {
    /// Decodes a stored state word.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Uninitialised,
            1 => Self::Running,
            2 => Self::Full,
            3 => Self::Disabled,
            _ => return None,
        })
    }
}

/// Counters of one size class. `live_*` follow the live table; `allocs` and
/// `frees` only grow.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ClassCounters {
    /// Buffers of this class alive now.
    pub live_count: AtomicU64,
    /// Their requested bytes.
    pub live_bytes: AtomicU64,
    /// Allocations ever made in this class.
    pub allocs: AtomicU64,
    /// Frees ever made in this class.
    pub frees: AtomicU64,
}

/// What the tracer could not record, and why.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Counters {
    /// Allocations not entered in the live table (region full, or made
    /// before the tracer was ready, or from inside the tracer).
    pub dropped_allocs: AtomicU64,
    /// Frees of addresses the live table did not hold.
    pub unknown_frees: AtomicU64,
    /// Stacks that could not be interned (arena full); recorded as id 0.
    pub dropped_stacks: AtomicU64,
    /// Stacks cut at the depth limit.
    pub truncated_stacks: AtomicU64,
    /// Bytes of memory the region itself occupies.
    pub region_bytes: AtomicU64,
    /// Live-table resizes.
    pub resizes: AtomicU64,
    /// Anonymous mmaps not entered in the mapped-memory table.
    pub dropped_maps: AtomicU64,
    /// Stacks not captured because the thread's stack had too little room
    /// left for the unwinder (threads created with tiny stacks).
    pub shallow_stacks: AtomicU64,
    /// Bytes of live buffers in the whole process (since version 2; in a
    /// sampled region of version 3 on, an estimate: see [`SiteCounters`]).
    pub live_bytes: AtomicU64,
    /// The most `live_bytes` ever was: heaptrack's "peak heap memory
    /// consumption" (since version 2).
    pub peak_bytes: AtomicU64,
    /// When `peak_bytes` was reached, ns after the start (since version 2).
    pub peak_time_ns: AtomicU64,
    /// The sampling rate: 0 when every block is recorded (the full audit);
    /// else the mean bytes between sampled blocks (`run --sample`). Then
    /// the live table holds only the sampled blocks (a block of `s` bytes is
    /// sampled with probability `1 - exp(-s / rate)` and stands for the
    /// inverse of that many blocks), and the class counters count
    /// every block, unsampled ones by the allocator's usable size. Taken
    /// from the reserved words below, so a region of version 1 without it
    /// reads as 0: a full audit.
    pub sample_rate: AtomicU64,
    /// When sampling: the address of the per-thread class counters, a
    /// mapping of [`THREAD_CLASS_SLOTS`] arrays of [`NUM_CLASSES`]
    /// [`ClassCounters`], one per thread (in the order threads first count
    /// an unsampled block), each written by its thread alone with plain
    /// stores, so an unsampled block costs no atomic operation. Readers
    /// add them to [`Header::classes`] (live counts may be negative in one
    /// slot: a block freed by another thread than its allocator's). 0 when
    /// not sampling.
    pub thread_classes: AtomicU64,
    /// Slots of [`Counters::thread_classes`] claimed so far (may exceed
    /// [`THREAD_CLASS_SLOTS`]: the threads past it count in
    /// [`Header::classes`] with atomic adds).
    pub thread_slots: AtomicU64,
    /// Reserved for later counters without a version bump.
    pub reserved: [AtomicU64; 2],
}

/// Buckets of a site's size histogram (see [`size_bucket`]).
pub const SITE_SIZE_BUCKETS: usize = 20;

/// The histogram bucket of a `size`-byte allocation: 0 for at most 8
/// bytes, then one per power of two, bucket `b` holding sizes in
/// `(2^(b+2), 2^(b+3)]`, the last everything above 2 MiB. Cheap enough
/// for the hook path.
#[inline]
pub fn size_bucket(size: u64) -> usize {
    if size <= 8 {
        return 0;
    }
    // ceil(log2(size)), at least 4 here.
    let exp = 64 - (size - 1).leading_zeros() as usize;
    (exp - 3).min(SITE_SIZE_BUCKETS - 1)
}

/// The largest size in histogram bucket `bucket` (`u64::MAX` for the last).
pub fn size_bucket_limit(bucket: usize) -> u64 {
    if bucket + 1 >= SITE_SIZE_BUCKETS {
        u64::MAX
    } else {
        1u64 << (bucket + 3)
    }
}

/// What the tracer counts per allocation site (per interned stack), in the
/// arena right after the stack's frames (since version 2). Updated with
/// relaxed atomics by every thread, under the live shard's lock of the
/// block concerned, so a block's allocation is always counted before its
/// free and `live_bytes` never dips below zero.
///
/// The site's allocations are the sum of `sizes`; its live count is that
/// minus `frees`.
///
/// In a sampled region (version 3 on) every block the site recorded counts
/// with its weight `w` ([`sample_weight`]): its counts (`frees`,
/// `temporary`, `sizes`) grow by `w` in units of 1/[`SAMPLED_COUNT_UNIT`],
/// its byte figures by `w` times its size, rounded. Each figure is then an
/// unbiased estimate of what every block of the site, sampled or not, would
/// have counted; a site's peak is estimated at the times of its sampled
/// blocks only. [`Counters::live_bytes`] and [`Counters::peak_bytes`] are
/// weighted the same way.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SiteCounters {
    /// Bytes of the site's buffers alive now.
    pub live_bytes: AtomicU64,
    /// The most `live_bytes` ever was.
    pub peak_bytes: AtomicU64,
    /// When `peak_bytes` was reached, ns after the start (the time of the
    /// allocation that reached it; when two threads race to a new peak,
    /// one of their times).
    pub peak_time_ns: AtomicU64,
    /// Bytes allocated in total.
    pub bytes: AtomicU64,
    /// Buffers freed (or reallocated away).
    pub frees: AtomicU64,
    /// Temporary allocations, as heaptrack defines them: freed by the
    /// thread that made them with no other allocation or free by that
    /// thread in between.
    pub temporary: AtomicU64,
    /// Allocations per size bucket ([`size_bucket`]).
    pub sizes: [AtomicU64; SITE_SIZE_BUCKETS],
}

/// The unit of a sampled region's site counts: 1024 of them make one
/// allocation, so a weight keeps ten bits of its fraction.
pub const SAMPLED_COUNT_UNIT: u64 = 1024;

/// How many blocks a sampled block of `size` bytes stands for at `rate`
/// mean bytes between samples: `1 / (1 - exp(-size / rate))`, the inverse
/// of its chance to be sampled, which makes every sum of weights (and of
/// weighted sizes) an unbiased estimate of the sum over all blocks. 1 when
/// `rate` is 0 (every block recorded).
#[cfg(feature = "std")]
pub fn sample_weight(size: u64, rate: u64) -> f64 {
    if rate == 0 {
        return 1.0;
    }
    // -expm1(-x) = 1 - exp(-x) without the cancellation for small x (a
    // 16-byte block at 512 KiB has x = 3e-5).
    let p = -(-(size.max(1) as f64) / rate as f64).exp_m1();
    1.0 / p
}

/// Words of a [`SiteCounters`] in the arena.
pub const SITE_COUNTERS_WORDS: u64 = (core::mem::size_of::<SiteCounters>() / 8) as u64;

/// Descriptor of one hash table of the region, alone on its cache line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct ShardDesc {
    /// Even when no change is under way, odd while one is.
    pub seq: AtomicU64,
    /// Writer lock word (0 free, 1 held). Readers ignore it.
    pub lock: AtomicU32,
    /// Padding.
    pub pad: u32,
    /// Address of the table (an array of `capacity` records).
    pub table: AtomicU64,
    /// Slots in the table, a power of two.
    pub capacity: AtomicU64,
    /// Slots holding a record.
    pub len: AtomicU64,
    /// Slots holding a [`TOMBSTONE`].
    pub tombstones: AtomicU64,
    /// Padding to a cache line, so shards do not false-share.
    pub pad2: [u64; 2],
}

/// One live buffer (or, in the mapped-memory table, one anonymous mapping).
#[repr(C)]
#[derive(Debug, Default)]
pub struct LiveEntry {
    /// Buffer address; [`EMPTY`] or [`TOMBSTONE`] for free slots. Written
    /// last on insert, so a reader never sees a half-written record.
    pub addr: AtomicU64,
    /// Requested size in bytes.
    pub size: u64,
    /// Allocation time, nanoseconds of `CLOCK_MONOTONIC` since
    /// [`Header::start_monotonic_ns`].
    pub time_ns: u64,
    /// The allocating stack, or 0 when none was recorded.
    pub stack: u32,
    /// Kernel thread id of the allocating thread.
    pub tid: u32,
}

/// One entry of a stack-index shard: the stack hash and where it lives.
#[repr(C)]
#[derive(Debug, Default)]
pub struct StackIndexEntry {
    /// Hash of the frames; never 0 (0 marks an empty slot).
    pub hash: AtomicU64,
    /// The stack's [`StackId`].
    pub id: u64,
}

/// An interned stack: a word offset into the stack arena. 0 ([`StackId::NONE`])
/// means "none recorded". Serialized as the bare number.
///
/// At that offset the arena holds one header word (the frame count in the
/// low 16 bits) followed by that many frame words (return addresses, with
/// an optional note: see [`FRAME_ADDRESS_BITS`]), innermost first:
/// the first is where the allocation call returns to; since version 2,
/// then the site's [`SiteCounters`]. Ids are private to one
/// process's arena: compare stacks across processes by their frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct StackId(pub u32);

impl StackId {
    /// No stack was recorded.
    pub const NONE: StackId = StackId(0);

    /// Whether this is [`StackId::NONE`].
    #[inline]
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl core::fmt::Display for StackId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// Descriptor of one stack-arena chunk.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ChunkDesc {
    /// Address of the chunk, 0 if not mapped yet.
    pub addr: AtomicU64,
}

/// [`Header::bypassed`]: the program's `malloc` family is defined before
/// ours (in its executable): none of it reaches the tracer.
pub const BYPASS_MALLOC: u8 = 1;
/// [`Header::bypassed`]: C++'s `operator new` and `delete` are defined
/// before ours (in the executable): their blocks are not recorded, unless
/// they call `malloc`.
pub const BYPASS_OPERATORS: u8 = 2;

/// The region's header: the first page of its first mapping.
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// `size_of::<Header>()` as the writer saw it.
    pub header_size: u32,
    /// Bytes per pointer (8).
    pub pointer_width: u8,
    /// 1 little endian, 2 big endian.
    pub endianness: u8,
    /// 1 when the tracer was loaded into the running process by `leaktrail
    /// attach`: blocks allocated before are not in the live table (readers
    /// take them from a walk of the allocator's heap); 0 when it started
    /// with the program.
    pub attached: AtomicU8,
    /// What of the program's allocations bypasses the tracer, as
    /// [`BYPASS_MALLOC`] and [`BYPASS_OPERATORS`] bits: definitions the
    /// loader finds before ours (an allocator linked statically into the
    /// executable exports `malloc`; `mimalloc-new-delete.h` puts C++'s
    /// operators there). 0 when every call reaches our hooks (in older
    /// regions this byte was padding).
    pub bypassed: AtomicU8,
    /// Process id of the writer (after a fork, the child's).
    pub pid: AtomicU32,
    /// A [`Lifecycle`].
    pub state: AtomicU32,
    /// An [`UnwindMode`].
    pub unwind_mode: u32,
    /// Maximum recorded depth.
    pub max_depth: u32,
    /// The thread handing over at exit (set just before the exit notice is
    /// written; 0 until then). The exit-root cut finds that thread's frames
    /// by it: the supervisor may freeze the thread anywhere between its
    /// `write` and its `poll`, so the system call it is in tells nothing.
    pub exit_tid: AtomicU32,
    /// Address of this header in the writer (a sanity check for readers).
    pub self_addr: u64,
    /// `CLOCK_REALTIME` at init, ns since the epoch.
    pub start_realtime_ns: u64,
    /// `CLOCK_MONOTONIC` at init, ns; entry times are relative to it.
    pub start_monotonic_ns: AtomicU64,
    /// Bumped in the child after every fork.
    pub fork_generation: AtomicU64,
    /// What could not be recorded.
    pub counters: Counters,
    /// Per-size-class counters, kept per live shard and updated under that
    /// shard's lock (so threads do not bounce one shared counter line
    /// between cores on every allocation); a class's totals are the sums
    /// over shards.
    pub classes: [[ClassCounters; NUM_CLASSES]; LIVE_SHARDS],
    /// Live tables.
    pub live: [ShardDesc; LIVE_SHARDS],
    /// The anonymous-mapping table.
    pub maps: ShardDesc,
    /// The stack index.
    pub stack_index: [ShardDesc; STACK_SHARDS],
    /// Stack-arena lock word.
    pub arena_lock: AtomicU32,
    /// The program's [`Allocator`], once the tracer resolved which
    /// `malloc` it forwards to (0, unknown, before; in older regions this
    /// word was padding).
    pub allocator: AtomicU32,
    /// Next free word of the arena (global word offset).
    pub arena_cursor: AtomicU64,
    /// Interned stacks.
    pub stack_count: AtomicU64,
    /// The arena's chunks.
    pub chunks: [ChunkDesc; STACK_CHUNKS],
}

/// The rate `run --sample` uses when given no value: 512 KiB, a mean of
/// one sampled block per 512 KiB allocated (tcmalloc samples every 2 MiB,
/// heapprofd defaults to 32 KiB).
pub const DEFAULT_SAMPLE_RATE: u64 = 512 * 1024;

/// Threads that get class counters of their own when sampling (see
/// [`Counters::thread_classes`]).
pub const THREAD_CLASS_SLOTS: u64 = 256;
/// Bytes of one thread's class counters.
pub const THREAD_CLASS_BYTES: u64 = (NUM_CLASSES * core::mem::size_of::<ClassCounters>()) as u64;

/// Bytes of the header mapping (whole pages).
pub const HEADER_MAPPING_BYTES: u64 =
    (core::mem::size_of::<Header>() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;

/// Hash of a buffer address, for choosing a shard and a slot.
#[inline]
pub fn hash_addr(addr: u64) -> u64 {
    // Malloc addresses share their low 4 bits and high bits; a multiply
    // spreads the middle bits everywhere (Fibonacci hashing).
    (addr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Shards that one 64 MiB stretch of address space spreads over.
pub const SHARDS_PER_REGION: usize = 4;

/// The shard that holds `addr`.
///
/// glibc gives each thread an arena of its own, in its own 64 MiB-aligned
/// heaps, so the 64 MiB block of an address mostly says which thread
/// allocated it. Choosing a group of [`SHARDS_PER_REGION`] shards by that
/// block, and the shard within the group by the address, keeps two threads
/// allocating at once on different shards, so they do not pull each
/// other's lock, counters and table lines across cores (measured: a
/// spread over all shards made two threads' pairs cost 1.5x one thread's).
#[inline]
pub fn shard_of(addr: u64) -> usize {
    let groups = LIVE_SHARDS / SHARDS_PER_REGION;
    let group = ((addr >> 26).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize & (groups - 1);
    let within = (hash_addr(addr) >> 60) as usize & (SHARDS_PER_REGION - 1);
    group * SHARDS_PER_REGION + within
}

/// A recorded frame is one word: its return address in the low
/// [`FRAME_ADDRESS_BITS`] bits (x86_64 user space: the kernel maps
/// above 2^47 only at a program's explicit request), and above them a
/// note the tracer may add for a frame of JIT code: one more than the
/// small integer V8's interpreter keeps in the frame's bytecode-offset
/// slot (`v8dbg_off_fp_bytecode_offset`) at the time of the call, so
/// that an interpreted JS frame can be named at the line of its call
/// rather than at its function's start. 0: no note. Readers take the
/// address with [`frame_address`] and the note with [`frame_note`].
pub const FRAME_ADDRESS_BITS: u32 = 47;
/// The return-address part of a frame word.
pub const FRAME_ADDRESS_MASK: u64 = (1 << FRAME_ADDRESS_BITS) - 1;
/// The largest value the note bits hold (the bits above the address, bar
/// the top one, which the tracer's memo uses for itself): one more than
/// the largest note.
pub const FRAME_NOTE_MAX: u64 = (1 << (63 - FRAME_ADDRESS_BITS)) - 1;

/// The return address of a recorded frame word.
#[inline]
pub const fn frame_address(word: u64) -> u64 {
    word & FRAME_ADDRESS_MASK
}

/// The value noted with a recorded frame word (see
/// [`FRAME_ADDRESS_BITS`]), if any.
#[inline]
pub const fn frame_note(word: u64) -> Option<u64> {
    match (word >> FRAME_ADDRESS_BITS) & FRAME_NOTE_MAX {
        0 => None,
        n => Some(n - 1),
    }
}

/// The frame word of return address `pc` with `note`; just `pc` when
/// there is no note, the note is too large, or `pc` does not fit.
#[inline]
pub const fn frame_word(pc: u64, note: Option<u64>) -> u64 {
    match note {
        Some(n) if n < FRAME_NOTE_MAX && pc <= FRAME_ADDRESS_MASK => {
            pc | (n + 1) << FRAME_ADDRESS_BITS
        }
        _ => pc,
    }
}

/// Hash of a stack's frames; never 0.
#[inline]
pub fn hash_frames(frames: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ frames.len() as u64;
    for &f in frames {
        h = (h ^ f).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    h = (h ^ (h >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    if h == 0 {
        1
    } else {
        h
    }
}

/// Splits a [`StackId`] into (chunk index, word offset within the chunk).
#[inline]
pub fn stack_location(id: StackId) -> (usize, u64) {
    let w = id.0 as u64;
    ((w / STACK_CHUNK_WORDS) as usize, w % STACK_CHUNK_WORDS)
}

/// Name of the ELF note that carries leaktrail's snapshot metadata.
pub const NOTE_NAME: &str = "LEAKTRAIL";
/// Type of that note.
pub const NOTE_TYPE: u32 = 0x4c54_0001;

/// Byte offsets of header fields, for readers that decode raw bytes.
pub mod offsets {
    use super::*;
    use core::mem::offset_of;
    /// [`Header::version`].
    pub const VERSION: usize = offset_of!(Header, version);
    /// [`Header::header_size`].
    pub const HEADER_SIZE: usize = offset_of!(Header, header_size);
    /// [`Header::classes`].
    pub const CLASSES: usize = offset_of!(Header, classes);
    /// [`Header::live`].
    pub const LIVE: usize = offset_of!(Header, live);
}

/// Size of a [`LiveEntry`] in bytes.
pub const LIVE_ENTRY_BYTES: u64 = core::mem::size_of::<LiveEntry>() as u64;
/// Size of a [`StackIndexEntry`] in bytes.
pub const STACK_INDEX_ENTRY_BYTES: u64 = core::mem::size_of::<StackIndexEntry>() as u64;

const _: () = assert!(LIVE_ENTRY_BYTES == 32);
const _: () = assert!(core::mem::size_of::<ShardDesc>() == 64);
const _: () = assert!(NUM_CLASSES == 64);
const _: () = assert!(core::mem::size_of::<Counters>() == 8 * 16);
const _: () = assert!(SITE_COUNTERS_WORDS == 6 + SITE_SIZE_BUCKETS as u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_word_keeps_its_address_and_its_note() {
        let pc = 0x7f12_3456_789a;
        assert_eq!(frame_word(pc, None), pc);
        for note in [0, 1, 53 + 400, FRAME_NOTE_MAX - 1] {
            let w = frame_word(pc, Some(note));
            assert_eq!((frame_address(w), frame_note(w)), (pc, Some(note)));
            assert_eq!(w >> 63, 0, "the top bit is the memo's");
        }
        // Too large a note, or an address above 2^47: no note.
        assert_eq!(frame_word(pc, Some(FRAME_NOTE_MAX)), pc);
        assert_eq!(frame_word(1 << 47, Some(3)), 1 << 47);
        assert_eq!(frame_note(pc), None);
    }

    #[test]
    fn classes_cover_their_boundaries() {
        for (i, &b) in SIZE_CLASSES.iter().enumerate() {
            assert_eq!(class_of(b).index(), i, "boundary {b}");
            assert_eq!(class_of(b + 1).index(), i + 1, "boundary {b}+1");
        }
        assert_eq!(class_of(0), SizeClass(0));
        assert_eq!(class_size(class_of(8193)), 16384);
        assert_eq!(class_size(class_of(16384)), 16384);
        assert_eq!(class_size(class_of(16385)), 32768);
        assert_eq!(class_of(u64::MAX).index(), NUM_CLASSES - 1);
        assert_eq!(class_size(SizeClass(NUM_CLASSES as u16 - 1)), u64::MAX);
        assert_eq!(class_size(SizeClass(NUM_CLASSES as u16 - 2)), 1 << 47);
        assert_eq!(SizeClass::all().count(), NUM_CLASSES);
        assert_eq!(SizeClass(12).size(), 256);
    }

    #[test]
    fn the_class_tables_agree_with_the_boundaries_for_every_size() {
        for size in 0..=9000u64 {
            let first = SIZE_CLASSES
                .iter()
                .position(|&b| b >= size)
                .unwrap_or(SIZE_CLASSES.len());
            assert_eq!(class_of(size).index(), first, "size {size}");
        }
    }

    #[test]
    fn size_buckets_are_powers_of_two_from_8_bytes_to_2_mib() {
        assert_eq!(size_bucket(0), 0);
        assert_eq!(size_bucket(8), 0);
        assert_eq!(size_bucket(9), 1);
        assert_eq!(size_bucket(16), 1);
        assert_eq!(size_bucket(17), 2);
        for b in 0..SITE_SIZE_BUCKETS - 1 {
            let limit = size_bucket_limit(b);
            assert_eq!(size_bucket(limit), b, "limit of {b}");
            assert_eq!(size_bucket(limit + 1), b + 1, "past the limit of {b}");
        }
        assert_eq!(size_bucket_limit(SITE_SIZE_BUCKETS - 2), 1 << 21);
        assert_eq!(size_bucket(u64::MAX), SITE_SIZE_BUCKETS - 1);
        assert_eq!(size_bucket_limit(SITE_SIZE_BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn stack_hash_is_never_zero_and_order_matters() {
        assert_ne!(hash_frames(&[]), 0);
        assert_ne!(hash_frames(&[1, 2]), hash_frames(&[2, 1]));
    }

    #[test]
    fn header_fits_in_a_few_pages() {
        const { assert!(HEADER_MAPPING_BYTES <= 48 * PAGE_SIZE) };
        assert_eq!(offsets::VERSION, 8);
    }
}
