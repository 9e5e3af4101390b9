//! Folded stacks and flame graphs of live memory, drawn by `inferno`.
//!
//! [`folded`] writes one line per allocation site, outermost frame first,
//! with its live bytes: the input `inferno-flamegraph`, Brendan Gregg's
//! `flamegraph.pl`, speedscope and most other tools read. [`svg`] draws it
//! as an interactive SVG (hover for bytes, click to zoom, Ctrl-F to
//! search). [`diff_folded`] pairs two folded profiles with
//! `inferno::differential` into the two-column form, and [`diff_svg`] draws
//! that: widths are the later snapshot's bytes, red where a site grew and
//! blue where it shrank.

use std::io::BufReader;

use inferno::flamegraph::color::{BasicPalette, Palette};
use leaktrail_analysis::profile::Entry;
use leaktrail_analysis::symbolize::{Frame, FrameKind};

/// Flame graph settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FlamegraphOptions {
    /// Title above the graph.
    pub title: String,
    /// A line under the title (what was filtered, which snapshots).
    pub subtitle: Option<String>,
    /// Width in pixels (`None`: inferno's 1200, and the SVG scales).
    pub width: Option<usize>,
    /// Leave out the zoom and search script (for pages that embed
    /// several graphs and want no scripts).
    pub static_only: bool,
}

impl Default for FlamegraphOptions {
    fn default() -> Self {
        FlamegraphOptions {
            title: "Live memory by allocation stack".into(),
            subtitle: None,
            width: None,
            static_only: false,
        }
    }
}

impl FlamegraphOptions {
    /// Defaults with this title.
    pub fn titled(title: impl Into<String>) -> Self {
        FlamegraphOptions {
            title: title.into(),
            ..Default::default()
        }
    }
}

/// A frame as one element of a folded stack: the function (JS frames
/// marked `JS`), else `module+0xOFFSET`, else the address. Semicolons and
/// line breaks, which the format cannot carry, become `:` and spaces.
pub fn frame_name(f: &Frame) -> String {
    let name = match (&f.function, &f.module) {
        (Some(func), _) if f.kind == FrameKind::Js => format!("JS {func}"),
        (Some(func), _) => func.clone(),
        (None, Some(m)) => format!("{m}+{:#x}", f.module_offset),
        (None, None) => format!("{:#x}", f.address),
    };
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// The folded stack of one site: outermost frame first, `;`-separated.
/// A site without a recorded stack is `[no stack]`.
pub fn stack_line(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "[no stack]".into();
    }
    frames
        .iter()
        .rev()
        .map(frame_name)
        .collect::<Vec<_>>()
        .join(";")
}

/// Folded stacks of `entries`, live bytes as the count: one line per
/// distinct stack (entries of one stack in several classes are added up),
/// sorted by stack.
pub fn folded(entries: &[Entry]) -> String {
    let mut lines: std::collections::BTreeMap<String, u64> = Default::default();
    for e in entries {
        if e.bytes > 0 {
            *lines.entry(stack_line(&e.frames)).or_default() += e.bytes;
        }
    }
    let mut out = String::new();
    for (stack, bytes) in lines {
        out.push_str(&stack);
        out.push(' ');
        out.push_str(&bytes.to_string());
        out.push('\n');
    }
    out
}

/// The differential folded form of two folded profiles
/// (`stack before after` per line), by `inferno::differential`.
pub fn diff_folded(before: &str, after: &str) -> std::io::Result<String> {
    let mut out = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        BufReader::new(before.as_bytes()),
        BufReader::new(after.as_bytes()),
        &mut out,
    )?;
    let mut lines: Vec<&str> = std::str::from_utf8(&out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        .lines()
        .collect();
    // inferno writes them in hash order; sorted output diffs and tests well.
    lines.sort_unstable();
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

fn inferno_options(opts: &FlamegraphOptions) -> inferno::flamegraph::Options<'static> {
    let mut o = inferno::flamegraph::Options::default();
    o.title = opts.title.clone();
    o.subtitle = opts.subtitle.clone();
    o.image_width = opts.width;
    o.count_name = "bytes".into();
    o.name_type = "Allocated by:".into();
    o.colors = Palette::Basic(BasicPalette::Mem);
    // Same function, same colour, in every graph: the latest graph and
    // the diff read together.
    o.hash = true;
    o.no_javascript = opts.static_only;
    o
}

