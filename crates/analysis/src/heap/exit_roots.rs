//! Roots as valgrind would see them at exit (issue 11): no frame of the
//! tracer, no stack glibc keeps for a thread that has ended.
//!
//! **The tracer's frames.** The exit snapshot is taken while the thread
//! that called `exit` (or returned from `main`) waits inside the tracer for
//! the supervisor's go-ahead. The tracer's frames lie below the program's
//! own, over stack the program used a moment before: an uninitialised slot
//! or padding in them can hold a dead local of the program's, which would
//! keep a lost block "reachable". So for the thread handing over (the
//! tracer names it in its header, `exit_tid`) whose innermost frames
//! (after libc's syscall wrappers) are the tracer's, we walk its stack by
//! CFI ([`Unwinder::walk`]) and start its stack root at the first frame
//! below the tracer's: the program's frame that called `exit`, or libc's
//! frame that called `main`. Its caller-saved registers are the tracer's
//! and are dropped; the callee-saved ones are kept. We do this only for
//! that thread: a thread stopped inside an allocation hook may have
//! spilled a register of the program's into the tracer's frame, which is
//! live and must stay a root. The thread is named, not recognised by the
//! system call it is in: the supervisor may freeze it anywhere between
//! the notice's `write` and the answer's `poll` (a CI machine did, once in
//! fifteen runs). Recordings from before `exit_tid` fall back to the
//! system call (`poll` or `read`).
//!
//! **Dead threads.** glibc keeps the stacks of finished threads (with the
//! thread descriptor and static TLS at their top) in a cache for the next
//! `pthread_create`, and frees them only in `__libc_freeres`, which
//! valgrind runs before its leak check. Such a stack is anonymous
//! read-write memory above a `PROT_NONE` guard, holding no thread's stack
//! pointer; it is recognised by the descriptor at its top: the TCB's first word (`tcb`) and third
//! (`self`) both hold its own address, and no live thread's `fs_base` is
//! that address.

use std::collections::HashMap;

use leaktrail_recording::snapshot::note::FileRange;
use leaktrail_recording::snapshot::Thread;
use leaktrail_recording::Memory;

use crate::heap::libc_residue::is_runtime_module;
use crate::heap::model::ProcessImage;
use crate::unwind::Unwinder;

/// `user_regs_struct` index of `orig_rax`: the system call a thread is in.
const REG_ORIG_RAX: usize = 15;
/// `user_regs_struct` indices of the caller-saved registers (r11, r10, r9,
/// r8, rax, rcx, rdx, rsi, rdi, orig_rax).
const CALLER_SAVED: std::ops::RangeInclusive<usize> = 6..=15;
/// The system calls the tracer waits for the supervisor's answer in, on
/// x86_64: `poll(2)` (the hand-over's deadline), then `read(2)`; only for
/// recordings whose header names no exit thread.
const HANDOVER_SYSCALLS: [u64; 2] = [7, 0];
/// How far a walk looks for the end of the tracer's frames.
const MAX_FRAMES: usize = 64;
/// How far below the top of a mapping a thread descriptor is looked for
/// (glibc's `struct pthread` is about 2.3 KiB; static TLS sits below it).
const TCB_SEARCH: u64 = 16 << 10;

