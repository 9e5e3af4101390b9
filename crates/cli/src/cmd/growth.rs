//! `leaktrail growth`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::{growth, v8};
use leaktrail_report::json;

/// Flags of `leaktrail growth`.
#[derive(clap::Args)]
#[command(
    after_help = "For every allocation site (stack and size class) and every size class, the \
    live buffers and bytes across the snapshots in capture order, with a Theil-Sen slope, \
    Kendall's tau (monotonic), how steadily the rise came (steady), and a score: the fitted \
    rise x monotonic x steady^2. Steady growth outranks a large flat population (no rise) and \
    a one-off burst (not steady)."
)]
pub struct Args {
    /// A recording directory (all its snapshots) or snapshot files; at least two snapshots.
    #[arg(required = true, value_name = "DIR|SNAP")]
    pub inputs: Vec<PathBuf>,
    /// Show this many classes and suspects (0: all).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Frames shown per stack (0: all).
    #[arg(long, default_value_t = 12)]
    pub depth: usize,
    /// Print one JSON document instead of text (every growing site).
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inputs = super::locals(&args.inputs)?;
    let g = crate::term::step("reading and symbolizing snapshots", || {
        growth::open(&inputs)
    })?;
    // A series of full snapshots of node: its JS heap too.
    let paths: Vec<PathBuf> = g.snapshots.iter().map(|o| o.path.clone()).collect();
    let js = crate::term::step("reading the JS heap", || v8::growth_of(&paths))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = json::GrowthDocument::from(&g).with_js_heap(js.as_ref());
        write!(out, "{}", json::to_string(&doc)?)?;
    } else {
        let mut text = leaktrail_report::growth::text(&g, args.top, args.depth);
        if let Some(j) = &js {
            text.push_str(&leaktrail_report::growth::js_heap_text(j, args.top));
        }
        crate::term::print(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}
