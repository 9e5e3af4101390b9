//! `leaktrail flamegraph`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_analysis::profile::Profile;
use leaktrail_recording::dir as recording;
use leaktrail_report::flamegraph::{self as fg, FlamegraphOptions};
use leaktrail_report::text;

use crate::cmd::filter::FilterArgs;

/// Flags of `leaktrail flamegraph`.
#[derive(clap::Args)]
#[command(after_help = "\
Live bytes by allocation stack, drawn by inferno: hover for bytes, click to zoom, \
Ctrl-F to search. --diff draws the differential graph from BASE to SNAP: widths are \
SNAP's bytes, red where a stack grew, blue where it shrank. --folded prints folded \
stacks (`main;f;g BYTES`, or `STACK BEFORE AFTER` with --diff) for other tools. \
Of an untraced process (gcore, a kernel core, `leaktrail snapshot` of a plain program) \
the blocks come from glibc's heap without stacks: one frame per type, `[type] Widget` or \
`[size 4096]`.

Examples:
  leaktrail flamegraph rec/snapshots/0007.core -o live.svg
  leaktrail flamegraph rec/snapshots/0007.core --diff rec/snapshots/0001.core -o growth.svg
  leaktrail flamegraph app.core --size 2049..4096 --folded > 2-4k.folded
  leaktrail job flamegraph --size 2049..4096 -o out/ -- rec/snapshots/*.core")]
pub struct Args {
    /// The snapshot: of a process started with `leaktrail run` (by stack), or any
    /// other core or snapshot (by type: a walk of glibc's heap has no stacks).
    pub snap: PathBuf,
    /// Write here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print folded stacks instead of an SVG.
    #[arg(long)]
    pub folded: bool,
    /// Draw the change from this earlier snapshot.
    #[arg(long, value_name = "BASE")]
    pub diff: Option<PathBuf>,
    /// Which buffers.
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn when(p: &Profile) -> String {
    recording::utc_stamp(p.time_unix_ns / 1_000_000)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let after = args.filter.profile(&args.snap)?;
    let filtered = args.filter.describe();
    let mut filtered = if filtered.is_empty() {
        String::new()
    } else {
        format!("; {filtered}")
    };
    if after.stackless {
        filtered.push_str("; ");
        filtered.push_str(leaktrail_analysis::profile::STACKLESS);
    }
    if let Some(t) = after.before_attach {
        filtered.push_str("; ");
        filtered.push_str(&leaktrail_analysis::profile::before_attach_note(t));
    }
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let body = match &args.diff {
        None => {
            let folded = fg::folded(&after.entries);
            if args.folded {
                folded
            } else {
                let by = if after.stackless {
                    "type"
                } else {
                    "allocation stack"
                };
                let mut o =
                    FlamegraphOptions::titled(format!("Live memory by {by}: {}", name(&args.snap)));
                o.subtitle = Some(format!(
                    "{} in {} buffers, {}{}{}",
                    text::bytes(after.bytes() as f64),
                    after.count(),
                    when(&after),
                    filtered,
                    text::sampled_words(after.sample_rate)
                ));
                fg::svg(&folded, &o)?
            }
        }
        Some(base) => {
            let before = args.filter.profile(base)?;
            let diff = fg::diff_folded(&fg::folded(&before.entries), &fg::folded(&after.entries))?;
            if args.folded {
                diff
            } else {
                let mut o = FlamegraphOptions::titled(format!(
                    "Change in live memory: {} → {}",
                    name(base),
                    name(&args.snap)
                ));
                o.subtitle = Some(format!(
                    "{} → {} ({}), red grew, blue shrank{}{}",
                    text::bytes(before.bytes() as f64),
                    text::bytes(after.bytes() as f64),
                    text::signed_bytes(after.bytes() as f64 - before.bytes() as f64),
                    filtered,
                    text::sampled_words(after.sample_rate.max(before.sample_rate))
                ));
                fg::diff_svg(&diff, &o)?
            }
        }
    };
    if args.folded && after.sample_rate != 0 {
        // Folded stacks have no place for it; the values are estimates.
        eprint!("leaktrail: {}", text::sampled_line(after.sample_rate));
    }
    match &args.output {
        Some(path) => recording::write_atomically(path, body.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().lock().write_all(body.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
