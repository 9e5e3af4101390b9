//! Issue 2: `watch`, `trend`, `maps diff` and `demo` against fixtures whose
//! memory behaviour is known by construction (`fixtures/watch_*.c`).
//!
//! Each watch is a few seconds at 100 ms. Fixtures pace themselves on
//! absolute time, so a loaded machine changes how many samples we get, not
//! the rate they show. Where a test must act while a watch runs, it waits
//! for a line (the fixture's "ready", the watcher's "watching pid"), never
//! for a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::{
    assert_bad_input, assert_usage_error, fixture, json, leaktrail, repo_root, scratch, stdout,
    success, Pipe, Running,
};

const MIB: f64 = 1024.0 * 1024.0;
/// The leak rate the malloc and anon fixtures are given, bytes per second.
const RATE: f64 = 2.0 * MIB;

/// Runs `leaktrail watch` on a fixture for `duration` and returns the
/// recording directory.
fn watch(test: &str, name: &str, args: &[&str], duration: &str) -> PathBuf {
    let exe = fixture(name, &[]);
    let dir = scratch(test).join("rec");
    let stdout = stdout(
        leaktrail()
            .args([
                "watch",
                "--interval",
                "100ms",
                "--duration",
                duration,
                "--out",
            ])
            .arg(&dir)
            .arg("--")
            .arg(exe)
            .args(args)
            .stdin(Stdio::null()),
    );
    assert!(
        stdout.contains("verdict:"),
        "watch prints the verdict at the end:\n{stdout}"
    );
    dir
}

/// `leaktrail trend DIR --json`.
fn trend(dir: &Path) -> Value {
    json(leaktrail().arg("trend").arg(dir).arg("--json"))
}

/// `leaktrail maps diff DIR@first @last [extra...]`, which must succeed.
fn maps_diff_first_last(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = leaktrail();
    cmd.args(["maps", "diff", &format!("{}@first", dir.display()), "@last"])
        .args(extra);
    cmd
}

fn region<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["regions"]
        .as_array()
        .expect("regions is a list")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no region {name} in {t:#}"))
}

/// One recording of the malloc leak, shared by the trend and maps tests.
fn malloc_leak_recording() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        watch(
            "watch-malloc-leak",
            "watch_malloc_leak",
            &[&RATE.to_string()],
            "4s",
        )
    })
}

