//! `leaktrail refs` and `refs --chain`.

use std::fmt::Write;

use leaktrail_analysis::refs::{Chains, Refs};

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

/// Each path from a root, hop by hop, with each buffer's allocation stack.
pub fn chains(c: &Chains) -> String {
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
        for h in &ch.hops {
            match (&h.register, &h.whatis) {
                (Some((tid, reg)), _) => {
                    let name = REGISTERS.get(*reg).copied().unwrap_or("?");
                    let _ = writeln!(o, "  register {name} of thread {tid} = {:#x}", h.value);
                }
                (None, Some(w)) => {
                    let _ = writeln!(o, "  {:#x} = {:#x}  {}", h.at, h.value, whatis::line(w));
                    if let Some(b) = &w.buffer {
                        stack(&mut o, &b.stack, "      ");
                    }
                }
                (None, None) => {
                    let _ = writeln!(o, "  {:#x} = {:#x}  ({})", h.at, h.value, h.holder);
                }
            }
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
