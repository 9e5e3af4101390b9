//! Per-thread state of the tracer.
//!
//! Kept in `const`-initialised, zero-filled thread-locals without
//! destructors, so that access never allocates, never registers a
//! destructor and stays valid through thread teardown (glibc frees a
//! thread's TLS only after its last `free`).
//!
//! Small on purpose: glibc carves every thread's static TLS out of its
//! stack, and refuses `pthread_create` when the requested stack cannot hold
//! the guard, the static TLS and 2 KiB. With a 10 KiB block here, a thread
//! created with `PTHREAD_STACK_MIN` (16 KiB) failed with EINVAL under the
//! tracer (a test now checks it). The unwind-rule cache is therefore
//! process-wide (`unwind::shared`), and only the stack memo stays here.

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::region::Caller;
use crate::sample::Sampler;
use crate::selfmaps;
use crate::sys;
use crate::unwind::Memo;

/// Everything one thread keeps. The fields every hook touches come first,
/// on the block's first cache line (`repr(C)` keeps the order, the
/// alignment the line): as Rust laid them out, behind the 2 KiB memo, a
/// hook touched two lines, each a miss in a program that evicts ours.
#[repr(C, align(64))]
pub struct ThreadState {
    inside: Cell<bool>,
    tid: Cell<u32>,
    tid_generation: Cell<u64>,
    last_alloc: Cell<u64>,
    pending: Cell<i64>,
    /// Bytes to this thread's next sample (`run --sample`).
    pub sampler: Sampler,
    /// This thread's class counters when sampling: 0 before it claimed a
    /// slot, 1 when none was left (see [`leaktrail_format::Counters::thread_classes`]).
    pub class_slot: Cell<u64>,
    stack_top: Cell<u64>,
    stack_low: Cell<u64>,
    /// Generation of the module table the memo was filled under.
    pub generation: Cell<u64>,
    /// The previous stack this thread captured.
    pub memo: UnsafeCell<Memo>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            inside: Cell::new(false),
            tid: Cell::new(0),
            tid_generation: Cell::new(0),
            stack_top: Cell::new(0),
            stack_low: Cell::new(0),
            last_alloc: Cell::new(0),
            pending: Cell::new(0),
            generation: Cell::new(0),
            memo: UnsafeCell::new(Memo::new()),
            sampler: Sampler::new(),
            class_slot: Cell::new(0),
        }
    };
}

/// Where this library's thread-locals sit from the thread pointer (the
/// initial-exec model's offset), when they are in glibc's static TLS: 0 if
/// not known. Rust reaches a cdylib's thread-locals through
/// `__tls_get_addr` (general dynamic: a call into the loader, its PLT
/// stub and page, twice per malloc+free pair); a library loaded at start-up
/// (`LD_PRELOAD`) has its block at the same offset in every thread, so
/// [`init_fast_tls`] measures it once and [`state`] adds it to `%fs:0`.
/// Loaded late (`leaktrail attach`, `dlopen`), the block is allocated per
/// thread on demand: the offset stays 0 and access goes the general way.
fn tls_offset() -> &'static AtomicUsize {
    &crate::hot::HOT.tls_offset
}

/// The thread pointer (`%fs:0` holds its own address, x86_64's TCB rule).
#[inline(always)]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reads the TCB's self pointer, which every x86_64 thread has;
    // no memory is written.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp,
            options(nostack, readonly, preserves_flags, pure))
    };
    tp
}

/// Measures the offset ([`tls_offset`]). Called at init by a library loaded at
/// start-up only (whose thread-locals glibc puts in static TLS). Checks
/// that the block is where static TLS is, just below the thread pointer
/// in the same mapping (a block glibc allocated on demand, for a copy of
/// the library loaded late under a name `attach` did not recognise, is in
/// the heap): otherwise the offset stays unknown.
pub fn init_fast_tls() {
    const STATIC_TLS_MAX: usize = 1 << 20;
    let Ok(p) = THREAD.try_with(|s| s as *const ThreadState as usize) else {
        return;
    };
    let tp = thread_pointer();
    let below = tp.wrapping_sub(p);
    let same_mapping = selfmaps::mapping_containing(tp as u64)
        .is_some_and(|(start, end)| start <= p as u64 && (p as u64) < end);
    if below != 0 && below < STATIC_TLS_MAX && same_mapping {
        tls_offset().store(p.wrapping_sub(tp), Ordering::Relaxed);
    }
}

/// This thread's state, if its TLS is reachable.
#[inline(always)]
fn state() -> Option<&'static ThreadState> {
    let offset = tls_offset().load(Ordering::Relaxed);
    if offset != 0 {
        let p = thread_pointer().wrapping_add(offset) as *const ThreadState;
        // SAFETY: static TLS is at the same offset from every thread's
        // pointer (what the initial-exec model relies on), and it lives as
        // long as the thread; `THREAD` is const-initialised, so the block
        // holds a valid ThreadState from the thread's first instruction.
        return Some(unsafe { &*p });
    }
    // SAFETY: the reference does not outlive the thread (the callers use
    // it within one hook), and `THREAD` has no destructor: its storage
    // stays valid through the thread's teardown.
    THREAD
        .try_with(|s| unsafe { &*(s as *const ThreadState) })
        .ok()
}

