//! Docs that run (issue 17): every command line in the README's ```sh
//! blocks is run, as written, on a fixture recording, so the README cannot
//! drift from the binary.
//!
//! The convention, for whoever writes the README:
//!
//! - Each line of a ```sh block is one command; a line that starts with
//!   white space continues the one above (a long synopsis). ` # ` starts a
//!   comment. `&&` chains are run part by part.
//! - Synopsis notation: `[...]` is optional and `a|b` (or `a | b` inside
//!   brackets) picks one. Each line runs twice: once with every optional
//!   part left out, once with every one in, taking the first alternative
//!   everywhere. So every flag the README names must exist and take the
//!   value it shows.
//! - Capitalised words are placeholders, filled from one fixture recording
//!   (`leaktrail demo`, copied to `rec/` in the test's working directory,
//!   with `rec/snapshots/0012.core` standing in for a long run's twelfth
//!   snapshot): `DIR`, `RECORDING_DIR` the recording (a fresh folder after
//!   `--out` and `-o`), `SNAP` its newest snapshot taken while the program ran,
//!   `BASE` its first, `ADDR` a live buffer in `SNAP`, `PID` a program
//!   that lives 3 s, `CMD ARGS...` a one-second program, `TID` the
//!   recorded pid, `FILE` a fresh file; the others get the value in
//!   [`placeholder`].
//! - A command exits 0, except `leaks --fail-on` (3: the demo leaks).
//! - Lines that cannot run here are in [`NOT_RUN`], with the reason.
//!
//! The `Examples:` of every subcommand's `--help` are run the same way
//! (see [`HELP_NOT_RUN`] for those that need the reader's own program).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{demo, leaktrail, leaktrail_json, repo_root, scratch, ChildGuard};

/// README lines the test does not run, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo build --workspace",
        "the build and test commands are .ci/run's own steps; run here they would wait on the lock of the target directory this test runs from",
    ),
    (
        "cargo test --workspace",
        "the build and test commands are .ci/run's own steps",
    ),
    (
        "cargo install --path crates/cli --root ~/.local",
        "installs into the reader's home; install::issue_17_cargo_install_is_a_complete_install runs it into a scratch root",
    ),
    (
        "leaktrail run --every 10m --out rec -- ./server",
        "needs a long-running server of the reader's",
    ),
    (
        "leaktrail jsobjects NODE_SNAP [--constructor NAME] [--top N]",
        "needs a --memory full snapshot of node; jsheap::issue_14_a_js_heap_leak_of_closures_is_named_by_its_constructor runs it",
    ),
    (
        "leaktrail jsprint NODE_SNAP ADDR [--depth N]",
        "needs a --memory full snapshot of node; jsheap::issue_14_jsprint_prints_a_known_object_literal runs it",
    ),
    (
        "leaktrail detach -p PID",
        "needs a process under leaktrail attach; attach::issue_12_attach_finds_the_earlier_blocks_and_gives_later_ones_their_stacks detaches one",
    ),
    (
        "leaktrail top -p PID [--interval 1s]",
        "needs a terminal and a traced program; terminal::issue_17_top_shows_the_growing_site_live_in_tmux_and_q_restores_the_terminal drives it in tmux",
    ),
];

/// The commands of the README's ```sh blocks, continuation lines joined,
/// comments removed.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let mut commands: Vec<String> = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh || t.is_empty() {
            continue;
        }
        let t = t.split(" # ").next().unwrap_or("").trim_end();
        let continued = line.starts_with(' ') && !line.trim_start().starts_with("leaktrail");
        match commands.last_mut() {
            Some(last) if continued => {
                last.push(' ');
                last.push_str(t.trim());
            }
            _ => commands.push(t.trim().to_string()),
        }
    }
    commands
}

