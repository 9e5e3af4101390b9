//! Stopping every thread of a process with ptrace, and letting them go.
//!
//! We use `PTRACE_SEIZE` + `PTRACE_INTERRUPT` rather than `PTRACE_ATTACH`:
//! seizing sends no `SIGSTOP`, so the target never sees a signal it did not
//! ask for, and detaching leaves no stray stop behind. Threads born while we
//! are seizing are caught by listing `/proc/PID/task` again until a pass
//! finds nobody new, and once more after every known thread has stopped (a
//! stopped thread cannot clone, and a finished `clone` is already listed).
//!
//! [`World`] is the guard: dropping it, on success, error or panic, waits
//! for every seized thread to reach its stop and detaches it, re-injecting
//! any signal we intercepted. A thread in uninterruptible sleep (state D)
//! stops only when it leaves it; past a timeout we give up rather than hold
//! the rest of the process frozen, and such a thread stays attached until
//! this process exits (the kernel then lets it go).

use std::collections::HashSet;
use std::io;
use std::time::{Duration, Instant};

use crate::Error;

/// `NT_PRSTATUS`, `NT_PRFPREG` and `NT_X86_XSTATE`: the register sets.
pub(crate) const NT_PRSTATUS: u32 = 1;
pub(crate) const NT_PRFPREG: u32 = 2;
pub(crate) const NT_X86_XSTATE: u32 = 0x202;

/// Bytes of `struct user_regs_struct` on x86_64.
pub(crate) const GREGS_BYTES: usize = 27 * 8;

/// One stopped thread and what we read from it.
#[derive(Clone, Debug)]
pub(crate) struct Thread {
    pub tid: i32,
    /// `user_regs_struct`, [`GREGS_BYTES`] bytes.
    pub regs: Vec<u8>,
    /// `user_fpregs_struct` (512 bytes), if the kernel gave it.
    pub fpregs: Option<Vec<u8>>,
    /// The XSAVE area, if the CPU and kernel have one.
    pub xstate: Option<Vec<u8>>,
    /// The signal the thread was about to receive when it stopped (a
    /// signal-delivery-stop), re-injected on detach; 0 for none.
    pub pending_signal: i32,
    /// The signal that describes the stop: `SIGTRAP` for our interrupt,
    /// `SIGSTOP` and friends if the process was already stopped.
    pub stop_signal: i32,
    state: State,
}

impl Thread {
    /// A stopped thread with registers `regs`, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(tid: i32, regs: Vec<u8>) -> Thread {
        Thread {
            tid,
            regs,
            fpregs: None,
            xstate: None,
            pending_signal: 0,
            stop_signal: libc::SIGTRAP,
            state: State::Stopped,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Seized and interrupted; the stop has not been collected yet.
    Running,
    /// In a ptrace-stop: registers readable, detach allowed.
    Stopped,
    /// Exited (we collected its exit status) or detached.
    Gone,
}

/// Every thread of one process, stopped. Dropping it lets them all go.
pub(crate) struct World {
    pid: i32,
    /// How long threads have to reach their stop.
    timeout: Duration,
    threads: Vec<Thread>,
}

impl World {
    /// Stops every thread of `pid`. The main thread comes first in
    /// [`World::threads`] when it is alive.
    pub fn stop(pid: i32, timeout: Duration) -> Result<World, Error> {
        let mut world = World {
            pid,
            timeout,
            threads: Vec::new(),
        };
        let mut known: HashSet<i32> = HashSet::new();
        loop {
            // Seize until a listing brings nobody new...
            loop {
                let tids = list_tasks(pid, known.is_empty())?;
                let mut fresh = false;
                for tid in tids {
                    if known.insert(tid) && world.seize(tid)? {
                        fresh = true;
                    }
                }
                if !fresh {
                    break;
                }
            }
            // ...collect every stop...
            world.collect()?;
            // ...and check once more that no clone slipped in meanwhile.
            if list_tasks(pid, false)?.iter().all(|t| known.contains(t)) {
                break;
            }
        }
        world.threads.retain(|t| t.state != State::Gone);
        if world.threads.is_empty() {
            return Err(Error::Exited { pid });
        }
        world.threads.sort_by_key(|t| (t.tid != pid, t.tid));
        for t in &mut world.threads {
            read_registers(t)?;
        }
        Ok(world)
    }