/// Bumped in the child after `fork`, so cached thread ids are refreshed.
/// Starts at 1: a thread's cached generation starts at 0 (zeroed TLS).
pub static FORK_GENERATION: AtomicU64 = AtomicU64::new(1);
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

    /// This thread as the live table's count of temporary allocations
    /// sees it.
    #[inline]
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            tid: self.tid(),
            last_alloc: &self.last_alloc,
            pending: &self.pending,
        }
    }

    /// The bounds `(low, top)` of the stack `sp` is on, for bounding every
    /// read the unwinder makes and for knowing how much stack is left below
    /// `sp`; `low` is 0 when unknown (the main thread's stack grows on
    /// demand). `None` if `sp` is in no mapping.
    ///
    /// The thread's own stack is found once per thread from
    /// `/proc/thread-self/maps` (read with a small buffer on the stack, about
    /// 100 µs): a thread's stack is its own mapping, with glibc's
    /// descriptor and static TLS at the top and the guard page below as a
    /// mapping of its own. A stack that is not the thread's own (a
    /// `swapcontext` coroutine's in the heap or in a mapping of its own, an
    /// alternate signal stack) is bounded by the mapping that holds `sp`,
    /// looked up each time and never cached: such a stack may be freed
    /// and its memory reused for anything.
    pub fn stack_bounds(&self, sp: u64) -> Option<(u64, u64)> {
        const MAX_STACK: u64 = 1 << 30;
        let plausible =
            |low: u64, top: u64| top > sp && top - sp < MAX_STACK && (low == 0 || sp >= low);
        let (cached_low, cached_top) = (self.stack_low.get(), self.stack_top.get());
        if plausible(cached_low, cached_top) {
            return Some((cached_low, cached_top));
        }
        if cached_top == 0 {
            // Before init (a library constructor's allocation) the main
            // thread is the one whose id is the pid, its stack top unknown.
            let main = match MAIN_TID.load(Ordering::Relaxed) {
                0 => sys::getpid() as u64,
                tid => tid,
            };
            let own = if self.tid() as u64 == main {
                match MAIN_STACK_TOP.load(Ordering::Relaxed) {
                    0 => selfmaps::mapping_containing(sp).map(|(_, top)| (0, top)),
                    top => Some((0, top)),
                }
            } else {
                selfmaps::mapping_containing(sp)
            };
            if let Some((low, top)) = own.filter(|&(low, top)| plausible(low, top)) {
                self.stack_low.set(low);
                self.stack_top.set(top);
                return Some((low, top));
            }
        }
        foreign_stack(sp)
    }
}

/// The mapping holding `sp`, on a stack that is not the thread's own.
#[cold]
fn foreign_stack(sp: u64) -> Option<(u64, u64)> {
    selfmaps::mapping_containing(sp)
}

/// Runs `f` with this thread's state marked as inside the tracer. Returns
/// `None` without running it if the thread is already inside (a nested or
/// signal-handler allocation) or its TLS is unavailable.
#[inline]
pub fn enter<R>(f: impl FnOnce(&ThreadState, &Inside<'_>) -> R) -> Option<R> {
    let state = state()?;
    if state.inside.replace(true) {
        return None;
    }
    let guard = Inside { state };
    Some(f(state, &guard))
}

/// Whether this thread's sampler takes the new block of `size` bytes at
/// `addr`, at `rate`; if not, counts it ([`count_unsampled`]) in the same
/// TLS access. Inside the tracer too (a block must be sampled or counted
/// either way); a thread whose TLS is gone counts the block.
#[inline]
pub fn sampled(hdr: &leaktrail_format::Header, addr: u64, size: u64, rate: u64) -> bool {
    match state() {
        Some(state) => {
            if state.sampler.take(size, rate) {
                return true;
            }
            count_in(state, hdr, addr, crate::next::usable_size(addr), true);
            false
        }
        None => {
            crate::region::count_unsampled(hdr, addr, crate::next::usable_size(addr), true);
            false
        }
    }
}

/// Counts an unsampled block of `usable` bytes at `addr` (`alloc`: its
/// allocation, else its free) in this thread's own class counters, with
/// plain loads and stores (the thread is their only writer); in the
/// region's shared ones when the thread has no slot or no TLS left.
#[inline]
pub fn count_unsampled(hdr: &leaktrail_format::Header, addr: u64, usable: u64, alloc: bool) {
    match state() {
        Some(state) => count_in(state, hdr, addr, usable, alloc),
        None => crate::region::count_unsampled(hdr, addr, usable, alloc),
    }
}

#[inline]
fn count_in(
    state: &ThreadState,
    hdr: &leaktrail_format::Header,
    addr: u64,
    usable: u64,
    alloc: bool,
) {
    let slot = match state.class_slot.get() {
        0 => {
            let s = crate::sample::claim_slot(hdr);
            state.class_slot.set(s);
            s
        }
        s => s,
    };
    if slot <= 1 {
        crate::region::count_unsampled(hdr, addr, usable, alloc);
        return;
    }
    let class = leaktrail_format::class_of(usable).index() as u64;
    let c = (slot + class * core::mem::size_of::<leaktrail_format::ClassCounters>() as u64)
        as *const leaktrail_format::ClassCounters;
    // SAFETY: `slot` is this thread's array of NUM_CLASSES ClassCounters
    // in a region mapping that is never unmapped, and `class` is below
    // NUM_CLASSES.
    let c = unsafe { &*c };
    let add = |counter: &AtomicU64, delta: u64| {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        )
    };
    if alloc {
        add(&c.live_count, 1);
        add(&c.live_bytes, usable);
        add(&c.allocs, 1);
    } else {
        add(&c.live_count, u64::MAX);
        add(&c.live_bytes, usable.wrapping_neg());
        add(&c.frees, 1);
    }
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
