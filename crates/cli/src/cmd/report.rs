//! `leaktrail report`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_analysis::investigation;
use leaktrail_recording::dir as recording;
use leaktrail_report::html::{self, HtmlOptions};

/// Flags of `leaktrail report`.
#[derive(clap::Args)]
#[command(after_help = "\
One self-contained HTML page (inline SVG, CSS and script; it loads nothing) with the whole \
investigation of a `leaktrail run` recording: the trend verdict with RSS per region over \
time and the fitted line, the size classes across snapshots and a chart of those that grew, \
the ranked growth suspects with their stacks, the latest flame graph and the diff against \
the first snapshot, findleaks on the latest snapshot taken with --memory full, and what was \
captured and how.

Example:
  leaktrail run --every 10m --out rec -- ./server
  leaktrail report rec -o report.html")]
pub struct Args {
    /// The recording directory (written by `leaktrail run`).
    pub dir: PathBuf,
    /// The HTML file to write.
    #[arg(short, long, value_name = "FILE", default_value = "report.html")]
    pub output: PathBuf,
    /// Page title [default: the program and its pid].
    #[arg(long)]
    pub title: Option<String>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inv = investigation::open(&super::local(&args.dir)?)?;
    let mut opts = HtmlOptions::default();
    opts.title = args.title;
    let page = html::page(&inv, &opts).context("drawing the report")?;
    recording::write_atomically(&args.output, page.as_bytes())
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "leaktrail: wrote {} ({} snapshots, trend {})",
        args.output.display(),
        inv.snapshots.len(),
        inv.trend.verdict
    );
    println!("{}", leaktrail_report::diagnosis::headline(&inv));
    Ok(ExitCode::SUCCESS)
}