/// `line` with every `[...]` left out (`long` false) or kept (`long`
/// true), and the first of every set of alternatives.
fn expand(line: &str, long: bool) -> String {
    let mut out = String::new();
    let mut group = String::new();
    let mut depth = 0;
    for c in line.chars() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 && long {
                    out.push_str(group.split(" | ").next().unwrap_or(""));
                }
                group.clear();
            }
            c if depth > 0 => group.push(c),
            c => out.push(c),
        }
    }
    out.split_whitespace()
        .map(|w| w.split('|').next().unwrap_or(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the fixture gives each placeholder.
struct Fixture {
    work: PathBuf,
    rec: PathBuf,
    snap: PathBuf,
    base: PathBuf,
    addr: String,
    tid: String,
}

/// Copies `snap` to `to`, the name the docs use, unless it is that file
/// already (a copy onto itself would empty it).
fn place(snap: &Path, to: &Path) {
    if snap != to {
        std::fs::copy(snap, to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    }
}

impl Fixture {
    fn new_in(name: &str) -> Fixture {
        let (demo_rec, _) = demo();
        let work = scratch(name);
        let rec = work.join("rec");
        copy_dir(demo_rec, &rec);
        // Cores taken while the program ran, oldest first (not the exit one).
        let mut snaps: Vec<PathBuf> = std::fs::read_dir(rec.join("snapshots"))
            .expect("snapshots")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "core"))
            .filter(|p| !p.to_string_lossy().contains("exit"))
            .collect();
        snaps.sort();
        assert!(snaps.len() >= 2, "the demo's snapshots: {snaps:?}");
        let snap = snaps.last().expect("a snapshot").clone();
        place(&snap, &rec.join("snapshots/0012.core"));
        let bufs = leaktrail_json([
            "bufs".as_ref(),
            snap.as_os_str(),
            "--class".as_ref(),
            "4096".as_ref(),
            "--json".as_ref(),
        ]);
        let addr = format!(
            "{:#x}",
            bufs["buffers"][0]["addr"].as_u64().expect("a 4 KiB buffer")
        );
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(rec.join("meta.json")).expect("meta"))
                .expect("meta JSON");
        let tid = meta["pid"].as_i64().expect("pid").to_string();
        // `./target/debug/leaktrail` of the newcomer's command.
        let bin = Path::new(env!("CARGO_BIN_EXE_leaktrail"));
        std::fs::create_dir_all(work.join("target/debug")).expect("target/debug");
        std::os::unix::fs::symlink(bin, work.join("target/debug/leaktrail")).expect("symlink");
        // The help's file names.
        for (name, to) in [
            ("app.core", &snap),
            ("last.core", &snap),
            ("b.core", &snap),
            ("first.core", &snaps[0]),
            ("a.core", &snaps[0]),
        ] {
            std::os::unix::fs::symlink(to, work.join(name)).expect("symlink");
        }
        place(&snap, &rec.join("snapshots/0007.core"));
        // The help's `cores/*.core`.
        std::os::unix::fs::symlink(rec.join("snapshots"), work.join("cores")).expect("cores");
        Fixture {
            work,
            rec,
            base: snaps[0].clone(),
            snap,
            addr,
            tid,
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// The value of placeholder `word`, after `prev`; `fresh` names a new
/// output.
fn placeholder(fx: &Fixture, word: &str, prev: &str, fresh: &mut dyn FnMut() -> String) -> String {
    let p = |p: &Path| p.display().to_string();
    match (word, prev) {
        ("DIR", "--out" | "-o") | ("FILE" | "OUT", _) => fresh(),
        ("DIR" | "RECORDING_DIR", _) => p(&fx.rec),
        ("SNAP" | "SNAP...", _) => p(&fx.snap),
        ("BASE", _) => p(&fx.base),
        ("ADDR", _) => fx.addr.clone(),
        ("TID", _) => fx.tid.clone(),
        ("N", "--class") => "4096".into(),
        ("N", "-j") => "2".into(),
        ("N", "--depth") => "16".into(),
        ("N", _) => "3".into(),
        ("LO..HI", _) => "2049..4096".into(),
        ("AGE", _) => "1s".into(),
        // `--function` limits what `--fail-on` counts: the demo's function
        // that really leaks, so the documented exit 3 holds.
        ("NAME", "--function") => "parse_headers".into(),
        ("FN" | "NAME", _) => "cache_response".into(),
        ("LIST", _) => "stacks,globals".into(),
        // An example file of both formats, suppressing none of the demo's.
        ("SUPP", _) => p(&repo_root().join("fixtures/leaktrail.supp")),
        ("M", "--mask") => "0xfffffffffffffff8".into(),
        ("M", _) => "0x7".into(),
        ("D", _) => "4096".into(),
        ("LEN", _) => "64".into(),
        ("BYTES", _) => "512K".into(),
        ("TEXT", _) => "docs".into(),
        ("ID", _) => "v42".into(),
        ("EXT", _) => "txt".into(),
        ("FILTERS", _) => "--class 4096".into(),
        ("SUBCOMMAND", _) => "info".into(),
        ("ARGS...", "info") => "--json".into(),
        ("CMD", _) => "sleep".into(),
        ("ARGS...", _) => "1".into(),
        (w, _) => {
            // The help's made-up addresses (`0x55d0c2a41f30`).
            let hex = w.strip_prefix("0x").unwrap_or("");
            if hex.len() >= 8 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return fx.addr.clone();
            }
            if let Some(rest) = w.strip_prefix("DIR@") {
                format!("{}@{rest}", p(&fx.rec))
            } else {
                let looks_like_one = w.len() > 1
                    && w.chars().any(|c| c.is_ascii_uppercase())
                    && w.chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c == '.');
                assert!(
                    !looks_like_one,
                    "placeholder {w} has no fixture value: add it to docs.rs"
                );
                w.to_string()
            }
        }
    }
}

/// Runs one command through `bash -o pipefail`, with the binary under test first on
/// `PATH`, in the fixture's working directory; returns whether it exited
/// with `status`, and what it said.
fn run(fx: &Fixture, command: &str, n: &mut usize) -> Result<(), String> {
    let mut fresh = || {
        *n += 1;
        format!("out-{n}")
    };
    let mut words: Vec<String> = Vec::new();
    let mut target = None;
    for w in command.split_whitespace() {
        let prev = words.last().map(String::as_str).unwrap_or("");
        let v = if w == "PID" {
            let child = Command::new("sleep").arg("3").spawn().expect("sleep");
            let pid = child.id().to_string();
            target = Some(ChildGuard(child));
            pid
        } else {
            placeholder(fx, w, prev, &mut fresh)
        };
        words.push(v);
    }
    let line = words.join(" ");
    let status = if line.contains("--fail-on") { 3 } else { 0 };
    let bin = Path::new(env!("CARGO_BIN_EXE_leaktrail"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    // pipefail: in `leaktrail ... | jq` leaktrail's status counts too.
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &line])
        .current_dir(&fx.work)
        .env("PATH", path)
        .env_remove("LEAKTRAIL_PRELOAD")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sh");
    drop(target);
    if out.status.code() == Some(status) {
        Ok(())
    } else {
        Err(format!(
            "{command}\n  ran as: {line}\n  exit {:?}, expected {status}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Issue 17 ("docs that run").
#[test]
fn issue_17_every_readme_command_runs_as_written() {
    let fx = Fixture::new_in("docs");
    let mut forms = Vec::new();
    for command in readme_commands() {
        for part in command.split(" && ") {
            let part = part.trim();
            if let Some((_, why)) = NOT_RUN.iter().find(|(l, _)| *l == part) {
                eprintln!("not run: {part}: {why}");
                continue;
            }
            let short = expand(part, false);
            let long = expand(part, true);
            let both = short != long;
            forms.push(short);
            if both {
                forms.push(long);
            }
        }
    }
    run_every(
        &fx,
        &forms,
        30,
        "commands found in the README",
        "README commands",
    );
}

/// Runs every line on `fx`, going on past failures, then asserts that more
/// than `min` ran (`found` names them) and that none of the `what` failed.
fn run_every(fx: &Fixture, lines: &[String], min: usize, found: &str, what: &str) {
    let mut n = 0;
    let mut failed = Vec::new();
    for line in lines {
        eprintln!("running: {line}");
        if let Err(e) = run(fx, line, &mut n) {
            failed.push(e);
        }
    }
    let ran = lines.len();
    assert!(ran > min, "only {ran} {found}");
    assert!(
        failed.is_empty(),
        "{} of {ran} {what} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Issue 17: `job`'s own flags may follow the subcommand's name, but not
/// on both sides.
#[test]
fn issue_17_job_refuses_a_flag_given_on_both_sides() {
    crate::support::assert_bad_input(
        leaktrail().args(["job", "-o", "a", "flamegraph", "-o", "b", "--", "x.core"]),
        &["-o given both before and after the subcommand"],
    );
}

/// `--help` examples the test does not run: they need a program, a tool or
/// a place of the reader's (`s3://`: a store; `fleet::` runs those against
/// SeaweedFS).
const HELP_NOT_RUN: &[&str] = &[
    "s3://",
    "./server",
    "node app.js",
    "python3 app.py",
    "./test-suite",
    "go tool pprof",
    "-p 1234",
    "~/",
    "| man",
    "my.supp",
    // jsobjects and jsprint read a snapshot of node (tests/it/jsheap.rs).
    "node.core",
];

/// The `Examples:` of every subcommand's `--help`, comments removed.
fn help_examples() -> Vec<String> {
    let mut lines = Vec::new();
    for sub in crate::install::subcommands() {
        let help = crate::support::stdout(leaktrail().args([sub.as_str(), "--help"]));
        lines.extend(
            help.lines()
                .skip_while(|l| !l.starts_with("Examples:"))
                .skip(1)
                .take_while(|l| l.starts_with("  leaktrail "))
                .map(|l| l.split(" # ").next().unwrap_or("").trim().to_string()),
        );
    }
    lines
}

/// Issue 17: the examples in `--help` run too, on the same fixture (with
/// `app.core`, `first.core`, `rec/snapshots/0007.core` ... and a live
/// buffer's address for the made-up ones).
#[test]
fn issue_17_every_help_example_runs_as_written() {
    let fx = Fixture::new_in("docs-help");
    let (skipped, lines): (Vec<String>, Vec<String>) = help_examples()
        .into_iter()
        .partition(|line| HELP_NOT_RUN.iter().any(|s| line.contains(s)));
    for line in skipped {
        eprintln!("not run: {line}");
    }
    run_every(&fx, &lines, 20, "help examples found", "help examples");
}
