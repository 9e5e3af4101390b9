//! `leaktrail run`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use leaktrail_analysis::trend;
use leaktrail_analysis::{audit_dump, jitdump};
use leaktrail_capture::memory::LiveProcess;
use leaktrail_capture::node;
use leaktrail_capture::snapshot::{MemoryMode, Method, Periodic};
use leaktrail_capture::supervise::{self, ExitNotice, Notice, RecordOptions};
use leaktrail_format::UnwindMode;
use leaktrail_recording::dir as recording;
use leaktrail_report::{json, text};

use crate::cmd::remote::Remote;
use crate::cmd::spelled;
use crate::cmd::watch::parse_duration;

/// Flags of `leaktrail run`.
#[derive(clap::Args)]
#[command(after_help = "\
Records into a directory (--out, default ./leaktrail-<comm>-<pid>-<time>/): the \
watch series of `leaktrail watch`, a snapshot every --every, and a final snapshot \
when the program returns from main or calls exit, taken before any atexit handler \
runs, with every block still live (snapshots/NNNN.core, the last NNNN-exit.core). \
`leaktrail snapshot --recording DIR` adds one on demand.

The tracer (libleaktrail_preload.so) is found in $LEAKTRAIL_PRELOAD, next to the \
leaktrail binary, or in ../lib/leaktrail/ beside it. It records the allocator the \
program uses: glibc's, or jemalloc, tcmalloc or mimalloc as a shared library or in \
LD_PRELOAD (their extended APIs and C++ operators too), or one linked statically \
into the executable, whose functions are diverted at their entries before main \
(if one cannot be, nothing is recorded, and the run says so).

A Node.js command (node, nodejs) gets --perf-basic-prof, --perf-prof and \
--interpreted-frames-native-stack so that JS frames are named:
  --perf-basic-prof writes /tmp/perf-PID.map (a line per compiled function; each \
snapshot keeps a copy, the file is removed when the run ends). It names frames by \
function and script, but its lines have no time: an address V8 reused is named \
after its last owner. Cost: a few MB of text, little CPU.
  --perf-prof writes ./jit-PID.dump (moved into the recording as jit.dump when the \
run ends): every code object with its load time, and for optimized code the line \
and column of each call, inlined calls included. With it JS frames are named as \
they were when each block was allocated, carry the allocating line, and a \
function TurboFan inlined appears as an inlined frame (V8 writes the innermost \
call only: the calls between come from the snapshots, below). Cost: the dump \
holds a copy of all JIT code (3.8 MB for 45 s of examples/node-http-client) and \
V8 writes it as it compiles. Needs the working directory to be writable.
  V8's postmortem metadata (the node binary's v8dbg_* symbols) is read for the JS \
heap: with --memory full snapshots, jsobjects, jsprint, growth and report decode \
V8's objects (no node flag needed; costs the snapshots' size, all writable \
memory, and one read of the whole V8 heap per snapshot per analysis). From the \
same snapshots, each optimized function's deoptimization data gives the whole \
chain of calls TurboFan inlined, each at its line: read from up to 16 of the \
recording's full snapshots for the code still alive in one of them (a few \
hundred reads per code object, once per analysis), and Sparkplug's code gets its \
lines from the bytecode each stretch of it runs. An interpreted frame gets the \
line of its call from the bytecode offset the tracer reads from the frame (one \
more stack word per JIT frame) and the function's bytecode in the last and first \
snapshots (a walk of their V8 heap, once per analysis). With --memory tables an \
inlined chain shows its innermost call and its outer function only, and \
Sparkplug's and interpreted frames their function's start.
  --interpreted-frames-native-stack gives each interpreted function a frame of its \
own, which is what names it. --no-node-flags adds none of them.

Examples:
  leaktrail run --every 10m -- ./server --port 8080
  leaktrail run --every 1m -- node app.js
  leaktrail run --every 30s --keep 20 --out rec -- python3 app.py
  leaktrail run --sample --every 10m -- ./server   # production: 512KiB sampling
  leaktrail run --no-record --dump-at-exit audit.json -- ./test-suite")]
