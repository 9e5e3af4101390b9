//! `leaktrail run` recordings (issue 4): the watch series beside snapshots,
//! the final snapshot at exit, snapshots on demand.

use std::path::Path;
use std::process::{Command, Stdio};

use leaktrail_analysis::audit_dump::{self, AuditDump};
use leaktrail_recording::Snapshot;

use crate::support::{
    fixture, leaktrail, leaktrail_json, scratch, snapshot_into, success, Pipe, Running,
};

const NO_FP: &[&str] = &["-fomit-frame-pointer", "-fno-optimize-sibling-calls"];

/// `leaktrail run --every 0 --interval 50ms --out DIR -- EXE`.
fn run_cmd(dir: &Path, exe: &Path) -> Command {
    let mut cmd = leaktrail();
    cmd.args(["run", "--every", "0", "--interval", "50ms", "--out"])
        .arg(dir)
        .arg("--")
        .arg(exe);
    cmd
}

/// `run_cmd` with stdin piped, once the program printed its ready line
/// (`ready`, or starting with it). With `first`, that must be its first
/// line; otherwise lines before it are skipped.
fn record(dir: &Path, exe: &Path, first: bool) -> Running {
    let mut cmd = run_cmd(dir, exe);
    cmd.stdin(Stdio::piped());
    if first {
        Running::start(&mut cmd, Pipe::Stdout, "ready")
    } else {
        Running::start_until(&mut cmd, Pipe::Stdout, |line| line == "ready")
    }
}

/// (size, function names) of the blocks of a snapshot whose allocating
/// function (frame 0) is `top` and whose caller is `caller`.
fn blocks(dump: &AuditDump, top: &str, caller: &str) -> Vec<u64> {
    dump.audit
        .live
        .iter()
        .filter(|b| {
            let names: Vec<&str> = dump
                .frames
                .get(&b.stack)
                .map(|fs| {
                    fs.iter()
                        .map(|f| f.function.as_deref().unwrap_or("??"))
                        .collect()
                })
                .unwrap_or_default();
            names.len() >= 2 && names[0] == top && names[1] == caller
        })
        .map(|b| b.size)
        .collect()
}

fn open(path: &Path) -> AuditDump {
    let snap = Snapshot::open(path).expect("open snapshot");
    audit_dump::from_snapshot(&snap).expect("audit in snapshot")
}

#[test]
fn the_final_snapshot_holds_exactly_the_blocks_live_at_exit() {
    let exe = fixture("tracer_survivors", NO_FP);
    let dir = scratch("recording_exit").join("rec");
    success(run_cmd(&dir, &exe).stdin(Stdio::null()));
    let snaps: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .expect("snapshots dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".core"))
        .collect();
    assert_eq!(snaps, ["0001-exit.core"]);
    let dump = open(&dir.join("snapshots/0001-exit.core"));
    let small = blocks(&dump, "traced_alloc", "make_small");
    assert_eq!(small.len(), 50);
    assert!(small.iter().all(|&s| s == 48));
    let big = blocks(&dump, "traced_alloc", "make_big");
    assert_eq!(big, [4000; 7]);
    // The watch series ran alongside.
    assert!(dir.join("meta.json").is_file());
    assert!(
        std::fs::read_to_string(dir.join("samples.jsonl"))
            .expect("samples")
            .lines()
            .count()
            >= 1
    );
}

#[test]
fn snapshot_on_demand_into_a_running_recording() {
    let exe = fixture("tracer_survivors", NO_FP);
    let dir = scratch("recording_demand").join("rec");
    let mut run = record(&dir, &exe, false);
    snapshot_into(&dir, &[]);
    run.send(b"go\n");
    run.close_stdin();
    let status = run.wait();
    assert_eq!(status.code(), Some(0));
    let during = open(&dir.join("snapshots/0001.core"));
    let at_exit = open(&dir.join("snapshots/0002-exit.core"));
    for dump in [&during, &at_exit] {
        assert_eq!(blocks(dump, "traced_alloc", "make_small").len(), 50);
        assert_eq!(blocks(dump, "traced_alloc", "make_big").len(), 7);
    }
}

#[test]
fn maps_diff_of_two_snapshots_names_the_grown_heap_first() {
    let exe = fixture("leaks_grow", &[]);
    let dir = scratch("recording_maps").join("rec");
    let mut run = record(&dir, &exe, true);
    let snap = || snapshot_into(&dir, &[]);
    snap();
    // 1530 buffers of 4000 bytes: about 6 MiB more heap.
    run.send(b"g");
    let line = run.line();
    assert!(line.starts_with("grew"), "{line}");
    snap();
    run.send(b"q");
    run.close_stdin();
    run.wait();
    let diff = leaktrail_json([
        "maps".into(),
        "diff".into(),
        "--json".into(),
        dir.join("snapshots/0001.core").into_os_string(),
        dir.join("snapshots/0002.core").into_os_string(),
    ] as [std::ffi::OsString; 5]);
    let first = &diff["mappings"][0];
    assert_eq!(first["region"], "heap", "{first}");
    let delta = first["delta"].as_i64().expect("delta");
    assert!(delta >= 5 << 20, "the heap grew by about 6 MiB: {delta}");
}

/// Issue 13, item 2 (<https://leaktrail/issues/13>): `run` of a program that
/// exits at once ends with it, not at the watcher's next tick. With a 10 s
/// interval the old sampler slept the whole interval; 5 s leaves any loaded
/// machine room and still fails without the fix.
#[test]
fn issue_13_run_of_true_ends_with_the_program_not_at_the_next_interval() {
    let dir = scratch("run-true-latency");
    let started = std::time::Instant::now();
    let out = success(
        leaktrail()
            .args(["run", "--interval", "10s", "--out"])
            .arg(&dir)
            .args(["--", "/bin/true"]),
    );
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "run -- /bin/true took {took:?} with --interval 10s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The recording is whole: the first sample, its end, the exit snapshot.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["end"]["reason"], "exited", "{meta}");
    assert!(std::fs::read_to_string(dir.join("samples.jsonl"))
        .unwrap()
        .starts_with("{\"i\":0"));
    let exit_snapshots = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("-exit.core"))
        .count();
    assert_eq!(exit_snapshots, 1);
}

