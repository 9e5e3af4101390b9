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
    /// Also list libc's residue (`Leaks::libc_groups`).
    pub show_libc: bool,
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
    if l.sample_rate != 0 {
        let rate = bytes(l.sample_rate as f64);
        if l.unsampled.blocks > 0 {
            let _ = writeln!(
                o,
                "sampled: one block per {rate} allocated on average (run --sample); counted here is \
                 every block: the sampled ones with their stacks, and {} blocks ({} bytes) found by \
                 the heap walk without",
                count(l.unsampled.blocks),
                count(l.unsampled.bytes)
            );
        } else {
            let _ = writeln!(
                o,
                "sampled: one block per {rate} allocated on average (run --sample); only the sampled \
                 blocks are counted here"
            );
        }
    }
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
    if l.libc.blocks > 0 {
        let _ = writeln!(
            o,
            "  {:<16} {:>14} bytes in {:>10} blocks (freed at exit by libc, not counted above{})",
            "libc internal:",
            count(l.libc.bytes),
            count(l.libc.blocks),
            if opts.show_libc {
                ""
            } else {
                "; --show-libc lists them"
            }
        );
    }
    if l.suppressed.blocks > 0 {
        let _ = writeln!(
            o,
            "  {:<16} {:>14} bytes in {:>10} blocks",
            "suppressed:",
            count(l.suppressed.bytes),
            count(l.suppressed.blocks)
        );
    }
    if !l.suppressions_used.is_empty() {
        let _ = writeln!(o, "suppressions used:");
        for u in &l.suppressions_used {
            let _ = writeln!(
                o,
                "  {:>10} blocks {:>14} bytes  {} ({})",
                count(u.blocks),
                count(u.bytes),
                u.name,
                u.origin
            );
        }
    }
    for w in &l.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    let shown: Vec<_> = l
        .groups
        .iter()
        .filter(|g| opts.reachable || g.kind != LeakKind::Reachable)
        .collect();
    if l.definite.blocks + l.indirect.blocks + l.possible.blocks == 0 && l.incomplete {
        let _ = writeln!(
            o,
            "\nno leaks among the blocks the tracer saw; others it could not see (the warning above says which)"
        );
    } else if l.definite.blocks + l.indirect.blocks + l.possible.blocks == 0 {
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
        // Valgrind's loss record: a definite group owning indirect blocks
        // counts them in its total, "N (D direct, I indirect)".
        let bytes = match (g.indirect_bytes, g.indirect_blocks) {
            (Some(ib), Some(n)) if n > 0 => format!(
                "{} ({} direct, {} indirect) bytes in {} (+{} indirect) blocks",
                count(g.bytes + ib),
                count(g.bytes),
                count(ib),
                count(g.blocks),
                count(n)
            ),
            _ => format!("{} bytes in {} blocks", count(g.bytes), count(g.blocks)),
        };
        let _ = writeln!(
            o,
            "\n{}: {bytes}, oldest {:#x} ({} bytes){}",
            g.kind.describe(),
            g.example_address,
            count(g.example_size),
            super::type_words(g.type_name.as_deref(), g.size_class)
        );
        super::group_stack(&mut o, &g.stack, g.before_attach, g.unsampled, "    ");
    }
    for g in l.libc_groups.iter().filter(|_| opts.show_libc) {
        let _ = writeln!(
            o,
            "\nlibc internal ({}): {} bytes in {} blocks, oldest {:#x} ({} bytes)",
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