    /// The stopped threads, main thread first.
    pub fn threads(&self) -> &[Thread] {
        &self.threads
    }

    /// Takes stopped thread `tid` out of the world: it is no longer
    /// detached by [`World::release`] or on drop, and the caller lets it
    /// go (`cow::Image`, whose fork holds it inside a system call, where a
    /// detach would resume it with the wrong registers).
    pub fn hand_over(&mut self, tid: i32) {
        for t in self.threads.iter_mut().filter(|t| t.tid == tid) {
            t.state = State::Gone;
        }
    }

    /// Detaches every thread now. Fails with [`Error::Exited`] if the
    /// process died while we held it.
    pub fn release(mut self) -> Result<(), Error> {
        let pid = self.pid;
        let lost = self.detach_all();
        if lost {
            Err(Error::Exited { pid })
        } else {
            Ok(())
        }
    }

    /// Seizes and interrupts one thread. `Ok(false)` if it is already gone.
    fn seize(&mut self, tid: i32) -> Result<bool, Error> {
        // SAFETY: PTRACE_SEIZE takes no pointers (addr 0, data = options 0).
        let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) };
        if r != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(false),
                // The kernel refuses a thread that is already exiting with
                // EPERM too: a zombie (a main thread that called
                // pthread_exit) or one released since we listed it. Neither
                // needs stopping.
                Some(libc::EPERM) if is_exiting(self.pid, tid) => Ok(false),
                Some(libc::EPERM) | Some(libc::EACCES) => Err(Error::PermissionDenied {
                    pid: self.pid,
                    // What to do is the error's own hint: said once.
                    what:
                        "ptrace attach refused; a process already traced by a debugger cannot be \
                           attached, and another user's needs CAP_SYS_PTRACE"
                            .into(),
                }),
                _ => Err(Error::Sys {
                    what: format!("ptrace seize of thread {tid} of process {}", self.pid),
                    source: e,
                }),
            };
        }
        self.threads.push(Thread {
            tid,
            regs: Vec::new(),
            fpregs: None,
            xstate: None,
            pending_signal: 0,
            stop_signal: 0,
            state: State::Running,
        });
        // SAFETY: PTRACE_INTERRUPT takes no pointers.
        let r = unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(Error::Sys {
                    what: format!("ptrace interrupt of thread {tid}"),
                    source: e,
                });
            }
            // It died between the two calls; its exit status still comes
            // through waitpid, which `collect` handles.
        }
        Ok(true)
    }

    /// Waits until every seized thread is stopped or gone, for at most
    /// the timeout.
    fn collect(&mut self) -> Result<(), Error> {
        let pid = self.pid;
        match poll_until_stopped(&mut self.threads, self.timeout) {
            None => Ok(()),
            Some(tid) => Err(Error::Sys {
                what: format!(
                    "thread {tid} of process {pid} did not stop within {:.1} s (state {}: \
                     uninterruptible I/O stops only when it ends); nothing was written",
                    self.timeout.as_secs_f64(),
                    task_state(pid, tid)
                ),
                source: io::ErrorKind::TimedOut.into(),
            }),
        }
    }

    /// Lets every thread but `keep` go (the one that will run an injected
    /// call while the others run on). Whether any turned out to be gone.
    pub fn release_all_but(&mut self, keep: i32) -> bool {
        self.detach_where(|tid| tid != keep)
    }

    /// Lets every thread go. Returns whether any thread turned out to be
    /// gone when we tried (the process died under us).
    fn detach_all(&mut self) -> bool {
        self.detach_where(|_| true)
    }

    /// Lets the threads `which` picks go.
    fn detach_where(&mut self, which: impl Fn(i32) -> bool) -> bool {
        let mut dying = Vec::new();
        // Seized and interrupted but not yet collected: detaching needs the
        // stop first, and the interrupt guarantees one, in the end.
        if let Some(tid) = poll_until_stopped(&mut self.threads, self.timeout) {
            // Still in uninterruptible sleep. It stays attached (and, once
            // it stops, stopped) until this process exits and the kernel
            // detaches it.
            eprintln!(
                "leaktrail: thread {tid} of process {} never stopped; it is released when leaktrail exits",
                self.pid
            );
        }
        for t in &mut self.threads {
            if t.state != State::Stopped || !which(t.tid) {
                continue;
            }
            // SAFETY: PTRACE_DETACH takes no pointers; data is the signal
            // to deliver on resume.
            let r = unsafe {
                libc::ptrace(
                    libc::PTRACE_DETACH,
                    t.tid,
                    0usize,
                    t.pending_signal as usize,
                )
            };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    // Only SIGKILL takes a tracee out of its stop without
                    // us: it is dying, and its exit report is ours to reap.
                    dying.push(t.tid);
                } else {
                    eprintln!("leaktrail: detaching thread {} failed: {e}", t.tid);
                }
            }
            t.state = State::Gone;
        }
        // Reap the dying so no traced zombie stays behind. Other threads
        // first: the group leader's report comes only once they are gone,
        // and they wait for us, so the other order would deadlock.
        dying.sort_by_key(|&tid| tid == self.pid);
        for &tid in &dying {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer.
            while unsafe { libc::waitpid(tid, &mut status, libc::__WALL) } < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
        !dying.is_empty()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Collects the stops of every `Running` thread until none is left (`None`)
/// or `limit` has passed (`Some(tid)` of one still running). Polls: there
/// is no waitpid with a timeout, and an interrupted thread stops within
/// microseconds unless it is in uninterruptible sleep.
fn poll_until_stopped(threads: &mut [Thread], limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let mut waiting = None;
        for t in threads.iter_mut().filter(|t| t.state == State::Running) {
            poll_stop(t);
            if t.state == State::Running {
                waiting = Some(t.tid);
            }
        }
        let tid = waiting?;
        if Instant::now() >= deadline {
            return Some(tid);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Collects `t`'s stop (or exit) if it has one to report, and records
/// which; leaves it `Running` otherwise.
fn poll_stop(t: &mut Thread) {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(t.tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == 0 {
            return;
        }
        if r < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            t.state = State::Gone;
            return;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            t.state = State::Gone;
            return;
        }
        if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            t.state = State::Stopped;
            t.stop_signal = sig;
            if event == 0 && sig != libc::SIGTRAP {
                // A signal-delivery-stop got in before our interrupt: we
                // hold the signal and must hand it back on detach.
                t.pending_signal = sig;
            }
            return;
        }
    }
}

fn read_registers(t: &mut Thread) -> Result<(), Error> {
    t.regs = regset(t.tid, NT_PRSTATUS, GREGS_BYTES).map_err(|source| Error::Sys {
        what: format!("reading registers of thread {}", t.tid),
        source,
    })?;
    t.fpregs = regset(t.tid, NT_PRFPREG, 512).ok();
    // The XSAVE area is 576 bytes + extended components; 64 KiB covers AMX.
    t.xstate = regset(t.tid, NT_X86_XSTATE, 64 * 1024).ok();
    Ok(())
}

fn regset(tid: i32, kind: u32, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, which outlives the call; the kernel
    // writes at most `iov_len` bytes and updates it to what it wrote.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            kind as usize,
            &mut iov as *mut libc::iovec,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Thread ids of `pid`. `first` turns a missing process into
/// [`Error::NoSuchProcess`]; later it means the process exited under us.
fn list_tasks(pid: i32, first: bool) -> Result<Vec<i32>, Error> {
    let dir = format!("/proc/{pid}/task");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(if first {
                Error::NoSuchProcess { pid }
            } else {
                Error::Exited { pid }
            })
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(Error::PermissionDenied {
                pid,
                what: format!("listing {dir}"),
            })
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut tids: Vec<i32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    tids.sort_unstable_by_key(|&t| (t != pid, t));
    Ok(tids)
}

/// The state letter of a thread, `?` if it cannot be read.
fn task_state(pid: i32, tid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
        })
        .unwrap_or('?')
}

/// Whether thread `tid` is a zombie, dead, or gone altogether.
fn is_exiting(pid: i32, tid: i32) -> bool {
    matches!(task_state(pid, tid), 'Z' | 'X' | '?')
}