#[test]
fn steady_malloc_leak_is_growing_in_heap() {
    let t = trend(malloc_leak_recording());
    assert_eq!(t["verdict"], "growing", "{t:#}");
    let slope = t["slope_bytes_per_hour"].as_f64().unwrap();
    let truth = RATE * 3600.0;
    assert!(
        (slope / truth - 1.0).abs() <= 0.15,
        "slope {slope} B/h, truth {truth} B/h: {t:#}"
    );
    let (lo, hi) = (
        t["ci_low"].as_f64().unwrap(),
        t["ci_high"].as_f64().unwrap(),
    );
    assert!(lo <= slope && slope <= hi && lo > 0.0, "{t:#}");
    assert_eq!(t["growth_region"], "heap", "{t:#}");
    assert_eq!(region(&t, "heap")["verdict"], "growing", "{t:#}");
    assert_ne!(region(&t, "anon")["verdict"], "growing", "{t:#}");
    assert!(t["time_to_limit_seconds"].as_f64().unwrap() > 0.0, "{t:#}");
    assert!(t["warmup_seconds"].as_f64().unwrap() < 1.0, "{t:#}");

    // The chart: a standalone SVG with the series and the fitted line.
    let svg = scratch("watch-malloc-leak-svg").join("trend.svg");
    success(
        leaktrail()
            .arg("trend")
            .arg(malloc_leak_recording())
            .arg("--svg")
            .arg(&svg),
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg ") && chart.trim_end().ends_with("</svg>"));
    assert!(chart.contains("<polyline") && chart.contains("stroke-dasharray"));
    assert!(chart.contains(">heap</text>"), "legend names the regions");
}

#[test]
fn malloc_leak_on_a_thread_grows_its_arena_in_heap() {
    // A worker thread's mallocs land in a glibc arena: an anonymous,
    // 64 MiB-aligned mapping that only the arena rule calls `heap`.
    let dir = watch(
        "watch-arena-leak",
        "watch_malloc_leak",
        &[&RATE.to_string(), "0", "thread"],
        "4s",
    );
    let t = trend(&dir);
    assert_eq!(t["verdict"], "growing", "{t:#}");
    assert_eq!(t["growth_region"], "heap", "{t:#}");
    assert_ne!(region(&t, "anon")["verdict"], "growing", "{t:#}");
    let d = json(&mut maps_diff_first_last(&dir, &["--json"]));
    let first = &d["mappings"][0];
    assert_eq!(first["name"], "[anon]", "{d:#}");
    assert_eq!(first["region"], "heap", "{d:#}");
    assert_eq!(first["start"].as_u64().unwrap() % (64 << 20), 0, "{d:#}");
}

#[test]
fn growing_anon_mmap_is_growing_in_anon_not_heap() {
    let dir = watch(
        "watch-anon-grow",
        "watch_anon_grow",
        &[&RATE.to_string()],
        "4s",
    );
    let t = trend(&dir);
    assert_eq!(t["verdict"], "growing", "{t:#}");
    assert_eq!(t["growth_region"], "anon", "{t:#}");
    assert_eq!(region(&t, "anon")["verdict"], "growing", "{t:#}");
    assert_ne!(region(&t, "heap")["verdict"], "growing", "{t:#}");
}

#[test]
fn warmup_then_steady_noise_is_flat() {
    let dir = watch("watch-warmup", "watch_warmup", &[], "5s");
    let t = trend(&dir);
    assert_eq!(t["verdict"], "flat", "{t:#}");
    for r in t["regions"].as_array().unwrap() {
        assert_ne!(r["verdict"], "growing", "{t:#}");
    }
    let warmup = t["warmup_seconds"].as_f64().unwrap();
    assert!(
        (0.5..=2.5).contains(&warmup),
        "warm-up is the first second: {t:#}"
    );
    assert!(t["time_to_limit_seconds"].is_null(), "{t:#}");
}

#[test]
fn sawtooth_is_flat() {
    let dir = watch("watch-sawtooth", "watch_sawtooth", &[], "5s");
    let t = trend(&dir);
    assert_eq!(t["verdict"], "flat", "{t:#}");
    assert!(t["time_to_limit_seconds"].is_null(), "{t:#}");
}

#[test]
fn maps_diff_names_the_growing_mapping_first() {
    let dir = malloc_leak_recording();
    let d = json(&mut maps_diff_first_last(dir, &["--json"]));
    let first = &d["mappings"][0];
    assert_eq!(first["name"], "[heap]", "{d:#}");
    assert_eq!(first["region"], "heap", "{d:#}");
    assert!(first["delta"].as_i64().unwrap() as f64 > 2.0 * MIB, "{d:#}");
    assert_eq!(d["regions"][0]["name"], "heap", "{d:#}");
    // The text form says the same, first row first.
    let text = stdout(leaktrail().args([
        "maps",
        "diff",
        &format!("{}@first", dir.display()),
        &format!("{}@3s", dir.display()),
    ]));
    let row = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("delta"))
        .nth(1)
        .unwrap_or_default();
    assert!(row.ends_with("[heap]"), "{text}");
}

#[test]
fn watch_nonexistent_pid_is_one_line_and_exit_2() {
    // pid_max is at most 2^22, so this pid never exists.
    let dir = scratch("watch-nopid");
    assert_bad_input(
        leaktrail()
            .current_dir(&dir)
            .args(["watch", "-p", "2147483647", "--duration", "1s"]),
        &["no process with pid 2147483647"],
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing is left behind"
    );
}

/// Starts a fixture with piped stdin and waits for its "ready".
fn spawn_ready(name: &str, args: &[&str]) -> Running {
    let child = Running::start(
        Command::new(fixture(name, &[]))
            .args(args)
            .stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready",
    );
    assert_eq!(child.ready, "ready");
    child
}

#[test]
fn watch_unreadable_pid_is_one_line_with_hint_and_exit_2() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let dir = scratch("watch-unreadable");
    let _target;
    let mut cmd;
    if root {
        // A root-owned target watched by `nobody`.
        let target = spawn_ready("watch_malloc_leak", &["4096"]);
        let pid = target.pid().to_string();
        _target = Some(target);
        cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_leaktrail"))
            .args(["watch", "-p", &pid, "--duration", "1s"]);
    } else {
        // Not root: pid 1 belongs to someone else.
        _target = None;
        cmd = leaktrail();
        cmd.args(["watch", "-p", "1", "--duration", "1s"]);
    }
    cmd.current_dir(&dir);
    assert_bad_input(&mut cmd, &["not permitted", "ptrace_scope"]);
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
}

