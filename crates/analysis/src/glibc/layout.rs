//! Offsets and sizes of glibc malloc's structures on x86_64, as
//! `ptype /o` prints them for glibc 2.36 (and 2.35 to 2.39, which share
//! them): `struct malloc_state`, `struct malloc_par` (`mp_`), `heap_info`,
//! `tcache_perthread_struct` and the chunk header.

/// `sizeof (struct malloc_state)`.
pub const ARENA_SIZE: u64 = 2200;
/// `malloc_state.mutex` (an `int`; nonzero while a thread holds it).
pub const ARENA_MUTEX: u64 = 0;
/// `malloc_state.fastbinsY[0]`: 10 heads of chunk pointers.
pub const ARENA_FASTBINS: u64 = 16;
/// How many fastbins.
pub const NFASTBINS: u64 = 10;
/// `malloc_state.top`.
pub const ARENA_TOP: u64 = 96;
/// `malloc_state.bins[0]`: 127 pairs (fd, bk).
pub const ARENA_BINS: u64 = 112;
/// Bins 1 (unsorted) to 127.
pub const NBINS: u64 = 128;
/// `malloc_state.next`: the circular list of arenas from `main_arena`.
pub const ARENA_NEXT: u64 = 2160;

/// `sizeof (struct malloc_par)`.
pub const MP_SIZE: u64 = 136;
/// `mp_.n_mmaps` (an `int`).
pub const MP_N_MMAPS: u64 = 60;
/// `mp_.sbrk_base`: where the main arena's brk heap begins.
pub const MP_SBRK_BASE: u64 = 96;
/// `mp_.tcache_bins`.
pub const MP_TCACHE_BINS: u64 = 104;
/// `mp_.tcache_count`.
pub const MP_TCACHE_COUNT: u64 = 120;

/// `sizeof (heap_info)`; a non-main heap's first chunk follows it (and, in
/// an arena's first heap, the arena's `malloc_state` first).
pub const HEAP_INFO_SIZE: u64 = 48;
/// `heap_info.prev`.
pub const HEAP_INFO_PREV: u64 = 8;
/// `heap_info.size`.
pub const HEAP_INFO_SIZE_FIELD: u64 = 16;
/// `HEAP_MAX_SIZE` on 64-bit: non-main heaps are aligned to it.
pub const HEAP_MAX: u64 = 64 << 20;

/// `sizeof (tcache_perthread_struct)`: `uint16_t counts[64]` then
/// `tcache_entry *entries[64]`.
pub const TCACHE_SIZE: u64 = 640;
/// Where `entries` begins.
pub const TCACHE_ENTRIES: u64 = 128;
/// `TCACHE_MAX_BINS`.
pub const TCACHE_BINS: u64 = 64;

/// A chunk's header: `prev_size`, `size` (with the flag bits); user memory
/// starts after it.
pub const CHUNK_HDR: u64 = 16;
/// `MINSIZE`.
pub const MIN_CHUNK: u64 = 32;
/// `MALLOC_ALIGNMENT`.
pub const ALIGN: u64 = 16;
/// `PREV_INUSE`.
pub const PREV_INUSE: u64 = 1;
/// `IS_MMAPPED`.
pub const IS_MMAPPED: u64 = 2;
/// The three flag bits.
pub const FLAGS: u64 = 7;
/// The page size mmapped chunks are rounded to.
pub const PAGE: u64 = 4096;

/// `bin_at (m, i)`: the fake chunk whose `fd`/`bk` are bin `i`'s head.
pub fn bin_at(arena: u64, i: u64) -> u64 {
    arena + ARENA_BINS + (i - 1) * 16 - 16
}

/// Safe-linking's `REVEAL_PTR`: a tcache or fastbin `next` stored at `pos`.
pub fn reveal(pos: u64, stored: u64) -> u64 {
    (pos >> 12) ^ stored
}

/// The chunk size malloc gives a request of `n` bytes (`request2size`).
pub fn request2size(n: u64) -> u64 {
    ((n + 8 + ALIGN - 1) & !(ALIGN - 1)).max(MIN_CHUNK)
}
