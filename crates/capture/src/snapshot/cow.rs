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
//!
//! A child lacks what the target advised `MADV_DONTFORK` (V8 advises its
//! whole heap so): [`Forker::keep_on_fork`] has the target mark those
//! mappings `MADV_DOFORK` just before the fork, and [`Forker::fork`] marks
//! them `MADV_DONTFORK` again right after it, before any other thread
//! runs, so the image has them and the target's flags end as they were.

use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::ptrace::{Thread, World, GREGS_BYTES};
use super::Boost;
use crate::{inject, Error};

/// The frozen copy. Dropping it ends it (see the module documentation).
pub(crate) struct Image {
    target: i32,
    child: i32,
    /// The clone, still under way in the thread that made it, until
    /// [`Image::settle`] lets that thread go.
    call: Option<inject::Call>,
    fork_time: Duration,
    /// From setting up the injected clone to its clone event: the kernel's
    /// fork and our ptrace round trips.
    call_time: Duration,
    /// Ending the clone and giving `MADV_DONTFORK` back, inside the pause.
    advice_back: Duration,
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

/// `orig_rax` in `struct user_regs_struct`: the system call a thread
/// stopped in, or -1.
const ORIG_RAX: usize = 15;

/// `PIDFD_SELF` (Linux 6.14): a process names itself to `process_madvise`
/// without a pidfd, and may then give any advice (6.13); another process
/// may give only `MADV_COLD`, `PAGEOUT`, `WILLNEED` and `COLLAPSE`, so the
/// target has to make the call itself.
const PIDFD_SELF: i64 = -10000;
/// Most `iovec`s one `process_madvise` takes (`UIO_MAXIOV`).
const IOVECS_PER_CALL: usize = 1024;

/// Whether this kernel lets a process `process_madvise(PIDFD_SELF, …,
/// MADV_DOFORK)` itself: tried once on a page of ours (the target runs
/// on the same kernel, and a filtered target never gets this far).
pub(crate) fn keep_on_fork_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // SAFETY: a fresh private anonymous page of ours, advised (no-op
        // advice: it was never MADV_DONTFORK) and unmapped; `iov` outlives
        // the call, which only reads it.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if page == libc::MAP_FAILED {
                return false;
            }
            let iov = libc::iovec {
                iov_base: page,
                iov_len: 4096,
            };
            let r = libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF,
                &iov as *const libc::iovec,
                1usize,
                libc::MADV_DOFORK,
                0u32,
            );
            libc::munmap(page, 4096);
            r == 4096
        }
    })
}

/// The stopped thread that will fork the image, chosen while every thread
/// is stopped; before the fork it can also take `MADV_DONTFORK` memory
/// into the image ([`Forker::keep_on_fork`]).
pub(crate) struct Forker {
    pid: i32,
    tid: i32,
    regs: Vec<u8>,
    insn: u64,
    /// Ranges given `MADV_DOFORK` (or tried): given `MADV_DONTFORK` back
    /// right after the fork, or when the forker is dropped without forking.
    restore: Vec<(u64, u64)>,
    /// How many iovecs one injected call takes (what the stack has room for).
    per_call: usize,
    /// The thread's priority raised for our calls in it, from the first
    /// one to the fork's end (see [`Forker::fork`]).
    boost: Option<Boost>,
}

