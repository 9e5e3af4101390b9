//! Plain-text renderings: the trend verdict, the live watch line, the maps
//! diff, and the byte, rate and duration formats they share.

use std::fmt::Write;

use leaktrail_analysis::maps_diff::{MapsDiff, Presence};
use leaktrail_analysis::trend::{Trend, Verdict};
use leaktrail_recording::maps::LimitSource;
use leaktrail_recording::Sample;

/// `1.5 MiB`, `512 B`, `3.2 GiB` (binary units, one decimal).
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n.abs();
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    let sign = if n < 0.0 { "-" } else { "" };
    if u == 0 {
        format!("{sign}{v:.0} {}", UNITS[u])
    } else {
        format!("{sign}{v:.1} {}", UNITS[u])
    }
}

/// Like [`bytes`] with an explicit `+` for growth.
pub fn signed_bytes(n: f64) -> String {
    if n > 0.0 {
        format!("+{}", bytes(n))
    } else if n == 0.0 {
        "0 B".to_string()
    } else {
        bytes(n)
    }
}

/// A rate given in bytes per hour, as `+7.2 GiB/h`.
pub fn rate(bytes_per_hour: f64) -> String {
    format!("{}/h", signed_bytes(bytes_per_hour))
}

/// Which of `n` columns to show when at most `k` fit (0: all): evenly
/// spread, the first and the last always.
pub fn spread(n: usize, k: usize) -> Vec<usize> {
    if k == 0 || n <= k.max(2) {
        return (0..n).collect();
    }
    let k = k.max(2);
    let mut v: Vec<usize> = (0..k).map(|i| i * (n - 1) / (k - 1)).collect();
    v.dedup();
    v
}

/// Seconds as `250ms`, `4.2s`, `12m30s`, `3h05m`, `2.5d`.
pub fn seconds(s: f64) -> String {
    leaktrail_recording::duration::format_seconds(s)
}

fn limit_source(s: LimitSource) -> &'static str {
    match s {
        LimitSource::CgroupV2 => "cgroup memory.max",
        LimitSource::CgroupV1 => "cgroup memory.limit_in_bytes",
        LimitSource::Physical => "physical memory",
    }
}

/// The trend report, as printed by `trend` and at the end of `watch`.
pub fn trend(t: &Trend) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "verdict:  {}  {} (95% CI {} .. {})",
        t.verdict,
        rate(t.slope_bytes_per_hour),
        rate(t.ci_low),
        rate(t.ci_high)
    );
    let _ = writeln!(out, "          {}", t.reason);
    let warmup = if t.warmup_seconds > 0.0 {
        format!(
            "the first {} excluded as warm-up",
            seconds(t.warmup_seconds)
        )
    } else {
        "no warm-up".to_string()
    };
    let _ = writeln!(
        out,
        "samples:  {} over {}; {warmup}; {} analysed",
        t.samples,
        seconds(t.duration_seconds),
        t.analysed_samples
    );
    let _ = write!(
        out,
        "rss:      {} at the last sample",
        bytes(t.rss_bytes as f64)
    );
    if let (Some(limit), Some(src)) = (t.limit_bytes, t.limit_source) {
        let _ = write!(
            out,
            "; limit {} ({})",
            bytes(limit as f64),
            limit_source(src)
        );
        if let Some(s) = t.time_to_limit_seconds {
            let _ = write!(out, ", reached in ~{} at this rate", seconds(s));
        }
    }
    out.push('\n');
    if t.tracer_bytes > 0 {
        let _ = writeln!(out, "{}", tracer_line(t.tracer_bytes));
    }
    if let Some(r) = &t.growth_region {
        let _ = writeln!(out, "growth:   in the {}", growth_words(r));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<11} {:<13} {:>14} {:>11}",
        "region", "verdict", "slope", "rss"
    );
    for r in &t.regions {
        let _ = writeln!(
            out,
            "{:<11} {:<13} {:>14} {:>11}",
            region_words(&r.name),
            r.verdict.name(),
            rate(r.slope_bytes_per_hour),
            bytes(r.rss_bytes as f64)
        );
    }
    out
}