pub struct Args {
    #[command(flatten)]
    pub trace: TraceFlags,
    /// What snapshots capture: full (all writable memory), tables (the audit
    /// only), none (notes only).
    #[arg(long, default_value_t = MemoryMode::Full, value_parser = str::parse::<MemoryMode>)]
    pub memory: MemoryMode,
    /// Store in each periodic snapshot only the pages written since the
    /// previous one (readers resolve the chain; `leaktrail snapshot
    /// --materialize` makes a standalone core).
    #[arg(long)]
    pub incremental: bool,
    /// Every Nth periodic snapshot is a standalone one with full memory:
    /// bounds an --incremental chain, or adds full snapshots to cheap
    /// `--memory tables` ones.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub full_every: usize,
    /// How snapshots take the memory: auto (copy-on-write where possible),
    /// cow, stop.
    #[arg(long, default_value_t = Method::Auto, value_parser = str::parse::<Method>)]
    pub method: Method,
    /// Print one line per snapshot: method, pause, CPU, bytes written.
    #[arg(short, long)]
    pub verbose: bool,
    /// Recording directory [default: ./leaktrail-<comm>-<pid>-<time>], or
    /// `s3://BUCKET/PREFIX`: recorded into a local spool, each snapshot
    /// uploaded as it is taken, the rest when the run ends.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Time between watch samples.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Only trace: no recording directory, no snapshots.
    #[arg(long)]
    pub no_record: bool,
    /// Do not add --perf-basic-prof --perf-prof --interpreted-frames-native-stack
    /// to a Node.js command (they let leaktrail name JS frames).
    #[arg(long)]
    pub no_node_flags: bool,
    /// Also write each snapshot's tables as Parquet under OUT (a directory
    /// or `s3://BUCKET/PREFIX`) as it is taken (see `leaktrail export`):
    /// the cores need not leave the host.
    #[arg(long, value_name = "OUT")]
    pub export: Option<PathBuf>,
    #[command(flatten)]
    pub labels: crate::cmd::export::Labels,
    /// Show `leaktrail top`'s live view of the program while it runs
    /// (on a terminal; q closes the view, the program goes on).
    #[arg(long, conflicts_with = "no_record")]
    pub live: bool,
    /// At exit, also write every live block with its symbolized stack as JSON.
    #[arg(long, value_name = "FILE")]
    pub dump_at_exit: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// How the tracer records and how often the recording takes a snapshot:
/// the flags `run` and `attach` share.
#[derive(clap::Args)]
pub struct TraceFlags {
    /// How stacks are captured: dwarf (CFI, then frame pointers), fp, none.
    #[arg(long, default_value_t = UnwindMode::Dwarf, value_parser = spelled::<UnwindMode>(UnwindMode::NAMES))]
    pub unwind: UnwindMode,
    /// Frames per stack (1-256).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub depth: u32,
    /// Time between periodic snapshots: 30s, 10m, 1h; 0 for none.
    #[arg(long, default_value = "10m", value_parser = parse_every)]
    pub every: Duration,
    /// Keep at most N periodic snapshots: the first and the newest N-1.
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Sample by bytes instead of recording every block: a block of S bytes
    /// keeps its stack with probability 1 - exp(-S/BYTES) (a Poisson process
    /// over the bytes allocated, as tcmalloc and heapprofd sample); the
    /// others are only counted in their size class. Every view then shows
    /// estimates scaled by the rate. BYTES: 65536, 512K, 2MiB; without a
    /// value 512KiB.
    #[arg(long, value_name = "BYTES", num_args = 0..=1, default_missing_value = "512KiB", value_parser = parse_bytes)]
    pub sample: Option<u64>,
}

impl TraceFlags {
    /// The tracer's options for the library at `library`.
    pub fn options(&self, library: PathBuf) -> supervise::TraceOptions {
        let mut opts = supervise::TraceOptions::new(library);
        opts.unwind = self.unwind;
        opts.depth = self.depth;
        opts.sample = self.sample.unwrap_or(0);
        opts
    }

