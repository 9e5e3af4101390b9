//! `leaktrail dump`: annotated words.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::dump;
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_analysis::Heap;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::dump as render;
use leaktrail_report::json;

use super::addr;

/// Flags of `leaktrail dump`.
#[derive(clap::Args)]
#[command(after_help = "\
The words at ADDR, one a line, each annotated: a pointer into a live buffer \
(with offset), a tagged pointer, a symbol, JIT code, a small integer, text.

Examples:
  leaktrail dump app.core 0x55d0c2a41f30          # 64 bytes
  leaktrail dump app.core 0x55d0c2a41f30 4096 --json")]
pub struct Args {
    /// The snapshot.
    snap: PathBuf,
    /// The address (hex with 0x, or decimal).
    addr: String,
    /// Bytes to show (default 64).
    len: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let a = addr::parse("address", &args.addr)?;
    let len = match &args.len {
        Some(l) => addr::parse("length", l)?,
        None => 64,
    };
    let snap = Snapshot::open(&super::local(&args.snap)?)?;
    let heap = Heap::open(&snap)?;
    heap.require_memory()?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let words = dump::dump(&heap, &symbolizer, a, len.min(1 << 20))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(json::to_string(&json::DumpDocument::new(&words))?.as_bytes())?;
    } else {
        out.write_all(render::text(&words).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