#[test]
fn launched_target_exiting_mid_watch_keeps_the_series() {
    // The fixture leaks for 1.5 s and exits; the watch would run a minute.
    let dir = watch(
        "watch-exit-launched",
        "watch_malloc_leak",
        &[&RATE.to_string(), "1.5"],
        "60s",
    );
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["end"]["reason"], "exited", "{meta:#}");
    assert_eq!(meta["end"]["exit_code"], 0, "{meta:#}");
    let t = trend(&dir);
    assert!(t["samples"].as_u64().unwrap() >= 1, "{t:#}");
    assert!(
        ["growing", "inconclusive"].contains(&t["verdict"].as_str().unwrap()),
        "{t:#}"
    );
    // The last sample's mappings were kept.
    success(&mut maps_diff_first_last(&dir, &[]));
}

#[test]
fn attached_target_exiting_mid_watch_keeps_the_series() {
    // The fixture leaks until its stdin closes; we close it once the
    // watcher says it has its first sample. Until we reap it, it is a
    // zombie: the watcher must see that as an exit.
    let mut target = spawn_ready("watch_malloc_leak", &[&RATE.to_string(), "-1"]);
    let dir = scratch("watch-exit-attached").join("rec");
    let mut watcher = Running::start_until(
        leaktrail()
            .args(["watch", "--interval", "100ms", "--duration", "60s", "-p"])
            .arg(target.pid().to_string())
            .arg("--out")
            .arg(&dir)
            .stdout(Stdio::piped()),
        Pipe::Stderr,
        |line| {
            assert!(line.contains("watching pid"), "{line}");
            true
        },
    );
    target.close_stdin();
    let status = watcher.wait();
    assert!(status.success(), "watch ends cleanly when the target exits");
    assert!(target.wait().success());
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["end"]["reason"], "exited", "{meta:#}");
    let t = trend(&dir);
    assert!(t["samples"].as_u64().unwrap() >= 1, "{t:#}");
    assert!(t["verdict"].is_string());
}

#[test]
fn trend_and_maps_refuse_bad_input_with_exit_2() {
    let dir = scratch("watch-bad-input");
    assert_bad_input(leaktrail().arg("trend").arg(dir.join("missing")), &[]);
    assert_bad_input(
        leaktrail().arg("trend").arg(&dir),
        &["not a leaktrail recording"],
    );
    std::fs::write(dir.join("meta.json"), "{\"format\":\"something else\"}").unwrap();
    assert_bad_input(leaktrail().arg("trend").arg(&dir), &["expected format"]);
    assert_bad_input(
        leaktrail().args(["maps", "diff", &format!("{}@soon", dir.display()), "@last"]),
        &[],
    );
    assert_usage_error(
        leaktrail().args(["watch", "--interval", "10", "-p", "1"]),
        &["needs a unit"],
    );
}

#[test]
fn demo_finds_the_growth() {
    let (dir, stdout) = crate::support::demo();
    assert!(stdout.contains("verdict:  growing"), "{stdout}");
    // Issue 14: glibc's heap in words a Node user does not misread.
    assert!(stdout.contains("growth:   in the malloc heap"), "{stdout}");
    assert!(dir.join("trend.svg").exists());
    assert_eq!(trend(dir)["verdict"], "growing");
}

#[test]
fn recordings_of_format_version_1_still_read() {
    // fixtures/recordings/README.md: written by `watch` in format 1.
    let dir = repo_root().join("fixtures/recordings/watch-malloc-leak-v1");
    let t = trend(&dir);
    assert_eq!(t["verdict"], "growing", "{t:#}");
    assert_eq!(t["growth_region"], "heap", "{t:#}");
    let slope = t["slope_bytes_per_hour"].as_f64().unwrap();
    assert!((slope / (RATE * 3600.0) - 1.0).abs() <= 0.15, "{t:#}");
    let d = json(&mut maps_diff_first_last(&dir, &["--json"]));
    assert_eq!(d["mappings"][0]["name"], "[heap]", "{d:#}");
}