/// A region in the words of someone reading a report: `heap` is glibc's
/// (brk and arena) heap, which a Node user would otherwise read as the JS
/// heap, so it is the `malloc heap`; the rest keep their names.
pub fn region_words(name: &str) -> &str {
    match name {
        "heap" => "malloc heap",
        other => other,
    }
}

/// A region as a sentence names it (`growth in the ...`): as
/// [`region_words`], and `anon` in full, `anonymous mappings` (where V8
/// keeps a Node.js process's JS heap).
pub fn growth_words(name: &str) -> &str {
    match name {
        "anon" => "anonymous mappings",
        other => region_words(other),
    }
}

/// For a Node.js process watched without the tracer: the regions in a
/// Node user's terms. Its JS objects live in V8's heap, anonymous mappings
/// V8 makes; the malloc heap holds native memory and, through Node's
/// allocator, ArrayBuffer/Buffer backing stores. Only `leaktrail run`'s
/// stacks split them by owner.
pub fn node_regions(t: &Trend) -> String {
    let mut out = String::from("Node.js memory, from /proc alone:\n");
    for (name, words) in [
        ("anon", "V8 heap (JS) and other anonymous"),
        ("heap", "malloc heap (native, Buffers)"),
    ] {
        if let Some(r) = t.regions.iter().find(|r| r.name == name) {
            let _ = writeln!(
                out,
                "  {:<36} {:>10}  {:<12} {:>14}",
                words,
                bytes(r.rss_bytes as f64),
                r.verdict.name(),
                rate(r.slope_bytes_per_hour)
            );
        }
    }
    out.push_str("  (`leaktrail run -- node ...` splits them by owner: V8 heap (JS), Buffers, handles, native)\n");
    out
}

/// The line a view of a sampled audit starts with (`run --sample`): the
/// rate, and that its counts and bytes are estimates. Empty for a full
/// audit.
pub fn sampled_line(rate: u64) -> String {
    if rate == 0 {
        return String::new();
    }
    format!(
        "sampled: one block per {} allocated on average (run --sample); counts and bytes are estimates\n",
        bytes(rate as f64)
    )
}

/// The words a title or comment of a sampled view ends with:
/// `; estimated from a sample, one block per 512.0 KiB`. Empty for a full
/// audit.
pub fn sampled_words(rate: u64) -> String {
    if rate == 0 {
        return String::new();
    }
    format!(
        "; estimated from a sample, one block per {}",
        bytes(rate as f64)
    )
}

/// The tracer's own memory, kept apart from the program's figures.
pub fn tracer_line(bytes_: u64) -> String {
    format!(
        "leaktrail's own: {} (the tracer's audit region; not counted above)",
        bytes(bytes_ as f64)
    )
}

/// One line of the live view: time, RSS, change since the previous
/// sample, and the running verdict when there is one.
pub fn live_line(samples: &[Sample], running: Option<&Trend>) -> String {
    let Some(last) = samples.last() else {
        return String::new();
    };
    let delta = samples
        .len()
        .checked_sub(2)
        .map(|i| last.rss as f64 - samples[i].rss as f64)
        .unwrap_or(0.0);
    let mut line = format!(
        "{:>8}  rss {:>10}  {:>11}",
        seconds(last.t),
        bytes(last.rss as f64),
        signed_bytes(delta)
    );
    // Per-region bytes come with the detailed samples only: the newest.
    if let Some(r) = samples.iter().rev().find_map(|s| s.regions.as_ref()) {
        let _ = write!(line, "  heap {:>10}", bytes(r.heap as f64));
    }
    if let Some(t) = running {
        let _ = write!(line, "  {:<12}", t.verdict.name());
        if t.verdict != Verdict::Inconclusive || t.slope_bytes_per_hour != 0.0 {
            let _ = write!(line, " {}", rate(t.slope_bytes_per_hour));
        }
        if let Some(r) = &t.growth_region {
            let _ = write!(line, " in the {}", growth_words(r));
        }
    }
    line
}

