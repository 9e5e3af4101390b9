//! Text renderings of the single-snapshot analyses (`leaks`, `caches`,
//! `bufs`, `whatis`, `refs`, `dump`): mdb's dcmds, as tables people read.

pub mod bufs;
pub mod caches;
pub mod dump;
pub mod leaks;
pub mod refs;
pub mod whatis;

use std::fmt::Write;

use leaktrail_analysis::symbolize::Frame;

/// `12,345,678`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `+1,234` / `-5` / `0`.
pub fn signed_count(n: i64) -> String {
    match n {
        0 => "0".into(),
        n if n > 0 => format!("+{}", count(n as u64)),
        n => format!("-{}", count(n.unsigned_abs())),
    }
}

/// A stack, one frame a line, each line indented by `indent`.
pub fn stack(out: &mut String, frames: &[Frame], indent: &str) {
    if frames.is_empty() {
        let _ = writeln!(out, "{indent}(no stack recorded)");
    }
    for f in frames {
        let _ = writeln!(out, "{indent}{f}");
    }
}