impl Forker {
    /// Chooses the thread of `world` to fork in; `Err` says why none can
    /// (the snapshot then falls back to stop-and-copy).
    pub fn choose(pid: i32, world: &World) -> Result<Forker, String> {
        let usable = |t: &&Thread| {
            inject::usable(t.stop_signal, t.pending_signal) && t.regs.len() == GREGS_BYTES
        };
        // A thread blocked in a system call (a read, a futex, epoll_wait)
        // was waiting anyway: it is the one to keep a little longer.
        let in_call = |t: &Thread| {
            t.regs
                .get(ORIG_RAX * 8..ORIG_RAX * 8 + 8)
                .is_some_and(|b| i64::from_le_bytes(b.try_into().unwrap_or([0xff; 8])) >= 0)
        };
        let t = world
            .threads()
            .iter()
            .filter(usable)
            .find(|t| in_call(t))
            .or_else(|| world.threads().iter().find(usable))
            .ok_or(
                "no thread is in a plain ptrace stop (job-control stopped, or a 32-bit process)",
            )?;
        let insn = inject::find_syscall_insn(t.tid, &t.regs)
            .ok_or("no syscall instruction found in its executable mappings")?;
        Ok(Forker {
            pid,
            tid: t.tid,
            regs: t.regs.clone(),
            insn,
            restore: Vec::new(),
            per_call: IOVECS_PER_CALL,
            boost: None,
        })
    }

    /// Marks `ranges` (whole mappings with `MADV_DONTFORK`) `MADV_DOFORK`,
    /// so that the image has them: one injected `process_madvise` per 1024
    /// ranges, the `iovec`s on the thread's stack. Returns how many of
    /// them, from the first, the image will have; the rest (a call that
    /// failed) are the caller's to copy while stopped. Every range tried is
    /// marked `MADV_DONTFORK` again by [`Forker::fork`], in the target
    /// only: the image keeps them.
    pub fn keep_on_fork(&mut self, ranges: &[(u64, u64)]) -> usize {
        if ranges.is_empty() {
            // Nothing to do, and nothing to touch: reading below a stack
            // pointer faults pages in, which changes what pagemap says.
            return 0;
        }
        // The iovecs go on the thread's stack: as many per call as it has
        // room for (16 bytes each).
        let Some(per_call) = [IOVECS_PER_CALL, 256, 32]
            .into_iter()
            .find(|&n| inject::stack_has_room(self.pid, &self.regs, n * 16))
        else {
            return 0;
        };
        self.per_call = per_call;
        // Each injected call is two round trips through the scheduler for
        // this thread: on a busy machine, at nice 0, it waits its turn on
        // every one of them while the whole process is stopped.
        self.boost();
        let mut kept = 0;
        for batch in ranges.chunks(per_call) {
            self.restore.extend_from_slice(batch);
            let want: u64 = batch.iter().map(|(s, e)| e - s).sum();
            match self.madvise(batch, libc::MADV_DOFORK) {
                Ok(n) if n == want => kept += batch.len(),
                Ok(n) => {
                    // The first ranges whose bytes add up to `n` were done.
                    let mut left = n;
                    kept += batch
                        .iter()
                        .take_while(|(s, e)| {
                            let ok = left >= e - s;
                            left = left.saturating_sub(e - s);
                            ok
                        })
                        .count();
                    break;
                }
                Err(_) => break,
            }
        }
        kept
    }

    /// Raises the thread's priority until the fork is over (or the forker
    /// dropped), once.
    fn boost(&mut self) {
        if self.boost.is_none() {
            self.boost = Some(Boost::of(self.tid, -20));
        }
    }

    /// `process_madvise(PIDFD_SELF, ranges, advice)` in the forker's
    /// thread: the bytes advised.
    fn madvise(&self, ranges: &[(u64, u64)], advice: i32) -> Result<u64, String> {
        let iovecs: Vec<u8> = ranges
            .iter()
            .flat_map(|&(s, e)| s.to_le_bytes().into_iter().chain((e - s).to_le_bytes()))
            .collect();
        let n = ranges.len() as u64;
        let r = inject::syscall_with(
            self.pid,
            self.tid,
            &self.regs,
            self.insn,
            libc::SYS_process_madvise as u64,
            &iovecs,
            |at| [PIDFD_SELF as u64, at, n, advice as u64, 0, 0],
        )
        .map_err(|e| e.to_string())?
        .ret;
        if r < 0 {
            return Err(io::Error::from_raw_os_error(-r as i32).to_string());
        }
        Ok(r as u64)
    }

