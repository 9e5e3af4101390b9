//! Blocks allocated before our constructor ran.
//!
//! The loader runs the constructors of the program's libraries before ours
//! (libstdc++'s allocates its 72,704-byte emergency exception pool there),
//! and they call our hooks already. There is no region yet, so such blocks
//! go into a small static table, with their stacks (unwound through the
//! loader's own module list, as the table of modules does not exist yet
//! either); [`replay`] moves them into the audit at init. Frees before init
//! take them out again. Nothing here allocates; the table's lock is taken
//! only inside the tracer (a signal handler's allocation passes by).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use leaktrail_format::{Header, StackId, UnwindMode};

use crate::region::{spin_lock, spin_unlock, Record};
use crate::{stacks, thread, unwind};

/// Blocks the table holds.
const SLOTS: usize = 128;
/// Frames kept per block.
const FRAMES: usize = 48;

#[derive(Clone, Copy)]
struct Entry {
    addr: u64,
    size: u64,
    tid: u32,
    len: u32,
    frames: [u64; FRAMES],
}

const EMPTY: Entry = Entry {
    addr: 0,
    size: 0,
    tid: 0,
    len: 0,
    frames: [0; FRAMES],
};

struct Table(UnsafeCell<[Entry; SLOTS]>);

// SAFETY: the entries are only touched with LOCK held.
unsafe impl Sync for Table {}

static TABLE: Table = Table(UnsafeCell::new([EMPTY; SLOTS]));
static LOCK: AtomicU32 = AtomicU32::new(0);
/// Set by [`replay`]: from then on the region records everything.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Blocks that did not fit.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// What became of a call before init.
pub enum Outcome {
    /// Handled here.
    Done,
    /// The table is closed: init has replayed it; use the region.
    Closed,
}

/// Runs `f` on the table with its lock held, unless it is closed.
fn with_table<R>(f: impl FnOnce(&mut [Entry; SLOTS]) -> R) -> Option<R> {
    if CLOSED.load(Ordering::Acquire) {
        return None;
    }
    spin_lock(&LOCK);
    let r = if CLOSED.load(Ordering::Acquire) {
        None
    } else {
        // SAFETY: LOCK is held; no other reference to the entries is live.
        Some(f(unsafe { &mut *TABLE.0.get() }))
    };
    spin_unlock(&LOCK);
    r
}

/// Records a block allocated before init.
pub fn alloc(addr: u64, size: u64) -> Outcome {
    if CLOSED.load(Ordering::Acquire) {
        return Outcome::Closed;
    }
    if crate::next::bootstrap::owns(addr as *mut core::ffi::c_void) {
        // Our own bootstrap buffer, not the program's heap.
        return Outcome::Done;
    }
    let done = thread::enter(|state, _inside| {
        let mut frames = [MaybeUninit::<u64>::uninit(); FRAMES];
        let got = unwind::capture(state, UnwindMode::Dwarf, &mut frames);
        let tid = state.tid();
        with_table(|table| {
            let Some(e) = table.iter_mut().find(|e| e.addr == 0) else {
                DROPPED.fetch_add(1, Ordering::Relaxed);
                return;
            };
            *e = Entry {
                addr,
                size,
                tid,
                len: got.len.min(FRAMES) as u32,
                frames: [0; FRAMES],
            };
            for (dst, src) in e.frames.iter_mut().zip(&frames[..got.len.min(FRAMES)]) {
                // SAFETY: `capture` initialised the first `got.len` frames.
                *dst = unsafe { src.assume_init() };
            }
        })
    });
    match done {
        Some(None) => Outcome::Closed,
        // Inside the tracer already: our own init's allocations (or a
        // signal handler's while we ran), unrecorded as after init.
        _ => Outcome::Done,
    }
}

/// Forgets a block freed before init.
pub fn free(addr: u64) -> Outcome {
    if CLOSED.load(Ordering::Acquire) {
        return Outcome::Closed;
    }
    let done = thread::enter(|_state, _inside| {
        with_table(|table| {
            if let Some(e) = table.iter_mut().find(|e| e.addr == addr) {
                e.addr = 0;
            }
        })
    });
    match done {
        Some(None) => Outcome::Closed,
        _ => Outcome::Done,
    }
}

/// At init: moves every block of the table into the region, then runs
/// `start` (which makes the region record) before anyone can use the table
/// again, and closes it. Called inside the tracer.
pub fn replay(hdr: &Header, mode: UnwindMode, start: impl FnOnce()) {
    spin_lock(&LOCK);
    // SAFETY: LOCK is held.
    let table = unsafe { &mut *TABLE.0.get() };
    for e in table.iter_mut().filter(|e| e.addr != 0) {
        let stack = if mode == UnwindMode::None || e.len == 0 {
            StackId::NONE
        } else {
            stacks::intern(hdr, &e.frames[..e.len as usize])
        };
        let rec = Record {
            size: e.size,
            time_ns: 0,
            stack: stack.0,
            tid: e.tid,
        };
        if !crate::tracer::replayed(hdr, e.addr, rec) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        e.addr = 0;
    }
    hdr.counters
        .dropped_allocs
        .fetch_add(DROPPED.load(Ordering::Relaxed), Ordering::Relaxed);
    start();
    CLOSED.store(true, Ordering::Release);
    spin_unlock(&LOCK);
}
