//! `leaktrail demo`.
//!
//! The demo program's C source (`fixtures/demo_leaky.c`) is compiled into
//! the binary with `include_str!` and built with the system's C compiler
//! (`$CC`, else `cc`) into a temporary directory at run time. So the demo
//! works from any directory, with nothing but the `leaktrail` binary and a
//! C compiler, and always runs the program this binary was built with.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::Context;
use leaktrail_analysis::{maps_diff, trend};
use leaktrail_capture::recording::{self, Recording, SampleSelector};
use leaktrail_capture::watch::WatchOptions;
use leaktrail_report::{svg, text};

use super::watch::{parse_duration, watch_and_report};

/// The demo program, as in the repository.
const DEMO_SOURCE: &str = include_str!("../../../../fixtures/demo_leaky.c");

/// Flags of `leaktrail demo`.
#[derive(clap::Args)]
pub struct Args {
    /// How long to watch.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time between samples.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Requests per second the demo server handles (each leaks about 4 KiB).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Recording directory [default: ./leaktrail-demo_leaky-<pid>-<time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tmp = TempDir(std::env::temp_dir().join(format!("leaktrail-demo-{}", std::process::id())));
    std::fs::create_dir_all(&tmp.0).with_context(|| format!("creating {}", tmp.0.display()))?;
    let src = tmp.0.join("demo_leaky.c");
    let exe = tmp.0.join("demo_leaky");
    std::fs::write(&src, DEMO_SOURCE).with_context(|| format!("writing {}", src.display()))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-O1", "-g", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .with_context(|| format!("running the C compiler `{cc}` (the demo builds a small C program; install gcc, or set CC)"))?;
    if !status.success() {
        anyhow::bail!("`{cc}` could not compile the demo program ({status})");
    }
    println!(
        "leaktrail demo: watching a small request-serving program that leaks ({} requests/s) for {}.\n\
         Its source is fixtures/demo_leaky.c: a response cache that is never trimmed, a flat\n\
         connection pool, and a header parser that drops a buffer on its error path.\n",
        args.rate,
        leaktrail_capture::duration::format(args.duration)
    );
    let mut options = WatchOptions::new(args.interval, Some(args.duration), args.out);
    options.quiet_target = true;
    let command = vec![exe.to_string_lossy().into_owned(), args.rate.to_string()];
    let dir = watch_and_report(None, &command, options)?;
    let rec = Recording::open(&dir)?;
    let (first, last) = (
        rec.select(SampleSelector::First)?,
        rec.select(SampleSelector::Last)?,
    );
    let diff = maps_diff::diff(
        &rec.detail(first.i)?.mappings,
        &rec.detail(last.i)?.mappings,
    );
    println!(
        "\nWhere it grew, {} to {} (leaktrail maps diff {}@first @last):\n",
        text::seconds(first.t),
        text::seconds(last.t),
        dir.display()
    );
    print!("{}", text::maps_diff(&diff, 5));
    let chart = dir.join("trend.svg");
    let t = trend::analyse(&rec);
    let title = format!("demo_leaky (pid {})", rec.meta.pid);
    recording::write_atomically(
        &chart,
        svg::trend_chart(&rec.samples, &t, &svg::SvgOptions::titled(title)).as_bytes(),
    )?;
    println!(
        "\nChart: {} (leaktrail trend {} --svg FILE)",
        chart.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