    /// Sets `record`'s snapshot timer and pruning.
    pub fn schedule(&self, record: &mut RecordOptions) {
        record.every = (!self.every.is_zero()).then_some(self.every);
        record.keep = self.keep.unwrap_or(0);
    }
}

/// The tracer library this binary was built with (`build.rs` builds it),
/// written to a private cache directory when no library sits beside the
/// binary: one `leaktrail` file is a complete install.
pub(crate) const PRELOAD: supervise::EmbeddedLibrary<'static> = supervise::EmbeddedLibrary {
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/libleaktrail_preload.so")),
    hash: env!("LEAKTRAIL_PRELOAD_HASH"),
};

/// What `run` says at the end: where the recording is, the trend
/// verdict, and the commands to run next.
pub(crate) fn verdict_and_next(dir: &Path, shown: &Path, snapshots: usize) -> String {
    let mut s = format!(
        "leaktrail: recording in {} ({snapshots} snapshot{})\n",
        shown.display(),
        if snapshots == 1 { "" } else { "s" }
    );
    match leaktrail_recording::dir::Recording::open(dir) {
        Ok(rec) => s.push_str(&text::trend(&trend::analyse(&rec))),
        Err(e) => s.push_str(&format!("leaktrail: no verdict: {e}\n")),
    }
    let d = shown.display();
    s.push_str(&format!(
        "\nnext: leaktrail report {d}        # the whole story, one HTML page\n\
         next: leaktrail growth {d}        # the allocation sites that grow\n"
    ));
    s
}

/// A number of bytes: digits, then an optional K, M or G (powers of 1024,
/// with or without `iB`).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("{s:?}: expected bytes, e.g. 65536, 512KiB or 2M")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected bytes, e.g. 65536, 512KiB or 2M"))?;
    match n.checked_shl(shift).filter(|&v| v >> shift == n && v > 0) {
        Some(v) => Ok(v),
        None => Err(format!("{s:?}: expected a rate from 1 byte to 2^63")),
    }
}

