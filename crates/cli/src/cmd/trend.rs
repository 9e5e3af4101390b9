//! `leaktrail trend`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_analysis::{owner, trend};
use leaktrail_recording::dir::{self as recording, Recording};
use leaktrail_report::{json, svg, text};

/// Flags of `leaktrail trend`.
#[derive(clap::Args)]
#[command(
    after_help = "Verdicts: growing, flat, inconclusive. The slope is Theil-Sen's with a \
    95% interval, after excluding a warm-up (steps followed by a plateau, as a Node.js heap \
    does in its first minutes); growing needs a significant Mann-Kendall trend, material \
    growth, and growth spread over more than a few steps."
)]
pub struct Args {
    /// The recording directory written by `watch`.
    pub dir: PathBuf,
    /// Also draw RSS per region over time, the fitted line and the warm-up into this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    args.dir = super::local_series(&args.dir)?;
    let rec = Recording::open(&args.dir)?;
    let t = trend::analyse(&rec);
    if let Some(path) = &args.svg {
        let title = format!("{} (pid {})", rec.meta.comm, rec.meta.pid);
        let chart = svg::trend_chart(&rec.samples, &t, &svg::SvgOptions::titled(title));
        recording::write_atomically(path, chart.as_bytes())
            .with_context(|| format!("writing the chart to {}", path.display()))?;
    }
    // A Node.js recording with snapshots also gets the split a Node user
    // thinks in: V8 heap, backing stores, handles, other native memory.
    let owners = owner::trend_of_recording(&args.dir)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = json::TrendDocument::new(&t, owners.as_ref());
        write!(out, "{}", json::to_string(&doc)?)?;
    } else {
        let mut s = text::trend(&t);
        if let Some(o) = &owners {
            s.push('\n');
            s.push_str(&text::owner_trend(o));
        } else if owner::is_node_command(&rec.meta.cmdline) {
            s.push('\n');
            s.push_str(&text::node_regions(&t));
        }
        crate::term::print(&s)?;
    }
    Ok(ExitCode::SUCCESS)
}
