//! Per-thread state of the tracer.
//!
//! Kept in `const`-initialised thread-locals without destructors, so that
//! access never allocates, never registers a destructor and stays valid
//! through thread teardown (glibc frees a thread's TLS only after its last
//! `free`).

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::selfmaps;
use crate::sys;
use crate::unwind::Memo;

/// Slots in the per-thread unwind-rule cache (a power of two).
pub const RULE_CACHE_SLOTS: usize = 512;

/// One cached unwind rule: the instruction address it was computed for.
#[derive(Clone, Copy)]
pub struct RuleSlot {
    /// Lookup address (0 = empty).
    pub pc: u64,
    /// The packed rule (see `unwind::rule`).
    pub rule: u64,
}

/// Everything one thread keeps.
pub struct ThreadState {
    inside: Cell<bool>,
    tid: Cell<u32>,
    tid_generation: Cell<u64>,
    stack_top: Cell<u64>,
    /// Unwind-rule cache, tagged with the module table's generation.
    pub rules: UnsafeCell<[RuleSlot; RULE_CACHE_SLOTS]>,
    /// Generation of the module table the cache was filled from.
    pub rules_generation: Cell<u64>,
    /// The previous stack this thread captured.
    pub memo: UnsafeCell<Memo>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            inside: Cell::new(false),
            tid: Cell::new(0),
            tid_generation: Cell::new(u64::MAX),
            stack_top: Cell::new(0),
            rules: UnsafeCell::new([RuleSlot { pc: 0, rule: 0 }; RULE_CACHE_SLOTS]),
            rules_generation: Cell::new(u64::MAX),
            memo: UnsafeCell::new(Memo::new()),
        }
    };
}

/// Bumped in the child after `fork`, so cached thread ids are refreshed.
pub static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
/// Top of the main thread's stack (end of `[stack]`), found at init.
pub static MAIN_STACK_TOP: AtomicU64 = AtomicU64::new(0);
/// The main thread's id (the pid), found at init and after fork.
pub static MAIN_TID: AtomicU64 = AtomicU64::new(0);

/// Marks the thread as inside the tracer until dropped; nested allocations
/// (our own, or a signal handler's) see it and pass straight through.
pub struct Inside<'a> {
    state: &'a ThreadState,
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.state.inside.set(false);
    }
}

impl ThreadState {
    /// The kernel thread id, cached (and refreshed after fork).
    pub fn tid(&self) -> u32 {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        if self.tid_generation.get() != generation {
            self.tid.set(sys::gettid());
            self.tid_generation.set(generation);
        }
        self.tid.get()
    }

    /// Where this thread's stack ends (its highest address), for bounding
    /// every read the unwinder makes, or `None` if `sp` is not on a stack
    /// we can bound (an alternate signal stack, a coroutine).
    pub fn stack_top(&self, sp: u64) -> Option<u64> {
        const MAX_STACK: u64 = 1 << 30;
        let plausible = |top: u64| top > sp && top - sp < MAX_STACK;
        let cached = self.stack_top.get();
        if plausible(cached) {
            return Some(cached);
        }
        let top = if self.tid() as u64 == MAIN_TID.load(Ordering::Relaxed) {
            MAIN_STACK_TOP.load(Ordering::Relaxed)
        } else {
            // glibc places a thread's descriptor at the top of its stack
            // mapping, above everything the thread's frames can use.
            // SAFETY: pthread_self only reads the thread pointer.
            unsafe { libc::pthread_self() as u64 }
        };
        let top = if plausible(top) {
            top
        } else {
            // Not a glibc-made stack: ask the kernel which mapping holds sp.
            selfmaps::mapping_containing(sp).map(|(_, end)| end)?
        };
        self.stack_top.set(top);
        Some(top)
    }
}

/// Runs `f` with this thread's state marked as inside the tracer. Returns
/// `None` without running it if the thread is already inside (a nested or
/// signal-handler allocation) or its TLS is unavailable.
#[inline]
pub fn enter<R>(f: impl FnOnce(&ThreadState, &Inside<'_>) -> R) -> Option<R> {
    THREAD
        .try_with(|state| {
            if state.inside.replace(true) {
                return None;
            }
            let guard = Inside { state };
            Some(f(state, &guard))
        })
        .ok()
        .flatten()
}

/// Runs `f` outside any hook (init, dlopen) with nested allocations passing
/// through unrecorded.
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let was = THREAD.try_with(|s| s.inside.replace(true)).unwrap_or(true);
    let r = f();
    if !was {
        let _ = THREAD.try_with(|s| s.inside.set(false));
    }
    r
}
