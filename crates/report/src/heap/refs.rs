//! `leaktrail refs` and `refs --chain`.

use std::fmt::Write;

use leaktrail_analysis::refs::{Chains, Refs};

use super::{count, stack, whatis};
use crate::text::bytes;

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
            "no path from a root to {:#x} within {} levels: it is leaked (see `leaktrail leaks`)",
            c.target, c.levels
        );
        return o;
    }
    for (n, ch) in c.chains.iter().enumerate() {
        let _ = writeln!(o, "path {} ({} hops):", n + 1, ch.hops.len());
        for h in &ch.hops {
            match (&h.register, &h.whatis) {
                (Some((tid, reg)), _) => {
                    let _ = writeln!(o, "  register #{reg} of thread {tid} = {:#x}", h.value);
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