/// The maps diff: regions, then the `limit` largest mapping changes. With
/// a `width`, the address column is left out when it would leave the names
/// fewer than 24 columns (the caller shortens long names to the width).
pub fn maps_diff(d: &MapsDiff, limit: usize, width: Option<usize>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "total rss {} -> {} ({})",
        bytes(d.rss_a as f64),
        bytes(d.rss_b as f64),
        signed_bytes(d.delta as f64)
    );
    if d.tracer_a > 0 || d.tracer_b > 0 {
        let _ = writeln!(
            out,
            "leaktrail's own: {} -> {} (the tracer's audit region; not counted above)",
            bytes(d.tracer_a as f64),
            bytes(d.tracer_b as f64)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<7} {:>11} {:>11} {:>12}",
        "region", "rss A", "rss B", "delta"
    );
    for r in &d.regions {
        let _ = writeln!(
            out,
            "{:<7} {:>11} {:>11} {:>12}",
            r.name,
            bytes(r.rss_a as f64),
            bytes(r.rss_b as f64),
            signed_bytes(r.delta as f64)
        );
    }
    let _ = writeln!(out);
    let shown: Vec<_> = d
        .mappings
        .iter()
        .filter(|m| m.delta != 0)
        .take(limit)
        .collect();
    let address =
        |m: &leaktrail_analysis::maps_diff::MappingDelta| format!("{:x}-{:x}", m.start, m.end);
    let aw = shown
        .iter()
        .map(|m| address(m).len())
        .max()
        .unwrap_or(0)
        .max("address (in B)".len());
    // delta, rss A, rss B, region, perm and their spaces.
    let fixed = 12 + 1 + 10 + 1 + 10 + 1 + 6 + 1 + 4 + 1;
    let with_address = width.is_none_or(|w| fixed + aw + 1 + 24 <= w);
    let _ = write!(
        out,
        "{:>12} {:>10} {:>10} {:<6} {:<4} ",
        "delta", "rss A", "rss B", "region", "perm"
    );
    if with_address {
        let _ = write!(out, "{:<aw$} ", "address (in B)");
    }
    let _ = writeln!(out, "name");
    for m in &shown {
        let mark = match m.presence {
            Presence::Both => "",
            Presence::Added => " (new)",
            Presence::Removed => " (gone)",
        };
        let _ = write!(
            out,
            "{:>12} {:>10} {:>10} {:<6} {:<4} ",
            signed_bytes(m.delta as f64),
            bytes(m.rss_a as f64),
            bytes(m.rss_b as f64),
            m.region.name(),
            m.perms,
        );
        if with_address {
            let _ = write!(out, "{:<aw$} ", address(m));
        }
        let _ = writeln!(out, "{}{}", m.name, mark);
    }
    let unchanged = d.mappings.iter().filter(|m| m.delta == 0).count();
    let hidden = d.mappings.len() - unchanged - shown.len();
    match (hidden, unchanged) {
        (0, 0) => {}
        (0, u) => {
            let _ = writeln!(out, "({u} mappings unchanged)");
        }
        (h, u) => {
            let _ = writeln!(
                out,
                "({h} smaller changes not shown; {u} mappings unchanged)"
            );
        }
    }
    out
}

