//! The short diagnosis of a recording, in a few lines of text: what grows,
//! which function allocates it, and what is truly lost.

use std::fmt::Write;

use leaktrail_analysis::investigation::Investigation;
use leaktrail_analysis::symbolize::Frame;

use crate::growth::{class, count, series_line};
use crate::text;

/// The innermost frame that names a function, as `name (file:line)`.
pub fn site(frames: &[Frame]) -> String {
    match frames.iter().find(|f| f.function.is_some()) {
        Some(f) => {
            let name = f.function.as_deref().unwrap_or("??");
            match (&f.file, f.line) {
                (Some(file), Some(line)) => {
                    let short = file.rsplit('/').next().unwrap_or(file);
                    format!("{name} ({short}:{line})")
                }
                _ => name.to_string(),
            }
        }
        None => frames
            .first()
            .map_or_else(|| "an unknown site".into(), |f| f.to_string()),
    }
}

/// The diagnosis.
pub fn text(inv: &Investigation) -> String {
    let d = inv.diagnosis();
    let t = &inv.trend;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  resident memory:   {} {}{}",
        t.verdict,
        text::rate(t.slope_bytes_per_hour),
        t.growth_region
            .as_ref()
            .map(|r| format!(", growth in {r}"))
            .unwrap_or_default()
    );
    match d.class {
        Some(c) => {
            let _ = writeln!(
                out,
                "  growing class:     {}: {}",
                class(c.class),
                series_line(&c.series, &c.stats)
            );
        }
        None => {
            let _ = writeln!(out, "  growing class:     none steadily growing");
        }
    }
    match d.suspect {
        Some(s) => {
            let _ = writeln!(
                out,
                "  leaking function:  {} keeps {} buffers: {}",
                site(&s.stack),
                class(s.class),
                series_line(&s.series, &s.stats)
            );
            if d.suspect_reachable == Some(true) {
                let _ = writeln!(
                    out,
                    "                     still referenced: reachability (findleaks) cannot see this one"
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  leaking function:  no allocation site grows steadily"
            );
        }
    }
    match (d.lost, d.lost_total) {
        (Some(g), Some(total)) => {
            let _ = writeln!(
                out,
                "  truly leaked:      {}: {} definitely lost in {} buffers (of {} in {} overall)",
                site(&g.stack),
                text::bytes(g.bytes as f64),
                count(g.blocks),
                text::bytes(total.bytes as f64),
                count(total.blocks)
            );
        }
        (None, Some(_)) => {
            let _ = writeln!(out, "  truly leaked:      nothing definitely lost");
        }
        _ => {
            let _ = writeln!(
                out,
                "  truly leaked:      not scanned (no snapshot with --memory full)"
            );
        }
    }
    out
}
