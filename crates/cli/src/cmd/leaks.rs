//! `leaktrail leaks`: what is unreachable in a snapshot.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::leaks::{self, LeakKind, LeaksOptions};
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_analysis::{Heap, Roots};
use leaktrail_format::FailOn;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::leaks as render;
use leaktrail_report::json;

/// Flags of `leaktrail leaks`.
#[derive(clap::Args)]
#[command(after_help = "\
Every pointer-aligned word of the roots (registers, thread stacks from SP, \
module data and bss, TLS, anonymous memory that is not a malloc arena) and \
of every reached buffer is tested against the live buffers of the audit:
  definitely lost   nothing points to it (nor to the cycle it is in)
  indirectly lost   only other lost buffers point to it
  possibly lost     reached, but only through pointers into its middle
  still reachable   a chain of pointers to its start leads to it from a root

Examples:
  leaktrail leaks app.core
  leaktrail leaks app.core --function parse_request
  leaktrail leaks app.core --roots stacks,registers,globals   # ignore anon mmaps
  leaktrail leaks app.core --fail-on definite && echo clean   # exit 3 on leaks
  leaktrail leaks app.core --json | jq '.groups[0].stack[0].function'")]
pub struct Args {
    /// The snapshot (taken of a process started with `leaktrail run`).
    snap: PathBuf,
    /// Exit with status 3 if leaks of this kind or worse exist (with
    /// --function, only among the groups it keeps).
    #[arg(long, value_parser = crate::cmd::spelled::<FailOn>(FailOn::NAMES))]
    fail_on: Option<FailOn>,
    /// Keep only groups whose allocation stack passes through a function
    /// whose name contains NAME.
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// What counts as a root: comma-separated registers, stacks, globals,
    /// tls, anon (or all).
    #[arg(long, default_value = "all", value_name = "LIST")]
    roots: String,
    /// Also list the still-reachable groups.
    #[arg(long)]
    reachable: bool,
    /// Scanning threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let roots = Roots::parse(&args.roots)?;
    let snap = Snapshot::open(&args.snap)?;
    let heap = Heap::open(&snap)?;
    heap.require_memory()?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let mut opts = LeaksOptions::default();
    opts.roots = roots;
    opts.function = args.function;
    opts.threads = args.threads as usize;
    opts.symbolize_reachable = args.json || args.reachable;
    let mut found = crate::term::step("scanning for leaks and symbolizing", || {
        leaks::find(&heap, &opts, &symbolizer)
    });
    found.warnings.extend(symbolizer.warnings());
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(json::to_string(&json::LeaksDocument::from(&found))?.as_bytes())?;
    } else {
        let mut r = render::LeaksOptions::default();
        r.reachable = args.reachable;
        crate::term::print(&render::text(&found, &r))?;
    }
    out.flush()?;
    // Over the groups kept, so that --function limits what fails too.
    let failed = args.fail_on.is_some_and(|on| {
        LeakKind::ALL
            .iter()
            .any(|&k| on.counts(k) && found.kept(k).blocks > 0)
    });
    Ok(if failed {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
