//! `leaktrail flamegraph`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use leaktrail_analysis::bufs::{self, Filter};
use leaktrail_analysis::profile::Profile;
use leaktrail_capture::{duration, recording};
use leaktrail_report::flamegraph::{self as fg, FlamegraphOptions};
use leaktrail_report::text;

use crate::bad_input;

/// The buffer filters `bufs` has, for commands that draw a subset.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Only buffers of the size class whose largest size is N (see `caches`).
    #[arg(long, value_name = "N")]
    pub class: Option<u64>,
    /// Only buffers of LO..HI requested bytes (inclusive; either end may be left out).
    #[arg(long, value_name = "LO..HI")]
    pub size: Option<String>,
    /// Only buffers allocated at least this long before the newest one (e.g. 30s, 10m).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Only buffers allocated at most this long before the newest one.
    #[arg(long, value_name = "AGE")]
    pub newer_than: Option<String>,
    /// Only buffers allocated by this thread id.
    #[arg(long, value_name = "TID")]
    pub thread: Option<u32>,
    /// Only buffers whose stack has a function whose name contains FN.
    #[arg(long, value_name = "FN")]
    pub stack_contains: Option<String>,
}

impl FilterArgs {
    /// The filter, or a bad-input error naming the flag.
    pub fn filter(&self) -> anyhow::Result<Filter> {
        let mut f = Filter::default();
        f.class = self.class;
        f.size = self.size.as_deref().map(size_range).transpose()?;
        f.older_than_ns = age("--older-than", &self.older_than)?;
        f.newer_than_ns = age("--newer-than", &self.newer_than)?;
        f.thread = self.thread;
        f.stack_contains = self.stack_contains.clone();
        Ok(f)
    }

    /// What the filter keeps, in words (empty for everything).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.class {
            parts.push(format!("class {c}"));
        }
        if let Some(s) = &self.size {
            parts.push(format!("size {s}"));
        }
        if let Some(a) = &self.older_than {
            parts.push(format!("older than {a}"));
        }
        if let Some(a) = &self.newer_than {
            parts.push(format!("newer than {a}"));
        }
        if let Some(t) = self.thread {
            parts.push(format!("thread {t}"));
        }
        if let Some(f) = &self.stack_contains {
            parts.push(format!("stacks with {f}"));
        }
        parts.join(", ")
    }

    /// Opens `snap` and profiles the buffers the filter keeps.
    pub fn profile(&self, snap: &Path) -> anyhow::Result<Profile> {
        let filter = self.filter()?;
        Ok(Profile::open_with(snap, |audit, symbolizer| {
            bufs::select(audit, &filter, symbolizer, false, false)
                .buffers
                .iter()
                .map(|b| (b.size, b.stack_id))
                .collect()
        })?)
    }
}

fn size_range(text: &str) -> anyhow::Result<(u64, u64)> {
    let Some((lo, hi)) = text.split_once("..") else {
        bad_input!("--size {text:?}: expected LO..HI, e.g. 2049..4096 or 4097..");
    };
    let num = |s: &str, default: u64| -> anyhow::Result<u64> {
        if s.trim().is_empty() {
            return Ok(default);
        }
        match s.trim().parse() {
            Ok(n) => Ok(n),
            Err(_) => bad_input!("--size {text:?}: {s:?} is not a number of bytes"),
        }
    };
    Ok((num(lo, 0)?, num(hi.trim_start_matches('='), u64::MAX)?))
}

fn age(flag: &str, text: &Option<String>) -> anyhow::Result<Option<u64>> {
    match text {
        None => Ok(None),
        Some(t) => match duration::parse(t) {
            Ok(d) => Ok(Some(d.as_nanos() as u64)),
            Err(e) => bad_input!("{flag} {t:?}: {e}"),
        },
    }
}

/// Flags of `leaktrail flamegraph`.
#[derive(clap::Args)]
#[command(after_help = "\
Live bytes by allocation stack, drawn by inferno: hover for bytes, click to zoom, \
Ctrl-F to search. --diff draws the differential graph from BASE to SNAP: widths are \
SNAP's bytes, red where a stack grew, blue where it shrank. --folded prints folded \
stacks (`main;f;g BYTES`, or `STACK BEFORE AFTER` with --diff) for other tools.

Examples:
  leaktrail flamegraph rec/snapshots/0007.core -o live.svg
  leaktrail flamegraph rec/snapshots/0007.core --diff rec/snapshots/0001.core -o growth.svg
  leaktrail flamegraph app.core --size 2049..4096 --folded > 2-4k.folded
  leaktrail job flamegraph --size 2049..4096 -o out/ -- rec/snapshots/*.core")]
pub struct Args {
    /// The snapshot (taken of a process started with `leaktrail run`).
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
    let filtered = if filtered.is_empty() {
        String::new()
    } else {
        format!("; {filtered}")
    };
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
                let mut o = FlamegraphOptions::titled(format!(
                    "Live memory by allocation stack: {}",
                    name(&args.snap)
                ));
                o.subtitle = Some(format!(
                    "{} in {} buffers, {}{}",
                    text::bytes(after.bytes() as f64),
                    after.count(),
                    when(&after),
                    filtered
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
                    "{} → {} ({}), red grew, blue shrank{}",
                    text::bytes(before.bytes() as f64),
                    text::bytes(after.bytes() as f64),
                    text::signed_bytes(after.bytes() as f64 - before.bytes() as f64),
                    filtered
                ));
                fg::diff_svg(&diff, &o)?
            }
        }
    };
    match &args.output {
        Some(path) => recording::write_atomically(path, body.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().lock().write_all(body.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
