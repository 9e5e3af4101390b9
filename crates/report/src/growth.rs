//! The text of `leaktrail growth`: the size classes that grew, then the
//! ranked suspects, each with its series in one line and its stack.

use std::fmt::Write;

use leaktrail_analysis::growth::{Growth, SeriesPoint, Stats};
use leaktrail_analysis::symbolize::Frame;
use leaktrail_analysis::v8::{JsHeapGrowth, JsVerdict};

use crate::text;

/// `1,712`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A size class by its largest size: `4096 B`, `64 KiB`, `huge`.
pub fn class(size: u64) -> String {
    if size == u64::MAX {
        "huge".into()
    } else if size <= 8192 {
        format!("{size} B")
    } else {
        text::bytes(size as f64)
    }
}

/// `1,712 → 17,040 buffers, +60.0 MiB, +4.1 MiB/h`.
pub fn series_line(series: &[SeriesPoint], stats: &Stats) -> String {
    let (Some(first), Some(last)) = (series.first(), series.last()) else {
        return String::new();
    };
    format!(
        "{} → {} buffers, {}, {}",
        count(first.count),
        count(last.count),
        text::signed_bytes(last.bytes as f64 - first.bytes as f64),
        text::rate(stats.slope_bytes_per_hour)
    )
}

/// One frame per line, indented, at most `depth` (0: all).
pub fn stack(frames: &[Frame], depth: usize, indent: &str) -> String {
    let mut out = String::new();
    if frames.is_empty() {
        let _ = writeln!(out, "{indent}(no stack recorded)");
    }
    let shown = if depth == 0 {
        frames.len()
    } else {
        depth.min(frames.len())
    };
    for f in &frames[..shown] {
        let _ = writeln!(out, "{indent}{f}");
    }
    if shown < frames.len() {
        let _ = writeln!(out, "{indent}... {} more frames", frames.len() - shown);
    }
    out
}

/// Whether anything grows above noise, in one line.
fn verdict(g: &Growth, above: usize) -> String {
    let noise = text::bytes(g.noise_bytes);
    match above {
        0 if g.snapshots.len() < 4 => format!(
            "no growth above noise can be shown from {} snapshots (a significant rise needs 4 or more)",
            g.snapshots.len()
        ),
        0 => format!(
            "no allocation site grows above noise (heap noise {noise})"
        ),
        1 => format!("1 allocation site grows above noise (heap noise {noise})"),
        n => format!("{n} allocation sites grow above noise (heap noise {noise})"),
    }
}

/// The whole text: at most `top` classes and suspects (0: all), stacks to
/// `depth` frames.
pub fn text(g: &Growth, top: usize, depth: usize) -> String {
    let limit = |n: usize| if top == 0 { n } else { top.min(n) };
    let mut out = String::new();
    let first = g.snapshots.first();
    let last = g.snapshots.last();
    let _ = writeln!(
        out,
        "growth across {} snapshots over {}: live {} → {} ({} → {} buffers)",
        g.snapshots.len(),
        text::seconds(g.span_seconds),
        text::bytes(first.map_or(0, |s| s.live_bytes) as f64),
        text::bytes(last.map_or(0, |s| s.live_bytes) as f64),
        count(first.map_or(0, |s| s.live_count)),
        count(last.map_or(0, |s| s.live_count)),
    );
    out.push_str(&text::sampled_line(g.sample_rate));
    let above = g.suspects.iter().filter(|s| s.stats.significant).count();
    let _ = writeln!(out, "{}", verdict(g, above));
    if g.stackless() {
        let _ = writeln!(out, "{}", leaktrail_analysis::profile::STACKLESS);
    }
    if let Some(t) = g.before_attach() {
        let _ = writeln!(
            out,
            "{}",
            leaktrail_analysis::profile::before_attach_note(t)
        );
    }
    let grew: Vec<_> = g
        .classes
        .iter()
        .filter(|c| c.stats.rise_bytes > 0.0)
        .collect();
    let _ = writeln!(out, "\nsize classes that grew:");
    if grew.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in &grew[..limit(grew.len())] {
        let _ = writeln!(
            out,
            "  {:>8}: {}  (monotonic {:.2}, steady {:.2})",
            class(c.class),
            series_line(&c.series, &c.stats),
            c.stats.monotonicity,
            c.stats.steadiness
        );
    }
    let _ = writeln!(out, "\ngrowth suspects, strongest first:");
    if g.suspects.is_empty() {
        let _ = writeln!(out, "  none: no allocation site holds more at the end");
    }
    for s in &g.suspects[..limit(g.suspects.len())] {
        let _ = writeln!(
            out,
            "\n#{} {}: {}\n   score {} (monotonic {:.2}, steady {:.2}, p {:.3}){}",
            s.rank,
            class(s.class),
            series_line(&s.series, &s.stats),
            text::bytes(s.score),
            s.stats.monotonicity,
            s.stats.steadiness,
            s.stats.p_value,
            if s.stats.significant {
                ", above noise"
            } else {
                ", within noise"
            }
        );
        if let Some(owner) = s.owner {
            let _ = writeln!(out, "   owner: {}", owner.name());
        }
        if let Some(c) = &s.counts {
            let _ = writeln!(out, "   site: {}", site_counts(c));
        }
        out.push_str(&stack(&s.stack, depth, "     "));
    }
    if top != 0 && g.suspects.len() > top {
        let _ = writeln!(
            out,
            "\n({} more growing sites; --top 0 shows all)",
            g.suspects.len() - top
        );
    }
    out
}

