//! `leaktrail caches`: size classes across snapshots.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use leaktrail_analysis::caches;
use leaktrail_analysis::Heap;
use leaktrail_recording::dir as recording;
use leaktrail_recording::Snapshot;
use leaktrail_report::heap::caches as render;
use leaktrail_report::json;

use crate::bad_input;

/// Flags of `leaktrail caches`.
#[derive(clap::Args)]
#[command(after_help = "\
mdb's ::umem_cache for malloc. With several snapshots of one process \
(oldest first), one column of live buffers per snapshot, then the change; \
the classes that grew the most are flagged.

Examples:
  leaktrail caches app.core
  leaktrail caches first.core last.core
  leaktrail caches rec/                     # every snapshot of a recording
  leaktrail caches a.core b.core --json | jq '.classes[0]'
Then: leaktrail bufs last.core --class 4096 --group-by stack")]
pub struct Args {
    /// Snapshots, oldest first (of an untraced process too: glibc's heap is
    /// walked), or a recording directory (all its snapshots).
    #[arg(required = true)]
    snaps: Vec<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut paths = Vec::new();
    for p in &super::locals(&args.snaps)? {
        if p.is_dir() {
            let found = recording::snapshots::series(p)?;
            if found.is_empty() {
                bad_input!(
                    "{} holds no snapshots (expected a recording of `leaktrail run`, with snapshots/NNNN.core)",
                    p.display()
                );
            }
            paths.extend(found);
        } else {
            paths.push(p.clone());
        }
    }
    let progress = crate::term::Progress::step("reading snapshots");
    let snaps = paths
        .iter()
        .map(|p| Snapshot::open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let heaps = snaps
        .iter()
        .map(Heap::open)
        .collect::<Result<Vec<_>, _>>()?;
    let audits: Vec<_> = heaps.iter().map(|h| &h.audit).collect();
    let table = caches::compare(&audits);
    drop(progress);
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(json::to_string(&json::CachesDocument::from(&table))?.as_bytes())?;
    } else {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        // 10 columns of class, 12 per snapshot, 26 for the change.
        let columns = crate::term::get()
            .width
            .map_or(0, |w| (w.saturating_sub(10 + 26 + 15) / 13).max(2));
        crate::term::print(&render::text(&table, &names, columns))?;
    }
    Ok(ExitCode::SUCCESS)
}