/// Issue 13, item 3 (<https://leaktrail/issues/13>): the tracer's audit
/// region is `leaktrail`'s, not the program's `anon` (or, as its header
/// above a guard page looked before, `stack`): in the watch series, in
/// `trend` (which judges the program without it and says how much it is),
/// and in `maps diff`. Checked against the region's ranges as an exit-time
/// snapshot's header describes them, so it holds with and without the
/// kernel's `[anon:leaktrail]` names.
#[test]
fn issue_13_the_tracers_own_memory_is_not_the_programs() {
    let exe = fixture("leaks_grow", &[]);
    let dir = scratch("recording_tracer").join("rec");
    let mut run = record(&dir, &exe, true);
    run.send(b"g");
    assert!(run.line().starts_with("grew"));
    snapshot_into(&dir, &[]);
    run.send(b"q");
    run.close_stdin();
    assert_eq!(run.wait().code(), Some(0));

    let snap = Snapshot::open(&dir.join("snapshots/0001.core")).expect("snapshot");
    let header = snap.audit_headers()[0];
    let ranges = leaktrail_recording::audit::locate(&snap, header);
    let rec = leaktrail_recording::Recording::open(&dir).expect("recording");
    let last = rec.samples.last().expect("a sample");
    let detail = rec
        .samples
        .iter()
        .rev()
        .find(|s| s.detail)
        .and_then(|s| rec.detail(s.i).ok())
        .expect("a detail");
    let inside = |m: &leaktrail_recording::Mapping| {
        ranges
            .iter()
            .any(|&(a, b)| a <= m.start && m.end <= b + 4095)
    };
    let head = detail
        .mappings
        .iter()
        .find(|m| m.start == header)
        .expect("the header starts a mapping");
    assert_eq!(head.region.name(), "leaktrail");
    let mut audit_bytes = 0;
    for m in &detail.mappings {
        if inside(m) {
            assert_eq!(m.region.name(), "leaktrail", "{m:?}");
        }
        if m.region.name() == "leaktrail" {
            audit_bytes += m.rss;
        }
    }
    assert!(audit_bytes > 0);
    let regions = rec
        .samples
        .iter()
        .rev()
        .find_map(|s| s.regions)
        .expect("regions");
    assert_eq!(regions.tracer, audit_bytes);

    // trend: the program's RSS without the tracer's; no `leaktrail` region.
    let trend = leaktrail_json([
        "trend".into(),
        "--json".into(),
        dir.clone().into_os_string(),
    ] as [std::ffi::OsString; 3]);
    assert_eq!(trend["tracer_bytes"].as_u64(), Some(audit_bytes), "{trend}");
    assert_eq!(trend["rss_bytes"].as_u64(), Some(last.rss - audit_bytes));
    let names: Vec<&str> = trend["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["heap", "anon", "stack", "file", "shmem"]);
    let text = crate::support::stdout(leaktrail().arg("trend").arg(&dir));
    assert!(text.contains("leaktrail's own: "), "{text}");

    // maps diff: kept apart from the totals and the rows.
    let at = |s: &str| {
        let mut p = dir.clone().into_os_string();
        p.push(s);
        p
    };
    let diff = leaktrail_json([
        "maps".into(),
        "diff".into(),
        "--json".into(),
        at("@first"),
        at("@last"),
    ] as [std::ffi::OsString; 5]);
    assert!(diff["tracer_b"].as_u64().unwrap_or(0) > 0, "{diff}");
    assert!(diff["mappings"]
        .as_array()
        .expect("rows")
        .iter()
        .all(|m| m["region"] != "leaktrail"));
}
