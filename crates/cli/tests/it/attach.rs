//! `leaktrail attach` and `detach` (issue 12, item 3): the tracer injected
//! into a program that has been running, blocks from before the attach
//! found by the heap walk, later ones with their stacks, and the program
//! left as it was at detach.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{
    assert_bad_input, fixture, functions, json, leaktrail, scratch, snapshot_into, stdout, success,
    Pipe, Running,
};

/// `leaktrail attach -p PID --every 0 --out DIR [extra...]`, once it says
/// it attached.
fn attach(pid: i32, dir: &Path, extra: &[&str]) -> Running {
    Running::start(
        leaktrail()
            .args(["attach", "-p", &pid.to_string(), "--every", "0"])
            .args(["--interval", "100ms", "--out"])
            .arg(dir)
            .args(extra)
            .env("LEAKTRAIL_SAMPLE_SEED", crate::support::SAMPLE_SEED),
        Pipe::Stderr,
        &format!("leaktrail: attached to process {pid} "),
    )
}

/// `exe` started and ready, with `attach` (recording into the scratch
/// directory `name`, `extra` flags) attached to it: (the program, its pid,
/// the attach, the recording).
fn start_attached(exe: &Path, name: &str, extra: &[&str]) -> (Running, i32, Running, PathBuf) {
    let dir = scratch(name).join("rec");
    let program = ready(exe);
    let pid = program.pid();
    let attached = attach(pid, &dir, extra);
    (program, pid, attached, dir)
}

/// The fixture `exe`, once it says it is ready (its early blocks exist),
/// reading commands from a pipe.
fn ready(exe: &Path) -> Running {
    Running::start(
        Command::new(exe).stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready",
    )
}

