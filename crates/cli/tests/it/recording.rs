//! `leaktrail run` recordings (issue 4): the watch series beside snapshots,
//! the final snapshot at exit, snapshots on demand.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use leaktrail_analysis::audit_dump::{self, AuditDump};
use leaktrail_recording::Snapshot;

use crate::support::{fixture, leaktrail, leaktrail_json, scratch, snapshot_into, ChildGuard};

const NO_FP: &[&str] = &["-fomit-frame-pointer", "-fno-optimize-sibling-calls"];

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
    let out = leaktrail()
        .args(["run", "--every", "0", "--interval", "50ms", "--out"])
        .arg(&dir)
        .arg("--")
        .arg(&exe)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let mut run = ChildGuard(
        leaktrail()
            .args(["run", "--every", "0", "--interval", "50ms", "--out"])
            .arg(&dir)
            .arg("--")
            .arg(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run"),
    );
    let mut lines = BufReader::new(run.0.stdout.take().expect("stdout")).lines();
    loop {
        let line = lines.next().expect("fixture output").expect("utf-8");
        if line == "ready" {
            break;
        }
    }
    snapshot_into(&dir, &[]);
    run.0
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("write");
    let status = run.0.wait().expect("wait");
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
    let mut run = ChildGuard(
        leaktrail()
            .args(["run", "--every", "0", "--interval", "50ms", "--out"])
            .arg(&dir)
            .arg("--")
            .arg(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run"),
    );
    let mut stdin = run.0.stdin.take().expect("stdin");
    let mut lines = BufReader::new(run.0.stdout.take().expect("stdout")).lines();
    let mut expect = |prefix: &str| {
        let line = lines.next().expect("a line").expect("utf-8");
        assert!(line.starts_with(prefix), "{line}");
    };
    expect("ready");
    let snap = || snapshot_into(&dir, &[]);
    snap();
    // 1530 buffers of 4000 bytes: about 6 MiB more heap.
    stdin.write_all(b"g").expect("grow");
    expect("grew");
    snap();
    stdin.write_all(b"q").expect("quit");
    drop(stdin);
    run.0.wait().expect("wait");
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
