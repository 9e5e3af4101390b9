//! The fuzz binary's allocator: the system's, counting live bytes, with a
//! cap. An input's run (in a forked child) sets the cap; an allocation
//! that would pass it ends the child at once with a status and one line
//! on the result pipe, so a corrupt count that asks for terabytes is a
//! finding rather than an abort or the OOM killer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The status a child exits with when it passes the cap.
pub const OVER_CAP: i32 = 86;

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static CAP: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Where the over-cap line goes (-1: nowhere).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// Caps live bytes at what is live now plus `bytes`; the over-cap line
/// goes to `fd`. Also resets the peak.
pub fn cap(bytes: usize, fd: i32) {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    REPORT_FD.store(fd, Ordering::Relaxed);
    CAP.store(live.saturating_add(bytes), Ordering::Relaxed);
}

/// Bytes above the live count at the last `cap` call, at the peak.
pub fn peak_since(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Writes `over cap: N bytes asked with M live` without allocating, and
/// exits.
fn over_cap(asked: usize, live: usize) -> ! {
    let mut buf = [0u8; 96];
    let mut n = 0;
    let mut put = |s: &[u8], n: &mut usize| {
        buf[*n..*n + s.len()].copy_from_slice(s);
        *n += s.len();
    };
    let digits = |mut v: usize| {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        (d, i)
    };
    put(b"over the allocation cap: ", &mut n);
    let (d, i) = digits(asked);
    put(&d[i..], &mut n);
    put(b" bytes asked with ", &mut n);
    let (d, i) = digits(live);
    put(&d[i..], &mut n);
    put(b" live\n", &mut n);
    let fd = REPORT_FD.load(Ordering::Relaxed);
    // SAFETY: `buf[..n]` is initialised; write and _exit are async-signal
    // safe and do not allocate.
    unsafe {
        if fd >= 0 {
            libc::write(fd, buf.as_ptr().cast(), n);
        }
        libc::_exit(OVER_CAP)
    }
}

fn add(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    if live > CAP.load(Ordering::Relaxed) {
        over_cap(size, live - size);
    }
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call forwards to `System` with the same layout; the
// counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: the caller's layout contract passes through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            add(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
