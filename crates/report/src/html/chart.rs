//! Small inline SVG charts for the HTML report: a line chart of several
//! series over time, and a sparkline. Hand-written, like `svg.rs`, so the
//! page needs no plotting library and no network.

use std::fmt::Write;

use super::escape;
use crate::text;

/// One line of a chart.
pub struct Line<'a> {
    /// Legend text.
    pub label: String,
    /// Stroke colour.
    pub color: &'a str,
    /// (seconds, bytes) points, in time order.
    pub points: Vec<(f64, f64)>,
}

/// Colours that stay apart for the first lines, growth first.
pub const PALETTE: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn nice(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    // Bytes read better on binary steps.
    if span > 4096.0 {
        let bin = 2f64.powf((raw.log2()).ceil());
        return bin;
    }
    step * mag
}

/// A line chart of `lines` (bytes over seconds), with axes, ticks and a
/// legend; `class` names it for styling and tests.
pub fn lines(lines: &[Line<'_>], width: f64, height: f64, class: &str) -> String {
    let (l, r, t, b) = (80.0, 170.0, 16.0, 36.0);
    let pw = width - l - r;
    let ph = height - t - b;
    let all = lines.iter().flat_map(|s| s.points.iter());
    let (mut t0, mut t1, mut v1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in all {
        t0 = t0.min(x);
        t1 = t1.max(x);
        v1 = v1.max(y);
    }
    if t0 > t1 {
        (t0, t1) = (0.0, 1.0);
    }
    if t1 <= t0 {
        t1 = t0 + 1.0;
    }
    let ystep = nice(v1.max(1.0));
    let vmax = (v1 / ystep).ceil().max(1.0) * ystep;
    let x = |s: f64| l + (s - t0) / (t1 - t0) * pw;
    let y = |v: f64| t + ph - v / vmax * ph;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart {class}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">"#
    );
    let _ = write!(
        out,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>"##
    );
    let mut v = 0.0;
    while v <= vmax + 0.5 {
        let yy = y(v);
        let _ = write!(
            out,
            r##"<line x1="{l}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            l + pw,
            l - 6.0,
            yy + 4.0,
            escape(&text::bytes(v))
        );
        v += ystep;
    }
    let tstep = {
        let span = t1 - t0;
        let candidates = [
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
            7200.0, 14400.0, 43200.0, 86400.0,
        ];
        candidates
            .iter()
            .copied()
            .find(|c| span / c <= 8.0)
            .unwrap_or(span / 6.0)
    };
    let mut s = (t0 / tstep).ceil() * tstep;
    while s <= t1 + 1e-9 {
        let xx = x(s);
        let _ = write!(
            out,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{t}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"##,
            t + ph,
            t + ph + 16.0,
            escape(&text::seconds(s))
        );
        s += tstep;
    }
    for (i, line) in lines.iter().enumerate() {
        let pts: Vec<String> = line
            .points
            .iter()
            .map(|&(s, v)| format!("{:.1},{:.1}", x(s), y(v)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline class="series" fill="none" stroke="{}" stroke-width="2.5" points="{}"><title>{}</title></polyline>"#,
            line.color,
            pts.join(" "),
            escape(&line.label)
        );
        for p in &pts {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                out,
                r#"<circle cx="{px}" cy="{py}" r="3" fill="{}"/>"#,
                line.color
            );
        }
        let ly = t + 14.0 + i as f64 * 18.0;
        let _ = write!(
            out,
            r#"<rect x="{}" y="{:.1}" width="14" height="4" fill="{}"/><text x="{}" y="{:.1}" font-size="12">{}</text>"#,
            l + pw + 12.0,
            ly - 4.0,
            line.color,
            l + pw + 30.0,
            ly + 1.0,
            escape(&line.label)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#555">time since the first snapshot</text>"##,
        l + pw / 2.0,
        height - 4.0
    );
    out.push_str("</svg>");
    out
}

/// A sparkline of `values`: rising reads as rising, no numbers needed.
pub fn sparkline(values: &[f64], width: f64, height: f64, color: &str) -> String {
    let max = values.iter().copied().fold(0.0f64, f64::max).max(1.0);
    let n = values.len().max(2) - 1;
    let pts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            format!(
                "{:.1},{:.1}",
                1.0 + i as f64 / n as f64 * (width - 2.0),
                height - 1.0 - v / max * (height - 2.0)
            )
        })
        .collect();
    format!(
        r##"<svg class="spark" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}"><line x1="0" x2="{width}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/></svg>"##,
        height - 1.0,
        height - 1.0,
        pts.join(" ")
    )
}

/// A horizontal bar of `value` out of `max`.
pub fn bar(value: f64, max: f64, width: f64, color: &str) -> String {
    let w = if max > 0.0 {
        (value / max * width).clamp(0.0, width)
    } else {
        0.0
    };
    format!(
        r##"<svg class="bar" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 12" width="{width}" height="12"><rect width="{width}" height="12" fill="#f0f0f0"/><rect width="{w:.1}" height="12" fill="{color}"/></svg>"##
    )
}
