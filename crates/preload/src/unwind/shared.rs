//! The process-wide second level of the unwind-rule cache.
//!
//! Each thread's own cache is small (it lives in static TLS, which comes
//! out of every thread's stack); programs with a lot of code (node) miss
//! it often, and a miss evaluates CFI (about a microsecond). This table is
//! shared by all threads without locks: a slot holds the rule and the rule
//! XORed with its key (address, module-table generation, mode), so a slot
//! torn by a concurrent writer reads as a miss rather than a wrong rule.
//! Mapped once at init; lookups before that miss.

use core::sync::atomic::{AtomicU64, Ordering};

use leaktrail_format::UnwindMode;

use crate::sys;
use leaktrail_unwind_core::Rule;

const SLOTS: u64 = 1 << 15;

static TABLE: AtomicU64 = AtomicU64::new(0);

/// Maps the table. Called once, at init.
pub fn init() {
    if let Some(t) = sys::map_anonymous(SLOTS * 16) {
        TABLE.store(t, Ordering::Release);
    }
}

#[inline]
fn key(pc: u64, generation: u64, mode: UnwindMode) -> u64 {
    pc ^ generation.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((mode as u64) << 62)
}

#[inline]
fn slot(table: u64, key: u64) -> (&'static AtomicU64, &'static AtomicU64) {
    let i = (key.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 49) & (SLOTS - 1);
    let p = (table + i * 16) as *const AtomicU64;
    // SAFETY: `i < SLOTS`, the table holds SLOTS pairs of words, and it is
    // never unmapped.
    unsafe { (&*p, &*p.add(1)) }
}

/// The cached rule for `pc`, if any.
#[inline]
pub fn get(pc: u64, generation: u64, mode: UnwindMode) -> Option<Rule> {
    let table = TABLE.load(Ordering::Acquire);
    if table == 0 {
        return None;
    }
    let k = key(pc, generation, mode);
    let (check, value) = slot(table, k);
    let v = value.load(Ordering::Relaxed);
    let c = check.load(Ordering::Relaxed);
    // A rule of 0 (unknown) is stored as such; an empty slot has check 0,
    // which matches only a key of 0, which no code address has.
    (c ^ v == k).then_some(Rule::from_bits(v))
}

/// Caches `rule` for `pc`.
#[inline]
pub fn put(pc: u64, generation: u64, mode: UnwindMode, rule: Rule) {
    let table = TABLE.load(Ordering::Acquire);
    if table == 0 {
        return;
    }
    let k = key(pc, generation, mode);
    let (check, value) = slot(table, k);
    let bits = rule.to_bits();
    value.store(bits, Ordering::Relaxed);
    check.store(k ^ bits, Ordering::Relaxed);
}
