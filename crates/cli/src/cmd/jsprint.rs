//! `leaktrail jsprint`: one JS object of a snapshot, with its members.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::v8;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::js as render;
use leaktrail_report::json;

use crate::bad_input;

use super::addr;

/// Flags of `leaktrail jsprint`.
#[derive(clap::Args)]
#[command(after_help = "\
mdb_v8's ::jsprint for current Node: the JS value at ADDR (an object's \
address, as jsobjects --constructor lists them, or a tagged pointer), \
with its constructor, named properties and elements, strings and numbers, \
members of members down to --depth. Strings print their first 4,096 \
characters, external ones too (read through the resource's data pointer \
V8 caches; an uncached one is named, not read). Needs a --memory full snapshot of \
node and the node binary it ran (its v8dbg_* symbols).

Examples:
  leaktrail jsprint node.core 0x3f2a1c0d0e58
  leaktrail jsprint node.core 0x3f2a1c0d0e58 --depth 4 --json")]
pub struct Args {
    /// The snapshot (taken with --memory full).
    snap: PathBuf,
    /// The object's address (hex with 0x, or decimal; tagged or not).
    addr: String,
    /// Levels of members to print (0: the object's constructor only).
    #[arg(long, default_value_t = 2, value_name = "N")]
    depth: u32,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let a = addr::parse("address", &args.addr)?;
    let snap = Snapshot::open(&args.snap)?;
    let md = v8::metadata_for(&snap)?;
    let heap = v8::JsHeap::open(&snap, &md)?;
    // An object's address is untagged; V8's pointers to it carry tag 1.
    let value = heap.value(a | 1, args.depth);
    if let v8::JsValue::Unreadable(_) = value {
        bad_input!(
            "{a:#x} is not a V8 heap object in {}: give an object's address as jsobjects --constructor NAME lists them",
            args.snap.display()
            );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(json::to_string(&json::JsPrintDocument::from(&value))?.as_bytes())?;
    } else {
        out.write_all(render::value(&value).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
