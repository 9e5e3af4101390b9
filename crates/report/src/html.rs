//! The one-page HTML report of a recording: one self-contained file, with
//! every chart inline (SVG), its style sheet inline and one small inline
//! script, and no URL it would have to fetch, so it opens offline, from a
//! mail attachment or a CI artifact.
//!
//! It follows the story: is it growing (the trend verdict, RSS per region
//! over time with the fitted line), which size class grows (the table
//! across snapshots and a chart of the top growing classes), which
//! allocation sites grow (the ranked suspects, each with a sparkline and
//! its stack), where the live memory is (the latest flame graph, and the
//! diff against the first snapshot: red grew), what reachability says
//! (findleaks on the latest full snapshot), and what was captured and how.
//!
//! Charts are drawn so that a glance answers the question: lines that rise,
//! bars that are long, red that is wide. The numbers are there for those
//! who want them.
//!
//! Beside the static charts, the page is an explorer (see `explorer`): a
//! sortable, filterable table of every site, a flame graph that zooms and
//! searches, and a snapshot slider that redraws both and the size classes,
//! drawn by an inline script from embedded JSON. A first inline script
//! records errors and console errors into the page (`<body
//! data-errors="N">` and a hidden list), so a headless browser can check
//! that the page rendered cleanly.

/// An owner chain drawn for a suspect: the suspect's rank and the text of
/// `leaktrail refs --chain` for one of its buffers.
pub type OwnerChain = (usize, String);

mod chart;
mod explorer;

pub use explorer::{MAX_CLASSES, MAX_SITES, MAX_SNAPSHOTS};

use std::fmt::Write;

use leaktrail_analysis::investigation::{FirstSuspect, Investigation};
use leaktrail_analysis::leaks::{LeakKind, Leaks};
use leaktrail_analysis::profile::{Profile, SiteKey};
use leaktrail_analysis::symbolize::Frame;
use leaktrail_recording::dir as recording;

use crate::flamegraph::{self as fg, FlamegraphOptions};
use crate::growth::{class as class_name, count, series_line};
use crate::{diagnosis, svg, text};

/// Report settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HtmlOptions {
    /// Page title [default: from the recording's command].
    pub title: Option<String>,
    /// Suspects shown.
    pub suspects: usize,
    /// Size classes in the table.
    pub classes: usize,
    /// Snapshot columns in the size-class table (first and last always).
    pub snapshot_columns: usize,
    /// Classes drawn in the growth chart.
    pub chart_classes: usize,
    /// Leak groups listed.
    pub leak_groups: usize,
    /// Frames shown per stack.
    pub depth: usize,
}

impl Default for HtmlOptions {
    fn default() -> Self {
        HtmlOptions {
            title: None,
            suspects: 10,
            classes: 12,
            snapshot_columns: 8,
            chart_classes: 5,
            leak_groups: 8,
            depth: 16,
        }
    }
}