    /// Gives the ranges [`Forker::keep_on_fork`] marked `MADV_DONTFORK`
    /// back; says so in one line if it cannot (the target's own forks
    /// would then copy them).
    fn give_back(&mut self) {
        let (pid, restore) = (self.pid, std::mem::take(&mut self.restore));
        // As many per call as keep_on_fork put on the stack, or fewer.
        let per_call = self.per_call;
        for batch in restore.chunks(per_call) {
            if let Err(e) = self.madvise(batch, libc::MADV_DONTFORK) {
                eprintln!(
                    "leaktrail: {} mappings of process {pid} could not be given MADV_DONTFORK back after the snapshot's fork ({e}): its own forks will copy them",
                    batch.len()
                );
            }
        }
    }

    /// Forks `pid` in the chosen thread. Returns as soon as the kernel has
    /// made the child: the image is complete, and every other thread may
    /// go (the one that forked is handed over to the image, held inside
    /// its clone until [`Image::settle`]). When the image was given
    /// `MADV_DONTFORK` memory, that thread first ends its clone and gives
    /// it back, still within the pause (the target's mappings cannot change
    /// under the call then). `Err` says why not, in a few words (the
    /// snapshot then falls back to stop-and-copy), with every thread still
    /// stopped in `world` and the advice given back; a child made all the
    /// same comes with it, for the caller to end once `world` has let the
    /// threads go ([`Failed`]).
    pub fn fork(mut self, world: &mut World) -> Result<Image, Failed> {
        let pid = self.pid;
        // The fork is the kernel copying page tables in this thread, at its
        // priority: on a busy machine a nice-0 thread gets a fraction of a
        // CPU and the whole process waits for it. For our calls in it, it
        // gets the best (as the pause gets our best with `Boost::new`).
        self.boost();
        let boost = self.boost.take();
        let at = Instant::now();
        // clone(flags = 0: no exit signal, nothing shared; stack 0: the
        // child's copy of ours; no tid pointers, no tls).
        let started = inject::Call::start(
            pid,
            self.tid,
            &self.regs,
            self.insn,
            libc::SYS_clone as u64,
            [0; 6],
        );
        let call = match started {
            Ok(call) => call,
            Err(e) => {
                self.give_back();
                return Err(Failed::without_image(format!(
                    "injecting clone failed: {e}"
                )));
            }
        };
        let call_time = at.elapsed();
        // Test seam: ending the clone fails after the child was made (see
        // the integration test
        // `a_failed_clone_end_falls_back_to_stop_and_copy_and_leaves_no_child`);
        // the clone is ended inside the pause then, as with advice to give
        // back, whatever the kernel.
        let fail_clone_end =
            std::env::var_os("LEAKTRAIL_TEST_FAULT").is_some_and(|v| v == "fail-clone-end");
        if let (Some(child), Some(boost)) = (call.injected().child, &boost) {
            // Its death (page tables freed) is no reason to preempt anyone.
            boost.undo_on(child);
        }
        match call.injected().child {
            Some(child) if self.restore.is_empty() && !fail_clone_end => {
                drop(boost);
                world.hand_over(call.tid());
                Ok(Image {
                    target: pid,
                    child,
                    fork_time: call.injected().elapsed,
                    call_time,
                    advice_back: Duration::ZERO,
                    call: Some(call),
                })
            }
            Some(child) => {
                let fork_time = call.injected().elapsed;
                // The image exists: the clone ends, and the thread is back
                // in its stop (the world lets it go with the others).
                let mut image = Image {
                    target: pid,
                    child,
                    fork_time,
                    call_time,
                    advice_back: Duration::ZERO,
                    call: None,
                };
                let at = Instant::now();
                let mut ended = call.finish().map(|_| ());
                if ended.is_ok() && fail_clone_end {
                    ended = Err(Error::Sys {
                        what: "test fault".into(),
                        source: io::ErrorKind::Other.into(),
                    });
                }
                self.give_back();
                drop(boost);
                image.advice_back = at.elapsed();
                if let Err(e) = ended {
                    // The thread's state is unknown: no image to copy from.
                    // The child goes back to the caller, to be ended once
                    // the world has let the threads go.
                    return Err(Failed {
                        why: format!("ending the injected clone failed: {e}"),
                        image: Some(Box::new(image)),
                    });
                }
                Ok(image)
            }
            None => {
                drop(boost);
                let finished = call.finish();
                self.give_back();
                let r = finished
                    .map_err(|e| Failed::without_image(format!("injecting clone failed: {e}")))?
                    .ret;
                Err(Failed::without_image(if r < 0 {
                    format!(
                        "clone in the process failed: {}{}",
                        io::Error::from_raw_os_error(-r as i32),
                        match -r as i32 {
                            libc::EAGAIN => " (a pids limit?)",
                            libc::ENOMEM => " (no memory for its page tables)",
                            _ => "",
                        }
                    )
                } else {
                    format!("clone returned {r} but no child was reported")
                }))
            }
        }
    }
}

