//! `leaktrail pprof`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_recording::dir as recording;
use leaktrail_report::pprof;

use super::filter::FilterArgs;

/// Flags of `leaktrail pprof`.
#[derive(clap::Args)]
#[command(after_help = "\
Writes the snapshot's live buffers as a gzipped pprof profile: sample types \
inuse_objects and inuse_space (the default), one sample per allocation stack and size \
class (label size_class), functions with files and lines, inlined calls, mappings with \
build ids; then alloc_objects and alloc_space, one sample per allocation stack with what \
it allocated since the program started (the tracer's own counts: not narrowed by the \
filters). The profile's comments list the totals per size class.

Examples:
  leaktrail pprof rec/snapshots/0007.core -o heap.pb.gz && go tool pprof -top heap.pb.gz
  leaktrail pprof app.core --size 2049..4096 -o 2-4k.pb.gz")]
pub struct Args {
    /// The snapshot (taken of a process started with `leaktrail run`).
    pub snap: PathBuf,
    /// The file to write (gzipped protobuf).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Which buffers.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = args.filter.profile(&args.snap)?;
    let bytes = pprof::gzipped(&profile)?;
    recording::write_atomically(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