/// The owner split of a Node.js recording: bytes per owner from the first
/// snapshot to the last, and the slope.
pub fn owner_trend(t: &leaktrail_analysis::owner::OwnerTrend) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let span = t.t_seconds.last().copied().unwrap_or(0.0);
    let _ = writeln!(
        out,
        "Node.js memory by owner, over {} snapshots ({}):",
        t.t_seconds.len(),
        seconds(span)
    );
    for o in &t.owners {
        let first = o.bytes.first().copied().unwrap_or(0);
        let last = o.bytes.last().copied().unwrap_or(0);
        let mark = if Some(o.owner) == t.growing {
            "  <- grows the most"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:<36} {:>10} -> {:>10}  {:>14}{mark}",
            o.name,
            bytes(first as f64),
            bytes(last as f64),
            rate(o.slope_bytes_per_hour)
        );
    }
    if let Some(g) = &t.global_handles {
        let (first, last) = (
            g.first().copied().unwrap_or(0),
            g.last().copied().unwrap_or(0),
        );
        let _ = writeln!(
            out,
            "  {:<36} {:>10} -> {:>10}  {:>14}",
            "V8 global handles (count)",
            crate::growth::count(first),
            crate::growth::count(last),
            crate::heap::signed_count(last as i64 - first as i64)
        );
    }
    if t.growing.is_none() {
        let _ = writeln!(out, "  no owner grows above noise");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use leaktrail_analysis::trend::{RegionTrend, Trend, Verdict};

    fn trend_fixture() -> Trend {
        Trend {
            verdict: Verdict::Growing,
            reason: "steady increasing trend (Mann-Kendall p < 1e-6)".into(),
            slope_bytes_per_hour: 7.0 * 1024.0 * 1024.0 * 1024.0,
            ci_low: 6.5 * 1024.0 * 1024.0 * 1024.0,
            ci_high: 7.5 * 1024.0 * 1024.0 * 1024.0,
            regions: vec![RegionTrend {
                name: "heap".into(),
                verdict: Verdict::Growing,
                slope_bytes_per_hour: 7.0 * 1024.0 * 1024.0 * 1024.0,
                ci_low: 0.0,
                ci_high: 0.0,
                rss_bytes: 8 << 20,
                reason: String::new(),
            }],
            growth_region: Some("heap".into()),
            warmup_seconds: 1.5,
            time_to_limit_seconds: Some(3.0 * 3600.0 + 300.0),
            limit_bytes: Some(1 << 30),
            limit_source: Some(LimitSource::CgroupV2),
            samples: 40,
            analysed_samples: 25,
            duration_seconds: 4.0,
            rss_bytes: 9 << 20,
            tracer_bytes: 12 << 20,
            mann_kendall: None,
            fit: None,
        }
    }

    /// The tracer's own line is there (issue 13).
    #[test]
    fn trend_text() {
        let text = trend(&trend_fixture());
        let want = "\
verdict:  growing  +7.0 GiB/h (95% CI +6.5 GiB/h .. +7.5 GiB/h)
          steady increasing trend (Mann-Kendall p < 1e-6)
samples:  40 over 4s; the first 1.5s excluded as warm-up; 25 analysed
rss:      9.0 MiB at the last sample; limit 1.0 GiB (cgroup memory.max), reached in ~3h05m at this rate
leaktrail's own: 12.0 MiB (the tracer's audit region; not counted above)
growth:   in the malloc heap

region      verdict                slope         rss
malloc heap growing           +7.0 GiB/h     8.0 MiB
";
        assert_eq!(text, want);
    }

    #[test]
    fn live() {
        use leaktrail_recording::Sample;
        let s = |i: u64, rss: u64| Sample {
            i,
            t: i as f64 * 0.5,
            rss,
            pss: 0,
            anon: 0,
            swap: 0,
            regions: None,
            detail: false,
        };
        assert_eq!(live_line(&[], None), "");
        assert_eq!(
            live_line(&[s(0, 1 << 20)], None),
            "      0s  rss    1.0 MiB          0 B"
        );
        assert_eq!(
            live_line(&[s(0, 1 << 20), s(1, 3 << 20)], Some(&trend_fixture())),
            "   500ms  rss    3.0 MiB     +2.0 MiB  growing      +7.0 GiB/h in the malloc heap"
        );
    }

    #[test]
    fn spread_keeps_the_ends() {
        assert_eq!(spread(3, 0), [0, 1, 2]);
        assert_eq!(spread(3, 8), [0, 1, 2]);
        assert_eq!(spread(10, 4), [0, 3, 6, 9]);
        assert_eq!(spread(10, 1), [0, 9]);
    }

    #[test]
    fn formats() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(-3.0 * 1024.0 * 1024.0), "-3.0 MiB");
        assert_eq!(rate(7.5 * 1024.0 * 1024.0 * 1024.0), "+7.5 GiB/h");
        assert_eq!(rate(0.0), "0 B/h");
        assert_eq!(seconds(0.25), "250ms");
        assert_eq!(seconds(4.0), "4s");
        assert_eq!(seconds(750.0), "12m30s");
        assert_eq!(seconds(3.0 * 86400.0), "3.0d");
    }
}
