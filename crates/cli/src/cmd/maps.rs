//! `leaktrail maps`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use leaktrail_analysis::maps_diff;
use leaktrail_recording::dir::{Recording, SampleSelector};
use leaktrail_recording::Mapping;
use leaktrail_recording::Snapshot;
use leaktrail_report::{json, text};

use crate::bad_input;

/// Flags of `leaktrail maps`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Per-region and per-mapping RSS change from A to B, largest first.
    #[command(after_help = "A and B name samples of a watch recording:\n  \
        DIR@first   the first sample with per-mapping detail\n  \
        DIR@last    the last one (DIR alone means the same)\n  \
        DIR@N       sample N, counting from 0 as in samples.jsonl (it must have detail)\n  \
        DIR@30s     the sample with detail nearest to 30s after the start (ms, s, m, h)\n  \
        @...        in B: the same DIR as A\n  \
        FILE.core   a snapshot (leaktrail snapshot, run --every)\n\n\
        Mappings are matched by kind (path, offset and permissions for files; region and \
        permissions for anonymous memory), then by a shared start or end address, then in \
        address order; so a restarted process, or a region that grew downwards, still \
        lines up.\n\n\
        Example: leaktrail maps diff rec@first @last")]
    Diff(DiffArgs),
}

#[derive(clap::Args)]
struct DiffArgs {
    /// The earlier sample: DIR@first, DIR@N, DIR@30s.
    a: String,
    /// The later sample: DIR@last, DIR@N, DIR@2m, or @... for A's directory.
    b: String,
    /// Show this many mappings.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// A parsed `DIR@SELECTOR`, or a snapshot file.
enum SampleRef {
    Sample {
        dir: PathBuf,
        selector: SampleSelector,
    },
    Snapshot(PathBuf),
}

impl SampleRef {
    /// The recording directory B defaults to.
    fn dir(&self) -> Option<&Path> {
        match self {
            SampleRef::Sample { dir, .. } => Some(dir),
            SampleRef::Snapshot(_) => None,
        }
    }
}

fn parse_ref(text: &str, default_dir: Option<&Path>) -> anyhow::Result<SampleRef> {
    let (dir, sel) = match text.rsplit_once('@') {
        Some((d, s)) => (d, Some(s)),
        None => (text, None),
    };
    let dir = match (dir.is_empty(), default_dir) {
        (false, _) => super::local_series(Path::new(dir))?,
        (true, Some(d)) => d.to_path_buf(),
        (true, None) => bad_input!("{text:?}: expected DIR@SAMPLE, e.g. rec@first"),
    };
    if sel.is_none() && dir.is_file() {
        return Ok(SampleRef::Snapshot(dir));
    }
    let selector = match sel {
        None => SampleSelector::Last,
        Some(s) => match SampleSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => bad_input!("{text:?}: {e}"),
        },
    };
    Ok(SampleRef::Sample { dir, selector })
}

/// The mappings of a sample, and a line saying which sample it is.
fn load(r: &SampleRef) -> anyhow::Result<(Vec<Mapping>, String)> {
    let (dir, selector) = match r {
        SampleRef::Snapshot(path) => {
            let snap = Snapshot::open(path)?;
            let mappings = maps_diff::snapshot_mappings(&snap)?;
            let what = format!("snapshot {} ({} mappings)", path.display(), mappings.len());
            return Ok((mappings, what));
        }
        SampleRef::Sample { dir, selector } => (dir, *selector),
    };
    let rec = Recording::open(dir)?;
    let sample = rec.select(selector)?;
    let detail = rec.detail(sample.i)?;
    let what = format!(
        "{} sample {} at {} ({} mappings)",
        dir.display(),
        sample.i,
        text::seconds(sample.t),
        detail.mappings.len()
    );
    Ok((detail.mappings, what))
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Diff(d) => {
            let a = parse_ref(&d.a, None)?;
            let b = parse_ref(&d.b, a.dir())?;
            let (ma, wa) = load(&a)?;
            let (mb, wb) = load(&b)?;
            let diff = maps_diff::diff(&ma, &mb);
            let mut out = std::io::stdout().lock();
            if d.json {
                write!(
                    out,
                    "{}",
                    json::to_string(&json::MapsDiffDocument::from(&diff))?
                )?;
            } else {
                crate::term::print(&format!(
                    "A: {wa}\nB: {wb}\n\n{}",
                    text::maps_diff(&diff, d.top, crate::term::get().width)
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
