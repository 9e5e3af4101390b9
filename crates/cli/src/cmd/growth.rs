//! `leaktrail growth`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::growth;
use leaktrail_report::json;

/// Flags of `leaktrail growth`.
#[derive(clap::Args)]
#[command(
    after_help = "For every allocation site (stack and size class) and every size class, the \
    live buffers and bytes across the snapshots in capture order, with a Theil-Sen slope, \
    Kendall's tau (monotonic), how steadily the rise came (steady), and a score: the fitted \
    rise x monotonic x steady^2. Steady growth outranks a large flat population (no rise) and \
    a one-off burst (not steady). Snapshots of an untraced process (gcores, kernel cores, \
    `leaktrail snapshot` of a plain program) have no stacks: their blocks come from glibc's \
    heap and each site is a type (`[type] Widget`, a C++ class) or a size class and hint \
    (`[size 4096]`)."
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
    let mut out = std::io::stdout().lock();
    if args.json {
        write!(out, "{}", json::to_string(&json::GrowthDocument::from(&g))?)?;
    } else {
        crate::term::print(&leaktrail_report::growth::text(&g, args.top, args.depth))?;
    }
    Ok(ExitCode::SUCCESS)
}
