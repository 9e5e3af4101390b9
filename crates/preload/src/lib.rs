//! `libleaktrail_preload.so`: the tracer.
//!
//! Loaded with `LD_PRELOAD` (usually by `leaktrail run`), it interposes the
//! malloc family and anonymous `mmap`, and keeps an *audit region* in the
//! process's own memory: every live buffer with its size, allocation
//! stack, thread and time; interned stacks; per-size-class counters. The
//! layout is `leaktrail_format`'s. Because the region is ordinary process
//! memory, every core file of the process carries it, as libumem's audit
//! buffers were carried in Solaris cores.
//!
//! Main parts:
//! * [`hooks`]: the exported symbols, forwarding to [`next`]: the
//!   allocator the program uses (glibc's, jemalloc's, tcmalloc's, …).
//! * [`operators`]: C++'s `operator new` and `delete` (defined in C), for
//!   allocators that define their own.
//! * [`tracer`]: init, configuration, lifecycle, the record path, fork.
//! * [`region`] and [`stacks`]: the tables in the region.
//! * [`unwind`]: the hybrid CFI / frame-pointer unwinder.
//! * [`exit`]: the hand-over to the supervisor at the program's end.
//! * `exec`: the variadic `execl`, `execlp` and `execle` (x86-64).
//! * [`detour`]: an allocator linked into the executable, diverted to
//!   our hooks at its functions' entries.
//! * [`attach`]: loaded late by `leaktrail attach`: the malloc family
//!   redirected in every module's GOT, and back at detach.
//!
//! # Constraints on the hook path
//!
//! Hooks run as if in a signal handler: no allocation (fixed buffers on the
//! stack), no lock the loader or allocator may hold (only our own shard
//! locks, never held across a call out), no `dl_iterate_phdr` (the module
//! table is rebuilt at init, `dlopen` and `dlclose`), no panics (`panic =
//! "abort"`, no `unwrap`). A thread already inside the tracer (a nested
//! allocation, a signal handler) passes straight through. When the region
//! cannot grow, recording stops, drops are counted, and one line goes to
//! stderr; the program goes on.
//!
//! # Configuration (environment, read once at load)
//!
//! The names are defined once, in [`leaktrail_format::handover`].
//!
//! * `LEAKTRAIL_UNWIND`: `dwarf` (default), `fp` or `none`.
//! * `LEAKTRAIL_DEPTH`: frames per stack, default 64, at most 256.
//! * `LEAKTRAIL_SAMPLE`: mean bytes between sampled blocks (see
//!   [`sample`]); absent or 0, every block is recorded.
//!   `LEAKTRAIL_SAMPLE_SEED` fixes the sampler's random numbers.
//! * `LEAKTRAIL_DISABLE=1`: load but record nothing.
//! * `LEAKTRAIL_REGION_LIMIT`: most bytes the region may occupy.
//! * `LEAKTRAIL_SUPERVISOR_FD`: set by `leaktrail run` (see [`exit`]).
//! * `LEAKTRAIL_HANDOVER_DEADLINE_MS`: how long a hand-over waits for
//!   `leaktrail run`'s answer (10 minutes by default).
#![deny(missing_docs)]

pub mod allocator;
pub mod attach;
pub mod detour;
#[cfg(target_arch = "x86_64")]
pub mod exec;
pub mod exit;
pub mod hooks;
pub mod hot;
pub mod next;
pub mod operators;
pub mod preinit;
pub mod region;
pub mod sample;
pub mod selfmaps;
pub mod stacks;
pub mod sys;
pub mod thread;
pub mod tracer;
pub mod unwind;

/// Runs [`tracer::init`] when the loader initialises the library, before
/// the program's own constructors.
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = {
    extern "C" fn init() {
        tracer::init();
    }
    init
};