fn render(
    folded: &str,
    mut o: inferno::flamegraph::Options<'static>,
    empty_title: &str,
) -> std::io::Result<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = folded.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        // inferno refuses empty input; an empty graph that says so is more
        // useful in a report than an error.
        o.subtitle = Some(empty_title.into());
        inferno::flamegraph::from_lines(&mut o, ["[nothing] 1"], &mut out)?;
    } else {
        inferno::flamegraph::from_lines(&mut o, lines, &mut out)?;
    }
    String::from_utf8(out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// An SVG flame graph of folded stacks (as [`folded`] writes them).
pub fn svg(folded: &str, opts: &FlamegraphOptions) -> std::io::Result<String> {
    render(folded, inferno_options(opts), "no live buffers matched")
}

/// An SVG differential flame graph of [`diff_folded`]'s output: widths
/// are the later snapshot's bytes; red grew, blue shrank.
pub fn diff_svg(diff_folded: &str, opts: &FlamegraphOptions) -> std::io::Result<String> {
    let mut o = inferno_options(opts);
    // Differential colouring needs the palette's hues off.
    o.hash = false;
    render(diff_folded, o, "no live buffers in either snapshot")
}

/// A flame graph SVG (drawn with [`FlamegraphOptions::static_only`]) made
/// fit to sit inside an HTML page next to others: no XML prologue, no
/// script or `onload` (the page's scripts are its own), no style sheet
/// (which would apply to the whole page; the page styles `svg.flamegraph`
/// instead), and every id prefixed with `prefix` so two graphs on one page
/// do not share ids. Hover titles still work without script.
pub fn embeddable(svg: &str, prefix: &str) -> String {
    let mut s = match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => return String::new(),
    };
    for (open, close) in [("<style", "</style>"), ("<script", "</script>")] {
        while let Some(a) = s.find(open) {
            match s[a..].find(close) {
                Some(b) => s.replace_range(a..a + b + close.len(), ""),
                None => break,
            }
        }
    }
    s = s.replacen(" onload=\"init(evt)\"", "", 1);
    s = s.replace(" id=\"", &format!(" id=\"{prefix}"));
    s = s.replace("url(#", &format!("url(#{prefix}"));
    s.replacen("<svg ", "<svg class=\"flamegraph\" ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Frame {
        Frame {
            address: 0x1000,
            function: Some(name.into()),
            file: None,
            line: None,
            module: Some("a.out".into()),
            module_offset: 0x10,
            kind: FrameKind::Native,
            column: None,
            inlined: false,
            start_line: None,
            start_column: None,
        }
    }

    #[test]
    fn stacks_fold_outermost_first_and_sanitise_names() {
        let frames = vec![frame("leaf;x"), frame("mid"), frame("main")];
        assert_eq!(stack_line(&frames), "main;mid;leaf:x");
        assert_eq!(stack_line(&[]), "[no stack]");
    }

    #[test]
    fn diff_pairs_before_and_after() {
        let d = diff_folded("main;a 10\nmain;b 5\n", "main;a 30\nmain;c 7\n").unwrap();
        assert_eq!(d, "main;a 10 30\nmain;b 5 0\nmain;c 0 7\n");
        let svg = diff_svg(&d, &FlamegraphOptions::default()).unwrap();
        assert!(svg.starts_with("<?xml"));
    }

    #[test]
    fn embedded_graphs_have_their_own_ids_and_no_script() {
        let o = FlamegraphOptions {
            static_only: true,
            ..Default::default()
        };
        let svg = svg("main;a 10\nmain;b 5\n", &o).unwrap();
        let e = embeddable(&svg, "fg1-");
        assert!(e.starts_with("<svg class=\"flamegraph\" "));
        assert!(!e.contains("<script") && !e.contains("<style") && !e.contains("onload"));
        assert!(e.contains("id=\"fg1-frames\"") && e.contains("url(#fg1-background)"));
        assert!(!e.contains("id=\"frames\""));
        assert!(e.contains("<title>a (10 bytes"));
    }

    #[test]
    fn empty_input_still_draws() {
        let svg = svg("", &FlamegraphOptions::default()).unwrap();
        assert!(svg.contains("no live buffers matched"));
    }
}
