//! `leaktrail report`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_analysis::investigation::{self, Investigation};
use leaktrail_analysis::profile::SiteKey;
use leaktrail_analysis::refs::{self, Matcher};
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_analysis::Heap;
use leaktrail_recording::dir as recording;
use leaktrail_recording::Snapshot;
use leaktrail_report::html::{self, HtmlOptions, OwnerChain};

/// Flags of `leaktrail report`.
#[derive(clap::Args)]
#[command(after_help = "\
One self-contained HTML page (inline SVG, CSS and script; it loads nothing) with the whole \
investigation of a `leaktrail run` recording: the trend verdict with RSS per region over \
time and the fitted line, the size classes across snapshots and a chart of those that grew, \
the ranked growth suspects with their stacks, the latest flame graph and the diff against \
the first snapshot, findleaks on the latest snapshot taken with --memory full, and what was \
captured and how. It is also an explorer: a sortable, filterable table of every site, a flame \
graph that zooms (click) and searches, a slider that steps through the snapshots, and from each \
suspect links to its stack, its findleaks group and its owner chain (the shortest path of \
pointers from a root to one of its buffers, for the first --chains suspects). A recording of \
an untraced process (`leaktrail watch -p PID --out rec`, then `leaktrail snapshot --recording \
rec`) works too: its blocks come from glibc's heap, without stacks, by type and size class.

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
    /// Owner chains drawn, for the first N suspects (each is one scan of
    /// the latest full snapshot).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub chains: usize,
}

/// The owner chains of the first `n` suspects that findleaks saw: for
/// each, the shortest path of pointers from a root to its group's example
/// buffer in the findleaks snapshot.
fn owner_chains(inv: &Investigation, n: usize) -> anyhow::Result<Vec<OwnerChain>> {
    let (Some(l), Some(g)) = (&inv.leaks, &inv.growth) else {
        return Ok(Vec::new());
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    let snap = Snapshot::open(&l.path)?;
    let heap = Heap::open(&snap)?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let mut out = Vec::new();
    for s in g.suspects.iter().take(n) {
        let key = SiteKey::of(&s.stack);
        let Some(group) = l.leaks.groups.iter().find(|g| SiteKey::of(&g.stack) == key) else {
            continue;
        };
        let c = refs::chain(&heap, &symbolizer, group.example_address, Matcher::Exact, 1)?;
        out.push((s.rank, leaktrail_report::heap::refs::chains(&c, false)));
    }
    Ok(out)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let progress = crate::term::Progress::step("reading, scanning and symbolizing snapshots");
    let inv = investigation::open(&super::local(&args.dir)?)?;
    progress.say("following the owner chains of the suspects");
    let chains = owner_chains(&inv, args.chains).unwrap_or_else(|e| {
        eprintln!("leaktrail: no owner chains: {e:#}");
        Vec::new()
    });
    progress.say("drawing the report");
    let mut opts = HtmlOptions::default();
    opts.title = args.title;
    let page = html::page_with_chains(&inv, &opts, &chains).context("drawing the report")?;
    recording::write_atomically(&args.output, page.as_bytes())
        .with_context(|| format!("writing {}", args.output.display()))?;
    drop(progress);
    eprintln!(
        "leaktrail: wrote {} ({} snapshots, trend {})",
        args.output.display(),
        inv.snapshots.len(),
        inv.trend.verdict
    );
    println!("{}", leaktrail_report::diagnosis::headline(&inv));
    if inv.profiles.iter().any(|p| p.stackless) {
        println!("{}", leaktrail_analysis::profile::STACKLESS);
    }
    if let Some(t) = inv.profiles.iter().rev().find_map(|p| p.before_attach) {
        println!("{}", leaktrail_analysis::profile::before_attach_note(t));
    }
    Ok(ExitCode::SUCCESS)
}
