//! The words every hook reads, on one cache line.
//!
//! A malloc or free hook reads the tracer's lifecycle, the region's
//! address, the sampling rate and the offset of its thread-locals before it
//! does anything else. As separate statics the linker spread them over
//! four cache lines of our bss, and a program with a large working set of
//! its own (cc1, git) evicts our lines between two of its calls: each line
//! is then a miss on every hook. Kept together, they cost one.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

use leaktrail_format::{Header, Lifecycle};

/// See the module documentation. Each field says whose it is.
#[repr(C, align(64))]
pub struct Hot {
    /// The tracer's lifecycle before the region exists, and a copy of the
    /// region's afterwards ([`crate::tracer`]).
    pub lifecycle: AtomicU32,
    /// The region's header, once created ([`crate::region::header`]).
    pub header: AtomicPtr<Header>,
    /// Mean bytes between sampled blocks, 0 for the full audit
    /// ([`crate::sample::rate`]).
    pub sample_rate: AtomicU64,
    /// Where the thread-locals sit from the thread pointer, 0 if unknown
    /// ([`crate::thread`]).
    pub tls_offset: AtomicUsize,
}

/// The one instance.
pub static HOT: Hot = Hot {
    lifecycle: AtomicU32::new(Lifecycle::Uninitialised as u32),
    header: AtomicPtr::new(ptr::null_mut()),
    sample_rate: AtomicU64::new(0),
    tls_offset: AtomicUsize::new(0),
};

const _: () = assert!(core::mem::size_of::<Hot>() == 64);
