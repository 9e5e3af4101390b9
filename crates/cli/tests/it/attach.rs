//! `leaktrail attach` and `detach` (issue 12, item 3): the tracer injected
//! into a program that has been running, blocks from before the attach
//! found by the heap walk, later ones with their stacks, and the program
//! left as it was at detach.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{
    assert_bad_input, fixture, functions, json, leaktrail, scratch, snapshot_into, success, Pipe,
    Running,
};

/// `leaktrail attach -p PID --every 0 --out DIR [extra...]`, once it says
/// it attached.
fn attach(pid: i32, dir: &Path, extra: &[&str]) -> Running {
    Running::start(
        leaktrail()
            .args(["attach", "-p", &pid.to_string(), "--every", "0"])
            .args(["--interval", "100ms", "--out"])
            .arg(dir)
            .args(extra),
        Pipe::Stderr,
        &format!("leaktrail: attached to process {pid} "),
    )
}

/// `leaktrail detach -p PID`, then the attach's end: it must say it
/// detached and exit 0.
fn detach(pid: i32, attached: &mut Running) {
    success(leaktrail().args(["detach", "-p", &pid.to_string()]));
    let rest = attached.rest();
    assert!(attached.wait().success(), "attach failed: {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with(&format!("leaktrail: detached from process {pid} ("))),
        "{rest:?}"
    );
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .expect("snapshots")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "core"))
        .collect();
    v.sort();
    v
}

/// The `bufs --group-by stack` groups of `snap`: (blocks, bytes) of the
/// group allocated in `function`, and of the blocks without a stack.
fn by_stack(snap: &Path, function: &str) -> ((u64, u64), (u64, u64)) {
    let doc = json(
        leaktrail()
            .arg("bufs")
            .arg(snap)
            .args(["--group-by", "stack", "--json"]),
    );
    let mut site = (0, 0);
    let mut stackless = (0, 0);
    for g in doc["groups"].as_array().expect("groups") {
        let n = (g["count"].as_u64().unwrap(), g["bytes"].as_u64().unwrap());
        if g["stack"].as_array().is_some_and(|s| s.is_empty()) {
            stackless = (stackless.0 + n.0, stackless.1 + n.1);
        } else if functions(&g["stack"]).iter().any(|f| f == function) {
            site = (site.0 + n.0, site.1 + n.1);
        }
    }
    (site, stackless)
}

/// The program's lines for its first `k` rounds of `g`: the same whether
/// or not a tracer was ever attached (each round adds 16 × 'a'+15..).
fn grew(k: u64) -> String {
    format!("grew {k} sum {}", 1672 * k)
}

/// Issue 12, item 3: attach to a program that allocated long before,
/// record three rounds of a known leak, detach.
#[test]
fn issue_12_attach_finds_the_earlier_blocks_and_gives_later_ones_their_stacks() {
    let exe = fixture("attach_grow", &[]);
    let dir = scratch("attach-grow").join("rec");
    let mut program = Running::start(
        Command::new(&exe).stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready",
    );
    let pid = program.pid();
    let mut attached = attach(pid, &dir, &[]);
    program.send(b"g");
    assert_eq!(program.line(), grew(1));
    snapshot_into(&dir, &[]);
    program.send(b"g");
    assert_eq!(program.line(), grew(2));
    snapshot_into(&dir, &[]);
    // Frees of blocks the tracer never saw go to the real free.
    program.send(b"f");
    assert_eq!(program.line(), "freed 100");
    program.send(b"g");
    assert_eq!(program.line(), grew(3));
    snapshot_into(&dir, &[]);
    detach(pid, &mut attached);

    // It runs on as before: the same lines as a program never attached.
    program.send(b"g");
    assert_eq!(program.line(), grew(4));
    program.send(b"f");
    assert_eq!(program.line(), "freed 0");
    program.send(b"q");
    assert!(program.wait().success());

    let snaps = snapshots(&dir);
    assert_eq!(snaps.len(), 4, "three on demand, one at detach: {snaps:?}");
    // Later blocks have their stacks and the right function: exactly 16
    // blocks of 96 bytes a round.
    let mut before = Vec::new();
    for (k, snap) in snaps[..3].iter().enumerate() {
        let (site, stackless) = by_stack(snap, "leak_after_attach");
        assert_eq!(
            site,
            (16 * (k as u64 + 1), 16 * 96 * (k as u64 + 1)),
            "{snap:?}"
        );
        before.push(stackless.0);
    }
    // The blocks from before: the walk has them (100 kept, 10 lost, and
    // stdio's), and the free of the 100 kept ones took exactly them away.
    assert!(before[0] >= 110, "{before:?}");
    assert_eq!(before[0], before[1]);
    assert_eq!(before[1] - before[2], 100, "{before:?}");

    // Classified: the 10 lost before the attach are definitely lost (no
    // stack); the leak after it is definitely lost at its function.
    let leaks = json(leaktrail().arg("leaks").arg(&snaps[1]).arg("--json"));
    let groups = leaks["groups"].as_array().expect("groups");
    let early = groups
        .iter()
        .find(|g| g["kind"] == "definite" && g["stack"].as_array().is_some_and(|s| s.is_empty()))
        .unwrap_or_else(|| panic!("no stackless definite group: {leaks}"));
    assert_eq!(
        (early["blocks"].as_u64(), early["bytes"].as_u64()),
        (Some(10), Some(2000))
    );
    assert!(
        groups.iter().any(|g| g["kind"] == "definite"
            && functions(&g["stack"])
                .first()
                .is_some_and(|f| f == "leak_after_attach")),
        "{leaks}"
    );

    // The self-check counts the earlier blocks apart, not as differences.
    let info = json(leaktrail().arg("info").arg(&snaps[0]).arg("--json"));
    let d = &info["heap_walk"]["difference"];
    assert_eq!(d["before_attach"].as_u64(), Some(before[0]), "{d}");
    assert_eq!(
        (d["only_walked"].as_u64(), d["only_audited"].as_u64()),
        (Some(0), Some(0)),
        "{d}"
    );

    // growth ranks the growing site first.
    let growth = json(leaktrail().arg("growth").arg(&dir).arg("--json"));
    let first = &growth["suspects"][0];
    assert!(
        functions(&first["stack"])
            .iter()
            .any(|f| f == "leak_after_attach"),
        "{growth}"
    );
}

