//! `leaktrail attach` and `leaktrail detach`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use leaktrail_capture::attach::{self, AttachOptions};
use leaktrail_capture::snapshot::{MemoryMode, Periodic};
use leaktrail_capture::supervise::{self, RecordOptions};
use leaktrail_recording::dir as recording;

use crate::cmd::run::{verdict_and_next, TraceFlags, PRELOAD};
use crate::cmd::watch::parse_duration;

/// Flags of `leaktrail attach`.
#[derive(clap::Args)]
#[command(after_help = "\
Loads the tracer into a running process through its own dlopen (ptrace: the same \
user, kernel.yama.ptrace_scope permitting, or CAP_SYS_PTRACE) and redirects the \
malloc family in every loaded module's GOT, and in modules it loads later. From \
then on it records as `leaktrail run` does: a watch series, a snapshot every \
--every, into --out. Blocks allocated from then on carry their stacks; blocks \
from before are found by walking glibc's heap and shown as \"before attach\" \
(no stack; a type where one can be told); freeing one goes to the real free.

Ctrl-C (or `leaktrail detach -p PID` from another terminal) takes a last \
snapshot, puts every GOT entry back and leaves the process running as it was. \
The tracer library stays loaded, idle: unloading it while a thread may be inside \
a hook is not safe. A process that cannot be attached (a static binary, no \
glibc 2.34+, a seccomp filter, ptrace refused) is left untouched.

Examples:
  leaktrail attach -p 1234 --every 10m --out rec
  leaktrail attach -p 1234 --every 1m --memory full
  leaktrail detach -p 1234")]
pub struct Args {
    /// The process.
    #[arg(short, long)]
    pub pid: i32,
    #[command(flatten)]
    pub trace: TraceFlags,
    /// What snapshots capture: full (all writable memory: the heap walk
    /// needs it to see blocks from before the attach), tables, none.
    #[arg(long, default_value_t = MemoryMode::Full, value_parser = str::parse::<MemoryMode>)]
    pub memory: MemoryMode,
    /// Recording directory [default: ./leaktrail-<comm>-<pid>-<time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Time between watch samples.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

/// Flags of `leaktrail detach`.
#[derive(clap::Args)]
#[command(after_help = "\
Ends `leaktrail attach -p PID` as Ctrl-C would (a last snapshot, every GOT entry \
put back) and waits for it; if no attach runs any more (it was killed), puts \
the entries back itself. The process runs on as before; the idle tracer library \
stays mapped.

Examples:
  leaktrail detach -p 1234")]
pub struct DetachArgs {
    /// The process.
    #[arg(short, long)]
    pub pid: i32,
}

/// Runs `leaktrail attach`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(out) = &args.out {
        recording::check_new_dir(out)?;
    }
    let exe = std::env::current_exe().context("locate the leaktrail binary")?;
    let library = supervise::find_library(&exe, Some(PRELOAD))?;
    let mut opts = AttachOptions::new(library);
    opts.trace = args.trace.options(opts.trace.library.clone());
    let attached = attach::attach(args.pid, &opts)?;
    // Said once the recording exists (its first sample), so whoever waits
    // for this line can add to it at once.
    let said = std::sync::Mutex::new(Some(format!(
        "leaktrail: attached to process {} (its threads stopped {:.1} ms, the tracer loaded in {:.1} ms); Ctrl-C or `leaktrail detach -p {}` ends it",
        args.pid,
        attached.pause.as_secs_f64() * 1e3,
        attached.injection.as_secs_f64() * 1e3,
        args.pid
    )));
    let mut record = RecordOptions::default();
    record.on_sample = Some(supervise::SampleHook(std::sync::Arc::new(move |_, _| {
        if let Some(line) = said.lock().unwrap_or_else(|p| p.into_inner()).take() {
            eprintln!("{line}");
        }
    })));
    record.out = args.out.clone();
    args.trace.schedule(&mut record);
    record.snapshots = Periodic::new(args.memory);
    record.interval = args.interval;
    let done = attached.record(record, opts.safe_point_wait)?;
    for p in &done.recorded.problems {
        eprintln!("leaktrail: {p}");
    }
    if done.detached {
        eprintln!(
            "leaktrail: detached from process {} ({} GOT entries put back); it runs on",
            args.pid, done.restored
        );
    } else {
        eprintln!("leaktrail: process {} ended", args.pid);
    }
    if let Some(dir) = &done.recorded.dir {
        crate::term::eprint(&verdict_and_next(dir, dir, done.recorded.snapshots.len()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `leaktrail detach`.
pub fn detach(args: DetachArgs) -> anyhow::Result<ExitCode> {
    let by_attach = attach::detach(args.pid, Duration::from_secs(5))?;
    eprintln!(
        "leaktrail: detached from process {}{}",
        args.pid,
        if by_attach {
            " (its leaktrail attach took a last snapshot and ended)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
