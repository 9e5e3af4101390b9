//! SVG charts, written by hand: no plotting dependency, and the output is a
//! small self-contained file any browser shows.
//!
//! [`trend_chart`] draws a watch: total RSS and RSS per region over time,
//! the fitted Theil–Sen line over the analysed window, and the warm-up
//! shaded.

use std::fmt::Write;

use leaktrail_analysis::trend::Trend;
use leaktrail_recording::Region;
use leaktrail_recording::Sample;

use crate::text;

/// Chart settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SvgOptions {
    /// Width in pixels.
    pub width: f64,
    /// Height in pixels.
    pub height: f64,
    /// Title above the plot.
    pub title: String,
}

impl Default for SvgOptions {
    fn default() -> Self {
        SvgOptions {
            width: 960.0,
            height: 480.0,
            title: "leaktrail watch".into(),
        }
    }
}

impl SvgOptions {
    /// Default size with this title.
    pub fn titled(title: impl Into<String>) -> Self {
        SvgOptions {
            title: title.into(),
            ..SvgOptions::default()
        }
    }
}

fn color(r: Option<Region>) -> &'static str {
    match r {
        None => "#222222",
        Some(Region::Heap) => "#d62728",
        Some(Region::Anon) => "#1f77b4",
        Some(Region::Stack) => "#2ca02c",
        Some(Region::File) => "#9467bd",
        Some(Region::Shmem) => "#ff7f0e",
        Some(Region::Tracer) => "#7f7f7f",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" tick step (1, 2 or 5 times a power of `base`) giving about
/// `want` ticks over `span`.
fn nice_step(span: f64, want: f64, base: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / want;
    let mag = base.powf(raw.log(base).floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A time tick step in seconds: 1-2-5 below a minute, then whole minutes
/// and hours.
fn time_step(span: f64) -> f64 {
    const STEPS: [f64; 14] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    ];
    let raw = span / 8.0;
    STEPS
        .iter()
        .copied()
        .find(|s| *s >= raw)
        .unwrap_or_else(|| nice_step(span, 8.0, 10.0).max(3600.0))
}

/// The trend chart of a watch.
pub fn trend_chart(samples: &[Sample], trend: &Trend, options: &SvgOptions) -> String {
    let (w, h) = (options.width, options.height);
    let (left, right, top, bottom) = (80.0, 150.0, 48.0, 48.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1e-3);
    // The program's RSS, as trend judged it: the tracer's memory left out.
    let program = leaktrail_analysis::trend::program_rss(samples);
    let v_max = program.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.08;
    let x = |t: f64| left + pw * (t / t_max).clamp(0.0, 1.0);
    let y = |v: f64| top + ph * (1.0 - (v / v_max).clamp(0.0, 1.0));

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(&options.title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{left}" y="38" fill="#444">{} {} (95% CI {} .. {}){}</text>"##,
        trend.verdict,
        escape(&text::rate(trend.slope_bytes_per_hour)),
        escape(&text::rate(trend.ci_low)),
        escape(&text::rate(trend.ci_high)),
        trend
            .growth_region
            .as_ref()
            .map(|r| format!(", growth in the {}", text::growth_words(r)))
            .unwrap_or_default()
    );

    // Warm-up band.
    if trend.warmup_seconds > 0.0 {
        let x1 = x(trend.warmup_seconds);
        let _ = writeln!(
            out,
            r##"<rect x="{left}" y="{top}" width="{:.1}" height="{ph}" fill="#f2e6c9"/><text x="{:.1}" y="{:.1}" fill="#8a6d1d">warm-up</text>"##,
            x1 - left,
            left + 4.0,
            top + 14.0
        );
    }

    // Grid and axes.
    // Steps of 1, 2 or 5 in the unit the labels use (KiB, MiB, GiB).
    let mut unit = 1.0;
    while v_max / unit >= 1024.0 {
        unit *= 1024.0;
    }
    let vstep = (nice_step(v_max / unit, 6.0, 10.0) * unit).max(1.0);
    let mut v = 0.0;
    while v <= v_max {
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0,
            escape(&text::bytes(v))
        );
        v += vstep;
    }
    let tstep = time_step(t_max);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let xx = x(t);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            top + ph,
            top + ph + 16.0,
            escape(&text::seconds(t))
        );
        t += tstep;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">time since start</text>"##,
        left + pw / 2.0,
        h - 10.0
    );

    // Series: total RSS from every sample, regions from full samples.
    let stride = (samples.len() / 2000).max(1);
    let mut series: Vec<(Option<Region>, String)> = Vec::new();
    let total: Vec<String> = samples
        .iter()
        .zip(&program)
        .step_by(stride)
        .map(|(s, &v)| format!("{:.1},{:.1}", x(s.t), y(v as f64)))
        .collect();
    series.push((None, total.join(" ")));
    for r in Region::ALL {
        let pts: Vec<(f64, u64)> = samples
            .iter()
            .filter_map(|s| s.regions.map(|b| (s.t, b.get(r))))
            .collect();
        if pts.iter().all(|(_, v)| *v == 0) {
            continue;
        }
        let stride = (pts.len() / 2000).max(1);
        let line: Vec<String> = pts
            .iter()
            .step_by(stride)
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v as f64)))
            .collect();
        series.push((Some(r), line.join(" ")));
    }
    for (r, pts) in &series {
        let width = if r.is_none() { 2.0 } else { 1.5 };
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="{width}" points="{pts}"/>"#,
            color(*r)
        );
    }

    // Fitted line.
    if let Some(f) = trend.fit {
        let at = |t: f64| f.intercept_bytes + f.slope_bytes_per_second * t;
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000" stroke-width="1.5" stroke-dasharray="6 4"/>"##,
            x(f.t_start),
            y(at(f.t_start)),
            x(f.t_end),
            y(at(f.t_end))
        );
    }

    // Legend.
    let lx = left + pw + 16.0;
    let mut ly = top + 8.0;
    let mut entry = |out: &mut String, stroke: &str, dash: &str, label: &str| {
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{stroke}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            escape(label)
        );
        ly += 20.0;
    };
    for (r, _) in &series {
        let label = match r {
            None => "total rss".to_string(),
            Some(r) => r.name().to_string(),
        };
        entry(&mut out, color(*r), "", &label);
    }
    if trend.fit.is_some() {
        entry(
            &mut out,
            "#000",
            r#" stroke-dasharray="6 4""#,
            "fitted (Theil-Sen)",
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(nice_step(100.0, 5.0, 10.0), 20.0);
        assert_eq!(time_step(4.0), 0.5);
        assert_eq!(time_step(600.0), 120.0);
        assert_eq!(escape("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }
}
