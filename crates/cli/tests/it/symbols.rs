//! Every frame named in every view (issue 11,
//! <https://github.com/leaktrail/leaktrail/issues/11>): libc's frames from
//! its separate debug info, inlined calls in growth, folded stacks and
//! pprof; and what `run` records in `meta.json`.
//!
//! The target is `fixtures/symbols_inline.c` at `-O2`: an `always_inline`
//! allocator `make_record` inlined into `grow_records`, and a `FILE` that
//! libc's local `__fopen_internal` allocates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

use crate::support::{
    allocated_in, fixture, functions, leaktrail, record_in_steps, repo_root, scratch, stdout,
};

/// Records the fixture for two steps, with the process's memory, once per
/// test run: `snapshots/0001.core`, `0002.core` and the one at exit.
fn recording() -> PathBuf {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut dir = DIR.lock().unwrap_or_else(|p| p.into_inner());
    dir.get_or_insert_with(|| {
        let exe = fixture(
            "symbols_inline",
            &["-O2", "-fomit-frame-pointer", "-fno-optimize-sibling-calls"],
        );
        let dir = scratch("symbols_inline").join("rec");
        record_in_steps(&dir, "full", &[exe.as_os_str(), "2".as_ref()], 2);
        dir
    })
    .clone()
}

fn snapshot(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("snapshots/{k:04}.core"))
}

fn json(cmd: &mut Command) -> Value {
    serde_json::from_str(&stdout(cmd)).expect("json")
}

/// libc's separate debug file, if installed (`.ci/run` installs
/// `libc6-dbg`): the libc we run with is the fixture's.
fn libc_debug_file() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("libc.so"))
        })?
        .to_string();
    let notes = String::from_utf8(
        Command::new("readelf")
            .args(["-n", &libc])
            .output()
            .ok()?
            .stdout,
    )
    .ok()?;
    let id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))?
        .trim();
    let path = PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &id[..2],
        &id[2..]
    ));
    path.exists().then_some(path)
}

