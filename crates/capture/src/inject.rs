//! Running one system call inside a stopped thread of another process,
//! through ptrace, and getting its result.
//!
//! The snapshot uses it to `fork` the target (the child is a frozen
//! copy-on-write image of its memory) and later to reap that child; a
//! future `attach` can use it for anything a process must do itself.
//!
//! # How
//!
//! The thread must be in a ptrace-stop of ours caused by `PTRACE_INTERRUPT`
//! after `PTRACE_SEIZE` (a `PTRACE_EVENT_STOP`, inside the kernel's signal
//! handling on the way back to user space). [`Call::start`] and
//! [`Call::finish`]:
//!
//! 1. sets `PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | TRACEFORK |
//!    TRACEVFORK`, so syscall stops are told apart and a child made by the
//!    call starts traced by us and stopped (it never runs user code);
//! 2. saves the registers, and sets `rip` to a `syscall` instruction (two
//!    bytes `0f 05` anywhere executable: see [`find_syscall_insn`]), `rax`
//!    to the number, `rdi rsi rdx r10 r8 r9` to the arguments and
//!    `orig_rax` to -1;
//! 3. resumes with `PTRACE_SYSCALL` until the syscall-exit-stop, reading
//!    `rax`; a call that makes a process stops earlier, at the kernel's
//!    clone event (the child is complete there), where `start` returns:
//!    the caller may let the process's other threads run before `finish`
//!    goes on to the exit (the snapshot's pause ends with the fork, not
//!    with four more ptrace round trips);
//! 4. writes the saved registers back, `PTRACE_INTERRUPT`s and resumes it
//!    once more, so that it ends in the same kind of stop it started in.
//!
//! # Invariants
//!
//! - **Interrupted system calls restart as the kernel would have.** A thread
//!   we stopped while it blocked in a system call has `orig_rax` = the call
//!   and `rax` = `-ERESTARTSYS` (or `-ERESTARTNOHAND`, `-ERESTARTNOINTR`,
//!   `-ERESTART_RESTARTBLOCK`): the kernel decides to restart it, or to fail
//!   it with `EINTR` if a handler runs, only when the thread leaves the
//!   signal-handling path it was stopped in. Step 2 sets `orig_rax` to -1 so
//!   that leaving that path does not restart (or rewind) *our* call, and
//!   step 4 takes the thread back into that path with its own registers
//!   (`orig_rax` and `rax` included), so when we finally let it go the
//!   kernel applies its own restart rules to the original call. Restoring
//!   the registers at the syscall-exit-stop and detaching there would return
//!   `-512` to the program: the exit path does not apply restart rules.
//! - **Signals are not lost or delivered early.** A signal arriving while
//!   the thread runs our call shows as a signal-delivery-stop; we suppress
//!   it there and send it again ([`Injected::deferred`], with `tgkill`) once
//!   the thread is back in its stop, so it is delivered after we let go,
//!   with the program's own registers.
//! - Only a thread that is in our interrupt stop and holds no signal of its
//!   own can be used ([`usable`]); a job-control stop (`SIGSTOP`) is not
//!   touched.
//! - Other threads of the process stay stopped until the call has done its
//!   work (returned, or made its child): the call runs alone, seeing the
//!   memory exactly as the snapshot does.
//! - The caller makes sure the call cannot kill the process: a seccomp
//!   filter may answer with `SECCOMP_RET_KILL`, so the snapshot never
//!   injects into a process that has one.

use std::io;
use std::time::{Duration, Instant};

use leaktrail_recording::Memory;

use crate::Error;

/// Word indices in `struct user_regs_struct` (x86_64).
const R10: usize = 7;
const R9: usize = 8;
const R8: usize = 9;
const RAX: usize = 10;
const RDX: usize = 12;
const RSI: usize = 13;
const RDI: usize = 14;
const ORIG_RAX: usize = 15;
const RIP: usize = 16;
const RSP: usize = 19;

/// `NT_PRSTATUS`: the general registers' regset.
const NT_PRSTATUS: u32 = 1;
/// `PTRACE_EVENT_STOP` (not in every libc).
const PTRACE_EVENT_STOP: i32 = 128;

/// What one injected call did.
#[derive(Debug, Default)]
pub(crate) struct Injected {
    /// The raw return value (`-errno` on failure).
    pub ret: i64,
    /// A process or thread the call created (fork, clone): traced by us,
    /// stopped, its stop already collected.
    pub child: Option<i32>,
    /// Signals that arrived meanwhile; already sent again to the thread.
    pub deferred: Vec<i32>,
    /// From the call's entry stop to the stop after it (its event, or its
    /// exit): the kernel's work on the call, and one wake-up of ours.
    pub elapsed: Duration,
}

