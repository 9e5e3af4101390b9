//! `leaktrail bufs`.

use std::fmt::Write;

use leaktrail_analysis::bufs::Bufs;

use super::{count, stack};
use crate::text::bytes;

/// Either the groups by stack (`::umausers`), or one line per buffer
/// (`::bufctl`), each followed by its stack when `verbose`; at most `limit`
/// groups or buffers (0: all), then a line counting the rest.
pub fn text(b: &Bufs, verbose: bool, limit: usize) -> String {
    let mut o = crate::text::sampled_line(b.sample_rate);
    if b.sample_rate != 0 && b.groups.is_empty() {
        o.push_str("(the buffers listed are the sampled ones)\n");
    }
    let limit = if limit == 0 { usize::MAX } else { limit };
    let more = |o: &mut String, total: usize, what: &str| {
        if total > limit {
            let _ = writeln!(
                o,
                "… {} more {what} (use --all)",
                count((total - limit) as u64)
            );
        }
    };
    if !b.groups.is_empty() {
        for g in b.groups.iter().take(limit) {
            let _ = writeln!(
                o,
                "{} bytes in {} buffers, oldest {:#x}{}",
                count(g.bytes),
                count(g.count),
                g.example_address,
                super::type_words(g.type_name.as_deref(), g.size_class)
            );
            super::group_stack(&mut o, &g.stack, g.before_attach, false, "    ");
            o.push('\n');
        }
        more(&mut o, b.groups.len(), "stacks");
    } else {
        let _ = writeln!(
            o,
            "{:>18} {:>10} {:>8} {:>12} {:>8} {:>7}  function / type",
            "address", "size", "class", "time (s)", "thread", "stack"
        );
        for buf in b.buffers.iter().take(limit) {
            let frames = b.stacks.get(&buf.stack_id);
            let _ = writeln!(
                o,
                "{:>#18x} {:>10} {:>8} {:>12.6} {:>8} {:>7}  {}",
                buf.addr,
                count(buf.size),
                count(buf.class),
                buf.time_ns as f64 / 1e9,
                buf.tid,
                buf.stack_id,
                frames
                    .and_then(|f| f.first())
                    .map(|f| f.to_string())
                    .or(buf.type_name.clone())
                    .unwrap_or_default()
            );
            if verbose {
                if let Some(f) = frames {
                    stack(&mut o, f, "        ");
                }
            }
        }
        more(&mut o, b.buffers.len(), "buffers");
    }
    let _ = writeln!(
        o,
        "{} buffers, {}",
        count(b.buffers.len() as u64),
        bytes(b.bytes as f64)
    );
    o
}
