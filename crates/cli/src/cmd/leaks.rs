//! `leaktrail leaks`: what is unreachable in a snapshot.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::leaks::{self, LeakKind, LeaksOptions};
use leaktrail_analysis::symbolize::Symbolizer;
use leaktrail_analysis::{Heap, Roots};
use leaktrail_format::FailOn;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::leaks as render;
use leaktrail_report::json;

/// Flags of `leaktrail leaks`.
#[derive(clap::Args)]
#[command(after_help = "\
Every pointer-aligned word of the roots (registers, thread stacks from SP, \
module data and bss, TLS, anonymous memory that is not a malloc arena) and \
of every reached buffer is tested against the live buffers of the audit:
  definitely lost   nothing points to it (nor to the cycle it is in)
  indirectly lost   only other lost buffers point to it
  possibly lost     reached, but only through pointers into its middle
  still reachable   a chain of pointers to its start leads to it from a root
  libc internal     libc's, the loader's or the C++ runtime's own blocks of
                    the kinds valgrind frees at exit (stdio buffers, time
                    zone, DTVs): counted apart, never lost, --show-libc
malloc's own state (its arenas, mp_, the per-thread caches) is never a root.

A snapshot of a process that was not started under the tracer (`leaktrail \
snapshot -p PID` of any program, gdb's gcore, a kernel core) is read from \
glibc's heap itself: the same classes, without stacks, grouped by type (a C++ \
class by its vtable, else a size class and a hint such as <C string>). \
Over a sampled recording (`run --sample`) the blocks not in the sample come \
from that walk too, so every block is counted: the sampled ones with their \
stacks, the others grouped by type.

Examples:
  leaktrail leaks app.core
  leaktrail leaks app.core --function parse_request
  leaktrail leaks app.core --roots stacks,registers,globals   # ignore anon mmaps
  leaktrail leaks app.core --fail-on definite && echo clean   # exit 3 on leaks
  leaktrail leaks app.core --suppressions my.supp --show-libc   # LSan or valgrind format
  leaktrail leaks app.core --json | jq '.groups[0].stack[0].function'")]
pub struct Args {
    /// The snapshot (of a process started with `leaktrail run`, or of any
    /// process: see below).
    snap: PathBuf,
    /// Exit with status 3 if leaks of this kind or worse exist (with
    /// --function, only among the groups it keeps; suppressed and libc
    /// internal blocks never count).
    #[arg(long, value_parser = crate::cmd::spelled::<FailOn>(FailOn::NAMES))]
    fail_on: Option<FailOn>,
    /// Keep only groups whose allocation stack passes through a function
    /// whose name contains NAME.
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// What counts as a root: comma-separated registers, stacks, globals,
    /// tls, anon (or all).
    #[arg(long, default_value = "all", value_name = "LIST")]
    roots: String,
    /// Also list the still-reachable groups.
    #[arg(long)]
    reachable: bool,
    /// Also list libc's own residue ("libc internal": stdio buffers,
    /// time-zone data, DTVs, libstdc++'s emergency pool), which valgrind
    /// frees at exit before it looks; it is never counted as lost.
    #[arg(long)]
    show_libc: bool,
    /// Suppressions: LeakSanitizer's `leak:PATTERN` lines or valgrind's
    /// `{ NAME Memcheck:Leak fun:... }` entries (repeatable; also the
    /// files in LEAKTRAIL_SUPPRESSIONS, separated by `:`). Matched groups
    /// are counted as suppressed, not lost, nor by --fail-on.
    #[arg(long = "suppressions", value_name = "FILE")]
    suppressions: Vec<PathBuf>,
    /// Scanning threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let roots = Roots::parse(&args.roots)?;
    let snap = Snapshot::open(&super::local(&args.snap)?)?;
    let heap = Heap::open_every_block(&snap)?;
    heap.require_memory()?;
    let symbolizer = Symbolizer::for_snapshot(&snap);
    let mut opts = LeaksOptions::default();
    opts.roots = roots;
    opts.function = args.function;
    opts.threads = args.threads as usize;
    opts.symbolize_reachable = args.json || args.reachable;
    let from_env = std::env::var_os("LEAKTRAIL_SUPPRESSIONS").unwrap_or_default();
    for file in std::env::split_paths(&from_env)
        .filter(|p| !p.as_os_str().is_empty())
        .chain(args.suppressions)
    {
        opts.suppressions.read_file(&file)?;
    }
    let mut found = crate::term::step("scanning for leaks and symbolizing", || {
        leaks::find(&heap, &opts, &symbolizer)
    });
    found.warnings.extend(symbolizer.warnings());
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(json::to_string(&json::LeaksDocument::from(&found))?.as_bytes())?;
    } else {
        let mut r = render::LeaksOptions::default();
        r.reachable = args.reachable;
        r.show_libc = args.show_libc;
        crate::term::print(&render::text(&found, &r))?;
    }
    out.flush()?;
    // Over the groups kept, so that --function limits what fails too.
    let failed = args.fail_on.is_some_and(|on| {
        LeakKind::ALL
            .iter()
            .any(|&k| on.counts(k) && found.kept(k).blocks > 0)
    });
    Ok(if failed {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