/// heaptrack's numbers for a suspect's site in one line: `555
/// allocations, 20 freed, 0 temporary, peak 146.5 KiB after 0.2s; sizes
/// ≤4.0 KiB ×50`.
pub fn site_counts(c: &leaktrail_analysis::profile::SiteCounts) -> String {
    format!(
        "{} allocations, {} freed, {} temporary, peak {} after {}; sizes {}",
        c.allocs,
        c.frees,
        c.temporary,
        text::bytes(c.peak_bytes as f64),
        text::seconds(c.peak_time_ns as f64 / 1e9),
        crate::heap::sites::histogram(&c.sizes)
    )
}

/// The JS heap's growth in one line: `+38,000 Listener objects (+1.5
/// MiB), +38,000 Function onEvent (+2.3 MiB); JS objects +4.1 MiB over 5
/// snapshots`, the steadily growing constructors first (up to three).
pub fn js_heap_line(j: &JsHeapGrowth) -> String {
    let grew: Vec<String> = j
        .growing()
        .take(3)
        .map(|c| {
            format!(
                "{} {} objects ({})",
                signed(c.count_delta()),
                c.constructor,
                text::signed_bytes(c.bytes_delta() as f64)
            )
        })
        .collect();
    let total =
        j.bytes.last().copied().unwrap_or(0) as i64 - j.bytes.first().copied().unwrap_or(0) as i64;
    let objects = format!(
        "JS objects {} over {} snapshots",
        text::signed_bytes(total as f64),
        j.snapshots.len()
    );
    if grew.is_empty() {
        format!("no constructor's objects grow steadily; {objects}")
    } else {
        format!("{}; {objects}", grew.join(", "))
    }
}

/// V8's own numbers, first and last snapshot: `used 3.1 → 5.2 MiB of 4.0
/// → 6.3 MiB committed`.
pub fn v8_heap_line(j: &JsHeapGrowth) -> String {
    let ends = |v: &[u64]| {
        format!(
            "{} → {}",
            text::bytes(v.first().copied().unwrap_or(0) as f64),
            text::bytes(v.last().copied().unwrap_or(0) as f64)
        )
    };
    format!(
        "V8 heap used {} of {} committed ({})",
        ends(&j.used),
        ends(&j.committed),
        match j.verdict {
            JsVerdict::Leak => "JS objects grow: a JS-heap leak",
            JsVerdict::HandleLeak => {
                "global handles grow, no JS objects grow steadily: a handle leak"
            }
            JsVerdict::WarmUp => "V8 grew its heap, no JS objects grow steadily: warm-up",
            JsVerdict::Steady => "steady",
        }
    )
}

/// V8's handles, first and last snapshot: `V8 global handles 1,070 →
/// 5,070 (+4,000); handle-scope blocks 1 → 1; external strings 2.3 → 2.3
/// MiB (off the JS heap)`; a part not found in every snapshot says so.
pub fn v8_handles_line(j: &JsHeapGrowth) -> String {
    let ends = |v: &[u64]| {
        let (a, b) = (
            v.first().copied().unwrap_or(0),
            v.last().copied().unwrap_or(0),
        );
        format!(
            "{} → {} ({})",
            count(a),
            count(b),
            signed(b as i64 - a as i64)
        )
    };
    let global = j.global_handles().map_or_else(
        || "V8 global handles not available (not found in every snapshot)".into(),
        |v| format!("V8 global handles {}", ends(&v)),
    );
    let scopes = j.handle_scope_blocks().map_or_else(
        || "handle-scope blocks not available".into(),
        |v| format!("handle-scope blocks {}", ends(&v)),
    );
    let ext = &j.external_string_bytes;
    format!(
        "{global}; {scopes}; external strings {} → {} (off the JS heap)",
        text::bytes(ext.first().copied().unwrap_or(0) as f64),
        text::bytes(ext.last().copied().unwrap_or(0) as f64)
    )
}

/// The JS heap section of `growth`: the verdict, then the constructors
/// that gained objects, first to last snapshot.
pub fn js_heap_text(j: &JsHeapGrowth, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nJS heap (V8, from the snapshots' memory):");
    let _ = writeln!(out, "  {}", js_heap_line(j));
    let _ = writeln!(out, "  {}", v8_heap_line(j));
    let _ = writeln!(out, "  {}", v8_handles_line(j));
    let gained: Vec<_> = j
        .constructors
        .iter()
        .filter(|c| c.count_delta() > 0)
        .collect();
    let shown = if top == 0 {
        gained.len()
    } else {
        top.min(gained.len())
    };
    for c in &gained[..shown] {
        let _ = writeln!(
            out,
            "  {:>10} → {:>10} objects  {:>10}  {}{}",
            count(c.counts.first().copied().unwrap_or(0)),
            count(c.counts.last().copied().unwrap_or(0)),
            text::signed_bytes(c.bytes_delta() as f64),
            c.constructor,
            if c.grows_steadily() {
                "  << grows steadily"
            } else {
                ""
            }
        );
    }
    out
}

fn signed(n: i64) -> String {
    crate::heap::signed_count(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1712), "1,712");
        assert_eq!(count(17_040_123), "17,040,123");
    }

    #[test]
    fn classes_read_as_sizes() {
        assert_eq!(class(4096), "4096 B");
        assert_eq!(class(65536), "64.0 KiB");
        assert_eq!(class(u64::MAX), "huge");
    }
}
