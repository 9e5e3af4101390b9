//! `leaktrail demo`.
//!
//! The demo program's C source (`fixtures/demo_leaky.c`) is compiled into
//! the binary with `include_str!` and built with the system's C compiler
//! (`$CC`, else `cc`) at run time. So the demo works from any directory,
//! with nothing but the `leaktrail` binary and a C compiler, and always
//! runs the program this binary was built with. The program is kept in the
//! user's cache (`$XDG_CACHE_HOME/leaktrail`, else `~/.cache/leaktrail`),
//! named by a hash of its source and compiler: the recording's snapshots
//! name that file, and `growth`, `flamegraph` or `report` run on the
//! recording later need it to name functions. Without a home directory it
//! goes to a temporary directory removed at the end.
//!
//! The story (DESIGN.md, "The story it must tell"): the program runs under
//! the tracer (`leaktrail run`, as a child of this binary) for `--duration`,
//! with a snapshot every eighth of it and the one at exit; then the trend verdict
//! and the maps diff of the watch series, and the diagnosis from the
//! snapshots: the growing size class, the function whose buffers grow
//! (still referenced, so findleaks cannot see it) and the site that truly
//! leaks (definitely lost). The whole investigation goes to
//! `DIR/report.html`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::Context;
use leaktrail_analysis::{investigation, maps_diff, trend};
use leaktrail_format::MemoryMode;
use leaktrail_recording::dir::{self as recording, Recording, SampleSelector};
use leaktrail_report::html::{self, HtmlOptions};
use leaktrail_report::{diagnosis, svg, text};

use super::watch::parse_duration;

/// The demo program, as in the repository.
const DEMO_SOURCE: &str = include_str!("../../../../fixtures/demo_leaky.c");

/// Flags of `leaktrail demo`.
#[derive(clap::Args)]
pub struct Args {
    /// How long the program runs under the tracer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
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

/// A temporary directory removed on drop (`None`: nothing to remove).
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// FNV-1a, 64 bits: a stable name for one source and compiler.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
    }
    h
}

/// Where the demo program is kept: the user's cache, or a temporary
/// directory (removed when the guard drops).
fn program_dir() -> anyhow::Result<(PathBuf, TempDir)> {
    let cache = leaktrail_capture::launch::user_cache_dir();
    if let Some(dir) = cache {
        if std::fs::create_dir_all(&dir).is_ok() {
            return Ok((dir, TempDir(None)));
        }
    }
    let dir = std::env::temp_dir().join(format!("leaktrail-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((dir.clone(), TempDir(Some(dir))))
}

/// Compiles the demo program unless the same source was compiled with the
/// same compiler before; returns the executable.
fn build_program(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    // One folder per source and compiler, so the program keeps its name
    // (and its process name) `demo_leaky` and its source `demo_leaky.c`.
    let dir = dir.join(format!(
        "demo_leaky-{:016x}",
        fnv1a(&[DEMO_SOURCE.as_bytes(), cc.as_bytes()])
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = dir.join("demo_leaky");
    if exe.is_file() {
        return Ok(exe);
    }
    let src = dir.join("demo_leaky.c");
    std::fs::write(&src, DEMO_SOURCE).with_context(|| format!("writing {}", src.display()))?;
    // Built under a temporary name and renamed: two demos at once, or one
    // interrupted, never leave a half-written program under the final name.
    let tmp = dir.join(format!(".demo_leaky.{}", std::process::id()));
    let status = Command::new(&cc)
        .args(["-O1", "-g", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .with_context(|| format!("running the C compiler `{cc}` (the demo builds a small C program; install gcc, or set CC)"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("`{cc}` could not compile the demo program ({status})");
    }
    std::fs::rename(&tmp, &exe).with_context(|| format!("renaming to {}", exe.display()))?;
    Ok(exe)
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (dir_of_program, _guard) = program_dir()?;
    let exe = build_program(&dir_of_program)?;
    println!(
        "leaktrail demo: running a small request-serving program that leaks ({} requests/s) for {}\n\
         under the tracer, with a snapshot every {} and one at exit.\n\
         Its source is fixtures/demo_leaky.c: a response cache that is never trimmed, a flat\n\
         connection pool, and a header parser that drops a buffer on its error path.\n",
        args.rate,
        leaktrail_recording::duration::format(args.duration),
        leaktrail_recording::duration::format(every(args.duration))
    );
    let dir = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(recording::default_dir_name(
            "demo_leaky",
            std::process::id() as i32,
            recording::unix_ms(std::time::SystemTime::now()),
        ))
    });
    record(&exe, &dir, &args)?;
    let rec = Recording::open(&dir)?;
    let t = trend::analyse(&rec);
    println!(
        "\nrecorded {} samples and {} snapshots into {}\n",
        rec.samples.len(),
        recording::snapshots::list(&dir)?.len(),
        dir.display()
    );
    print!("{}", text::trend(&t));
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
    crate::term::print(&text::maps_diff(&diff, 5, crate::term::get().width))?;
    let chart = dir.join("trend.svg");
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

    let inv = investigation::open(&dir)?;
    println!(
        "\nDiagnosis, from the {} snapshots (leaktrail growth {}; leaktrail leaks SNAP):\n",
        inv.snapshots.len(),
        dir.display()
    );
    print!("{}", diagnosis::text(&inv));
    let report = dir.join("report.html");
    let page = html::page(&inv, &HtmlOptions::default()).context("drawing the report")?;
    recording::write_atomically(&report, page.as_bytes())?;
    println!(
        "\nReport: {} (leaktrail report {} -o FILE)",
        report.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A snapshot every eighth of the run, at most one every 250 ms: about
/// seven while it runs, since fewer than four cannot show a significant
/// rise (see `analysis::growth`).
fn every(duration: Duration) -> Duration {
    (duration / 8).max(Duration::from_millis(250))
}

/// Runs the demo program under `leaktrail run` (this binary) into `dir`:
/// the watch series, periodic snapshots with all memory, and the one at
/// exit. The program stops by itself after `--duration`.
fn record(exe: &std::path::Path, dir: &std::path::Path, args: &Args) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("finding the leaktrail binary")?;
    let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
    let out = Command::new(&me)
        .arg("run")
        .args(["--every", &ms(every(args.duration))])
        .args(["--interval", &ms(args.interval)])
        .args(["--memory", MemoryMode::Full.name(), "--out"])
        .arg(dir)
        .arg("--")
        .arg(exe)
        .arg(args.rate.to_string())
        .arg(format!("{}", args.duration.as_secs_f64()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .context("running the demo program under `leaktrail run`")?;
    if !out.status.success() {
        anyhow::bail!(
            "`leaktrail run` of the demo program failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
