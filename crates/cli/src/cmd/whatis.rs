//! `leaktrail whatis`: what an address is.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_analysis::whatis;
use leaktrail_analysis::Heap;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::whatis as render;
use leaktrail_report::json;

use super::addr;

/// Flags of `leaktrail whatis`.
#[derive(clap::Args)]
#[command(after_help = "\
mdb's ::whatis: the live buffer containing ADDR (offset, size, allocation \
stack), or the global, function, thread stack (thread and frame), JIT \
function, audit region or mapping it is in.

Examples:
  leaktrail whatis app.core 0x55d0c2a41f30
  leaktrail whatis app.core 0x7f3a10c0 --json")]
pub struct Args {
    /// The snapshot (of a traced process, or of any process: its buffers
    /// are then glibc's chunks in use, without stacks).
    snap: PathBuf,
    /// The address (hex with 0x, or decimal).
    addr: String,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let a = addr::parse("address", &args.addr)?;
    let snap = Snapshot::open(&super::local(&args.snap)?)?;
    let heap = Heap::open_every_block(&snap)?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let w = whatis::whatis(&heap, &symbolizer, a)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(json::to_string(&json::WhatisDocument::from(&w))?.as_bytes())?;
    } else {
        out.write_all(render::text(&w).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
