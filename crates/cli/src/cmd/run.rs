//! `leaktrail run`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;
use leaktrail_analysis::audit_dump;
use leaktrail_capture::{recording, supervise};

/// Flags of `leaktrail run`.
#[derive(clap::Args)]
#[command(after_help = "\
The tracer (libleaktrail_preload.so) is found in $LEAKTRAIL_PRELOAD, next to \
the leaktrail binary, or in ../lib/leaktrail/ beside it.

Examples:
  leaktrail run -- ./server --port 8080
  leaktrail run --unwind fp --depth 32 -- python3 app.py
  leaktrail run --dump-at-exit audit.json -- ./test-suite")]
pub struct Args {
    /// How stacks are captured: dwarf (CFI, then frame pointers), fp, none.
    #[arg(long, default_value = "dwarf", value_parser = ["dwarf", "fp", "none"])]
    pub unwind: String,
    /// Frames per stack (1-256).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub depth: u32,
    /// At exit, write every live buffer with its symbolized stack as JSON.
    #[arg(long, value_name = "FILE")]
    pub dump_at_exit: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locate the leaktrail binary")?;
    let library = supervise::find_library(&exe)?;
    let mut opts = supervise::TraceOptions::new(library);
    opts.unwind = args.unwind;
    opts.depth = args.depth;
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    let traced = supervise::spawn(cmd, &opts)?;
    let mut failure = None;
    let status = traced.wait(|notice| {
        if let Some(path) = &args.dump_at_exit {
            let result = audit_dump::read_live(notice.pid, notice.header_addr)
                .map_err(anyhow::Error::from)
                .and_then(|dump| Ok(serde_json::to_vec_pretty(&dump)?))
                .and_then(|bytes| Ok(recording::write_atomically(path, &bytes)?));
            if let Err(e) = result {
                failure = Some(e.context(format!("write the audit of process {}", notice.pid)));
            }
        }
    })?;
    if let Some(e) = failure {
        eprintln!("leaktrail: {e:#}");
    }
    Ok(ExitCode::from(supervise::exit_code(status)))
}
