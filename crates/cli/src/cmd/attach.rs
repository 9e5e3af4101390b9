//! `leaktrail attach` and `leaktrail detach`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use leaktrail_capture::attach::{self, AttachOptions};
use leaktrail_capture::snapshot::{MemoryMode, Periodic};
use leaktrail_capture::supervise::{self, RecordOptions};

use crate::cmd::run::{check_out, verdict_and_next, TraceFlags, PRELOAD};
use crate::cmd::watch::parse_duration;

/// Flags of `leaktrail attach`.
#[derive(clap::Args)]
#[command(after_help = "\
Loads the tracer into a running process through its own dlopen (ptrace: the same \
user, kernel.yama.ptrace_scope permitting, or CAP_SYS_PTRACE) and redirects the \
malloc family in every loaded module's GOT, and in modules it loads later. From \
then on it records as `leaktrail run` does: a watch series, a snapshot every \
--every, into --out (a directory, or s3://BUCKET/PREFIX streamed to as `run` \
does), by sampling with --sample as `run --sample` does, and a last snapshot when \
the process exits while attached (from an exit handler registered at the attach: \
it runs before the handlers the program registered earlier). A process killed, \
or ending in _exit, leaves no snapshot at its end; the ones taken before stay.

Blocks allocated from then on carry their stacks. Blocks from before are found by \
walking glibc's heap in each --memory full snapshot, without stacks (they predate \
the attach), named by type where one can be told: a C++ class by its vtable \
([type] Widget), else a size class and hint ([size 4096]), in leaks, bufs, \
growth, flamegraph, pprof and report alike. Freeing one goes to the real free. \
With --sample they are not added: the heap cannot tell them from later blocks \
that were not sampled.

Ctrl-C (or `leaktrail detach -p PID` from another terminal) takes a last \
snapshot, puts every GOT entry back and leaves the process running as it was. \
The tracer library stays loaded, idle: unloading it while a thread may be inside \
a hook is not safe. A process that cannot be attached (a static binary, no \
glibc 2.34+, a seccomp filter, ptrace refused) is left untouched.

Examples:
  leaktrail attach -p 1234 --every 10m --out rec
  leaktrail attach -p 1234 --every 1m --memory full
  leaktrail attach -p 1234 --sample --every 10m   # production: 512KiB sampling
  leaktrail attach -p 1234 --out s3://bucket/api/web-1
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
    /// Recording directory [default: ./leaktrail-<comm>-<pid>-<time>], or
    /// `s3://BUCKET/PREFIX`: recorded into a local spool, each snapshot
    /// uploaded as it is taken, the rest when the recording ends (as `run
    /// --out`).
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
    // A bad output costs nothing: refused before the process is touched.
    let remote = match &args.out {
        Some(out) => check_out(out, "attach")?,
        None => None,
    };
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
    if let Some(r) = &remote {
        r.stream(&mut record);
    }
    args.trace.schedule(&mut record);
    record.snapshots = Periodic::new(args.memory);
    record.interval = args.interval;
    let done = attached.record(record, opts.safe_point_wait)?;
    for p in &done.recorded.problems {
        eprintln!("leaktrail: {p}");
    }
    if let (Some(r), Some(dir)) = (&remote, &done.recorded.dir) {
        r.finish(dir)?;
    }
    if done.detached {
        eprintln!(
            "leaktrail: detached from process {} ({} GOT entries put back); it runs on",
            args.pid, done.restored
        );
    } else if let Some(status) = done.exit_status {
        let at_exit = done
            .recorded
            .snapshots
            .last()
            .is_some_and(|s| leaktrail_recording::dir::snapshots::is_exit(s));
        eprintln!(
            "leaktrail: process {} exited with status {status}; {}",
            args.pid,
            if at_exit {
                "its last snapshot was taken at its exit"
            } else {
                "the snapshot at its exit failed (said above)"
            }
        );
    } else {
        eprintln!(
            "leaktrail: process {} ended without calling exit (killed by a signal, or _exit): no snapshot at its end; {}",
            args.pid,
            match done.recorded.snapshots.last() {
                Some(s) => format!("the last one taken, {}, is kept", s.display()),
                None => "no snapshot was taken before".into(),
            }
        );
    }
    if let Some(dir) = &done.recorded.dir {
        let shown = match &remote {
            Some(r) => PathBuf::from(r.url.to_string()),
            None => dir.clone(),
        };
        crate::term::eprint(&verdict_and_next(
            dir,
            &shown,
            done.recorded.snapshots.len(),
        ));
    }
    if let Some(r) = &remote {
        r.remove_spool();
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
