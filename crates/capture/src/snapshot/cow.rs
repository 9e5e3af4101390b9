//! A still image of a running process's memory: a child forked inside it
//! (through [`crate::inject`]) while every thread is stopped. The kernel
//! keeps the child's pages as they were at the fork, copy-on-write, while
//! the target runs on; we read them from the child at leisure.
//!
//! The child is made with `clone(flags = 0)`: no `SIGCHLD` when it dies
//! (the target's handlers never see it) and waitable only with `__WALL`,
//! so the target's own `wait` calls never return it. It starts stopped and
//! traced by us and never runs a single instruction of user code. When we
//! are done we kill it; as its tracer we collect its death, and it is then
//! a zombie of the target's, which we reap by one more injected call
//! (`wait4`) in one briefly stopped thread of the target.

use std::io;
use std::time::{Duration, Instant};

use super::ptrace::{Thread, GREGS_BYTES};
use crate::inject;

/// The frozen copy. Dropping it ends it (see the module documentation).
pub(crate) struct Image {
    target: i32,
    child: i32,
}

/// Why the copy-on-write method cannot be used for `pid`, checked before
/// the stop; `None` when it can.
pub(crate) fn unavailable(pid: i32) -> Option<String> {
    // The filter is per thread: any thread may be the one we would use.
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let filtered = tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .is_some_and(|v| v.trim() != "0")
    });
    filtered.then(|| {
        "the process has a seccomp filter, and a fork it forbids could kill it".to_string()
    })
}

impl Image {
    /// Forks `pid` in one of its stopped `threads`. `Err` says why not, in
    /// a few words (the snapshot then falls back to stop-and-copy).
    pub fn fork(pid: i32, threads: &[Thread]) -> Result<Image, String> {
        let t = threads
            .iter()
            .find(|t| {
                inject::usable(t.stop_signal, t.pending_signal) && t.regs.len() == GREGS_BYTES
            })
            .ok_or(
                "no thread is in a plain ptrace stop (job-control stopped, or a 32-bit process)",
            )?;
        let insn = inject::find_syscall_insn(t.tid, &t.regs)
            .ok_or("no syscall instruction found in its executable mappings")?;
        // clone(flags = 0: no exit signal, nothing shared; stack 0: the
        // child's copy of ours; no tid pointers, no tls).
        let done = inject::syscall(pid, t.tid, &t.regs, insn, libc::SYS_clone as u64, [0; 6])
            .map_err(|e| format!("injecting clone failed: {e}"))?;
        match (done.ret, done.child) {
            (r, Some(child)) if r > 0 => Ok(Image { target: pid, child }),
            (r, _) if r < 0 => Err(format!(
                "clone in the process failed: {}{}",
                io::Error::from_raw_os_error(-r as i32),
                match -r as i32 {
                    libc::EAGAIN => " (a pids limit?)",
                    libc::ENOMEM => " (no memory for its page tables)",
                    _ => "",
                }
            )),
            (r, _) => Err(format!("clone returned {r} but no child was reported")),
        }
    }

    /// The child's pid: read its memory (`process_vm_readv`, `/proc/PID/mem`).
    pub fn pid(&self) -> i32 {
        self.child
    }

    /// Ends the image; reports a zombie left behind in one line.
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if self.child == 0 {
            return;
        }
        let child = std::mem::take(&mut self.child);
        // SAFETY: kill and waitpid take no pointers but `status`.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(child, &mut status, libc::__WALL) < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
        if let Err(e) = reap_in(self.target, child) {
            eprintln!(
                "leaktrail: the snapshot's copy {child} stays a zombie of process {} until it exits ({e})",
                self.target
            );
        }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Makes `pid` reap its dead child `child`: stops one thread, injects
/// `wait4(child, NULL, __WALL, NULL)`, lets it go.
fn reap_in(pid: i32, child: i32) -> Result<(), String> {
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut last = String::from("no thread to use");
    for tid in tids {
        match reap_with(pid, tid, child) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn reap_with(pid: i32, tid: i32, child: i32) -> Result<(), String> {
    // SAFETY: SEIZE and INTERRUPT take no pointers.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) } != 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    let detach = |sig: i32| {
        // SAFETY: as above; data is the signal to deliver.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, sig as usize) };
    };
    // SAFETY: as above.
    unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) };
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == tid {
            break status;
        }
        if r < 0 || Instant::now() > deadline {
            detach(0);
            return Err("its thread did not stop".into());
        }
        std::thread::sleep(Duration::from_micros(50));
    };
    if !libc::WIFSTOPPED(status) {
        return Err("it exited".into());
    }
    let sig = libc::WSTOPSIG(status);
    let event = (status >> 16) & 0xff;
    if event == 0 && sig != libc::SIGTRAP {
        // A signal got in first: hand it back and try another thread.
        detach(sig);
        return Err("a signal was on its way in".into());
    }
    let regs = inject::get_regs(tid).map_err(|e| {
        detach(0);
        e.to_string()
    })?;
    let result = inject::find_syscall_insn(tid, &regs)
        .ok_or_else(|| "no syscall instruction".to_string())
        .and_then(|insn| {
            inject::syscall(
                pid,
                tid,
                &regs,
                insn,
                libc::SYS_wait4 as u64,
                [child as u64, 0, libc::__WALL as u64, 0, 0, 0],
            )
            .map_err(|e| e.to_string())
        });
    detach(0);
    match result {
        Ok(r) if r.ret == child as i64 => Ok(()),
        Ok(r) => Err(format!("wait4 returned {}", r.ret)),
        Err(e) => Err(e),
    }
}
