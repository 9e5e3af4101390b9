//! `leaktrail refs`: who points at an address.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::refs::{self, Matcher};
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_analysis::Error;
use leaktrail_analysis::Heap;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::refs as render;
use leaktrail_report::json;

use super::addr;

/// Flags of `leaktrail refs`.
#[derive(clap::Args)]
#[command(after_help = "\
mdb's ::ugrep: every pointer-aligned word in the snapshot's memory that \
refers to ADDR, each with what holds it. --invmask ignores tag bits (V8 \
tags heap pointers with the low bit: --invmask 0x7 finds them); --range \
finds pointers into the D bytes from ADDR. --chain follows the holders back, \
hop by hop, to a root (a global, a thread's stack, a register) and prints \
the shortest paths with each buffer's allocation stack.

Examples:
  leaktrail refs app.core 0x55d0c2a41f30
  leaktrail refs app.core 0x55d0c2a41f30 --range 4096
  leaktrail refs app.core 0x3a5e08a1c000 --invmask 0x7 --chain")]
pub struct Args {
    /// The snapshot (taken of a process started with `leaktrail run`).
    snap: PathBuf,
    /// The address (hex with 0x, or decimal).
    addr: String,
    /// Compare only the bits set in M.
    #[arg(long, value_name = "M", group = "how")]
    mask: Option<String>,
    /// Ignore the bits set in M (e.g. 0x7 for tagged pointers).
    #[arg(long, value_name = "M", group = "how")]
    invmask: Option<String>,
    /// Match words in [ADDR, ADDR+D).
    #[arg(long, value_name = "D", group = "how")]
    range: Option<String>,
    /// Follow references back to a root; print the shortest paths.
    #[arg(long)]
    chain: bool,
    /// With --chain, every hop: by default a run of hops through buffers of
    /// one stack (a linked list) is summarised in one line.
    #[arg(long)]
    all: bool,
    /// At most this many paths with --chain.
    #[arg(long, default_value_t = 8)]
    paths: usize,
    /// Scanning threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = addr::parse("address", &args.addr)?;
    let matcher = match (&args.mask, &args.invmask, &args.range) {
        (Some(m), _, _) => Matcher::Mask(addr::parse("--mask", m)?),
        (_, Some(m), _) => Matcher::invmask(addr::parse("--invmask", m)?),
        (_, _, Some(d)) => Matcher::Range(addr::parse("--range", d)?),
        _ => Matcher::Exact,
    };
    let snap = Snapshot::open(&super::local(&args.snap)?)?;
    let heap = Heap::open_every_block(&snap)?;
    heap.require_memory()?;
    if heap.area_of(target).is_none() {
        return Err(Error::Unmapped { addr: target }.into());
    }
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let mut out = std::io::stdout().lock();
    if args.chain {
        let c = crate::term::step("following references back to a root", || {
            refs::chain(&heap, &symbolizer, target, matcher, args.paths)
        })?;
        if args.json {
            out.write_all(json::to_string(&json::ChainsDocument::from(&c))?.as_bytes())?;
        } else {
            crate::term::print(&render::chains(&c, args.all))?;
        }
    } else {
        let r = crate::term::step("scanning memory for references", || {
            refs::find(&heap, &symbolizer, target, matcher, args.threads as usize)
        });
        if args.json {
            out.write_all(json::to_string(&json::RefsDocument::from(&r))?.as_bytes())?;
        } else {
            crate::term::print(&render::text(&r))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
