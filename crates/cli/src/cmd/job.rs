//! `leaktrail job`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::bad_input;
use crate::job::{self, Job, Task};

/// Flags of `leaktrail job`.
#[derive(clap::Args)]
#[command(after_help = "\
Runs one per-snapshot subcommand over many snapshots in parallel, each as a child \
`leaktrail` process: a corrupt or failing input is reported at the end and never stops \
the others. Each input's output goes to OUT/<name>.<ext>, <name> being the snapshot's \
file name without its extension (with its folders where names clash), <ext> svg for \
flamegraph (folded with --folded), pb.gz for pprof, json with --json, else txt. \
Exits 1 if any input failed.

Examples:
  leaktrail job flamegraph --size 2049..4096 -o out/ -- rec/snapshots/*.core
  leaktrail job -j 8 leaks --json -o leaks/ -- cores/*.core
  leaktrail job pprof -o profiles/ -- rec/snapshots/*.core")]
pub struct Args {
    /// Parallel children [default: one per core].
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Folder for the outputs (created if missing).
    #[arg(short = 'o', long = "out", value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Extension of the outputs [default: by subcommand].
    #[arg(long, value_name = "EXT")]
    pub ext: Option<String>,
    /// Do not draw the progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// The subcommand and its flags, then `--` and the snapshots.
    #[arg(
        required = true,
        value_name = "SUBCOMMAND [ARGS] -- SNAP",
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    pub command: Vec<String>,
}

/// Subcommands that take one snapshot and write one result.
const PER_SNAPSHOT: &[&str] = &[
    "flamegraph",
    "pprof",
    "leaks",
    "caches",
    "bufs",
    "info",
    "whatis",
    "refs",
    "dump",
];

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(sep) = args.command.iter().position(|a| a == "--") else {
        bad_input!("job: expected `SUBCOMMAND [ARGS] -- SNAP...` (the snapshots after `--`)");
    };
    let (command, snaps) = (&args.command[..sep], &args.command[sep + 1..]);
    let snaps: Vec<PathBuf> = snaps.iter().map(PathBuf::from).collect();
    if command.is_empty() || snaps.is_empty() {
        bad_input!("job: expected `SUBCOMMAND [ARGS] -- SNAP...` with at least one snapshot");
    }
    let sub = command[0].as_str();
    if !PER_SNAPSHOT.contains(&sub) {
        bad_input!(
            "job runs a per-snapshot subcommand ({}), not {sub:?}",
            PER_SNAPSHOT.join(", ")
        );
    }
    let flags = &command[1..];
    if flags.iter().any(|f| f == "-o" || f == "--output") {
        bad_input!(
            "job names each output itself (-o DIR before the subcommand); drop the subcommand's -o"
        );
    }
    let has = |flag: &str| flags.iter().any(|f| f == flag);
    let ext = args.ext.clone().unwrap_or_else(|| {
        match sub {
            "pprof" => "pb.gz",
            "flamegraph" if has("--folded") => "folded",
            "flamegraph" => "svg",
            _ if has("--json") => "json",
            _ => "txt",
        }
        .to_string()
    });
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let names = job::output_names(&snaps);
    let tasks: Vec<Task> = snaps
        .iter()
        .zip(names)
        .map(|(input, name)| Task {
            input: input.clone(),
            output: args.out.join(format!("{name}.{ext}")),
        })
        .collect();
    let workers = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 {
        bad_input!("-j 0: at least one worker is needed");
    }
    let show = !args.quiet && std::io::stderr().is_terminal();
    let progress = move |done: usize, failed: usize, total: usize| {
        if show {
            job::draw(done, failed, total);
        }
    };
    let exe = std::env::current_exe().context("finding the leaktrail binary to run")?;
    let start = std::time::Instant::now();
    let outcomes = job::run(
        &Job {
            exe,
            command,
            output_flag: sub == "pprof",
            workers,
            progress: &progress,
        },
        &tasks,
    );
    let failed: Vec<_> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    eprintln!(
        "job {sub}: {} inputs, {} ok, {} failed, {} workers, {:.1}s; outputs in {}",
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len(),
        workers.min(tasks.len()),
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    for o in &failed {
        eprintln!(
            "  failed: {}: {}",
            o.task.input.display(),
            o.error.as_deref().unwrap_or("")
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
