//! `leaktrail refs` and `refs --chain`.

use std::fmt::Write;

use leaktrail_analysis::refs::{Chains, Hop, Refs};
use leaktrail_analysis::whatis::BufferHit;

use super::{count, stack, whatis};
use crate::text::bytes;

/// x86_64 `user_regs_struct`, in order: what a register index means.
const REGISTERS: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

/// Each referring word with what holds it.
pub fn text(r: &Refs) -> String {
    let mut o = String::new();
    if let Some(t) = &r.target_whatis {
        let _ = writeln!(o, "{}", whatis::line(t));
    }
    for x in &r.refs {
        let _ = writeln!(
            o,
            "{:#x}: {:#x}  {}",
            x.at,
            x.value,
            whatis::line(&x.whatis)
        );
    }
    let _ = writeln!(
        o,
        "{} references in {} scanned",
        count(r.refs.len() as u64),
        bytes(r.scanned_bytes as f64)
    );
    o
}

/// Hops in a row through buffers of one stack shown in full; longer runs
/// are summarised.
const RUN: usize = 3;

/// The buffer a hop is in, if it is in one.
fn buffer_of(h: &Hop) -> Option<&BufferHit> {
    h.whatis.as_ref().and_then(|w| w.buffer.as_ref())
}

/// How many hops from the first of `hops` are in buffers of the same
/// allocation stack and size (1 for a hop outside any buffer).
fn run_of(hops: &[Hop]) -> usize {
    let Some(first) = buffer_of(&hops[0]) else {
        return 1;
    };
    hops.iter()
        .take_while(|h| {
            buffer_of(h).is_some_and(|b| b.stack_id == first.stack_id && b.size == first.size)
        })
        .count()
}

/// One hop: where the word is, what it holds, and the buffer's stack.
fn hop(o: &mut String, h: &Hop) {
    match (&h.register, &h.whatis) {
        (Some((tid, reg)), _) => {
            let name = REGISTERS.get(*reg).copied().unwrap_or("?");
            let _ = writeln!(o, "  register {name} of thread {tid} = {:#x}", h.value);
        }
        (None, Some(w)) => {
            let _ = writeln!(o, "  {:#x} = {:#x}  {}", h.at, h.value, whatis::line(w));
            if let Some(b) = &w.buffer {
                stack(o, &b.stack, "      ");
            }
        }
        (None, None) => {
            let _ = writeln!(o, "  {:#x} = {:#x}  ({})", h.at, h.value, h.holder);
        }
    }
}

/// Each path from a root, hop by hop, with each buffer's allocation stack.
/// With `all` false, a run of more than [`RUN`] hops through buffers of
/// one allocation stack (a linked list, a tree's spine) is summarised: its
/// first and last hop, and one line for the hops between with the stack
/// once; with `all`, every hop.
pub fn chains(c: &Chains, all: bool) -> String {
    let mut o = String::new();
    if c.unreached {
        let _ = writeln!(
            o,
            "no path from a root to {:#x}: nothing reachable refers to it, it is leaked (see `leaktrail leaks`)",
            c.target
        );
        return o;
    }
    let _ = writeln!(
        o,
        "{} shortest path(s), {} hop(s) from a root:",
        c.chains.len(),
        c.levels
    );
    for (n, ch) in c.chains.iter().enumerate() {
        let _ = writeln!(o, "path {} ({} hops):", n + 1, ch.hops.len());
        let mut i = 0;
        while i < ch.hops.len() {
            let run = if all { 1 } else { run_of(&ch.hops[i..]) };
            if run > RUN {
                hop(&mut o, &ch.hops[i]);
                let bytes_each = buffer_of(&ch.hops[i]).map_or(0, |b| b.size);
                let _ = writeln!(
                    o,
                    "  … {} more hops through buffers of {} bytes from the same stack (use --all)",
                    count((run - 2) as u64),
                    count(bytes_each)
                );
                hop(&mut o, &ch.hops[i + run - 1]);
                i += run;
                continue;
            }
            hop(&mut o, &ch.hops[i]);
            i += 1;
        }
        let t = &ch.target;
        let _ = writeln!(
            o,
            "  -> {:#x}+{:#x}, a live buffer of {} bytes",
            t.addr,
            t.offset,
            count(t.size)
        );
        stack(&mut o, &t.stack, "      ");
    }
    o
}