/// Whether a thread stopped with `stop_signal`, holding `pending_signal`,
/// can run an injected call: it must be in our `PTRACE_INTERRUPT` stop.
pub(crate) fn usable(stop_signal: i32, pending_signal: i32) -> bool {
    stop_signal == libc::SIGTRAP && pending_signal == 0
}

/// The address of a `syscall` instruction (`0f 05`) the thread `tid` of
/// `pid` can jump to: right behind its `rip` when it stopped in a system
/// call, else the first in the vDSO, else in any executable mapping.
/// `regs` are its saved registers. `pid` may name any live thread of the
/// process (its memory and maps are the process's): a main thread that
/// called pthread_exit shows neither.
pub(crate) fn find_syscall_insn(pid: i32, regs: &[u8]) -> Option<u64> {
    let rip = word(regs, RIP);
    let mut two = [0u8; 2];
    if rip >= 2 && read(pid, rip - 2, &mut two) && two == [0x0f, 0x05] {
        return Some(rip - 2);
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mut exec: Vec<(u64, u64, bool)> = maps
        .lines()
        .filter_map(|l| {
            let mut f = l.split_ascii_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let (s, e) = range.split_once('-')?;
            let vdso = l.ends_with("[vdso]");
            (perms.starts_with("r-x") || (perms.as_bytes().get(2) == Some(&b'x') && vdso))
                .then(|| {
                    Some((
                        u64::from_str_radix(s, 16).ok()?,
                        u64::from_str_radix(e, 16).ok()?,
                        vdso,
                    ))
                })
                .flatten()
        })
        .collect();
    exec.sort_by_key(|&(s, e, vdso)| (!vdso, e - s));
    for (start, end, _) in exec {
        // Look at the first 1 MiB at most of each: a libc has one early.
        let len = (end - start).min(1 << 20) as usize;
        let mut buf = vec![0u8; len];
        if !read(pid, start, &mut buf) {
            continue;
        }
        if let Some(i) = buf.windows(2).position(|w| w == [0x0f, 0x05]) {
            return Some(start + i as u64);
        }
    }
    None
}

/// Calls the function at `func` in thread `tid` of `pid` (in our interrupt
/// stop with registers `saved`) with the integer arguments `args`, after
/// copying `data` onto its stack; `args` gets the address of that copy.
/// Returns the function's `rax`.
///
/// The call runs on the thread's own stack, below its red zone: the
/// return address pushed is 0, so the function's `ret` faults at address
/// 0, which we catch (a `SIGSEGV` with `rip` 0) and never deliver. As in
/// [`syscall`], `orig_rax` is -1 for the call (a system call the thread
/// was in is not restarted into it), signals that arrive meanwhile are
/// held back and sent again afterwards, and the thread ends in the stop it
/// started in with its own registers. Only this thread runs the call; the
/// caller decides which threads stay stopped meanwhile (see
/// `crate::attach` for why a thread must be at a safe point).
pub(crate) fn call(
    pid: i32,
    tid: i32,
    saved: &[u8],
    func: u64,
    data: &[u8],
    args: impl FnOnce(u64) -> [u64; 6],
) -> Result<Injected, Error> {
    let at = scratch_below(saved, data.len());
    write(pid, at, data).map_err(|source| Error::Sys {
        what: format!("write the call's arguments into thread {tid}'s stack"),
        source,
    })?;
    // At a function's first instruction rsp + 8 is 16-aligned.
    let ret_at = at - 64 - 8;
    write(pid, ret_at, &0u64.to_le_bytes()).map_err(|source| Error::Sys {
        what: format!("write the return address into thread {tid}'s stack"),
        source,
    })?;
    let mut regs = saved.to_vec();
    set(&mut regs, RIP, func);
    set(&mut regs, RSP, ret_at);
    set(&mut regs, RAX, 0);
    set(&mut regs, ORIG_RAX, u64::MAX);
    for (slot, v) in [RDI, RSI, RDX, 11, R8, R9].into_iter().zip(args(at)) {
        // The fourth argument of a function is in rcx (11), not r10.
        set(&mut regs, slot, v);
    }
    set_regs(tid, &regs)?;
    let mut out = Injected::default();
    let ran = run_to_return(pid, tid, &mut out);
    let restored = give_back(pid, tid, saved, &mut out);
    ran.and(restored).map(|()| out)
}

/// Where on the stack of a thread with registers `saved` an injected call
/// may put `len` bytes: below its red zone, 16-aligned, with room for a
/// return address under it.
fn scratch_below(saved: &[u8], len: usize) -> u64 {
    const RED_ZONE: u64 = 128;
    (word(saved, RSP) - RED_ZONE - len as u64 - 64) & !15
}

/// Whether [`syscall_with`] can put `len` bytes on the stack of thread
/// `tid` of `pid`, stopped with registers `saved`: the stack's mapping
/// reaches that far below its pointer (a main thread's grows only as far
/// as the program went, and we cannot grow it from outside).
pub(crate) fn stack_has_room(pid: i32, saved: &[u8], len: usize) -> bool {
    let mut probe = vec![0u8; len];
    read(pid, scratch_below(saved, len), &mut probe)
}

/// Runs system call `nr` in thread `tid` of `pid` (in our interrupt stop
/// with registers `saved`, jumping to the `syscall` at `insn`) after
/// copying `data` onto its stack below the red zone; `args` gets the
/// copy's address. The stack bytes the copy covered are written back
/// afterwards, so the thread's memory is as it was (a snapshot taken after
/// the call holds none of ours). Fails without running the call if those
/// bytes cannot be read or written (the stack's mapping ends closer to its
/// pointer than `data` is long).
pub(crate) fn syscall_with(
    pid: i32,
    tid: i32,
    saved: &[u8],
    insn: u64,
    nr: u64,
    data: &[u8],
    args: impl FnOnce(u64) -> [u64; 6],
) -> Result<Injected, Error> {
    let at = scratch_below(saved, data.len());
    let mut old = vec![0u8; data.len()];
    if !read(pid, at, &mut old) {
        return Err(Error::Sys {
            what: format!(
                "read {} bytes of thread {tid}'s stack below its pointer",
                data.len()
            ),
            source: io::ErrorKind::UnexpectedEof.into(),
        });
    }
    write(pid, at, data).map_err(|source| Error::Sys {
        what: format!("write the call's arguments into thread {tid}'s stack"),
        source,
    })?;
    let done = Call::start(pid, tid, saved, insn, nr, args(at)).and_then(Call::finish);
    let put_back = write(pid, at, &old).map_err(|source| Error::Sys {
        what: format!("restore thread {tid}'s stack after the call"),
        source,
    });
    done.and_then(|d| put_back.map(|()| d))
}

/// Resumes `tid` until the injected function returns to address 0;
/// stores its `rax` in `out`.
fn run_to_return(pid: i32, tid: i32, out: &mut Injected) -> Result<(), Error> {
    let mut deliver = 0u64;
    loop {
        ptrace(libc::PTRACE_CONT, tid, 0, deliver, "resume for the call")?;
        deliver = 0;
        let status = wait(pid, tid)?;
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        if event != 0 {
            // A group stop or an event of ours: go on.
            continue;
        }
        if sig == libc::SIGSEGV {
            let regs = get_regs(tid)?;
            if word(&regs, RIP) == 0 {
                out.ret = word(&regs, RAX) as i64;
                return Ok(());
            }
            // The function itself faulted: let the program's own handling
            // see it rather than loop (it would crash without us too).
            return Err(Error::Sys {
                what: format!(
                    "the injected call in thread {tid} faulted at {:#x}",
                    word(&regs, RIP)
                ),
                source: io::ErrorKind::Other.into(),
            });
        }
        if sig != libc::SIGTRAP {
            out.deferred.push(sig);
        }
    }
}

/// An injected system call under way: [`Call::start`] runs it until it
/// returns or, for a call that makes a process, until the kernel reports
/// the child (the fork is complete then: the child's address space is
/// copied); [`Call::finish`] takes the thread to the call's end and back
/// to its own registers and stop. In between, the thread is held in a
/// ptrace stop *inside* the call: it must not be detached, and other
/// threads of the process may run (the snapshot lets them go there, so the
/// pause ends with the fork). Dropping an unfinished call finishes it.
pub(crate) struct Call {
    pid: i32,
    tid: i32,
    saved: Vec<u8>,
    out: Injected,
    /// When the syscall-entry-stop was seen.
    entered: Option<Instant>,
    /// At the syscall-exit-stop already (`out.ret` is the result).
    returned: bool,
    done: bool,
}

impl Call {
    /// Starts system call `nr` with `args` in thread `tid` of `pid`, which
    /// is in our interrupt stop with registers `saved` (see the module
    /// documentation), jumping to the `syscall` instruction at `insn`.
    /// Returns at its syscall-exit-stop, or earlier at a fork, vfork or
    /// clone event with [`Injected::child`] set.
    ///
    /// Errors: the thread or process died ([`Error::Exited`]), or ptrace
    /// refused a step ([`Error::Sys`]); the thread's registers are restored
    /// on every path where it still exists.
    pub(crate) fn start(
        pid: i32,
        tid: i32,
        saved: &[u8],
        insn: u64,
        nr: u64,
        args: [u64; 6],
    ) -> Result<Call, Error> {
        let opts = libc::PTRACE_O_TRACESYSGOOD
            | libc::PTRACE_O_TRACECLONE
            | libc::PTRACE_O_TRACEFORK
            | libc::PTRACE_O_TRACEVFORK;
        ptrace(libc::PTRACE_SETOPTIONS, tid, 0, opts as u64, "set options")?;
        let mut regs = saved.to_vec();
        set(&mut regs, RIP, insn);
        set(&mut regs, RAX, nr);
        set(&mut regs, ORIG_RAX, u64::MAX);
        for (slot, v) in [RDI, RSI, RDX, R10, R8, R9].into_iter().zip(args) {
            set(&mut regs, slot, v);
        }
        let mut call = Call {
            pid,
            tid,
            saved: saved.to_vec(),
            out: Injected::default(),
            entered: None,
            returned: false,
            // Nothing to undo until our registers are in: a thread resumed
            // with its own would run the program, not our call.
            done: true,
        };
        set_regs(tid, &regs)?;
        // From here on `call` restores the thread, also when dropped.
        call.done = false;
        call.run(true)?;
        Ok(call)
    }

    /// What the call did so far: the child, once [`Call::start`] returned
    /// at its event; the result, once finished.
    pub(crate) fn injected(&self) -> &Injected {
        &self.out
    }

    /// The thread running the call.
    pub(crate) fn tid(&self) -> i32 {
        self.tid
    }

    /// Runs the call to its end, restores the thread's registers and its
    /// own kind of stop, and re-sends the signals held back meanwhile.
    pub(crate) fn finish(mut self) -> Result<Injected, Error> {
        self.settle()?;
        Ok(std::mem::take(&mut self.out))
    }

    fn settle(&mut self) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let ran = if self.returned {
            Ok(())
        } else {
            self.run(false)
        };
        let (pid, tid) = (self.pid, self.tid);
        let restored = give_back(pid, tid, &self.saved, &mut self.out);
        // Back to the options World seized with: none.
        let _ = ptrace(libc::PTRACE_SETOPTIONS, tid, 0, 0, "reset options");
        ran.and(restored)
    }

    /// Resumes the thread with `PTRACE_SYSCALL` through entry, events and
    /// signals until its syscall-exit-stop, or (`stop_at_child`) until a
    /// clone event names a child.
    fn run(&mut self, stop_at_child: bool) -> Result<(), Error> {
        let (pid, tid) = (self.pid, self.tid);
        loop {
            ptrace(libc::PTRACE_SYSCALL, tid, 0, 0, "resume for the call")?;
            let status = wait(pid, tid)?;
            let sig = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            if let Some(at) = self.entered {
                if self.out.elapsed.is_zero() {
                    self.out.elapsed = at.elapsed();
                }
            }
            if sig == libc::SIGTRAP | 0x80 {
                // Entry and exit stops alternate: the first is the entry.
                if self.entered.is_some() {
                    self.out.ret = word(&get_regs(tid)?, RAX) as i64;
                    self.returned = true;
                    return Ok(());
                }
                self.entered = Some(Instant::now());
            } else if matches!(
                event,
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE
            ) {
                let mut msg: libc::c_ulong = 0;
                // SAFETY: GETEVENTMSG writes one unsigned long to `msg`.
                unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, tid, 0usize, &mut msg) };
                // The child starts traced by us and stops before it runs
                // any user code; its first stop is collected by whoever
                // waits for it next (`cow::Image` when it ends it), not
                // here: the call's thread need not wait for the child to
                // be scheduled.
                self.out.child = Some(msg as i32);
                if stop_at_child {
                    return Ok(());
                }
            } else if event == 0 && sig != libc::SIGTRAP {
                // A signal on its way in: hold it back until we are done.
                self.out.deferred.push(sig);
            }
            // Anything else (a group stop of ours): resume again.
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Err(e @ Error::Sys { .. }) = self.settle() {
            eprintln!(
                "leaktrail: restoring thread {} after an injected call failed: {e}",
                self.tid
            );
        }
    }
}

