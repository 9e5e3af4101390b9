//! `leaktrail summary`: heaptrack_print's summary of a traced process.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::sites;
use leaktrail_report::json;

/// Flags of `leaktrail summary`.
#[derive(clap::Args)]
#[command(after_help = "\
What heaptrack_print prints, from the tracer's own counts since the program \
started (a recording's newest snapshot): the sites with the most calls to \
allocation functions, the highest peaks and the most temporary allocations \
(freed by their thread before it allocated or freed anything else), each \
with its stack, when it peaked and its sizes (power-of-two buckets); then \
calls to allocation functions, temporary allocations, the peak heap and \
what was still live (at the exit snapshot: leaked).

Examples:
  leaktrail summary rec/
  leaktrail summary app.core --top 3 --depth 4
  leaktrail summary rec/ --json | jq '.sites[.by_temporary[0]]'
Then: leaktrail growth rec/   # which of those sites grow")]
pub struct Args {
    /// A recording of `leaktrail run` (its newest snapshot) or one snapshot.
    #[arg(value_name = "DIR|CORE")]
    pub input: PathBuf,
    /// Sites per list (0: all).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Frames shown per stack (0: all).
    #[arg(long, default_value_t = 8)]
    pub depth: usize,
    /// Print one JSON document instead of text (every site; the lists
    /// as indices into `sites`, --top long).
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input = super::local(&args.input)?;
    let s = crate::term::step("reading and symbolizing the snapshot", || {
        sites::open(&input)
    })?;
    let top = if args.top == 0 { usize::MAX } else { args.top };
    let depth = if args.depth == 0 {
        usize::MAX
    } else {
        args.depth
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        write!(
            out,
            "{}",
            json::to_string(&json::SummaryDocument::new(&s, top))?
        )?;
    } else {
        crate::term::print(&leaktrail_report::heap::sites::text(&s, top, depth))?;
    }
    Ok(ExitCode::SUCCESS)
}