/// HTML-escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64, for the downloadable interactive flame graphs.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(A[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const STYLE: &str = r#"
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #f4f5f7; }
header { background: #1d2733; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .sub { color: #b8c2cc; font-size: 13px; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 32px 48px; }
section { background: #fff; border-radius: 8px; padding: 16px 24px; margin: 16px 0; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { font-size: 18px; margin: 4px 0 12px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600; color: #fff; }
.verdict.growing { background: #d62728; } .verdict.flat { background: #2ca02c; } .verdict.inconclusive { background: #888; }
.diagnosis li { margin: 4px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #fafafa; position: sticky; top: 0; }
td.l, th.l { text-align: left; }
tr.grew td { background: #fff2f0; }
.up { color: #c0392b; font-weight: 600; } .down { color: #1f77b4; }
pre.stack { margin: 4px 0 8px 0; font-size: 12px; background: #f7f7f9; padding: 6px 10px; border-radius: 4px; overflow-x: auto; }
details summary { cursor: pointer; }
.suspect { border-left: 4px solid #d62728; padding: 4px 12px; margin: 10px 0; }
.suspect.weak { border-left-color: #bbb; }
.suspect .head { font-weight: 600; }
.muted { color: #777; font-size: 13px; }
svg.chart, svg.trend { max-width: 100%; height: auto; }
svg.flamegraph { width: 100%; height: auto; display: block; }
svg.flamegraph text { font-family: monospace; font-size: 12px; }
svg.flamegraph text[id$="-title"], svg.flamegraph text[id$="-subtitle"] { text-anchor: middle; }
svg.flamegraph text[id$="-title"] { font-size: 17px; }
svg.flamegraph text[id$="-search"], svg.flamegraph text[id$="-unzoom"], svg.flamegraph text[id$="-matched"] { display: none; }
svg.flamegraph g:hover > rect { stroke: #000; stroke-width: .5; }
.kv { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 14px; }
.kv dt { color: #666; } .kv dd { margin: 0; }
.leakbar td:first-child { text-align: left; }
#errors { display: none; }
"#;

/// Records script errors and console errors into the page, for the eyes
/// of a headless browser.
const SCRIPT: &str = r#"
(function () {
  var errors = [];
  function note(msg) {
    errors.push(String(msg));
    if (document.body) {
      document.body.setAttribute('data-errors', String(errors.length));
      var list = document.getElementById('errors');
      if (list) { var li = document.createElement('li'); li.textContent = String(msg); list.appendChild(li); }
    }
  }
  window.addEventListener('error', function (e) { note(e.message || 'error'); });
  var original = console.error;
  console.error = function () {
    note(Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
  document.addEventListener('DOMContentLoaded', function () {
    document.body.setAttribute('data-errors', String(errors.length));
    errors.forEach(function (m) { var li = document.createElement('li'); li.textContent = m; document.getElementById('errors').appendChild(li); });
    document.body.setAttribute('data-rendered', 'yes');
  });
})();
"#;

/// Every definitely lost site, ranked by its total (its bytes and the
/// indirectly lost bytes it owns), largest first: valgrind's loss records.
fn lost_sites_table(out: &mut String, leaks: &Leaks) {
    let sites = leaks.lost_sites();
    if sites.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<h3>Definitely lost sites, by total ({})</h3><table class=\"lostsites\"><tr><th>#</th><th class=\"l\">site</th><th>total</th><th>direct</th><th>indirect</th><th>buffers</th><th>indirect buffers</th></tr>",
        sites.len()
    );
    for (rank, g) in sites.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rank + 1,
            escape(&diagnosis::site(&g.stack)),
            escape(&text::bytes(g.total_bytes() as f64)),
            escape(&text::bytes(g.bytes as f64)),
            escape(&text::bytes(g.indirect_bytes.unwrap_or(0) as f64)),
            count(g.blocks),
            count(g.indirect_blocks.unwrap_or(0))
        );
    }
    out.push_str("</table>");
}

/// The leaks groups the shown suspects link to.
fn suspect_groups(inv: &Investigation, links: &explorer::Links) -> Vec<usize> {
    inv.growth
        .iter()
        .flat_map(|g| g.suspects.iter())
        .filter_map(|s| links.leak_group.get(&SiteKey::of(&s.stack)).copied())
        .collect()
}

/// A suspect's links: its stack, its findleaks group, its owner chain.
fn suspect_links(
    out: &mut String,
    s: &leaktrail_analysis::growth::Suspect,
    inv: &Investigation,
    links: &explorer::Links,
    chains: &[OwnerChain],
) {
    let mut parts = vec![format!("<a href=\"#stack-{}\">stack</a>", s.rank)];
    if let (Some(i), Some(l)) = (links.leak_group.get(&SiteKey::of(&s.stack)), &inv.leaks) {
        let g = &l.leaks.groups[*i];
        parts.push(format!(
            "<a href=\"#leak-{i}\">leaks group: {}</a>",
            escape(g.kind.describe())
        ));
    }
    if chains.iter().any(|(r, _)| *r == s.rank) {
        parts.push(format!("<a href=\"#chain-{}\">owner chain</a>", s.rank));
    }
    let _ = write!(
        out,
        "<div class=\"links muted\">{}</div>",
        parts.join(" · ")
    );
}

fn stack_pre(out: &mut String, frames: &[Frame], depth: usize) {
    out.push_str("<pre class=\"stack\">");
    if frames.is_empty() {
        out.push_str("(no stack recorded)");
    }
    for f in frames.iter().take(depth) {
        let _ = writeln!(out, "{}", escape(&f.to_string()));
    }
    if frames.len() > depth {
        let _ = writeln!(out, "… {} more frames", frames.len() - depth);
    }
    out.push_str("</pre>");
}

fn flame(profile: &Profile, title: &str, prefix: &str) -> std::io::Result<(String, String)> {
    let folded = fg::folded(&profile.entries);
    let mut o = FlamegraphOptions::titled(title);
    o.subtitle = Some(format!(
        "{} in {} buffers",
        text::bytes(profile.bytes() as f64),
        count(profile.count())
    ));
    let interactive = fg::svg(&folded, &o)?;
    o.static_only = true;
    o.width = Some(1200);
    let inline = fg::embeddable(&fg::svg(&folded, &o)?, prefix);
    Ok((inline, interactive))
}

fn flame_diff(
    first: &Profile,
    latest: &Profile,
    title: &str,
    prefix: &str,
) -> std::io::Result<(String, String)> {
    let diff = fg::diff_folded(&fg::folded(&first.entries), &fg::folded(&latest.entries))?;
    let mut o = FlamegraphOptions::titled(title);
    o.subtitle = Some(format!(
        "{} → {} ({}); red grew, blue shrank",
        text::bytes(first.bytes() as f64),
        text::bytes(latest.bytes() as f64),
        text::signed_bytes(latest.bytes() as f64 - first.bytes() as f64)
    ));
    let interactive = fg::diff_svg(&diff, &o)?;
    o.static_only = true;
    o.width = Some(1200);
    let inline = fg::embeddable(&fg::diff_svg(&diff, &o)?, prefix);
    Ok((inline, interactive))
}

fn download(out: &mut String, svg: &str, name: &str) {
    let _ = write!(
        out,
        r#"<p class="muted">Hover a frame for its bytes. <a download="{name}" href="data:image/svg+xml;base64,{}">Download the interactive graph</a> (click to zoom, Ctrl-F to search).</p>"#,
        base64(svg.as_bytes())
    );
}

fn name_of(p: &std::path::Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The Node.js owner split: one bar per owner, first snapshot (pale) and
/// last (solid) on one scale, so the owner that grows stands out unread.
fn owners_section(out: &mut String, o: &leaktrail_analysis::owner::OwnerTrend) {
    out.push_str("<section id=\"owners\"><h2>Node.js: who owns the memory?</h2>");
    let max = o
        .owners
        .iter()
        .flat_map(|s| s.bytes.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let (label_w, bar_w, row_h) = (260.0, 420.0, 34.0);
    let height = row_h * o.owners.len() as f64 + 10.0;
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" role=\"img\" aria-label=\"memory by owner, first and last snapshot\">",
        w = label_w + bar_w + 160.0
    );
    for (i, s) in o.owners.iter().enumerate() {
        let y = 6.0 + row_h * i as f64;
        let first = s.bytes.first().copied().unwrap_or(0);
        let last = s.bytes.last().copied().unwrap_or(0);
        let w = |b: u64| bar_w * b as f64 / max as f64;
        let grows = Some(s.owner) == o.growing;
        let colour = if grows { "#c0392b" } else { "#2c7fb8" };
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{ty}\" font-size=\"13\">{name}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{wf:.1}\" height=\"10\" fill=\"{colour}\" opacity=\"0.35\"/>\
             <rect x=\"{label_w}\" y=\"{y2}\" width=\"{wl:.1}\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"12\">{fb} → {lb}</text>",
            ty = y + 16.0,
            name = escape(s.name),
            wf = w(first),
            y2 = y + 11.0,
            wl = w(last),
            tx = label_w + bar_w + 8.0,
            fb = escape(&text::bytes(first as f64)),
            lb = escape(&text::bytes(last as f64)),
        );
    }
    out.push_str("</svg><table><tr><th>owner</th><th>first</th><th>last</th><th>slope</th></tr>");
    for s in &o.owners {
        let _ = write!(
            out,
            "<tr{cls}><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(s.name),
            escape(&text::bytes(s.bytes.first().copied().unwrap_or(0) as f64)),
            escape(&text::bytes(s.bytes.last().copied().unwrap_or(0) as f64)),
            escape(&text::rate(s.slope_bytes_per_hour)),
            cls = if Some(s.owner) == o.growing {
                " class=\"grows\""
            } else {
                ""
            },
        );
    }
    out.push_str("</table><p class=\"muted\">From the allocation stacks and mappings of each snapshot: Node's array-buffer allocator means backing stores, V8's handle scopes and global handles mean handles, V8's own mappings are its heap.</p></section>");
}

/// The page.
pub fn page(inv: &Investigation, opts: &HtmlOptions) -> std::io::Result<String> {
    page_with_chains(inv, opts, &[])
}

/// The JS heap across the full snapshots: the verdict, V8's own numbers,
/// and the constructors that gained objects, first to last.
fn js_heap_section(out: &mut String, j: &leaktrail_analysis::v8::JsHeapGrowth) {
    out.push_str("<section id=\"js-heap\"><h2>Node.js: the JS heap</h2>");
    let _ = write!(
        out,
        "<p>JS heap: {}</p><p>{}</p><p>{}</p>",
        escape(&crate::growth::js_heap_line(j)),
        escape(&crate::growth::v8_heap_line(j)),
        escape(&crate::growth::v8_handles_line(j))
    );
    out.push_str("<table><tr><th>constructor</th><th>first</th><th>last</th><th>objects</th><th>bytes</th></tr>");
    for c in j
        .constructors
        .iter()
        .filter(|c| c.count_delta() > 0)
        .take(20)
    {
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if c.grows_steadily() {
                " class=\"grows\""
            } else {
                ""
            },
            escape(&c.constructor),
            crate::heap::count(c.counts.first().copied().unwrap_or(0)),
            crate::heap::count(c.counts.last().copied().unwrap_or(0)),
            escape(&crate::heap::signed_count(c.count_delta())),
            escape(&text::signed_bytes(c.bytes_delta() as f64)),
        );
    }
    out.push_str("</table><p class=\"muted\">JS objects found on V8's pages in each snapshot taken with --memory full, decoded with the node binary's postmortem metadata (v8dbg_* symbols); objects not yet collected count too.</p></section>");
}

/// The page, with the owner chains the caller computed for some suspects
/// (`chains`: by suspect rank; each suspect links to its own).
pub fn page_with_chains(
    inv: &Investigation,
    opts: &HtmlOptions,
    chains: &[OwnerChain],
) -> std::io::Result<String> {
    let links = explorer::Links::of(inv);
    let mut out = String::new();
    let command = inv.meta.cmdline.join(" ");
    let title = opts.title.clone().unwrap_or_else(|| {
        format!(
            "leaktrail: {} (pid {})",
            if inv.meta.comm.is_empty() {
                &command
            } else {
                &inv.meta.comm
            },
            inv.meta.pid
        )
    });
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{STYLE}{}</style><script>{SCRIPT}</script></head>\n<body data-errors=\"0\">",
        escape(&title),
        explorer::STYLE
    );
    let t = &inv.trend;
    let _ = write!(
        out,
        "<header><h1>{}</h1><div class=\"sub\">{} · started {} · {} samples over {}</div></header><main>",
        escape(&title),
        escape(&command),
        escape(&recording::utc_stamp(inv.meta.start_unix_ms)),
        inv.samples.len(),
        escape(&text::seconds(t.duration_seconds))
    );
    let rate = inv
        .profiles
        .iter()
        .chain(inv.latest.iter())
        .map(|p| p.sample_rate)
        .max()
        .unwrap_or(0);
    if rate != 0 {
        let _ = write!(
            out,
            "<p class=\"note\" id=\"sampled\">{}</p>",
            escape(text::sampled_line(rate).trim_end())
        );
    }

    // The diagnosis, in a few lines.
    let _ = write!(
        out,
        "<section id=\"diagnosis\" class=\"diagnosis\"><h2>Diagnosis</h2><p class=\"headline\"><b>{}</b></p><ul>",
        escape(&diagnosis::headline(inv))
    );
    let _ = write!(
        out,
        "<li>Resident memory is <span class=\"verdict {}\">{}</span> {} ({}).</li>",
        t.verdict,
        t.verdict,
        escape(&text::rate(t.slope_bytes_per_hour)),
        escape(&t.reason)
    );
    let d = inv.diagnosis();
    if let Some(c) = d.class {
        let _ = write!(
            out,
            "<li>The size class that grows: <b>{}</b>: {}.</li>",
            escape(&class_name(c.class)),
            escape(&series_line(&c.series, &c.stats))
        );
    }
    match &d.first {
        Some(first @ FirstSuspect::Site(_)) => {
            let _ = write!(
                out,
                "<li>The leaking function: {}.{}</li>",
                escape(&diagnosis::culprit(first)),
                if d.suspect_reachable == Some(true) {
                    " They are all still referenced: reachability cannot see this leak."
                } else {
                    ""
                }
            );
        }
        Some(first @ FirstSuspect::JsHeap(_)) => {
            let _ = write!(
                out,
                "<li>What grows: <b>the JS heap</b>: {}.{}</li>",
                escape(&diagnosis::culprit(first)),
                diagnosis::malloc_site_behind(&d).map_or_else(String::new, |s| format!(
                    " The malloc site that grows most rose by fewer bytes: {}.",
                    escape(&diagnosis::culprit(&FirstSuspect::Site(s)))
                ))
            );
        }
        None => {
            let _ = write!(
                out,
                "<li>The leaking function: none: no growth above noise.</li>"
            );
        }
    }
    match (d.lost.first(), d.lost_total, d.leaks_snapshot) {
        (Some(g), Some(total), _) => {
            let indirect = d.indirect_total.unwrap_or_default();
            let _ = write!(
                out,
                "<li>Truly leaked: <b>{}</b>: {} ({} in {} overall){}.</li>",
                escape(&diagnosis::site(&g.stack)),
                escape(&diagnosis::loss_record(g)),
                escape(&text::bytes((total.bytes + indirect.bytes) as f64)),
                count(total.blocks + indirect.blocks),
                match d.lost.len() {
                    1 => String::new(),
                    n => format!(
                        "; {} more lost sites, all ranked under <a href=\"#leaks\">What is unreachable?</a>",
                        n - 1
                    ),
                }
            );
        }
        (None, Some(_), Some(path)) => {
            let _ = write!(
                out,
                "<li>Findleaks found nothing definitely lost in {}: whatever grows is still referenced.</li>",
                escape(&name_of(path))
            );
        }
        _ => {}
    }
    for n in &inv.notes {
        let _ = write!(out, "<li class=\"muted\">{}</li>", escape(n));
    }
    out.push_str("</ul></section>");

    // 1. Trend.
    out.push_str("<section id=\"trend\"><h2>Is it growing? Resident memory per region</h2>");
    if inv.samples.is_empty() {
        out.push_str("<p class=\"muted\">The recording has no samples.</p>");
    } else {
        let mut so = svg::SvgOptions::titled(format!("RSS of {}", inv.meta.comm));
        so.width = 1100.0;
        so.height = 420.0;
        let chart = svg::trend_chart(&inv.samples, t, &so);
        let chart = chart.replacen("<svg ", "<svg class=\"trend\" ", 1);
        out.push_str(&chart);
        if !t.regions.is_empty() {
            out.push_str("<table><tr><th class=\"l\">region</th><th class=\"l\">verdict</th><th>slope</th><th>RSS</th></tr>");
            for r in &t.regions {
                let _ = write!(
                    out,
                    "<tr><td class=\"l\">{}</td><td class=\"l\"><span class=\"verdict {}\">{}</span></td><td>{}</td><td>{}</td></tr>",
                    escape(&r.name),
                    r.verdict,
                    r.verdict,
                    escape(&text::rate(r.slope_bytes_per_hour)),
                    escape(&text::bytes(r.rss_bytes as f64))
                );
            }
            out.push_str("</table>");
            if t.tracer_bytes > 0 {
                let _ = write!(out, "<p>{}</p>", escape(&text::tracer_line(t.tracer_bytes)));
            }
        }
    }
    out.push_str("</section>");

    // 2. Size classes.
    out.push_str("<section id=\"classes\"><h2>Which size class grows?</h2>");
    if let Some(g) = &inv.growth {
        let lines: Vec<chart::Line<'_>> = g
            .classes
            .iter()
            .filter(|c| c.stats.rise_bytes > 0.0)
            .take(opts.chart_classes)
            .enumerate()
            .map(|(i, c)| chart::Line {
                label: class_name(c.class),
                color: chart::PALETTE[i % chart::PALETTE.len()],
                points: c
                    .series
                    .iter()
                    .map(|p| (p.t_seconds, p.bytes as f64))
                    .collect(),
            })
            .collect();
        if lines.is_empty() {
            out.push_str("<p>No size class holds more at the end than at the start.</p>");
        } else {
            out.push_str(
                "<p class=\"muted\">Live bytes of the classes that grew most, per snapshot.</p>",
            );
            out.push_str(&chart::lines(&lines, 1100.0, 320.0, "classes-chart"));
        }
    }
    if let Some(c) = &inv.caches {
        let max = c
            .classes
            .iter()
            .map(|r| r.live_bytes)
            .max()
            .unwrap_or(0)
            .max(1);
        // At most `snapshot_columns` columns, evenly spread, first and
        // last always: a long recording must not make the table unreadable.
        let in_series: Vec<_> = inv.snapshots.iter().filter(|s| s.in_series).collect();
        let cols = text::spread(in_series.len(), opts.snapshot_columns.max(2));
        out.push_str("<table class=\"caches\"><tr><th class=\"l\">class</th>");
        for &i in &cols {
            let _ = write!(out, "<th>{}</th>", escape(&name_of(&in_series[i].path)));
        }
        out.push_str("<th>change</th><th class=\"l\">live bytes now</th></tr>");
        for row in c.classes.iter().take(opts.classes) {
            let _ = write!(
                out,
                "<tr{}><td class=\"l\">{}</td>",
                if row.grew_most { " class=\"grew\"" } else { "" },
                escape(&class_name(row.size))
            );
            for s in cols.iter().filter_map(|&i| row.snapshots.get(i)) {
                let _ = write!(
                    out,
                    "<td title=\"{} buffers\">{}</td>",
                    count(s.live_count),
                    escape(&text::bytes(s.live_bytes as f64))
                );
            }
            let delta = row.delta.map_or(0, |d| d.live_bytes);
            let _ = write!(
                out,
                "<td class=\"{}\">{}</td><td class=\"l\">{}</td></tr>",
                if delta > 0 {
                    "up"
                } else if delta < 0 {
                    "down"
                } else {
                    ""
                },
                escape(&text::signed_bytes(delta as f64)),
                chart::bar(row.live_bytes as f64, max as f64, 160.0, "#1f77b4")
            );
        }
        out.push_str("</table>");
    } else {
        out.push_str("<p class=\"muted\">No snapshots.</p>");
    }
    out.push_str("</section>");

    // Node.js: who owns the memory, as a Node user thinks of it.
    if let Some(o) = &inv.owners {
        owners_section(&mut out, o);
    }
    if let Some(j) = &inv.js_heap {
        js_heap_section(&mut out, j);
    }

    // 3. Suspects.
    out.push_str("<section id=\"suspects\"><h2>Which allocation sites grow?</h2>");
    match &inv.growth {
        None => out.push_str("<p class=\"muted\">Growth needs two snapshots or more.</p>"),
        Some(g) if g.suspects.is_empty() => {
            out.push_str("<p>No allocation site holds more at the end than at the start.</p>")
        }
        Some(g) => {
            let top = g.suspects.first().map_or(0.0, |s| s.score).max(1.0);
            for s in g.suspects.iter().take(opts.suspects) {
                let bytes: Vec<f64> = s.series.iter().map(|p| p.bytes as f64).collect();
                let strong = s.score > 0.0 && s.score * 4.0 >= top;
                let _ = write!(
                    out,
                    "<div class=\"suspect{}\" id=\"suspect-{}\"><div class=\"head\">#{} {} {} — {}</div><div class=\"muted\">score {} · monotonic {:.2} · steady {:.2}</div>",
                    if strong { "" } else { " weak" },
                    s.rank,
                    s.rank,
                    chart::sparkline(&bytes, 120.0, 28.0, if strong { "#d62728" } else { "#888" }),
                    escape(&class_name(s.class)),
                    escape(&series_line(&s.series, &s.stats)),
                    escape(&text::bytes(s.score)),
                    s.stats.monotonicity,
                    s.stats.steadiness
                );
                if let Some(c) = &s.counts {
                    let _ = write!(
                        out,
                        "<div class=\"muted site-counts\">site: {}</div>",
                        escape(&crate::growth::site_counts(c))
                    );
                }
                suspect_links(&mut out, s, inv, &links, chains);
                let _ = write!(out, "<div id=\"stack-{}\">", s.rank);
                stack_pre(&mut out, &s.stack, opts.depth);
                out.push_str("</div>");
                if let Some((_, chain)) = chains.iter().find(|(r, _)| *r == s.rank) {
                    let _ = write!(
                        out,
                        "<details id=\"chain-{}\"><summary>Owner chain: who holds one of these buffers</summary><pre class=\"stack\">{}</pre></details>",
                        s.rank,
                        escape(chain)
                    );
                }
                out.push_str("</div>");
            }
            if g.suspects.len() > opts.suspects {
                let _ = write!(
                    out,
                    "<p class=\"muted\">{} more growing sites: <code>leaktrail growth {} --top 0</code>.</p>",
                    g.suspects.len() - opts.suspects,
                    escape(&inv.dir.display().to_string())
                );
            }
        }
    }
    out.push_str("</section>");

    // 4. Every site, sortable, at the slider's snapshot.
    explorer::sites_section(&mut out, inv);

    // 5. Flame graphs: the explorer's, then the static latest and diff.
    out.push_str("<section id=\"flamegraphs\"><h2>Where is the live memory?</h2>");
    explorer::flame_explorer(&mut out, inv);
    match &inv.latest {
        None => out.push_str("<p class=\"muted\">No snapshots.</p>"),
        Some(latest) => {
            let name = name_of(&latest.path);
            let (inline, full) = flame(
                latest,
                &format!("Live memory by allocation stack: {name}"),
                "fg-latest-",
            )?;
            let _ = write!(out, "<div id=\"flame-latest\">{inline}</div>");
            download(&mut out, &full, "flamegraph-latest.svg");
            if let Some(first) = &inv.first {
                let (inline, full) = flame_diff(
                    first,
                    latest,
                    &format!(
                        "Change since the first snapshot: {} → {name}",
                        name_of(&first.path)
                    ),
                    "fg-diff-",
                )?;
                let _ = write!(
                    out,
                    "<h2>What grew since the first snapshot</h2><div id=\"flame-diff\">{inline}</div>"
                );
                download(&mut out, &full, "flamegraph-diff.svg");
            }
        }
    }
    out.push_str("</section>");

    // 5. Findleaks.
    out.push_str("<section id=\"leaks\"><h2>What is unreachable?</h2>");
    match &inv.leaks {
        None => out.push_str(
            "<p class=\"muted\">No snapshot with the process's memory (<code>--memory full</code>) to scan.</p>",
        ),
        Some(l) => {
            let k = &l.leaks;
            let _ = write!(
                out,
                "<p class=\"muted\">Conservative reachability over {} (roots: registers, stacks, globals, TLS, anonymous memory).</p>",
                escape(&name_of(&l.path))
            );
            let max = [k.definite, k.indirect, k.possible, k.reachable]
                .iter()
                .map(|t| t.bytes)
                .max()
                .unwrap_or(0) as f64;
            out.push_str("<table class=\"leakbar\"><tr><th class=\"l\">kind</th><th>bytes</th><th>buffers</th><th class=\"l\"></th></tr>");
            for (kind, color) in [
                (LeakKind::Definite, "#d62728"),
                (LeakKind::Indirect, "#ff7f0e"),
                (LeakKind::Possible, "#bcbd22"),
                (LeakKind::Reachable, "#2ca02c"),
            ] {
                let tally = k.tally(kind);
                let _ = write!(
                    out,
                    "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                    kind.describe(),
                    escape(&text::bytes(tally.bytes as f64)),
                    count(tally.blocks),
                    chart::bar(tally.bytes as f64, max, 240.0, color)
                );
            }
            out.push_str("</table>");
            if k.libc.blocks > 0 {
                let _ = write!(
                    out,
                    "<p class=\"muted\">libc internal: {} in {} buffers (libc's own, of the kinds valgrind frees at exit; not counted above).</p>",
                    escape(&text::bytes(k.libc.bytes as f64)),
                    count(k.libc.blocks)
                );
            }
            lost_sites_table(&mut out, k);
            // The lost groups, and every group a suspect links to.
            let linked: Vec<usize> = links.leak_group.values().copied().collect();
            let lost: Vec<_> = k
                .groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.kind != LeakKind::Reachable)
                .take(opts.leak_groups)
                .map(|(i, _)| i)
                .chain(suspect_groups(inv, &links))
                .collect::<std::collections::BTreeSet<usize>>()
                .into_iter()
                .filter(|i| linked.contains(i) || k.groups[*i].kind != LeakKind::Reachable)
                .collect();
            for i in lost {
                let g = &k.groups[i];
                let _ = write!(
                    out,
                    "<details open id=\"leak-{i}\"><summary><b>{}</b>: {} in {} buffers, e.g. 0x{:x}</summary>",
                    g.kind.describe(),
                    escape(&text::bytes(g.bytes as f64)),
                    count(g.blocks),
                    g.example_address
                );
                stack_pre(&mut out, &g.stack, opts.depth);
                out.push_str("</details>");
            }
            for w in &k.warnings {
                let _ = write!(out, "<p class=\"muted\">{}</p>", escape(w));
            }
        }
    }
    out.push_str("</section>");

    // 6. Captured.
    out.push_str("<section id=\"captured\"><h2>What was captured, and how</h2><dl class=\"kv\">");
    let end = match &inv.meta.end {
        Some(e) => format!(
            "{} at {}{}",
            match e.reason {
                recording::EndReason::Exited => "the process exited",
                recording::EndReason::Duration => "the duration passed",
                recording::EndReason::Interrupted => "interrupted",
            },
            recording::utc_stamp(e.unix_ms),
            e.exit_code
                .map(|c| format!(", exit status {c}"))
                .unwrap_or_default()
        ),
        None => "still running, or the watcher stopped without a word".into(),
    };
    for (k, v) in [
        ("recording", inv.dir.display().to_string()),
        ("command", command.clone()),
        ("pid", inv.meta.pid.to_string()),
        (
            "watch",
            format!(
                "{} samples every {}",
                inv.samples.len(),
                text::seconds(inv.meta.interval_ms as f64 / 1000.0)
            ),
        ),
        ("ended", end),
        ("snapshots", inv.snapshots.len().to_string()),
    ] {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
    }
    out.push_str("</dl>");
    if !inv.snapshots.is_empty() {
        out.push_str("<table><tr><th class=\"l\">snapshot</th><th class=\"l\">taken</th><th class=\"l\">memory</th><th>pause</th><th>in file</th><th>RSS</th><th>live malloc'd</th><th>buffers</th></tr>");
        for s in &inv.snapshots {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&format!(
                    "{}{}",
                    name_of(&s.path),
                    if s.in_series { "" } else { " (findleaks only)" }
                )),
                escape(&recording::utc_stamp(s.time_unix_ns / 1_000_000)),
                escape(&s.memory),
                escape(&text::seconds(s.pause_ns as f64 / 1e9)),
                escape(&text::bytes(s.captured_bytes as f64)),
                escape(&text::bytes(s.rss as f64)),
                escape(&text::bytes(s.live_bytes as f64)),
                count(s.live_count)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<p class=\"muted\">Written by leaktrail. This page is self-contained: it loads nothing.</p></section>");
    if !inv.profiles.is_empty() {
        let _ = write!(
            out,
            "<script type=\"application/json\" id=\"explorer-data\">{}</script><script>{}</script>",
            explorer::embedded(&explorer::data(inv, &links)),
            explorer::SCRIPT
        );
    }
    out.push_str("<ul id=\"errors\"></ul></main></body></html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    /// Issue 11 (item 4): the findleaks section ranks every lost site by
    /// its total in a table; the diagnosis names the first and counts the
    /// rest.
    #[test]
    fn issue_11_the_report_lists_every_lost_site_ranked_by_total() {
        use crate::testing::{group, investigation, leaks, ranked_sites};
        let mut sites = ranked_sites();
        sites.push(group(LeakKind::Definite, "parse_&lt", 30, (50, 1), 0));
        let inv = investigation(leaks(sites));
        let page = page(&inv, &HtmlOptions::default()).expect("page");
        assert!(
            page.contains("<li>Truly leaked: <b>build_tree (app.c:20)</b>: 4.0 KiB definitely lost in 1 buffers (100 B direct, 3.9 KiB indirect) (7.0 KiB in 45 overall); 2 more lost sites"),
            "{page}"
        );
        let table = &page[page.find("<table class=\"lostsites\">").expect("the table")..];
        let table = &table[..table.find("</table>").unwrap()];
        let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
        assert_eq!(
            rows,
            [
                "<td>1</td><td class=\"l\">build_tree (app.c:20)</td><td>4.0 KiB</td><td>100 B</td><td>3.9 KiB</td><td>1</td><td>1</td></tr>",
                "<td>2</td><td class=\"l\">read_config (app.c:10)</td><td>2.9 KiB</td><td>2.9 KiB</td><td>0 B</td><td>3</td><td>0</td></tr>",
                "<td>3</td><td class=\"l\">parse_&amp;lt (app.c:30)</td><td>50 B</td><td>50 B</td><td>0 B</td><td>1</td><td>0</td></tr>",
            ]
        );
        assert!(page.contains("Definitely lost sites, by total (3)"));
    }

    /// Issue 11 (item 2): libc's residue is one line of its own.
    #[test]
    fn issue_11_the_report_counts_libc_internal_apart() {
        use crate::testing::{investigation, leaks, ranked_sites};
        let mut l = leaks(ranked_sites());
        let page_of =
            |l: &Leaks| page(&investigation(l.clone()), &HtmlOptions::default()).expect("page");
        assert!(!page_of(&l).contains("libc internal"));
        l.libc = leaktrail_analysis::leaks::Tally {
            bytes: 6974,
            blocks: 14,
        };
        assert!(page_of(&l).contains(
            "<p class=\"muted\">libc internal: 6.8 KiB in 14 buffers (libc's own, of the kinds valgrind frees at exit; not counted above).</p>"
        ));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