fn parse_every(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locate the leaktrail binary")?;
    let library = supervise::find_library(&exe, Some(PRELOAD))?;
    let opts = args.trace.options(library);
    let node = node::is_node(&args.command[0]);
    let argv = if node && !args.no_node_flags {
        node::with_symbol_flags(&args.command)
    } else {
        args.command.clone()
    };
    // A bad output costs nothing: refused before the program starts.
    let mut remote = None;
    if !args.no_record {
        if let Some(out) = &args.out {
            remote = check_out(out, "run")?;
        }
    }
    let tables = args
        .export
        .as_deref()
        .map(crate::cmd::export::Tables::to)
        .transpose()?;
    if let Some(path) = &args.dump_at_exit {
        leaktrail_recording::output::check(path, leaktrail_recording::output::Kind::Stream)?;
    }
    if args.live && !std::io::stdout().is_terminal() {
        crate::bad_input!("--live draws on a terminal: standard output is not one");
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let traced = supervise::spawn(cmd, &opts)?;
    let pid = traced.pid();
    let mut failure = None;
    let dump = |notice: ExitNotice, failure: &mut Option<anyhow::Error>| {
        if let Some(path) = &args.dump_at_exit {
            let result = LiveProcess::open(notice.pid)
                .map_err(anyhow::Error::from)
                .and_then(|live| {
                    let dump = audit_dump::read_live(
                        &live.memory,
                        &live.mappings,
                        notice.pid,
                        Some(notice.header_addr),
                    )?;
                    Ok(dump)
                })
                .and_then(|dump| {
                    Ok(serde_json::to_vec_pretty(&json::AuditDumpDocument::from(
                        &dump,
                    ))?)
                })
                .and_then(|bytes| Ok(recording::write_atomically(path, &bytes)?));
            if let Err(e) = result {
                *failure = Some(e.context(format!("write the audit of process {}", notice.pid)));
            }
        }
    };
    let status = if args.no_record {
        traced.wait(|notice| {
            if let Notice::Exit(n) = notice {
                dump(n, &mut failure)
            }
        })?
    } else {
        let mut record = RecordOptions::default();
        record.out = args.out.clone();
        args.trace.schedule(&mut record);
        record.snapshots = Periodic::new(args.memory);
        record.snapshots.method = args.method;
        record.snapshots.incremental = args.incremental;
        record.snapshots.full_every = args.full_every;
        record.snapshots.verbose = args.verbose;
        record.interval = args.interval;
        if let Some(out) = tables {
            let opts = args.labels.options(false);
            record.after_snapshot = Some(supervise::SnapshotHook(Arc::new(move |snap: &Path| {
                out.write(snap, &opts)
                    .map(|_| ())
                    .map_err(|e| format!("export: {e:#}"))
            })));
        }
        let live = std::sync::Arc::new(crate::term::LiveLine::new());
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        if args.live {
            // The first sample comes once the tracer is up: top can find its tables.
            let started = std::sync::Mutex::new(Some(started_tx));
            record.on_sample = Some(supervise::SampleHook(std::sync::Arc::new(move |_, _| {
                if let Some(tx) = started.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(());
                }
            })));
        } else if live.visible() {
            let (line, running) = (live.clone(), std::sync::Mutex::new(None));
            record.on_sample = Some(supervise::SampleHook(std::sync::Arc::new(
                move |meta, samples| {
                    let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
                    crate::cmd::watch::refresh_trend(meta, samples, &mut running);
                    line.show(&format!(
                        "leaktrail: {}",
                        text::live_line(samples, running.as_ref())
                    ));
                },
            )));
        }
        if let Some(r) = &remote {
            // The series streams to the store, and the live line (if any)
            // still shows.
            r.stream(&mut record);
        }
        let recorded = if args.live {
            // The recording on a thread of its own, the view on this one.
            let interval = args.interval;
            let recorded = std::thread::scope(|s| {
                let recording =
                    s.spawn(|| traced.record(record, |notice| dump(notice, &mut failure)));
                if started_rx.recv().is_ok() {
                    match crate::cmd::top::live(pid, interval) {
                        Ok(line) => eprint!("{line}"),
                        Err(e) => eprintln!("leaktrail: live view: {e:#}"),
                    }
                }
                recording.join()
            });
            match recorded {
                Ok(r) => r?,
                Err(p) => std::panic::resume_unwind(p),
            }
        } else {
            traced.record(record, |notice| dump(notice, &mut failure))?
        };
        drop(live);
        if node && !args.no_node_flags {
            if let Some(dir) = &recorded.dir {
                let cwd = std::env::current_dir().unwrap_or_default();
                if let Err(e) = node::keep_jitdump(pid, &cwd, dir, jitdump::JITDUMP_FILE) {
                    eprintln!("leaktrail: keeping V8's jitdump in {}: {e}", dir.display());
                }
            }
        }
        for p in &recorded.problems {
            eprintln!("leaktrail: {p}");
        }
        if let (Some(r), Some(dir)) = (&remote, &recorded.dir) {
            r.finish(dir)?;
        }
        if let Some(dir) = &recorded.dir {
            let shown = match &remote {
                Some(r) => PathBuf::from(r.url.to_string()),
                None => dir.clone(),
            };
            crate::term::eprint(&verdict_and_next(dir, &shown, recorded.snapshots.len()));
        }
        if let Some(r) = &remote {
            r.remove_spool();
        }
        recorded.status
    };
    if let Some(e) = failure {
        eprintln!("leaktrail: {e:#}");
    }
    if node && !args.no_node_flags {
        // Every snapshot has its copy of the JIT map; the files are litter.
        let cwd = std::env::current_dir().unwrap_or_default();
        node::remove_leftovers(pid, &cwd);
    }
    Ok(ExitCode::from(supervise::exit_code(status)))
}

/// Checks `--out` before any program starts (issue 16, item 5): a local
/// directory must be new or empty and writable
/// (`recording::check_new_dir`), an object-store URL must parse and its
/// store be configured (then the local spool it is recorded into, for the
/// command `what`). `run` calls it, and so should every command
/// that records a program it starts or attaches to.
pub(crate) fn check_out(out: &Path, what: &str) -> anyhow::Result<Option<Remote>> {
    if leaktrail_store::is_url(out) {
        return Ok(Some(Remote::to(out, what)?));
    }
    recording::check_new_dir(out)?;
    Ok(None)
}
