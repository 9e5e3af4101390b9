//! `leaktrail snapshot`: one capture of a running process (copy-on-write
//! by default), incremental with `--since`; `--materialize` and `--drop`
//! for the files of an incremental chain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_capture::snapshot::{self, MemoryMode, Method, Periodic};
use leaktrail_capture::Error;
use leaktrail_recording::dir::{self as recording, snapshots::Snapshots};
use leaktrail_recording::snapshot::chain;
use leaktrail_recording::Snapshot;

/// Flags of `leaktrail snapshot`.
#[derive(clap::Args)]
pub struct Args {
    /// The process to capture.
    #[arg(
        short,
        long,
        required_unless_present_any = ["recording", "materialize", "drop"],
        conflicts_with_all = ["recording", "materialize", "drop"]
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
    /// How to take the memory: `auto` (copy-on-write where it can be used,
    /// else stop-and-copy, saying why), `cow` (fork a still image inside
    /// the process, let it run, copy from the image; fail if impossible),
    /// `stop` (every thread waits for the whole copy).
    #[arg(long, default_value_t = Method::Auto, value_parser = str::parse::<Method>)]
    method: Method,
    /// Store only the pages that differ from PREV, an earlier snapshot of
    /// the same process, and a reference to it (readers resolve it; keep
    /// the files together).
    #[arg(long, value_name = "PREV", conflicts_with = "recording")]
    since: Option<PathBuf>,
    /// With --recording: store only the pages that differ from the
    /// recording's newest snapshot with full memory.
    #[arg(long, requires = "recording")]
    incremental: bool,
    /// Write the incremental snapshot IN (with its whole chain) as one
    /// standalone core to -o OUT, for gdb or to keep.
    #[arg(long, value_name = "IN", requires = "output", conflicts_with_all = ["since", "drop", "recording"])]
    materialize: Option<PathBuf>,
    /// Delete FILE, folding the pages that snapshots beside it inherit
    /// from it into them first, so they stay readable.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["since", "output", "recording"])]
    drop: Option<PathBuf>,
    /// Output file (default `leaktrail-<comm>-<pid>-<time>.core` here), or
    /// `s3://BUCKET/KEY`: written to a local spool, then uploaded in parts,
    /// the object appearing only when complete.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Also print where the pause went and what the snapshot cost (CPU,
    /// bytes written).
    #[arg(short, long)]
    verbose: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // From here on SIGINT and SIGTERM let the target go and remove the
    // temporary file before we exit, rather than kill us mid-capture.
    snapshot::catch_interrupts();
    if let Some(input) = &args.materialize {
        let snap = Snapshot::open(input)?;
        let out = args.output.as_deref().unwrap_or(input);
        let path = chain::materialize(&snap, out)?;
        println!("{}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(doomed) = &args.drop {
        for p in chain::drop_snapshot(doomed)? {
            println!("folded into {}", p.display());
        }
        println!("dropped {}", doomed.display());
        return Ok(ExitCode::SUCCESS);
    }
    let upload = args
        .output
        .as_deref()
        .filter(|o| leaktrail_store::is_url(o))
        .map(Upload::to)
        .transpose()?;
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
            let mut how = Periodic::new(args.memory);
            how.method = args.method;
            how.incremental = args.incremental;
            snapshot::take_into(&Snapshots::of(dir)?, meta.pid, &how, false).map_err(|e| {
                (
                    e,
                    format!("snapshot of process {} into {}", meta.pid, dir.display()),
                )
            })
        }
        (None, Some(pid)) => {
            let mut options = snapshot::Options::default();
            options.memory = args.memory;
            options.output = match &upload {
                Some(u) => Some(u.spool.clone()),
                None => args.output.clone(),
            };
            options.method = args.method;
            options.since = args.since;
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
    if let Some(why) = &outcome.fallback {
        eprintln!(
            "leaktrail: copy-on-write not used ({why}): every thread was stopped for the copy"
        );
    }
    if let Some(line) = &outcome.note {
        eprintln!("leaktrail: {line}");
    }
    match &upload {
        Some(u) => println!("{}", u.send(&outcome.path)?),
        None => println!("{}", outcome.path.display()),
    }
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
        println!("phases: {}", outcome.phases_line());
        println!("cost: {}", outcome.summary());
    }
    Ok(ExitCode::SUCCESS)
}

/// A snapshot on its way to an object store: taken into `spool`, then
/// uploaded to `url` and removed.
struct Upload {
    url: leaktrail_store::S3Url,
    store: leaktrail_store::Store,
    spool: PathBuf,
}

impl Upload {
    /// Checks the URL and the store's configuration before the target is
    /// stopped.
    fn to(output: &std::path::Path) -> anyhow::Result<Upload> {
        let url = leaktrail_store::S3Url::parse(&output.to_string_lossy())?;
        let store = leaktrail_store::Store::for_url(&url)?;
        let dir = leaktrail_store::cache_dir().join("spool");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let spool = dir.join(format!("{}.core", std::process::id()));
        Ok(Upload { url, store, spool })
    }

    /// Uploads the snapshot at `path`, a line on stderr per part; returns
    /// the URL.
    fn send(&self, path: &std::path::Path) -> anyhow::Result<String> {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let result = self.store.upload(path, &self.url.key, |sent, total| {
            eprintln!(
                "leaktrail: uploaded {:.1} of {:.1} MiB to {}",
                mib(sent),
                mib(total),
                self.url
            )
        });
        let _ = std::fs::remove_file(path);
        result?;
        Ok(self.url.to_string())
    }
}
