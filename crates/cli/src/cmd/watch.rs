//! `leaktrail watch`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use leaktrail_analysis::trend;
use leaktrail_capture::watch::{self, WatchOptions, Watcher};
use leaktrail_recording::dir::{EndReason, Recording};
use leaktrail_report::text;

use crate::bad_input;
use crate::cmd::remote::Remote;

/// Parses `1s`, `250ms`, `10m`, `2h` for clap.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    leaktrail_recording::duration::parse(s)
}

/// Flags of `leaktrail watch`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  leaktrail watch -p 1234 --duration 10m\n  \
    leaktrail watch --interval 250ms --out rec -- ./server --port 8080\n\n\
    Samples /proc/PID/smaps_rollup every interval and the full smaps as often as a 2% \
    CPU budget allows, into a recording directory (see the README, \"Recording directory\"). \
    On a terminal, one line per sample; at the end, the trend verdict (`leaktrail trend DIR`).")]
pub struct Args {
    /// Watch this running process.
    #[arg(short, long, value_name = "PID")]
    pub pid: Option<i32>,
    /// Time between samples: 250ms, 1s, 10s...
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop after this long: 30s, 10m, 2h [default: until the process exits or Ctrl-C].
    /// A command started by watch is then ended (SIGTERM, then SIGKILL after 2s).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Recording directory [default: ./leaktrail-<comm>-<pid>-<time>], or
    /// `s3://BUCKET/PREFIX`: recorded into a local spool, the series sent
    /// as it grows (the first sample at once, then every few seconds),
    /// each file replacing its previous object whole.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Start this command and watch it (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let remote = match &args.out {
        Some(out) if leaktrail_store::is_url(out) => Some(Remote::to(out, "watch")?),
        _ => None,
    };
    let out = match &remote {
        Some(r) => Some(r.dir().to_path_buf()),
        None => args.out,
    };
    let options = WatchOptions::new(args.interval, args.duration, out);
    watch_and_report(args.pid, &args.command, options, remote.as_ref())?;
    if let Some(r) = &remote {
        r.remove_spool();
    }
    Ok(ExitCode::SUCCESS)
}

/// Updates the running verdict of a live view. The verdict is O(n²) in
/// samples (up to 1000 after reduction): on long watches it is refreshed
/// every 10th sample.
pub fn refresh_trend(
    meta: &leaktrail_recording::Meta,
    samples: &[leaktrail_recording::Sample],
    running: &mut Option<trend::Trend>,
) {
    if samples.len() >= 2 && (samples.len() < 200 || samples.len() % 10 == 0) {
        *running = Some(trend::analyse_samples(meta, samples));
    }
}

/// Watches (attaching or launching), prints the live view on a terminal and
/// the verdict at the end; returns the recording directory. With `remote`,
/// the recording streams to its store and the lines name its URL.
pub fn watch_and_report(
    pid: Option<i32>,
    command: &[String],
    options: WatchOptions,
    remote: Option<&Remote>,
) -> anyhow::Result<PathBuf> {
    if options.interval.is_zero() {
        bad_input!("--interval must be longer than 0");
    }
    let watcher = match (pid, command.is_empty()) {
        (Some(pid), true) => Watcher::attach(pid, options)?,
        (None, false) => Watcher::launch(command, options)?,
        (Some(_), false) => bad_input!("give either -p PID or -- COMMAND, not both"),
        (None, true) => bad_input!("nothing to watch: give -p PID or -- COMMAND [ARGS...]"),
    };
    watch::install_interrupt_handler();
    let meta = watcher.meta().clone();
    let dir = watcher.dir().to_path_buf();
    let shown = match remote {
        Some(r) => PathBuf::from(r.url.to_string()),
        None => dir.clone(),
    };
    let stream = remote.map(Remote::on_sample);
    let tty = std::io::stdout().is_terminal();
    let mut running: Option<trend::Trend> = None;
    let outcome = watcher.run(|samples| {
        if let Some(stream) = &stream {
            stream(samples.len());
        }
        if samples.len() == 1 {
            eprintln!(
                "leaktrail: watching pid {} ({}), recording to {}",
                meta.pid,
                meta.comm,
                shown.display()
            );
        }
        if tty {
            refresh_trend(&meta, samples, &mut running);
            // The live view is best effort: a closed terminal must not stop
            // the recording.
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                text::live_line(samples, running.as_ref())
            );
        }
    });
    let outcome = outcome.with_context(|| {
        format!(
            "watching pid {} (recording kept in {})",
            meta.pid,
            dir.display()
        )
    })?;
    if let Some(r) = remote {
        r.finish(&outcome.dir)?;
    }
    let recording = Recording::open(&outcome.dir)?;
    let t = trend::analyse(&recording);
    let mut out = std::io::stdout().lock();
    let how = match outcome.end.reason {
        EndReason::Exited => "the process exited",
        EndReason::Duration => "the duration passed",
        EndReason::Interrupted => "interrupted",
    };
    writeln!(
        out,
        "\nwatch ended ({how}) after {} samples; recording in {}\n",
        outcome.samples,
        shown.display()
    )?;
    drop(out);
    let mut verdict = text::trend(&t);
    if leaktrail_analysis::owner::is_node_command(&recording.meta.cmdline) {
        verdict.push('\n');
        verdict.push_str(&text::node_regions(&t));
    }
    let d = shown.display();
    crate::term::print(&format!(
        "{verdict}\nnext: leaktrail report {d}\nnext: leaktrail maps diff {d}@first @last\n"
    ))?;
    Ok(outcome.dir)
}