fn maps_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps")
}

fn fds_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd")
        .count()
}

/// Issue 12, item 3: a static binary, a seccomp filter, a missing
/// process: one line, exit 2, the process left exactly as it was.
#[test]
fn issue_12_a_process_that_cannot_be_attached_is_left_as_it_was() {
    let dir = scratch("attach-refused");
    let refuse = |pid: i32, needles: &[&str]| {
        assert_bad_input(
            leaktrail()
                .args(["attach", "-p", &pid.to_string(), "--out"])
                .arg(dir.join(format!("rec-{pid}"))),
            needles,
        );
        assert!(!dir.join(format!("rec-{pid}")).exists());
    };

    let exe = fixture("attach_grow", &["-static"]);
    let mut program = Running::start(
        Command::new(&exe).stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready",
    );
    let before = (maps_of(program.pid()), fds_of(program.pid()));
    refuse(
        program.pid(),
        &["cannot attach", "no libc.so.6", "left untouched"],
    );
    assert_eq!((maps_of(program.pid()), fds_of(program.pid())), before);
    program.send(b"g");
    assert_eq!(program.line(), grew(1));

    let seccomp = fixture("snap_seccomp", &[]);
    let mut filtered = Running::start(
        Command::new(&seccomp).stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready",
    );
    let before = maps_of(filtered.pid());
    refuse(
        filtered.pid(),
        &["cannot attach", "seccomp", "left untouched"],
    );
    assert_eq!(maps_of(filtered.pid()), before);
    filtered.send(b"x");
    assert_eq!(filtered.line(), "fork EPERM");

    refuse(i32::MAX, &["no process"]);
    success(leaktrail().args(["detach", "--help"]));
    assert_bad_input(
        leaktrail().args(["detach", "-p", &program.pid().to_string()]),
        &["cannot attach", "no libc.so.6"],
    );
}

/// Issue 12, item 3: 50 attaches and detaches to 8 threads in a malloc
/// loop (malloc, calloc, realloc, free; every block's contents checked):
/// no crash, no deadlock, no block damaged, nothing left behind but the
/// idle library and its region.
#[test]
fn issue_12_attach_and_detach_fifty_times_to_eight_threads_in_a_malloc_loop() {
    let exe = fixture("attach_threads", &[]);
    let dir = scratch("attach-threads");
    let mut program = Running::start(
        Command::new(&exe).stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready",
    );
    let pid = program.pid();
    let fds = fds_of(pid);
    let mut mappings_after_first = 0;
    for round in 0..50 {
        let rec = dir.join(format!("rec-{round}"));
        let mut attached = attach(pid, &rec, &["--memory", "tables"]);
        detach(pid, &mut attached);
        assert_eq!(fds_of(pid), fds, "round {round}: a descriptor left behind");
        let mappings = maps_of(pid).lines().count();
        if round == 0 {
            mappings_after_first = mappings;
        }
        // The kernel may merge or split neighbours of the heap; the region
        // and the library are made once, so nothing grows with the rounds.
        assert!(
            mappings <= mappings_after_first + 2,
            "round {round}: {mappings} mappings, {mappings_after_first} after the first"
        );
    }
    program.send(b"q");
    assert_eq!(program.line(), "threads 8 errors 0");
    assert!(program.wait().success());
    let audit: Value = json(
        leaktrail()
            .arg("info")
            .arg(
                snapshots(&dir.join("rec-49"))
                    .last()
                    .expect("a snapshot at detach"),
            )
            .arg("--json"),
    );
    assert_eq!(audit["audit"]["present"], true, "{audit}");
}