/// File name of the tracer's library.
fn is_tracer(path: &str) -> bool {
    file_name(path).starts_with("libleaktrail_preload")
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Where each thread waiting in the tracer's hand-over starts its stack
/// root: the program's frame below the tracer's, by thread id.
/// `exit_tid` is the header's (0 when the tracer named no thread).
pub fn program_frames(image: &dyn ProcessImage, exit_tid: u32) -> HashMap<i32, u64> {
    let waiting: Vec<&Thread> = image
        .threads()
        .iter()
        .filter(|t| hands_over(t, exit_tid))
        .collect();
    if waiting.is_empty() {
        return HashMap::new();
    }
    let files: Vec<FileRange> = image
        .mappings()
        .into_iter()
        .filter(|m| m.path.starts_with('/'))
        .map(|m| FileRange {
            start: m.start,
            end: m.end,
            offset: m.offset,
            path: m.path,
        })
        .collect();
    if !files.iter().any(|f| is_tracer(&f.path)) {
        return HashMap::new();
    }
    let path_of = |pc: u64| {
        files
            .iter()
            .find(|f| f.start <= pc && pc < f.end)
            .map(|f| f.path.as_str())
    };
    let unwinder = Unwinder::new(files.clone());
    let mut out = HashMap::new();
    for t in waiting {
        let frames = unwinder.walk(image.memory(), &t.regs, MAX_FRAMES);
        let mut i = 0;
        while frames
            .get(i)
            .is_some_and(|f| path_of(f.pc).is_some_and(is_runtime_module))
        {
            i += 1;
        }
        let tracer_from = i;
        while frames
            .get(i)
            .is_some_and(|f| path_of(f.pc).is_some_and(is_tracer))
        {
            i += 1;
        }
        // The program's frame: below at least one of the tracer's, and one
        // the walk reached (its SP is the last tracer frame's CFA).
        if i > tracer_from {
            if let Some(f) = frames.get(i) {
                out.insert(t.tid, f.sp);
            }
        }
    }
    out
}

/// Whether `t` is the thread handing over at exit: the one the header
/// names, or (when it names none) one waiting in `poll` or `read`.
fn hands_over(t: &Thread, exit_tid: u32) -> bool {
    if exit_tid != 0 {
        return u32::try_from(t.tid) == Ok(exit_tid);
    }
    t.regs
        .get(REG_ORIG_RAX)
        .is_some_and(|n| HANDOVER_SYSCALLS.contains(n))
}

/// Whether register `i` of a thread waiting in the hand-over is the
/// tracer's (caller-saved, so clobbered by the tracer's own calls).
pub fn is_tracers_register(i: usize) -> bool {
    CALLER_SAVED.contains(&i)
}

/// Whether `[start, end)` (anonymous, read-write, holding no thread's SP)
/// is a stack glibc cached for a thread that has ended: a thread
/// descriptor near its top that no live thread's `fs_base` names.
pub fn is_cached_stack(mem: &dyn Memory, start: u64, end: u64, live_tps: &[u64]) -> bool {
    cached_descriptor(mem, start, end, live_tps).is_some()
}

/// The thread descriptor of a stack glibc cached (see [`is_cached_stack`]).
pub fn cached_descriptor(mem: &dyn Memory, start: u64, end: u64, live_tps: &[u64]) -> Option<u64> {
    let from = end.saturating_sub(TCB_SEARCH).max(start);
    let bytes = mem.borrow(from, end - from)?;
    let word = |off: usize| {
        bytes
            .get(off..off + 8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
    };
    (0..bytes.len().saturating_sub(24))
        .step_by(8)
        .map(|off| (off, from + off as u64))
        .find(|&(off, at)| {
            word(off) == Some(at) && word(off + 16) == Some(at) && !live_tps.contains(&at)
        })
        .map(|(_, at)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_told_apart_by_file_name() {
        assert!(is_tracer(
            "/root/.cache/leaktrail/preload-ab12/libleaktrail_preload.so"
        ));
        assert!(is_runtime_module("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(is_runtime_module(
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        ));
        assert!(!is_tracer("/usr/bin/app"));
    }

    fn thread(tid: i32, orig_rax: u64) -> Thread {
        let mut regs = vec![0; 27];
        regs[REG_ORIG_RAX] = orig_rax;
        Thread {
            tid,
            signal: 0,
            regs,
            fpregs: None,
            xstate: None,
        }
    }

    #[test]
    fn the_named_exit_thread_hands_over_whatever_system_call_it_is_in() {
        // Frozen between the notice's write and the answer's poll: in no
        // system call (orig_rax -1), or still in write (1).
        assert!(hands_over(&thread(7, u64::MAX), 7));
        assert!(hands_over(&thread(7, 1), 7));
        // Another thread in poll is not the one handing over.
        assert!(!hands_over(&thread(8, 7), 7));
        // Without a name (older recordings): the system call decides.
        assert!(hands_over(&thread(8, 7), 0));
        assert!(hands_over(&thread(8, 0), 0));
        assert!(!hands_over(&thread(8, u64::MAX), 0));
    }
}
