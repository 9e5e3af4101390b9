//! The text of `leaktrail growth PREFIX` over many processes' recordings:
//! the sites growing across the fleet, then each host's strongest.

use std::fmt::Write;

use leaktrail_analysis::fleet::FleetGrowth;

use crate::growth::{class, series_line, stack};
use crate::text;

/// The whole text: at most `top` sites, and suspects per host (0: all),
/// stacks to `depth` frames.
pub fn text(f: &FleetGrowth, top: usize, depth: usize) -> String {
    let limit = |n: usize| if top == 0 { n } else { top.min(n) };
    let mut out = String::new();
    let mut hosts: Vec<&str> = f.hosts.iter().map(|h| h.host.as_str()).collect();
    hosts.dedup();
    let snapshots: usize = f.hosts.iter().map(|h| h.growth.snapshots.len()).sum();
    let _ = writeln!(
        out,
        "growth across {} recordings on {} hosts ({snapshots} snapshots), each over its own snapshots",
        f.hosts.len(),
        hosts.len()
    );
    for s in &f.skipped {
        let _ = writeln!(out, "skipped {}: {}", s.recording.display(), s.why);
    }
    let _ = writeln!(out, "\nsites growing across the fleet, strongest first:");
    if f.sites.is_empty() {
        let _ = writeln!(
            out,
            "  none: no allocation site holds more at the end anywhere"
        );
    }
    for s in &f.sites[..limit(f.sites.len())] {
        let _ = writeln!(
            out,
            "\n#{} {}: rises in {} of {} recordings, {} in all, {}, score {}; above noise in {}",
            s.rank,
            class(s.class),
            s.shares.len(),
            f.hosts.len(),
            text::signed_bytes(s.rise_bytes),
            text::rate(s.slope_bytes_per_hour),
            text::bytes(s.score),
            s.significant_hosts
        );
        for x in &s.shares {
            let _ = writeln!(
                out,
                "   {}: #{} there, {}, {}{}",
                f.hosts[x.host].host,
                x.rank,
                text::signed_bytes(x.rise_bytes),
                text::rate(x.slope_bytes_per_hour),
                if x.significant { ", above noise" } else { "" }
            );
        }
        out.push_str(&stack(&s.stack, depth, "     "));
    }
    if top != 0 && f.sites.len() > top {
        let _ = writeln!(
            out,
            "\n({} more growing sites; --top 0 shows all)",
            f.sites.len() - top
        );
    }
    let _ = writeln!(out, "\nper host:");
    for h in &f.hosts {
        let g = &h.growth;
        let _ = writeln!(
            out,
            "\n  {} ({}): {} snapshots over {}",
            h.host,
            h.recording.display(),
            g.snapshots.len(),
            text::seconds(g.span_seconds)
        );
        if g.suspects.is_empty() {
            let _ = writeln!(out, "    no growing site");
        }
        for s in &g.suspects[..limit(g.suspects.len())] {
            let _ = writeln!(
                out,
                "    #{} {}: {}{}",
                s.rank,
                class(s.class),
                series_line(&s.series, &s.stats),
                if s.stats.significant {
                    ", above noise"
                } else {
                    ""
                }
            );
            if let Some(frame) = s.stack.first() {
                let _ = writeln!(out, "       {frame}");
            }
        }
    }
    out
}