/// Back to the thread's own registers and its own kind of stop, on
/// success and on failure alike (unless it is gone); then the signals held
/// back meanwhile are sent again.
fn give_back(pid: i32, tid: i32, saved: &[u8], out: &mut Injected) -> Result<(), Error> {
    let restored = set_regs(tid, saved).and_then(|()| back_to_stop(pid, tid, out));
    for &sig in &out.deferred {
        // SAFETY: tgkill takes no pointers.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
    }
    restored
}

/// Takes `tid`, registers restored, back into a `PTRACE_EVENT_STOP` of
/// ours inside the kernel's signal path (see the module documentation).
fn back_to_stop(pid: i32, tid: i32, out: &mut Injected) -> Result<(), Error> {
    ptrace(
        libc::PTRACE_INTERRUPT,
        tid,
        0,
        0,
        "interrupt after the call",
    )?;
    loop {
        ptrace(libc::PTRACE_CONT, tid, 0, 0, "resume into the stop")?;
        let status = wait(pid, tid)?;
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        if event == PTRACE_EVENT_STOP {
            return Ok(());
        }
        if event == 0 && sig != libc::SIGTRAP && sig != libc::SIGTRAP | 0x80 {
            out.deferred.push(sig);
        }
    }
}

/// Waits for `tid`'s next stop; [`Error::Exited`] if it exits instead.
fn wait(pid: i32, tid: i32) -> Result<i32, Error> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::Exited { pid });
        }
        if libc::WIFSTOPPED(status) {
            return Ok(status);
        }
        return Err(Error::Exited { pid });
    }
}

