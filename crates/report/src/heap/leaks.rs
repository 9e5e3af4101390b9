//! `leaktrail leaks`.

use std::fmt::Write;

use leaktrail_analysis::leaks::{LeakKind, Leaks};

use super::{count, stack};
use crate::text::bytes;

/// Options for [`text`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LeaksOptions {
    /// Also list the groups that are still reachable.
    pub reachable: bool,
}

/// The summary, then each group: class, bytes, blocks, the oldest block
/// and its allocation stack.
pub fn text(l: &Leaks, opts: &LeaksOptions) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "scanned {} ({} of roots)",
        bytes(l.scanned_bytes as f64),
        bytes(l.root_bytes as f64)
    );
    if let Some(s) = Some(l.scan_seconds).filter(|&s| s > 0.0) {
        let _ = write!(o, " in {s:.2} s, {}/s", bytes(l.scanned_bytes as f64 / s));
        if l.scan_cpu_seconds > 0.0 {
            let _ = write!(
                o,
                " ({:.2} s of CPU: {}/s per core)",
                l.scan_cpu_seconds,
                bytes(l.scanned_bytes as f64 / l.scan_cpu_seconds)
            );
        }
    }
    o.push('\n');
    for k in [
        LeakKind::Definite,
        LeakKind::Indirect,
        LeakKind::Possible,
        LeakKind::Reachable,
    ] {
        let t = l.tally(k);
        let _ = writeln!(
            o,
            "  {:<16} {:>14} bytes in {:>10} blocks",
            format!("{}:", k.describe()),
            count(t.bytes),
            count(t.blocks)
        );
    }
    for w in &l.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    let shown: Vec<_> = l
        .groups
        .iter()
        .filter(|g| opts.reachable || g.kind != LeakKind::Reachable)
        .collect();
    if l.definite.blocks + l.indirect.blocks + l.possible.blocks == 0 {
        let _ = writeln!(
            o,
            "\nno leaks: every live buffer is still referenced{}",
            if opts.reachable {
                ""
            } else {
                " (--reachable lists by whom it was allocated)"
            }
        );
    }
    for g in shown {
        let _ = writeln!(
            o,
            "\n{}: {} bytes in {} blocks, oldest {:#x} ({} bytes)",
            g.kind.describe(),
            count(g.bytes),
            count(g.blocks),
            g.example_address,
            count(g.example_size)
        );
        stack(&mut o, &g.stack, "    ");
    }
    o
}