/// Asserts that every libc frame of `stack` is named, and returns how many
/// there were.
fn named_libc_frames(stack: &Value, what: &str) -> usize {
    let mut n = 0;
    for f in stack.as_array().expect("stack") {
        if f["module"]
            .as_str()
            .is_some_and(|m| m.starts_with("libc.so"))
        {
            n += 1;
            assert!(
                f["function"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: a libc frame without a name: {f}"
            );
        }
    }
    n
}

#[test]
fn issue_11_libc_frames_are_named_in_bufs_and_leaks() {
    let Some(debug) = libc_debug_file() else {
        eprintln!(
            "skipped: no libc debug file under /usr/lib/debug/.build-id (apt-get install libc6-dbg; .ci/run does)"
        );
        return;
    };
    eprintln!("libc's debug info: {}", debug.display());
    let snap = snapshot(&recording(), 2);
    let bufs = json(
        leaktrail()
            .args(["bufs", "--json", "--group-by", "stack"])
            .arg(&snap),
    );
    let mut libc_frames = 0;
    let mut stacks = Vec::new();
    for g in bufs["groups"].as_array().expect("groups") {
        libc_frames += named_libc_frames(&g["stack"], "bufs");
        stacks.push(functions(&g["stack"]));
    }
    let leaks = json(
        leaktrail()
            .args(["leaks", "--json", "--reachable"])
            .arg(&snap),
    );
    for g in leaks["groups"].as_array().expect("groups") {
        libc_frames += named_libc_frames(&g["stack"], "leaks");
    }
    assert!(libc_frames > 0, "no libc frames at all: {stacks:?}");
    // libc's local functions, absent from its dynamic symbols: only the
    // debug file names them.
    assert!(
        stacks
            .iter()
            .any(|s| s.first().is_some_and(|f| f == "__fopen_internal")),
        "{stacks:?}"
    );
    assert!(
        stacks
            .iter()
            .all(|s| s.iter().any(|f| f == "__libc_start_call_main")),
        "{stacks:?}"
    );
}

#[test]
fn issue_11_inlined_frames_in_growth_folded_and_pprof() {
    let dir = recording();
    let (a, b) = (snapshot(&dir, 1), snapshot(&dir, 2));
    // growth --json: the suspect's stack starts at the inlined allocator,
    // then the function it was inlined into.
    let growth = json(leaktrail().args(["growth", "--json"]).arg(&a).arg(&b));
    let top = &growth["suspects"][0];
    let stack = functions(&top["stack"]);
    assert_eq!(stack[..3], ["make_record", "grow_records", "main"], "{top}");
    assert_eq!(top["stack"][0]["inlined"], true);
    // Folded stacks (what the SVG is drawn from too).
    let folded = stdout(leaktrail().args(["flamegraph", "--folded"]).arg(&b));
    assert!(
        folded
            .lines()
            .any(|l| l.contains(";main;grow_records;make_record ")),
        "{folded}"
    );
    let svg_path = scratch("symbols_flamegraph").join("fg.svg");
    stdout(
        leaktrail()
            .arg("flamegraph")
            .arg(&b)
            .arg("-o")
            .arg(&svg_path),
    );
    let svg = std::fs::read_to_string(&svg_path).expect("svg");
    assert!(
        svg.contains("make_record"),
        "the SVG names the inlined call"
    );
    // pprof: one location with two lines, innermost first; functions with
    // their file and start line.
    let out = scratch("symbols_pprof").join("heap.pb.gz");
    stdout(leaktrail().arg("pprof").arg(&b).arg("-o").arg(&out));
    let p = json(
        Command::new("python3")
            .arg(repo_root().join("crates/cli/tests/it/pprof_decode.py"))
            .arg(&out),
    );
    let sample = allocated_in(&p, "samples", "make_record")
        .next()
        .unwrap_or_else(|| panic!("no sample starts at make_record: {p}"));
    let (inner, outer) = (&sample["stack"][0], &sample["stack"][1]);
    assert_eq!(outer["function"], "grow_records");
    assert_eq!(
        inner["location"], outer["location"],
        "one location, two lines"
    );
    assert_eq!(sample["values"][1], 2 * 50 * 3000);
    let source = std::fs::read_to_string(repo_root().join("fixtures/symbols_inline.c"))
        .expect("fixture source");
    let line_of = |needle: &str| {
        source
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i as i64 + 1)
            .expect("declaration in the source")
    };
    for (frame, decl) in [
        (inner, "*make_record(int k) {"),
        (outer, "void grow_records(int k) {"),
    ] {
        assert!(
            frame["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("symbols_inline.c")),
            "{frame}"
        );
        assert_eq!(frame["start_line"], line_of(decl), "{frame}");
        assert!(frame["line"].as_i64().is_some_and(|l| l > line_of(decl)));
    }
}

fn meta(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json"))
        .expect("meta json")
}

/// `leaktrail run --every 0 --out DIR -- sh -c SCRIPT`: its exit code and
/// the recording's `meta.json`.
fn run_sh(name: &str, script: &str) -> (Option<i32>, Value) {
    let dir = scratch(name).join("rec");
    let status = leaktrail()
        .args(["run", "--every", "0", "--interval", "100ms", "--out"])
        .arg(&dir)
        .args(["--", "sh", "-c", script])
        .status()
        .expect("run leaktrail");
    (status.code(), meta(&dir))
}

#[test]
fn issue_11_run_records_launched_and_the_exit_status_in_meta() {
    let m = meta(&recording());
    assert_eq!(m["launched"], true, "{m}");
    assert_eq!(m["end"]["reason"], "exited", "{m}");
    assert_eq!(m["end"]["exit_code"], 0, "{m}");
    assert_eq!(m["end"]["signal"], Value::Null, "{m}");

    let (code, m) = run_sh("symbols_meta_exit", "exit 3");
    assert_eq!(code, Some(3));
    assert_eq!(m["launched"], true, "{m}");
    assert_eq!(m["end"]["exit_code"], 3, "{m}");
    assert_eq!(m["end"]["signal"], Value::Null, "{m}");

    let (code, m) = run_sh("symbols_meta_signal", "kill -9 $$");
    assert_eq!(code, Some(128 + 9));
    assert_eq!(m["end"]["exit_code"], Value::Null, "{m}");
    assert_eq!(m["end"]["signal"], 9, "{m}");
}
