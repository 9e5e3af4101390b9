//! `leaktrail bufs`: the live buffers of a snapshot, filtered.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::bufs;
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_analysis::Heap;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::bufs as render;
use leaktrail_report::json;

use crate::cmd::filter::FilterArgs;

/// Flags of `leaktrail bufs`.
#[derive(clap::Args)]
#[command(after_help = "\
mdb's ::bufctl -v (one line per buffer, -v adds its stack) and ::umausers \
(--group-by stack: allocation stacks by total bytes). Filters combine.

Examples:
  leaktrail bufs app.core --class 4096 --group-by stack
  leaktrail bufs app.core --size 1000..2000 --older-than 10m -v
  leaktrail bufs app.core --stack-contains parse_request --thread 4242
  leaktrail bufs app.core --group-by stack --json | jq '.groups[0]'")]
pub struct Args {
    /// The snapshot (of a traced process, or of any process: its buffers
    /// are then glibc's chunks in use, without stacks).
    snap: PathBuf,
    #[command(flatten)]
    filter: FilterArgs,
    /// Group by allocation stack, largest first (buffers without stacks:
    /// by type).
    #[arg(long, value_parser = ["stack"], value_name = "stack")]
    group_by: Option<String>,
    /// Print each buffer's whole stack.
    #[arg(short, long)]
    verbose: bool,
    /// Show at most N buffers (or stacks with --group-by) [0: all].
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
    /// Show every buffer (--limit 0).
    #[arg(long)]
    all: bool,
    /// Print one JSON document instead of text (never limited).
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = args.filter.filter()?;
    let snap = Snapshot::open(&super::local(&args.snap)?)?;
    let heap = Heap::open(&snap)?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let group = args.group_by.is_some();
    let mut found = crate::term::step("selecting and symbolizing buffers", || {
        bufs::select(
            &heap.audit,
            &filter,
            &symbolizer,
            group,
            !group && (!args.json || args.verbose),
        )
    });
    bufs::name_types(&heap, &symbolizer, &mut found);
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(json::to_string(&json::BufsDocument::from(&found))?.as_bytes())?;
    } else {
        let limit = if args.all { 0 } else { args.limit };
        crate::term::print(&render::text(&found, args.verbose, limit))?;
    }
    Ok(ExitCode::SUCCESS)
}
