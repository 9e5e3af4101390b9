//! `SIGINT` and `SIGTERM` during a snapshot: a flag, not a death.
//!
//! Killed by the default action mid-capture, we would leave the temporary
//! core behind (hundreds of MB) and, worse, every thread we seized would
//! stay stopped until the kernel noticed we were gone. So the handler
//! [`catch`] installs only stores the signal's number in an atomic (the one
//! thing a handler may safely do), and the capture calls [`check`] between
//! its steps and inside its copy loops. Once it fails, the error unwinds
//! through the guards that already clean up on any error: `World` detaches
//! every thread and `OutputFile` removes its temporary file.
//!
//! The handler is installed without `SA_RESTART`, so a blocking system call
//! returns `EINTR` and the loop around it reaches the next check soon.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::Error;

/// The signal that asked us to stop, or 0.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only the first signal counts: it is the one we report.
    let _ = PENDING.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// The signals a snapshot turns into [`Error::Interrupted`].
const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Makes `SIGINT` and `SIGTERM` interrupt a snapshot cleanly (see the
/// module documentation) for the rest of this process's life.
pub fn catch() {
    for sig in SIGNALS {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `sa` is fully initialised (zeroed, then the
        // handler and an empty mask set) before sigaction reads it.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Fails with [`Error::Interrupted`] once a caught signal has arrived.
pub(crate) fn check(pid: i32) -> Result<(), Error> {
    match PENDING.load(Ordering::SeqCst) {
        0 => Ok(()),
        signal => Err(Error::Interrupted { pid, signal }),
    }
}

/// Waits until a caught signal arrives (the test seam `pause-after-stop`).
///
/// The signals are blocked while we look at the flag and unblocked only
/// inside `sigsuspend`, atomically, so one that lands between the look and
/// the wait is not lost.
pub(crate) fn wait() {
    // SAFETY: every sigset_t is initialised by sigemptyset or
    // pthread_sigmask before it is read, and all point to locals that
    // outlive the calls.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        for sig in SIGNALS {
            libc::sigaddset(&mut block, sig);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        let mut open = old;
        for sig in SIGNALS {
            libc::sigdelset(&mut open, sig);
        }
        while PENDING.load(Ordering::SeqCst) == 0 {
            libc::sigsuspend(&open);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// `SIGTERM`, `SIGINT`, … for a message.
pub(crate) fn name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}
