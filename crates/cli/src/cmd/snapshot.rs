//! `leaktrail snapshot`: one stop-the-world capture of a running process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_capture::snapshot::{self, MemoryMode};

/// Flags of `leaktrail snapshot`.
#[derive(clap::Args)]
pub struct Args {
    /// The process to capture.
    #[arg(short, long)]
    pid: i32,
    /// Which memory to keep: `full` (all writable and anonymous memory),
    /// `tables` (only the tracer's audit region) or `none` (threads,
    /// registers, mappings and metadata).
    #[arg(long, default_value = "full", value_parser = parse_memory)]
    memory: MemoryMode,
    /// Output file (default `leaktrail-<comm>-<pid>-<time>.core` here).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

fn parse_memory(s: &str) -> Result<MemoryMode, String> {
    s.parse()
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut options = snapshot::Options::default();
    options.memory = args.memory;
    options.output = args.output;
    let outcome = snapshot::take(args.pid, &options)
        .with_context(|| format!("snapshot of process {}", args.pid))?;
    println!("{}", outcome.path.display());
    println!(
        "pause {:.1} ms, {} thread{}, {:.1} MiB captured{}",
        outcome.pause.as_secs_f64() * 1e3,
        outcome.threads,
        if outcome.threads == 1 { "" } else { "s" },
        outcome.captured_bytes as f64 / (1 << 20) as f64,
        if outcome.unreadable_bytes > 0 {
            format!(
                " ({} bytes unreadable, written as zeros)",
                outcome.unreadable_bytes
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
