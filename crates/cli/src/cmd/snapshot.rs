//! `leaktrail snapshot`: one stop-the-world capture of a running process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_capture::snapshot::{self, MemoryMode};
use leaktrail_capture::Error;
use leaktrail_recording::dir::{self as recording, snapshots::Snapshots};

/// Flags of `leaktrail snapshot`.
#[derive(clap::Args)]
pub struct Args {
    /// The process to capture.
    #[arg(
        short,
        long,
        required_unless_present = "recording",
        conflicts_with = "recording"
    )]
    pid: Option<i32>,
    /// Take the next snapshot of a `leaktrail run` recording (into
    /// DIR/snapshots/, serialised with the run's own snapshots).
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    recording: Option<PathBuf>,
    /// Which memory to keep: `full` (all writable and anonymous memory),
    /// `tables` (only the tracer's audit region) or `none` (threads,
    /// registers, mappings and metadata).
    #[arg(long, default_value_t = MemoryMode::Full, value_parser = str::parse::<MemoryMode>)]
    memory: MemoryMode,
    /// Output file (default `leaktrail-<comm>-<pid>-<time>.core` here).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Also print where the pause went.
    #[arg(short, long)]
    verbose: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // From here on SIGINT and SIGTERM let the target go and remove the
    // temporary file before we exit, rather than kill us mid-capture.
    snapshot::catch_interrupts();
    let progress = crate::term::Progress::step("stopping the process and copying its memory");
    let taken = match (&args.recording, args.pid) {
        (Some(dir), _) => {
            let meta_path = dir.join("meta.json");
            let text = std::fs::read_to_string(&meta_path)
                .with_context(|| format!("{} is not a recording directory", dir.display()))?;
            let meta = recording::parse_meta(&text).map_err(|why| {
                anyhow::Error::new(crate::exit::BadInput(format!(
                    "{}: {why}",
                    meta_path.display()
                )))
            })?;
            snapshot::take_into(&Snapshots::of(dir)?, meta.pid, args.memory, false).map_err(|e| {
                (
                    e,
                    format!("snapshot of process {} into {}", meta.pid, dir.display()),
                )
            })
        }
        (None, Some(pid)) => {
            let mut options = snapshot::Options::default();
            options.memory = args.memory;
            options.output = args.output;
            snapshot::take(pid, &options).map_err(|e| (e, format!("snapshot of process {pid}")))
        }
        (None, None) => crate::bad_input!("give -p PID or --recording DIR"),
    };
    drop(progress);
    let outcome = match taken {
        Ok(outcome) => outcome,
        // Already the whole story, in the words the user needs; no context.
        Err((e @ Error::Interrupted { signal, .. }, _)) => {
            eprintln!("leaktrail: {e}");
            return Ok(crate::exit::interrupted(signal));
        }
        Err((e, context)) => return Err(anyhow::Error::new(e).context(context)),
    };
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
    if args.verbose {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let p = outcome.phases;
        println!(
            "phases: threads stopped at {:.1} ms, maps read at {:.1} ms, memory copied at {:.1} ms ({}), released at {:.1} ms",
            ms(p.stopped),
            ms(p.maps),
            ms(p.copied),
            if p.staged { "staged, file written after release" } else { "streamed to the file" },
            ms(outcome.pause)
        );
    }
    Ok(ExitCode::SUCCESS)
}