/// Why [`Forker::fork`] gave no image to copy from. A child it made all
/// the same is `image`: the caller ends it once the world has let every
/// thread go, since reaping it means stopping a thread of the target
/// again (ended while the world holds them, it would stay a zombie of
/// the target's).
pub(crate) struct Failed {
    pub why: String,
    pub image: Option<Box<Image>>,
}

impl Failed {
    fn without_image(why: String) -> Failed {
        Failed { why, image: None }
    }
}

impl Drop for Forker {
    fn drop(&mut self) {
        // Dropped without forking: while the world is still stopped (it
        // is declared first), so the thread is in its stop.
        self.give_back();
    }
}

impl Image {
    /// How long the kernel took to make the image.
    pub fn fork_time(&self) -> Duration {
        self.fork_time
    }

    /// From setting up the injected clone to the kernel's clone event.
    pub fn call_time(&self) -> Duration {
        self.call_time
    }

    /// Ending the clone and giving `MADV_DONTFORK` back, inside the pause
    /// (zero when there was none to give back).
    pub fn advice_back(&self) -> Duration {
        self.advice_back
    }

    /// Lets the thread that forked go: runs its clone to the end, gives
    /// it back its registers and detaches it. Once the rest of the process
    /// runs again.
    pub fn settle(&mut self) -> Result<(), Error> {
        let Some(call) = self.call.take() else {
            return Ok(());
        };
        let tid = call.tid();
        let done = call.finish();
        // SAFETY: PTRACE_DETACH takes no pointers; the thread is back in
        // its interrupt stop (or gone, and the call fails harmlessly).
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize) };
        done.map(|_| ())
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
        if let Err(e) = self.settle() {
            eprintln!(
                "leaktrail: letting thread of process {} go after its fork failed: {e}",
                self.target
            );
        }
        if self.child == 0 {
            return;
        }
        let child = std::mem::take(&mut self.child);
        // SAFETY: kill and waitpid take no pointers but `status`.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            // Its first stop may not have been collected yet (the fork
            // does not wait for it): wait for its death itself.
            loop {
                let mut status = 0;
                let r = libc::waitpid(child, &mut status, libc::__WALL);
                let again = if r < 0 {
                    io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                } else {
                    libc::WIFSTOPPED(status)
                };
                if !again {
                    break;
                }
            }
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
            inject::Call::start(
                pid,
                tid,
                &regs,
                insn,
                libc::SYS_wait4 as u64,
                [child as u64, 0, libc::__WALL as u64, 0, 0, 0],
            )
            .and_then(inject::Call::finish)
            .map_err(|e| e.to_string())
        });
    detach(0);
    match result {
        Ok(r) if r.ret == child as i64 => Ok(()),
        Ok(r) => Err(format!("wait4 returned {}", r.ret)),
        Err(e) => Err(e),
    }
}
