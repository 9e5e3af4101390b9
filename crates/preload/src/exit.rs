//! Handing control to the supervisor before the program tears down.
//!
//! When `leaktrail run` launched us, it passed one end of a socket pair in
//! `LEAKTRAIL_SUPERVISOR_FD`. At init we write `start PID 0 HEADER_ADDR`
//! and wait, so the supervisor can set up its recording before the
//! program's own code runs. At the program's end (return from `main`, or
//! `exit`) and before any `atexit` handler or destructor runs, we write one
//! line, `exit PID STATUS HEADER_ADDR`, and block until the supervisor
//! answers with one byte: by then it has captured the final state (every
//! block still live at exit), as valgrind and LeakSanitizer report it.
//! `_exit` and fatal signals skip this, as they skip `atexit`.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use leaktrail_format::handover::{self, ExitNotice, Notice};

use crate::hooks::next_symbol;
use crate::tracer::SUPERVISOR_FD;
use crate::{region, sys};

static DONE: AtomicBool = AtomicBool::new(false);
static REAL_MAIN: AtomicUsize = AtomicUsize::new(0);
static REAL_START: AtomicUsize = AtomicUsize::new(0);
static REAL_EXIT: AtomicUsize = AtomicUsize::new(0);

type MainFn = unsafe extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) -> c_int;
type StartMainFn = unsafe extern "C" fn(
    MainFn,
    c_int,
    *mut *mut c_char,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
) -> c_int;

/// Tells the supervisor the program is ending and waits for its go-ahead.
pub fn hand_over(status: c_int) {
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Some(h) = region::header() {
        h.exit_tid.store(sys::gettid(), Ordering::Release);
    }
    tell_and_wait(Notice::Exit, status);
}

/// Tells the supervisor the tracer is ready, before the program's own code
/// runs, and waits until it has set up its recording (so that a recording
/// exists before the program can do anything worth recording).
pub fn announce_start() {
    tell_and_wait(Notice::Start, 0);
}

/// Writes the [`Notice`] line to the supervisor and waits for its one-byte
/// answer. Nothing happens without a supervisor.
fn tell_and_wait(kind: fn(ExitNotice) -> Notice, status: c_int) {
    // Not if the program closed our socket (daemons close every
    // descriptor): the number may now be one of its own files.
    let Some(fd) = crate::tracer::linked() else {
        return;
    };
    let notice = kind(ExitNotice {
        pid: sys::getpid() as i32,
        status,
        header_addr: region::header().map_or(0, |h| h as *const _ as u64),
    });
    let mut line = [0u8; handover::LINE_BYTES];
    sys::send_all(fd, notice.encode(&mut line));
    crate::tracer::await_answer(fd);
}

unsafe extern "C" fn main_then_hand_over(
    argc: c_int,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
) -> c_int {
    // SAFETY: REAL_MAIN holds the program's main, stored just before.
    let main: MainFn = unsafe { core::mem::transmute(REAL_MAIN.load(Ordering::Acquire)) };
    // SAFETY: calling the program's main with its own arguments.
    let status = unsafe { main(argc, argv, envp) };
    hand_over(status);
    status
}

/// `__libc_start_main`: wraps `main` so that returning from it hands over
/// before `exit` runs any handler.
///
/// # Safety
/// Called by the program's `_start` only.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __libc_start_main(
    main: MainFn,
    argc: c_int,
    argv: *mut *mut c_char,
    init: *mut c_void,
    fini: *mut c_void,
    rtld_fini: *mut c_void,
    stack_end: *mut c_void,
) -> c_int {
    let f = next_symbol(&REAL_START, c"__libc_start_main");
    // SAFETY: `f` is libc's __libc_start_main.
    let real: StartMainFn = unsafe { core::mem::transmute(f) };
    let wrapped: MainFn = if SUPERVISOR_FD.load(Ordering::Relaxed) >= 0 {
        REAL_MAIN.store(main as usize, Ordering::Release);
        main_then_hand_over
    } else {
        main
    };
    // SAFETY: forwarding _start's arguments with (possibly) our main.
    unsafe { real(wrapped, argc, argv, init, fini, rtld_fini, stack_end) }
}

/// `exit(3)`: hands over first.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    hand_over(status);
    let f = next_symbol(&REAL_EXIT, c"exit");
    if f == 0 {
        // SAFETY: no libc exit to call: leave without handlers.
        unsafe { libc::_exit(status) }
    }
    // SAFETY: `f` is libc's exit.
    let real: unsafe extern "C" fn(c_int) -> ! = unsafe { core::mem::transmute(f) };
    // SAFETY: forwarding the caller's status.
    unsafe { real(status) }
}
