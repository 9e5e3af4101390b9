//! Sampling by bytes (`run --sample RATE`): which blocks keep a record.
//!
//! As tcmalloc and Android's heapprofd do, the allocated bytes are treated
//! as a line on which a Poisson process with mean gap `RATE` drops points;
//! a block is sampled when at least one point falls in it, which happens
//! with probability `1 - exp(-size / RATE)`. Each thread keeps the bytes
//! left to its next point (drawn from an exponential distribution) and a
//! xorshift generator in its TLS: an unsampled allocation costs one
//! subtraction and one compare, no lock, no shared write. The process is
//! memoryless, so after a sampled block the next gap is drawn afresh from
//! the block's end.
//!
//! A sampled block is recorded as in the full audit (stack, time, thread)
//! and marked in [`Filter`], so its free finds it again; an unsampled one
//! is only counted in its size class by the allocator's usable size, at
//! its allocation and at its free (`region::count_unsampled`). Readers
//! weigh each sampled block of `s` bytes by `1 / (1 - exp(-s / RATE))`,
//! which makes every sum over them an unbiased estimate of the full one.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

/// The seed every thread's generator derives from (see [`Sampler`]).
static SEED: AtomicU64 = AtomicU64::new(0);
/// Threads seeded so far: the `n`th thread to allocate gets the seed's
/// `n`th derivation, so a program with a fixed seed and the same order of
/// thread starts samples the same blocks in every run (tests rely on it).
static SEEDED: AtomicU64 = AtomicU64::new(0);

/// Turns sampling on at `rate` bytes (0 leaves it off). Called once, at
/// init, before the region records anything.
pub fn configure(rate: u64, seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    crate::hot::HOT.sample_rate.store(rate, Ordering::Relaxed);
}

/// The rate, when sampling.
#[inline]
pub fn rate() -> Option<u64> {
    match crate::hot::HOT.sample_rate.load(Ordering::Relaxed) {
        0 => None,
        r => Some(r),
    }
}

/// Maps the per-thread class counters of a sampling region (at init).
pub fn map_thread_classes(hdr: &leaktrail_format::Header) {
    use leaktrail_format::{THREAD_CLASS_BYTES, THREAD_CLASS_SLOTS};
    let len = THREAD_CLASS_SLOTS * THREAD_CLASS_BYTES;
    if let Some(table) = crate::region::map(hdr, len) {
        hdr.counters.region_bytes.fetch_add(len, Ordering::Relaxed);
        hdr.counters.thread_classes.store(table, Ordering::Release);
    }
}

/// What one recorded block of `size` bytes adds to its site's counts and
/// to the process's live bytes: `(count, bytes)`. In a full audit, one
/// allocation and its size; while sampling, its weight, the blocks it
/// stands for (in units of [`SAMPLED_COUNT_UNIT`]), and its weighted size,
/// so that the counters hold estimates of the whole heap (format version
/// 3). A function of the size alone: a block's free takes away exactly
/// what its allocation added.
///
/// [`SAMPLED_COUNT_UNIT`]: leaktrail_format::SAMPLED_COUNT_UNIT
#[inline(always)]
pub fn weighed(size: u64) -> (u64, u64) {
    match rate() {
        None => (1, size),
        Some(rate) => weighed_at(size, rate),
    }
}

/// [`weighed`] of a sampled block: rare (one per `rate` bytes), so out of
/// the hooks' path.
#[cold]
#[inline(never)]
fn weighed_at(size: u64, rate: u64) -> (u64, u64) {
    let w = leaktrail_format::sample_weight(size, rate);
    let units = (w * leaktrail_format::SAMPLED_COUNT_UNIT as f64).round();
    let bytes = (w * size as f64).round();
    // Saturating casts: a weight is below `rate`, a size below 2^63.
    (units as u64, bytes as u64)
}

/// A slot of class counters for the calling thread: its address, or 1
/// when the table is missing or full (the thread then counts in the
/// region's shared counters).
#[cold]
pub fn claim_slot(hdr: &leaktrail_format::Header) -> u64 {
    use leaktrail_format::{THREAD_CLASS_BYTES, THREAD_CLASS_SLOTS};
    let table = hdr.counters.thread_classes.load(Ordering::Acquire);
    if table == 0 {
        return 1;
    }
    let n = hdr.counters.thread_slots.fetch_add(1, Ordering::Relaxed);
    if n >= THREAD_CLASS_SLOTS {
        return 1;
    }
    table + n * THREAD_CLASS_BYTES
}

/// One thread's sampler: the bytes left to its next sample and its
/// generator's state (0 until the thread's first allocation).
pub struct Sampler {
    left: Cell<i64>,
    rng: Cell<u64>,
}

