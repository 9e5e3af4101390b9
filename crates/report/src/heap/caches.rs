//! `leaktrail caches`.

use std::fmt::Write;

use leaktrail_analysis::caches::Caches;

use super::{count, signed_count};
use crate::text::{bytes, signed_bytes};

/// One row per size class: with one snapshot its live buffers, bytes,
/// allocs and frees; with several, live buffers per snapshot, then the
/// change in buffers and bytes, `<<` on the classes that grew most. At most
/// `columns` snapshot columns (0: all), evenly spread, the first and the
/// last always: a long recording must fit a terminal.
pub fn text(c: &Caches, names: &[String], columns: usize) -> String {
    let mut o = String::new();
    if c.sample_rate != 0 {
        let _ = writeln!(
            o,
            "sampled: one block per {} allocated on average (run --sample); the classes count every block, unsampled ones by the allocator's usable size",
            bytes(c.sample_rate as f64)
        );
    }
    if c.totals.len() <= 1 {
        let _ = writeln!(
            o,
            "{:>10} {:>12} {:>12} {:>14} {:>14}",
            "class", "live", "live bytes", "allocs", "frees"
        );
        for r in &c.classes {
            let _ = writeln!(
                o,
                "{:>10} {:>12} {:>12} {:>14} {:>14}",
                count(r.size),
                count(r.live_count),
                bytes(r.live_bytes as f64),
                count(r.allocs),
                count(r.frees)
            );
        }
        if let Some(t) = c.totals.first() {
            let _ = writeln!(
                o,
                "{:>10} {:>12} {:>12} {:>14} {:>14}",
                "total",
                count(t.live_count),
                bytes(t.live_bytes as f64),
                count(t.allocs),
                count(t.frees)
            );
        }
        return o;
    }
    let shown = crate::text::spread(c.totals.len(), columns);
    let _ = write!(o, "{:>10}", "class");
    for (i, n) in names.iter().enumerate().filter(|(i, _)| shown.contains(i)) {
        let short = n.rsplit('/').next().unwrap_or(n);
        let label = if short.len() > 12 {
            format!("#{}", i + 1)
        } else {
            short.to_string()
        };
        let _ = write!(o, " {label:>12}");
    }
    let _ = writeln!(o, " {:>12} {:>12}", "change", "bytes");
    for r in &c.classes {
        let _ = write!(o, "{:>10}", count(r.size));
        for s in shown.iter().filter_map(|&i| r.snapshots.get(i)) {
            let _ = write!(o, " {:>12}", count(s.live_count));
        }
        let d = r.delta.unwrap_or_default();
        let _ = writeln!(
            o,
            " {:>12} {:>12}{}",
            signed_count(d.live_count),
            signed_bytes(d.live_bytes as f64),
            if r.grew_most { "  << grew most" } else { "" }
        );
    }
    let _ = write!(o, "{:>10}", "total");
    for t in shown.iter().filter_map(|&i| c.totals.get(i)) {
        let _ = write!(o, " {:>12}", count(t.live_count));
    }
    if let (Some(a), Some(b)) = (c.totals.first(), c.totals.last()) {
        let _ = write!(
            o,
            " {:>12} {:>12}",
            signed_count(b.live_count as i64 - a.live_count as i64),
            signed_bytes(b.live_bytes as f64 - a.live_bytes as f64)
        );
    }
    o.push('\n');
    o
}