/// Round `k` of `attach_grow`'s leak, then a snapshot into `dir`.
fn grow_and_snapshot(program: &mut Running, dir: &Path, k: u64) {
    program.send(b"g");
    assert_eq!(program.line(), grew(k));
    snapshot_into(dir, &[]);
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
    let mut program = ready(&exe);
    let pid = program.pid();
    let mut attached = attach(pid, &dir, &[]);
    grow_and_snapshot(&mut program, &dir, 1);
    grow_and_snapshot(&mut program, &dir, 2);
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
    let mut program = ready(&exe);
    let before = (maps_of(program.pid()), fds_of(program.pid()));
    refuse(
        program.pid(),
        &["cannot attach", "no libc.so.6", "left untouched"],
    );
    assert_eq!((maps_of(program.pid()), fds_of(program.pid())), before);
    program.send(b"g");
    assert_eq!(program.line(), grew(1));

    let seccomp = fixture("snap_seccomp", &[]);
    let mut filtered = ready(&seccomp);
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
    let mut program = ready(&exe);
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

/// `fixtures/attach_types.cc`: before the attach, 300 `Early` objects (48
/// bytes) kept and 20 `Forgotten` ones (24 bytes) lost.
const EARLY: u64 = 300;
const FORGOTTEN: u64 = 20;

/// Issue 12, items 2 and 3: the blocks from before the attach are named
/// by their class, with exact counts and bytes, in every view, and every
/// view says why they have no stack.
#[test]
fn issue_12_blocks_from_before_the_attach_are_typed_by_class_in_every_view() {
    use crate::walker::usable;
    let exe = fixture("attach_types", &[]);
    let dir = scratch("attach-types").join("rec");
    let mut program = ready(&exe);
    let pid = program.pid();
    let mut attached = attach(pid, &dir, &[]);
    program.send(b"g");
    assert_eq!(program.line(), "grew 1");
    snapshot_into(&dir, &[]);
    program.send(b"f");
    assert_eq!(program.line(), "freed 100");
    program.send(b"gg");
    assert_eq!(program.line(), "grew 2");
    assert_eq!(program.line(), "grew 3");
    snapshot_into(&dir, &[]);
    detach(pid, &mut attached);
    program.send(b"q");
    assert!(program.wait().success());
    let snaps = snapshots(&dir);
    let (first, second) = (&snaps[0], &snaps[1]);
    let early = |n: u64| (n, n * usable(48));
    let forgotten = (FORGOTTEN, FORGOTTEN * usable(24));

    // leaks: the lost objects by class, definitely lost, marked as from
    // before the attach; the kept ones reachable.
    let l = json(leaktrail().arg("leaks").arg(second).arg("--json"));
    let group = |kind: &str, class: &str| {
        let g = l["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["kind"] == kind && g["type_name"] == class)
            .unwrap_or_else(|| panic!("no {kind} {class} group in {l:#}"));
        assert_eq!(g["before_attach"], true, "{g:#}");
        assert_eq!(g["stack"].as_array().map(Vec::len), Some(0), "{g:#}");
        (g["blocks"].as_u64().unwrap(), g["bytes"].as_u64().unwrap())
    };
    assert_eq!(group("definite", "Forgotten"), forgotten);
    assert_eq!(group("reachable", "Early"), early(EARLY - 100));
    let text = stdout(leaktrail().arg("leaks").arg(second));
    assert!(
        text.contains(&format!(
            "definitely lost: {} bytes in {FORGOTTEN} blocks, oldest",
            forgotten.1
        )) && text.contains(", Forgotten\n    (no stack: allocated before leaktrail attach"),
        "{text}"
    );

    // bufs: a group per class, beside the later blocks by stack.
    let b = json(
        leaktrail()
            .arg("bufs")
            .arg(first)
            .args(["--group-by", "stack", "--json"]),
    );
    let bgroup = |class: &str| {
        let g = b["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["type_name"] == class && g["before_attach"] == true)
            .unwrap_or_else(|| panic!("no {class} group in {b:#}"));
        (g["count"].as_u64().unwrap(), g["bytes"].as_u64().unwrap())
    };
    assert_eq!(bgroup("Early"), early(EARLY));
    assert_eq!(bgroup("Forgotten"), forgotten);
    assert_eq!(by_stack(first, "leak_after_attach").0, (16, 16 * 96));

    // flamegraph: one frame per class, the exact bytes, said why.
    let folded = |snap: &Path| stdout(leaktrail().arg("flamegraph").arg(snap).arg("--folded"));
    let line = |folded: &str, name: &str| -> u64 {
        folded
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {folded}"))
    };
    assert_eq!(line(&folded(first), "[type] Early"), early(EARLY).1);
    assert_eq!(line(&folded(second), "[type] Early"), early(EARLY - 100).1);
    assert_eq!(line(&folded(second), "[type] Forgotten"), forgotten.1);
    let svg = dir.join("fg.svg");
    success(
        leaktrail()
            .arg("flamegraph")
            .arg(second)
            .arg("-o")
            .arg(&svg),
    );
    let svg = std::fs::read_to_string(&svg).expect("svg");
    assert!(svg.contains("from before leaktrail attach have no stacks: they predate it"));

    // pprof: decoded independently, the class's sample and the comment.
    let pb = dir.join("second.pb.gz");
    success(leaktrail().arg("pprof").arg(second).arg("-o").arg(&pb));
    let p: Value = serde_json::from_str(&stdout(
        Command::new("python3")
            .arg(crate::support::repo_root().join("crates/cli/tests/it/pprof_decode.py"))
            .arg(&pb),
    ))
    .expect("decoder json");
    let sample = p["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| s["stack"][0]["function"] == "[type] Forgotten")
        .unwrap_or_else(|| panic!("no Forgotten sample in {p:#}"));
    // inuse_objects and inuse_space (no per-site counts before the attach).
    assert_eq!(
        sample["values"],
        serde_json::json!([forgotten.0, forgotten.1, 0, 0])
    );
    assert!(
        p["comments"].as_array().expect("comments").iter().any(|c| c
            .as_str()
            .is_some_and(|c| c.contains("from before leaktrail attach have no stacks"))),
        "{p:#}"
    );

    // growth: the later site first; the class that shrank is no suspect;
    // each snapshot counts its blocks from before, and the text says why.
    let g = json(leaktrail().arg("growth").arg(&dir).arg("--json"));
    assert!(
        functions(&g["suspects"][0]["stack"])
            .iter()
            .any(|f| f == "leak_after_attach"),
        "{g:#}"
    );
    assert!(
        g["suspects"]
            .as_array()
            .expect("suspects")
            .iter()
            .all(|s| s["stack"][0]["function"] != "[type] Early"),
        "{g:#}"
    );
    let before = |i: usize| g["snapshots"][i]["before_attach"]["blocks"].as_u64();
    assert_eq!(before(0).zip(before(1)).map(|(a, b)| a - b), Some(100));
    let text = stdout(leaktrail().arg("growth").arg(&dir));
    assert!(
        text.contains("from before leaktrail attach have no stacks: they predate it"),
        "{text}"
    );

    // report: the class on the page, the note printed.
    let page = dir.join("report.html");
    let out = stdout(leaktrail().arg("report").arg(&dir).arg("-o").arg(&page));
    assert!(
        out.contains("from before leaktrail attach have no stacks"),
        "{out}"
    );
    let html = std::fs::read_to_string(&page).expect("report");
    assert!(html.contains("[type] Early"));
    assert!(html.contains("from before leaktrail attach have no stacks"));
}

/// Issue 12, item 3: a process that exits while attached gets its last
/// snapshot at its exit, as `run` takes one; one killed outright ends the
/// recording cleanly, saying so, the snapshots taken before kept.
#[test]
fn issue_12_a_process_that_exits_while_attached_gets_its_last_snapshot_at_exit() {
    let exe = fixture("attach_grow", &[]);
    let dir = scratch("attach-exit").join("rec");
    let mut program = ready(&exe);
    let pid = program.pid();
    let mut attached = attach(pid, &dir, &[]);
    grow_and_snapshot(&mut program, &dir, 1);
    program.send(b"gq");
    assert_eq!(program.line(), grew(2));
    assert!(program.wait().success());
    let rest = attached.rest();
    assert!(attached.wait().success(), "attach failed: {rest:?}");
    assert!(
        rest.iter().any(|l| l
            == &format!(
                "leaktrail: process {pid} exited with status 0; its last snapshot was taken at its exit"
            )),
        "{rest:?}"
    );
    let snaps = snapshots(&dir);
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(
        snaps[1].to_string_lossy().ends_with("0002-exit.core"),
        "{snaps:?}"
    );
    // At exit, with every block still live: both rounds at their function.
    assert_eq!(by_stack(&snaps[1], "leak_after_attach").0, (32, 32 * 96));
    let leaks = json(leaktrail().arg("leaks").arg(&snaps[1]).arg("--json"));
    assert_eq!(leaks["definite"]["blocks"], 10 + 32, "{leaks:#}");

    // Killed: no exit, no snapshot there; the one before is kept.
    let dir = scratch("attach-killed").join("rec");
    let mut program = ready(&exe);
    let pid = program.pid();
    let mut attached = attach(pid, &dir, &[]);
    grow_and_snapshot(&mut program, &dir, 1);
    // SAFETY: kill takes no pointers; `pid` is our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(!program.wait().success());
    let rest = attached.rest();
    assert!(attached.wait().success(), "attach failed: {rest:?}");
    let snaps = snapshots(&dir);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(
        rest.iter().any(|l| l
            == &format!(
                "leaktrail: process {pid} ended without calling exit (killed by a signal, or _exit): no snapshot at its end; the last one taken, {}, is kept",
                snaps[0].display()
            )),
        "{rest:?}"
    );
    assert_eq!(by_stack(&snaps[0], "leak_after_attach").0, (16, 16 * 96));
}

/// Issue 12, item 3 and issue 13, item 4: `attach --sample` samples as
/// `run --sample` does; the estimates are within their stated error (four
/// standard deviations, see `sampling.rs`) of the blocks the fixture made.
#[test]
fn issue_12_attach_sample_gives_estimates_within_their_error() {
    use crate::sampling::{bound, group, groups};
    const RATE: u64 = 16 * 1024;
    let exe = fixture("attach_types", &[]);
    let dir = scratch("attach-sample").join("rec");
    let mut program = ready(&exe);
    let pid = program.pid();
    let rate = RATE.to_string();
    let mut attached = attach(pid, &dir, &["--memory", "tables", "--sample", &rate]);
    program.send(b"s");
    assert_eq!(program.line(), "kept");
    snapshot_into(&dir, &["--memory", "tables"]);
    detach(pid, &mut attached);
    program.send(b"q");
    assert!(program.wait().success());
    let doc = groups(&snapshots(&dir)[0]);
    assert_eq!(doc["sample_rate"], RATE, "{doc:#}");
    let mut recorded = 0;
    for (leaf, n, size) in [
        ("small_after_attach", 400_000u64, 24u64),
        ("mid_after_attach", 40_000, 1000),
    ] {
        let g = group(&doc, leaf);
        let count = g["count"].as_f64().expect("count");
        let bytes = g["bytes"].as_f64().expect("bytes");
        let err = bound(n, size, RATE);
        assert!(
            (count - n as f64).abs() <= err,
            "{leaf}: estimated {count} blocks, the fixture keeps {n} (bound ±{err:.0})"
        );
        assert!(
            (bytes - (n * size) as f64).abs() <= err * size as f64,
            "{leaf}: estimated {bytes} bytes, the fixture keeps {} (bound ±{:.0})",
            n * size,
            err * size as f64
        );
        recorded += doc["buffers"]
            .as_array()
            .expect("buffers")
            .iter()
            .filter(|b| b["stack_id"] == g["stack_id"])
            .count();
    }
    // A sample: far fewer records than blocks.
    assert!(
        recorded > 100 && recorded < 440_000 / 50,
        "{recorded} blocks recorded"
    );
}

/// Issue 15, item 1: `attach --out s3://BUCKET/PREFIX` streams as `run
/// --out s3://` does: snapshots taken into the URL beside the recording,
/// the one at exit uploaded by it, the series too; `growth URL` then ranks
/// the site that grows after the attach first.
#[test]
fn issue_15_attach_into_s3_then_growth_from_the_url_ranks_the_growing_site_first() {
    use crate::fleet::{Seaweed, BUCKET};
    let s3 = Seaweed::start("attach_s3");
    let prefix = "attached/grow-1";
    let url = format!("s3://{BUCKET}/{prefix}");
    let exe = fixture("attach_grow", &[]);
    let mut program = ready(&exe);
    let pid = program.pid();
    let mut attached = Running::start(
        s3.leaktrail()
            .args(["attach", "-p", &pid.to_string(), "--every", "0"])
            .args(["--interval", "100ms", "--memory", "tables", "--out", &url]),
        Pipe::Stderr,
        &format!("leaktrail: attached to process {pid} "),
    );
    const STEPS: u64 = 3;
    for k in 1..=STEPS {
        program.send(b"g");
        assert_eq!(program.line(), grew(k));
        success(
            s3.leaktrail()
                .args([
                    "snapshot",
                    "-p",
                    &pid.to_string(),
                    "--memory",
                    "tables",
                    "-o",
                ])
                .arg(format!("{url}/snapshots/{k:04}.core")),
        );
    }
    program.send(b"q");
    assert!(program.wait().success());
    let rest = attached.rest();
    assert!(attached.wait().success(), "attach failed: {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains(&format!("recording in {url} (1 snapshot)"))),
        "{rest:?}"
    );
    // The recording's own files went up: its snapshot at exit, its series.
    assert!(s3
        .get(&format!("{prefix}/snapshots/0001-exit.core"))
        .is_some());
    assert!(s3.get(&format!("{prefix}/meta.json")).is_some());
    assert!(s3.get(&format!("{prefix}/samples.jsonl")).is_some());

    let g = json(s3.leaktrail().args(["growth", "--json"]).arg(&url));
    assert_eq!(
        g["snapshots"].as_array().map(Vec::len),
        Some(STEPS as usize),
        "the snapshots taken while it ran: {g:#}"
    );
    let first = &g["suspects"][0];
    assert!(
        functions(&first["stack"])
            .iter()
            .any(|f| f == "leak_after_attach"),
        "{g:#}"
    );
    let last = first["series"].as_array().and_then(|s| s.last()).cloned();
    assert_eq!(
        last.map(|p| (p["count"].clone(), p["bytes"].clone())),
        Some((Value::from(16 * STEPS), Value::from(16 * 96 * STEPS)))
    );
}

fn status_field(pid: i32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Issue 12, item 3: the kernel refuses ptrace (EPERM): one line, exit 2,
/// the process not stopped, not traced, its maps and descriptors as they
/// were, its output as it would have been.
///
/// As root: the target runs without `CAP_SYS_PTRACE`, and leaktrail runs
/// with the real user `nobody`, its effective user still root and without
/// `CAP_SYS_PTRACE` either. It may read the target's `/proc` files (the
/// kernel checks its effective user and capabilities there, which cover
/// the target's), but `PTRACE_SEIZE` checks the real user and refuses.
/// Not root: pid 1 is another user's, whose maps the kernel will not show.
#[test]
fn issue_12_a_process_whose_ptrace_is_refused_is_left_as_it_was() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert_bad_input(
            leaktrail().args(["attach", "-p", "1"]),
            &["cannot attach", "the kernel refused", "left untouched"],
        );
        return;
    }
    let drop_ptrace = ["--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace"];
    let exe = fixture("attach_grow", &[]);
    let mut program = Running::start(
        Command::new("setpriv")
            .args(drop_ptrace)
            .arg(&exe)
            .stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready",
    );
    let pid = program.pid();
    let before = (maps_of(pid), fds_of(pid));
    // No --out: the default directory, in `cwd`, is made only once
    // attached (and `nobody` may not write there: access(2) checks the
    // real user).
    let cwd = scratch("attach-eperm");
    let err = assert_bad_input(
        Command::new("setpriv")
            .arg("--ruid=65534")
            .args(drop_ptrace)
            .arg(env!("CARGO_BIN_EXE_leaktrail"))
            .args(["attach", "-p", &pid.to_string()])
            .current_dir(&cwd),
        &[
            &format!("cannot attach to process {pid}"),
            "the kernel refused to let us ptrace it (EPERM)",
            "CAP_SYS_PTRACE",
            "left untouched",
        ],
    );
    assert_eq!((maps_of(pid), fds_of(pid)), before, "{err}");
    assert_eq!(status_field(pid, "TracerPid:"), "0");
    assert!(
        status_field(pid, "State:").starts_with('S'),
        "not stopped: {}",
        status_field(pid, "State:")
    );
    assert_eq!(std::fs::read_dir(&cwd).expect("cwd").count(), 0);
    program.send(b"g");
    assert_eq!(program.line(), grew(1));
    program.send(b"q");
    assert!(program.wait().success());
}

/// Issue 16: `attach` redirects C++'s allocation operators too. Linked
/// with jemalloc, tcmalloc or mimalloc, a program's `new` and `delete` are
/// the allocator's own, which never call malloc: after the attach they
/// are recorded with their stacks, and detach puts the program's GOT
/// entries back as they were (`fixtures/attach_operators.cc` prints where
/// its entry for `operator new` points).
#[test]
fn issue_16_attach_records_cxx_new_and_delete_on_every_allocator() {
    const KEPT: u64 = 8;
    const OBJ_SIZE: u64 = 200;
    const ARRAYS: u64 = 5;
    const ARRAY_SIZE: u64 = 3000;
    for (name, exe, preload) in crate::tracer::on_every_allocator("attach_operators") {
        // (attach refuses an allocator in the executable: the next test.)
        if preload.is_some() || name.contains("static") {
            continue;
        }
        let dir = scratch(&format!("attach-operators-{}", name.replace(' ', "-"))).join("rec");
        let mut program = ready(&exe);
        let pid = program.pid();
        program.send(b"p");
        let before = program.line();
        let mut attached = attach(pid, &dir, &[]);
        program.send(b"p");
        let during = program.line();
        assert_ne!(
            during, before,
            "{name}: the entry still points where it did"
        );
        program.send(b"na");
        assert_eq!(program.line(), format!("made {KEPT}"), "{name}");
        assert_eq!(program.line(), format!("arrays {ARRAYS}"), "{name}");
        snapshot_into(&dir, &[]);
        detach(pid, &mut attached);
        program.send(b"p");
        assert_eq!(
            program.line(),
            before,
            "{name}: detach left the entry changed"
        );
        // The program goes on allocating with its own operators.
        program.send(b"n");
        assert_eq!(program.line(), format!("made {}", 2 * KEPT), "{name}");
        program.send(b"q");
        assert!(program.wait().success(), "{name}");

        let snap = &snapshots(&dir)[0];
        // Each site's blocks, allocated right there: below it only
        // `operator new` frames (libstdc++'s, which call malloc), then main.
        // 8 of the 12 `new`s: the 4 deletes were recorded too.
        let doc = json(
            leaktrail()
                .arg("bufs")
                .arg(snap)
                .args(["--group-by", "stack", "--json"]),
        );
        for (function, count, size) in [
            ("new_after_attach", KEPT, OBJ_SIZE),
            ("array_after_attach", ARRAYS, ARRAY_SIZE),
        ] {
            let (mut blocks, mut bytes) = (0, 0);
            for g in doc["groups"].as_array().expect("groups") {
                let names = functions(&g["stack"]);
                let here = names.iter().position(|n| n == function).is_some_and(|at| {
                    names[..at].iter().all(|n| n.starts_with("operator new"))
                        && names.get(at + 1).map(String::as_str) == Some("main")
                });
                if here {
                    blocks += g["count"].as_u64().expect("count");
                    bytes += g["bytes"].as_u64().expect("bytes");
                }
            }
            assert_eq!(
                (blocks, bytes),
                (count, count * size),
                "{name}: {function}: {doc:#}"
            );
        }
    }
}

/// A sampled attach's class counters count from the attach: the program's
/// frees of the 100 `Early` objects it made before took their class below
/// what is live (read as 0). With the process's memory, the counts come
/// from the heap walk: the 200 `Early` objects left are there.
#[test]
fn issue_12_attach_sample_counts_each_class_from_the_heap() {
    use crate::walker::usable;
    let exe = fixture("attach_types", &[]);
    let (mut program, pid, mut attached, dir) =
        start_attached(&exe, "attach-sample-classes", &["--sample", "16384"]);
    program.send(b"f");
    assert_eq!(program.line(), "freed 100");
    snapshot_into(&dir, &[]);
    detach(pid, &mut attached);
    program.send(b"q");
    assert!(program.wait().success());
    let doc = json(
        leaktrail()
            .arg("caches")
            .arg(&snapshots(&dir)[0])
            .arg("--json"),
    );
    let early = usable(48);
    let class = doc["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .filter(|c| c["size"].as_u64().is_some_and(|s| s >= early))
        .min_by_key(|c| c["size"].as_u64())
        .expect("a class for Early");
    let live = class["live_count"].as_u64().expect("live_count");
    assert!(live >= EARLY - 100, "{class:#}");
    assert!(
        class["live_bytes"].as_u64().expect("live_bytes") >= (EARLY - 100) * early,
        "{class:#}"
    );
}

/// Issue 16, item 2: `attach` names the program's allocator in the header
/// as `run` does (it did not: `info` guessed it from the libraries
/// mapped), and refuses a program whose executable defines `malloc`
/// itself (an allocator linked statically): `run` diverts such an
/// allocator before `main`, but in a running program a thread may be
/// inside one of its functions. The program goes on as it was.
#[test]
fn issue_16_attach_names_the_allocator_and_refuses_one_in_the_executable() {
    let linked = fixture("attach_grow", &["-ljemalloc"]);
    let (mut program, pid, mut attached, dir) = start_attached(&linked, "attach-jemalloc", &[]);
    grow_and_snapshot(&mut program, &dir, 1);
    detach(pid, &mut attached);
    let info = stdout(leaktrail().arg("info").arg(&snapshots(&dir)[0]));
    let line = info
        .lines()
        .find(|l| l.starts_with("allocator"))
        .unwrap_or_else(|| panic!("no allocator line: {info}"));
    assert!(
        line.contains("jemalloc") && line.contains("named by the tracer"),
        "{info}"
    );

    let static_jemalloc = fixture("attach_grow", &crate::tracer::STATIC_JEMALLOC);
    let mut program = ready(&static_jemalloc);
    let out = scratch("attach-static-jemalloc").join("rec");
    assert_bad_input(
        leaktrail()
            .args(["attach", "-p", &program.pid().to_string(), "--out"])
            .arg(&out),
        &["cannot attach", "defines malloc itself", "leaktrail run"],
    );
    assert!(!out.exists());
    program.send(b"g");
    assert_eq!(program.line(), grew(1));
}
