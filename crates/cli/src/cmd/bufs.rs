//! `leaktrail bufs`: the live buffers of a snapshot, filtered.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::bufs::{self, Filter};
use leaktrail_analysis::core::Snapshot;
use leaktrail_analysis::heap::Heap;
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_capture::duration;
use leaktrail_report::heap::bufs as render;

use crate::bad_input;

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
    /// The snapshot (taken of a process started with `leaktrail run`).
    snap: PathBuf,
    /// Only buffers of the size class whose largest size is N (see `caches`).
    #[arg(long, value_name = "N")]
    class: Option<u64>,
    /// Only buffers of LO..HI requested bytes (inclusive; either end may be
    /// left out).
    #[arg(long, value_name = "LO..HI")]
    size: Option<String>,
    /// Only buffers allocated at least this long before the newest one
    /// (e.g. 30s, 10m).
    #[arg(long, value_name = "AGE")]
    older_than: Option<String>,
    /// Only buffers allocated at most this long before the newest one.
    #[arg(long, value_name = "AGE")]
    newer_than: Option<String>,
    /// Only buffers allocated by this thread id.
    #[arg(long, value_name = "TID")]
    thread: Option<u32>,
    /// Only buffers whose stack has a function whose name contains FN.
    #[arg(long, value_name = "FN")]
    stack_contains: Option<String>,
    /// Group by allocation stack, largest first.
    #[arg(long, value_parser = ["stack"], value_name = "stack")]
    group_by: Option<String>,
    /// Print each buffer's whole stack.
    #[arg(short, long)]
    verbose: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

fn size_range(text: &str) -> anyhow::Result<(u64, u64)> {
    let Some((lo, hi)) = text.split_once("..") else {
        bad_input!("--size {text:?}: expected LO..HI, e.g. 1000..2000 or 4097..");
    };
    let num = |s: &str, default: u64| -> anyhow::Result<u64> {
        if s.is_empty() {
            return Ok(default);
        }
        match s.trim().parse() {
            Ok(n) => Ok(n),
            Err(_) => bad_input!("--size {text:?}: {s:?} is not a number of bytes"),
        }
    };
    Ok((num(lo, 0)?, num(hi.trim_start_matches('='), u64::MAX)?))
}

fn age(flag: &str, text: &Option<String>) -> anyhow::Result<Option<u64>> {
    match text {
        None => Ok(None),
        Some(t) => match duration::parse(t) {
            Ok(d) => Ok(Some(d.as_nanos() as u64)),
            Err(e) => bad_input!("{flag} {t:?}: {e}"),
        },
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut filter = Filter::default();
    filter.class = args.class;
    filter.size = args.size.as_deref().map(size_range).transpose()?;
    filter.older_than_ns = age("--older-than", &args.older_than)?;
    filter.newer_than_ns = age("--newer-than", &args.newer_than)?;
    filter.thread = args.thread;
    filter.stack_contains = args.stack_contains;
    let snap = Snapshot::open(&args.snap)?;
    let heap = Heap::open(&snap)?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let group = args.group_by.is_some();
    let found = bufs::select(
        &heap.audit,
        &filter,
        &symbolizer,
        group,
        !group && (!args.json || args.verbose),
    );
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &found)?;
        writeln!(out)?;
    } else {
        out.write_all(render::text(&found, args.verbose).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