fn ptrace(req: libc::c_uint, tid: i32, addr: u64, data: u64, what: &str) -> Result<(), Error> {
    // SAFETY: every request used here takes integers, not pointers.
    let r = unsafe { libc::ptrace(req, tid, addr as usize, data as usize) };
    checked(r, tid, what)
}

/// `Ok` for a ptrace result `r` of 0 and up; the error of the failed
/// request `what` on `tid` otherwise.
fn checked(r: libc::c_long, tid: i32, what: &str) -> Result<(), Error> {
    if r >= 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ESRCH) => Error::Exited { pid: tid },
        _ => Error::Sys {
            what: format!("ptrace ({what}) of thread {tid}"),
            source: e,
        },
    })
}

/// The general registers of stopped thread `tid`.
pub(crate) fn get_regs(tid: i32) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 27 * 8];
    regset(libc::PTRACE_GETREGSET, tid, &mut buf)?;
    Ok(buf)
}

fn set_regs(tid: i32, regs: &[u8]) -> Result<(), Error> {
    let mut buf = regs.to_vec();
    regset(libc::PTRACE_SETREGSET, tid, &mut buf)
}

fn regset(req: libc::c_uint, tid: i32, buf: &mut [u8]) -> Result<(), Error> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, which outlives the call; GETREGSET
    // writes at most `iov_len` bytes, SETREGSET only reads them.
    let r = unsafe { libc::ptrace(req, tid, NT_PRSTATUS as usize, &mut iov as *mut libc::iovec) };
    checked(r, tid, "registers")
}

fn word(regs: &[u8], i: usize) -> u64 {
    regs.get(i * 8..i * 8 + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

fn set(regs: &mut [u8], i: usize, v: u64) {
    if let Some(b) = regs.get_mut(i * 8..i * 8 + 8) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

/// Writes `data` at `addr` of `pid` (writable memory only).
fn write(pid: i32, addr: u64, data: &[u8]) -> io::Result<()> {
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: `local` describes our own buffer, which the kernel only
    // reads; it checks `remote` against the target's address space.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if n == data.len() as isize {
        Ok(())
    } else if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Err(io::ErrorKind::WriteZero.into())
    }
}

/// Reads `buf.len()` bytes at `addr` of `pid`.
fn read(pid: i32, addr: u64, buf: &mut [u8]) -> bool {
    let end = addr.saturating_add(buf.len() as u64);
    crate::memory::ProcessMemory::new(pid, vec![(addr, end)])
        .read(addr, buf)
        .is_ok()
}