impl Sampler {
    /// An unseeded sampler, as zeroed TLS holds it.
    pub const fn new() -> Self {
        Sampler {
            left: Cell::new(0),
            rng: Cell::new(0),
        }
    }

    /// Whether a block of `size` bytes is sampled at `rate`.
    #[inline]
    pub fn take(&self, size: u64, rate: u64) -> bool {
        let size = size.min(i64::MAX as u64 / 2) as i64;
        let left = self.left.get() - size;
        if left > 0 {
            self.left.set(left);
            return false;
        }
        self.crossed(size, rate)
    }

    /// The countdown reached a point (or the thread's first allocation).
    #[cold]
    fn crossed(&self, size: i64, rate: u64) -> bool {
        if self.rng.get() == 0 {
            let n = SEEDED.fetch_add(1, Ordering::Relaxed);
            self.rng
                .set(splitmix(SEED.load(Ordering::Relaxed) ^ splitmix(n)) | 1);
            let first = self.gap(rate) - size;
            if first > 0 {
                self.left.set(first);
                return false;
            }
        }
        self.left.set(self.gap(rate));
        true
    }

    /// An exponentially distributed gap of mean `rate` bytes, at least 1.
    fn gap(&self, rate: u64) -> i64 {
        // xorshift64*: the top 53 bits make a uniform u in (0, 1].
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        let u = (bits + 1) as f64 / (1u64 << 53) as f64;
        let gap = -u.ln() * rate as f64;
        gap.clamp(1.0, (i64::MAX / 4) as f64) as i64
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// SplitMix64's finaliser: spreads a counter or a seed over 64 bits.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A counting filter of the sampled blocks' addresses: a free whose slot
/// counts 0 is of an unsampled block, known without the shard lock or a
/// probe of the live table. Every free reads it, so it is small: 16 Ki
/// four-bit counters in 8 KiB of the library's bss (a table of 32-bit
/// counters, 64 KiB, missed the cache on most frees of a program with a
/// large heap: two thirds of the sampled free's cost in cc1). A counter
/// that reaches 15 stays there (a slot that may always hold a sampled
/// block costs its frees a lookup, never a record). A sampled block's
/// count is added before its allocation returns, so its free, which the
/// program orders after it, sees it.
pub struct Filter;

const FILTER_BITS: u32 = 14;
/// Counters per word.
const PER_WORD: u64 = 16;
/// The counter that no longer counts.
const STUCK: u64 = 15;
static WORDS: [AtomicU64; (1 << FILTER_BITS) / PER_WORD as usize] =
    [const { AtomicU64::new(0) }; (1 << FILTER_BITS) / PER_WORD as usize];

impl Filter {
    /// The word holding `addr`'s counter, and the counter's shift in it.
    #[inline]
    fn slot(addr: u64) -> (&'static AtomicU64, u32) {
        let i = leaktrail_format::hash_addr(addr) >> (64 - FILTER_BITS);
        let word = &WORDS[(i / PER_WORD) as usize % WORDS.len()];
        (word, 4 * (i % PER_WORD) as u32)
    }

    /// Applies `f` to `addr`'s counter (sampled blocks only: rare).
    fn update(addr: u64, f: impl Fn(u64) -> u64) {
        let (word, shift) = Self::slot(addr);
        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            let count = (w >> shift) & 0xf;
            Some((w & !(0xf << shift)) | (f(count) << shift))
        });
    }

    /// `addr` is a sampled block's.
    #[inline]
    pub fn mark(addr: u64) {
        Self::update(addr, |c| (c + 1).min(STUCK));
    }

    /// The sampled block at `addr` is gone.
    #[inline]
    pub fn unmark(addr: u64) {
        Self::update(addr, |c| if c == STUCK { c } else { c.saturating_sub(1) });
    }

