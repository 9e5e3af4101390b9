//! `leaktrail jsobjects`: JS objects by constructor, from a snapshot.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::v8;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::js as render;
use leaktrail_report::json;

use crate::bad_input;

/// Flags of `leaktrail jsobjects`.
#[derive(clap::Args)]
#[command(after_help = "\
mdb_v8's ::findjsobjects for current Node: every JS object on V8's heap, \
counted by constructor (a class's name, Object, Array; closures as \
`Function NAME`), with their shallow bytes, then V8's own used and \
committed bytes per space, V8's global handles (what v8::Global, \
Persistent and N-API references hold: strong and weak) and the local \
handles of open handle scopes with their blocks, and the bytes of \
external strings (characters the embedder keeps off the JS heap). The \
handle counts come from V8's structures found near its heap and checked \
by walking them; when they do not check out they say not available. \
V8's traced handles (TracedReference, for embedders' wrapper objects) \
are not counted: not available (no v8dbg_* symbol locates them). \
Needs a --memory full snapshot (the default) \
of node and the node binary it ran (its v8dbg_* symbols describe V8's \
object layouts); reads the whole V8 heap once (about 1 s for a \
snapshot of a small node service). Only objects still reachable are \
counted, as a collector would mark them (from the stacks, V8's handles \
and the rest of memory, conservatively); garbage V8 has not yet collected \
is left out and its total shown on the first line. Across snapshots, growth \
and report name the constructors that grow, and call it a handle leak \
when global handles grow while no constructor does.

Examples:
  leaktrail jsobjects node.core
  leaktrail jsobjects node.core --constructor Listener   # their addresses, for jsprint
  leaktrail jsobjects node.core --json")]
pub struct Args {
    /// The snapshot (taken with --memory full).
    snap: PathBuf,
    /// Print the addresses of this constructor's objects instead, one a line.
    #[arg(long, value_name = "NAME")]
    constructor: Option<String>,
    /// Show the first N constructors (0: all).
    #[arg(long, default_value_t = 30, value_name = "N")]
    top: usize,
    /// Print one JSON document instead of text (addresses included only
    /// with --constructor).
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let snap = Snapshot::open(&args.snap)?;
    let census = v8::census_of(&snap)?;
    let mut out = std::io::stdout().lock();
    if let Some(name) = &args.constructor {
        if census.get(name).is_none() {
            let known: Vec<&str> = census
                .constructors
                .iter()
                .take(10)
                .map(|c| c.constructor.as_str())
                .collect();
            bad_input!(
                "no JS object of constructor {name:?} in {}: the largest are {}",
                args.snap.display(),
                known.join(", ")
            );
        }
        if args.json {
            let mut only = census.clone();
            only.constructors.retain(|c| &c.constructor == name);
            out.write_all(json::to_string(&json::JsObjectsDocument::new(&only, true))?.as_bytes())?;
        } else {
            out.write_all(render::addresses(&census, name).as_bytes())?;
        }
    } else if args.json {
        out.write_all(json::to_string(&json::JsObjectsDocument::new(&census, false))?.as_bytes())?;
    } else {
        out.write_all(render::census(&census, args.top).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