    /// Whether `addr` may be a sampled block's (false: it is not).
    #[inline]
    pub fn may_hold(addr: u64) -> bool {
        let (word, shift) = Self::slot(addr);
        (word.load(Ordering::Relaxed) >> shift) & 0xf != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sampled fraction of `n` blocks of `size` bytes at `rate`.
    fn fraction(size: u64, rate: u64, n: u32) -> f64 {
        let s = Sampler::new();
        let taken = (0..n).filter(|_| s.take(size, rate)).count();
        taken as f64 / n as f64
    }

    #[test]
    fn blocks_are_sampled_with_the_poisson_probability() {
        // 200,000 draws: the binomial's standard error is below 0.0012, so
        // 0.006 is five of them.
        for (size, rate) in [(64u64, 1024u64), (1000, 1000), (4096, 1024)] {
            let want = 1.0 - (-(size as f64) / rate as f64).exp();
            let got = fraction(size, rate, 200_000);
            assert!((got - want).abs() < 0.006, "{size}@{rate}: {got} vs {want}");
        }
    }

    #[test]
    fn a_sampled_block_weighs_the_blocks_it_stands_for() {
        let unit = leaktrail_format::SAMPLED_COUNT_UNIT as f64;
        // At 1 KiB, a 1 KiB block is sampled with chance 1 - 1/e.
        let (units, bytes) = weighed_at(1024, 1024);
        let w = 1.0 / (1.0 - (-1.0f64).exp());
        assert_eq!(units, (w * unit).round() as u64);
        assert_eq!(bytes, (w * 1024.0).round() as u64);
        // A small block stands for about rate / size blocks, rate bytes.
        let (units, bytes) = weighed_at(16, 512 * 1024);
        assert!((units as f64 / unit - 32768.5).abs() < 1.0, "{units}");
        assert!((bytes as f64 - 524_296.0).abs() < 2.0, "{bytes}");
        // A block far above the rate is always sampled: it stands for one.
        assert_eq!(weighed_at(1 << 30, 1024), (1024, 1 << 30));
    }

    #[test]
    fn threads_counting_unsampled_blocks_at_once_lose_nothing() {
        use leaktrail_format::{class_of, ClassCounters, NUM_CLASSES, THREAD_CLASS_BYTES};
        for threads in [1u64, 4] {
            let hdr = crate::region::create(leaktrail_format::UnwindMode::None, 1).expect("region");
            map_thread_classes(hdr);
            let per = 5000u64;
            std::thread::scope(|sc| {
                for t in 0..threads {
                    sc.spawn(move || {
                        for i in 0..per {
                            crate::thread::count_unsampled(
                                hdr,
                                0x7f00_0000_0000 + i * 16,
                                1000,
                                true,
                            );
                        }
                        // Frees of another thread's blocks count here too.
                        for i in 0..per / 2 {
                            let addr = 0x7f00_0000_0000 + (t << 26) + i * 16;
                            crate::thread::count_unsampled(hdr, addr, 1000, false);
                        }
                    });
                }
            });
            assert_eq!(hdr.counters.thread_slots.load(Ordering::Relaxed), threads);
            let table = hdr.counters.thread_classes.load(Ordering::Relaxed);
            let class = class_of(1000).index();
            let (mut live, mut bytes, mut allocs, mut frees) = (0u64, 0u64, 0u64, 0u64);
            for slot in 0..threads {
                let base =
                    (table + slot * THREAD_CLASS_BYTES) as *const [ClassCounters; NUM_CLASSES];
                // SAFETY: a slot of the table just mapped; its threads ended.
                let c = unsafe { &(*base)[class] };
                live = live.wrapping_add(c.live_count.load(Ordering::Relaxed));
                bytes = bytes.wrapping_add(c.live_bytes.load(Ordering::Relaxed));
                allocs += c.allocs.load(Ordering::Relaxed);
                frees += c.frees.load(Ordering::Relaxed);
            }
            assert_eq!(
                (allocs, frees),
                (threads * per, threads * per / 2),
                "{threads} threads"
            );
            assert_eq!((live, bytes), (threads * per / 2, threads * per / 2 * 1000));
        }
    }

    #[test]
    fn the_filter_counts_marks() {
        let a = 0x5555_0000_1010;
        assert!(!Filter::may_hold(a));
        Filter::mark(a);
        Filter::mark(a);
        Filter::unmark(a);
        assert!(Filter::may_hold(a));
        Filter::unmark(a);
        assert!(!Filter::may_hold(a));
    }

    #[test]
    fn a_full_counter_sticks_and_its_neighbours_keep_counting() {
        let a: u64 = 0x6666_0000_2020;
        let (word, shift) = Filter::slot(a);
        // An address whose counter shares `a`'s word.
        let b = (1..1 << 20)
            .map(|i| a + 16 * i)
            .find(|&b| {
                let (w, s) = Filter::slot(b);
                core::ptr::eq(w, word) && s != shift
            })
            .expect("a neighbour");
        Filter::mark(b);
        for _ in 0..40 {
            Filter::mark(a);
        }
        for _ in 0..40 {
            Filter::unmark(a);
        }
        assert!(Filter::may_hold(a), "stuck at 15");
        assert!(Filter::may_hold(b));
        Filter::unmark(b);
        assert!(!Filter::may_hold(b), "the neighbour counted one");
        assert!(Filter::may_hold(a));
    }
}
