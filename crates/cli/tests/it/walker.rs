//! The glibc heap walker (issue 12, items 1, 2 and 4; issue 11, item 1's
//! allocator state): on a traced process its chunks in use are exactly the
//! audit's live blocks; on a process that was never traced (`gcore`, or
//! `leaktrail snapshot` of a plain program) the heap analyses run on its
//! chunks, without stacks.
//!
//! Each fixture prints `ready PID` once its heap is built and waits for a
//! byte on stdin; we snapshot it then. No sleeps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{
    self, fixture, info_json, leaktrail, preload_library, scratch, snapshot_of, Pipe, Running,
};

/// A fixture started (under the tracer when `traced`), ready.
struct Target {
    run: Running,
    pid: i32,
}

impl Target {
    fn start(traced: bool, exe: &Path, args: &[&str]) -> Target {
        let mut cmd = if traced {
            preload_library();
            let mut c = leaktrail();
            c.args(["run", "--no-record", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).stdin(Stdio::piped());
        let run = Running::start(&mut cmd, Pipe::Stdout, "ready ");
        let pid = run.ready["ready ".len()..]
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("ready PID");
        Target { run, pid }
    }

    fn finish(mut self) {
        self.run.send(b"x");
        let status = self.run.wait();
        assert!(status.success(), "the fixture exited with {status}");
    }
}

/// `walker_mix N` traced, snapshotted: the snapshot's path.
fn traced_mix(threads: usize) -> PathBuf {
    let exe = fixture("walker_mix", &[]);
    let dir = scratch(&format!("walker_mix{threads}"));
    let t = Target::start(true, &exe, &[&threads.to_string()]);
    let core = dir.join("mix.core");
    snapshot_of(t.pid, &core, &[]);
    t.finish();
    core
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The self-check of `info`: the walk and the audit agree exactly, with
/// every kind of free chunk in play in every thread's arena.
fn assert_walk_agrees(core: &Path, threads: u64) {
    let info = info_json(core);
    let w = &info["heap_walk"];
    let each = threads + 1;
    assert_eq!(w["source"], "symbols", "{w:#}");
    assert_eq!(w["problems"], serde_json::json!([]), "{w:#}");
    let d = &w["difference"];
    assert_eq!(u(&d["only_walked"]), 0, "{d:#}");
    assert_eq!(u(&d["only_audited"]), 0, "{d:#}");
    assert_eq!(u(&d["size_mismatch"]), 0, "{d:#}");
    // What walker_mix.c keeps and frees, per thread (see its header), and
    // each other thread's DTV (pthread_create callocs it).
    let live = 46 * each + threads;
    let audit = &info["audit"];
    assert_eq!(u(&audit["live_blocks"]), live, "{audit:#}");
    assert_eq!(u(&w["chunks"]), live + u(&d["tracer_own"]), "{w:#}");
    assert_eq!(u(&w["arenas"]), each, "{w:#}");
    assert_eq!(u(&w["mmapped"]), 2 * each, "{w:#}");
    assert_eq!(u(&w["tcache_chunks"]), 20 * each, "{w:#}");
    assert_eq!(u(&w["fastbin_chunks"]), 8 * each, "{w:#}");
    assert!(u(&w["free_chunks"]) >= each, "bins and top chunks: {w:#}");
    let text = support::stdout(leaktrail().arg("info").arg(core));
    assert!(
        text.contains("the walk and the audit agree on every live block"),
        "{text}"
    );
}

#[test]
fn walker_finds_exactly_the_audits_blocks_in_one_thread() {
    assert_walk_agrees(&traced_mix(0), 0);
}

#[test]
fn walker_finds_exactly_the_audits_blocks_across_threads_and_arenas() {
    assert_walk_agrees(&traced_mix(3), 3);
}

/// `leaks --json` of `core`: (definite bytes, blocks), (possible bytes,
/// blocks), (reachable bytes, blocks).
fn classes(core: &Path) -> [(u64, u64); 3] {
    let l = support::json(leaktrail().arg("leaks").arg(core).arg("--json"));
    let t = |k: &str| (u(&l[k]["bytes"]), u(&l[k]["blocks"]));
    [t("definite"), t("possible"), t("reachable")]
}

#[test]
fn issue_11_the_newest_block_leaked_is_definitely_lost_not_kept_by_mallocs_top() {
    let exe = fixture("leaks_newest", &[]);
    let dir = scratch("walker_newest");
    // Traced: the audit's blocks, requested sizes.
    let t = Target::start(true, &exe, &[]);
    let core = dir.join("traced.core");
    snapshot_of(t.pid, &core, &[]);
    t.finish();
    assert_eq!(classes(&core), [(40, 1), (0, 0), (400, 4)]);
    // Untraced, gdb's gcore: the walker's blocks, with usable sizes (40
    // for 40, 104 for 100).
    let t = Target::start(false, &exe, &[]);
    let core = support::gcore(t.pid, &dir.join("gcore"));
    t.finish();
    assert_eq!(classes(&core), [(40, 1), (0, 0), (416, 4)]);
}

/// What `malloc_usable_size` gives a request of `n` bytes on x86_64
/// glibc: the chunk (`n` + 8, rounded up to 16, at least 32) less 8.
pub(crate) fn usable(n: u64) -> u64 {
    ((n + 8 + 15) & !15).max(32) - 8
}

#[test]
fn leaks_on_a_gcore_of_an_untraced_process_finds_the_known_lost_blocks() {
    // leaks_roots, never traced: its leaks (fixtures/leaks_roots.c) are
    // found from glibc's heap alone, with usable sizes.
    let exe = fixture("leaks_roots", &[]);
    let dir = scratch("walker_untraced_roots");
    let t = Target::start(false, &exe, &[]);
    let core = support::gcore(t.pid, &dir.join("gcore"));
    t.finish();
    let l = support::json(leaktrail().arg("leaks").arg(&core).arg("--json"));
    let tally = |k: &str| (u(&l[k]["bytes"]), u(&l[k]["blocks"]));
    // The cycle's leader, the tree's root, the two plain leaks.
    let definite = usable(1006) + usable(1007) + 2 * usable(1010);
    assert_eq!(tally("definite"), (definite, 4), "{l:#}");
    // The cycle's other block and the tree's three children.
    assert_eq!(tally("indirect"), (usable(1006) + 3 * usable(1008), 4));
    let groups = l["groups"].as_array().expect("groups");
    assert!(
        groups
            .iter()
            .all(|g| g["stack"] == serde_json::json!([]) && g["stack_id"] == 0),
        "walked blocks have no stacks"
    );
    // The tree's root owns its children: its group carries them.
    let tree = groups
        .iter()
        .find(|g| g["kind"] == "definite" && u(&g["indirect_blocks"]) > 0)
        .expect("a definite group owning indirect blocks");
    assert_eq!(u(&tree["indirect_bytes"]), usable(1006) + 3 * usable(1008));
    assert_eq!(tree["size_class"], 1024, "{tree:#}");
}

#[test]
fn cpp_objects_in_an_untraced_heap_are_typed_by_their_class() {
    let exe = fixture("walker_types", &[]);
    let dir = scratch("walker_types");
    let t = Target::start(false, &exe, &[]);
    let widget = t
        .run
        .ready
        .rsplit("widget=")
        .next()
        .expect("widget=")
        .to_string();
    let core = support::gcore(t.pid, &dir.join("gcore"));
    t.finish();
    // bufs: stackless buffers grouped by type (see fixtures/walker_types.cc).
    let b =
        support::json(
            leaktrail()
                .arg("bufs")
                .arg(&core)
                .args(["--group-by", "stack", "--json"]),
        );
    let group = |name: &str| {
        let g = b["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["type_name"] == name)
            .unwrap_or_else(|| panic!("no {name} group in {b:#}"));
        (u(&g["count"]), u(&g["bytes"]))
    };
    assert_eq!(group("Widget"), (4, 4 * usable(24)));
    assert_eq!(group("geo::Circle"), (2, 2 * usable(16)));
    assert_eq!(group("<C string>"), (1, usable(40)));
    assert_eq!(group("<zero-filled>"), (1, usable(200)));
    assert_eq!(group("<pointer array>"), (1, usable(32)));
    // leaks: the one leaked Widget, by class.
    let l = support::json(leaktrail().arg("leaks").arg(&core).arg("--json"));
    let definite: Vec<&Value> = l["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["kind"] == "definite")
        .collect();
    assert_eq!(definite.len(), 1, "{l:#}");
    assert_eq!(definite[0]["type_name"], "Widget");
    assert_eq!(
        (u(&definite[0]["bytes"]), u(&definite[0]["blocks"])),
        (usable(24), 1)
    );
    // whatis: the type in text and JSON.
    let text = support::stdout(leaktrail().arg("whatis").arg(&core).arg(&widget));
    assert!(
        text.contains("a live buffer of 24 bytes (Widget)"),
        "{text}"
    );
    let w = support::json(
        leaktrail()
            .arg("whatis")
            .arg(&core)
            .arg(&widget)
            .arg("--json"),
    );
    assert_eq!(w["buffer"]["type_name"], "Widget", "{w:#}");
}

/// `fixtures/walker_growth.cc`, never traced: each step adds 1000 `Grower`
/// objects (208 bytes) and 100 buffers of 3000 bytes; 500 `Flat` objects
/// (40 bytes) and 300 buffers of 1000 bytes stay.
const GROWERS: u64 = 1000;
const BUFS: u64 = 100;

/// The one frame of a walked site in a JSON stack.
fn type_frame(stack: &Value) -> &str {
    assert_eq!(stack.as_array().map(Vec::len), Some(1), "{stack:#}");
    assert_eq!(stack[0]["kind"], "type", "{stack:#}");
    stack[0]["function"].as_str().expect("function")
}

/// The counts of a JSON series.
fn counts(series: &Value) -> Vec<u64> {
    series
        .as_array()
        .expect("series")
        .iter()
        .map(|p| u(&p["count"]))
        .collect()
}

#[test]
fn growth_across_gcores_of_an_untraced_process_ranks_what_grows_and_every_view_agrees() {
    let exe = fixture("walker_growth", &[]);
    let dir = scratch("walker_growth");
    let mut t = Target::start(false, &exe, &[]);
    let first = support::gcore(t.pid, &dir.join("first"));
    t.run.send(b"\n");
    assert_eq!(t.run.line(), "step 2");
    let second = support::gcore(t.pid, &dir.join("second"));
    t.run.close_stdin();
    assert!(t.run.wait().success());

    // growth: the buffers of 3000 (more bytes) first, then the class.
    let g = support::json(
        leaktrail()
            .arg("growth")
            .args([&first, &second])
            .arg("--json"),
    );
    assert_eq!(g["stackless"], true);
    let suspects = g["suspects"].as_array().expect("suspects");
    let ranked: Vec<(&str, u64, Vec<u64>)> = suspects
        .iter()
        .map(|s| {
            (
                type_frame(&s["stack"]),
                u(&s["class"]),
                counts(&s["series"]),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        [
            ("[size 3072]", 3072, vec![BUFS, 2 * BUFS]),
            ("[type] Grower", 224, vec![GROWERS, 2 * GROWERS]),
        ],
        "only what grows is a suspect: {g:#}"
    );
    assert_eq!(suspects[0]["series"][1]["bytes"], 2 * BUFS * usable(3000));
    assert_eq!(suspects[1]["series"][1]["bytes"], 2 * GROWERS * usable(208));
    let text = support::stdout(leaktrail().arg("growth").args([&first, &second]));
    assert!(
        text.contains("no stacks: the process was not traced"),
        "{text}"
    );
    assert!(text.contains("#2 224 B: 1,000 → 2,000 buffers"), "{text}");
    assert!(text.contains("     [type] Grower\n"), "{text}");

    // caches: the same totals, the same change.
    let c = support::json(
        leaktrail()
            .arg("caches")
            .args([&first, &second])
            .arg("--json"),
    );
    for i in 0..2 {
        assert_eq!(
            c["totals"][i]["live_bytes"],
            g["snapshots"][i]["live_bytes"]
        );
        assert_eq!(
            c["totals"][i]["live_count"],
            g["snapshots"][i]["live_count"]
        );
    }
    let class = |size: u64| {
        c["classes"]
            .as_array()
            .expect("classes")
            .iter()
            .find(|r| u(&r["size"]) == size)
            .unwrap_or_else(|| panic!("no class {size} in {c:#}"))
    };
    assert_eq!(u(&class(3072)["delta"]["live_count"]), BUFS);
    assert_eq!(u(&class(224)["delta"]["live_count"]), GROWERS);
    assert_eq!(class(1024)["delta"]["live_count"], 0);

    // flamegraph: one frame per type, the same bytes.
    let folded = support::stdout(leaktrail().arg("flamegraph").arg(&second).arg("--folded"));
    let line = |name: &str| -> u64 {
        folded
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {folded}"))
    };
    assert_eq!(line("[type] Grower"), 2 * GROWERS * usable(208));
    assert_eq!(line("[size 3072]"), 2 * BUFS * usable(3000));
    assert_eq!(line("[type] Flat"), 500 * usable(40));
    assert_eq!(line("[size 1024]"), 300 * usable(1000));
    let total: u64 = folded
        .lines()
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("bytes")
        })
        .sum();
    assert_eq!(total, u(&c["totals"][1]["live_bytes"]));
    let diff = support::stdout(
        leaktrail()
            .arg("flamegraph")
            .arg(&second)
            .arg("--diff")
            .arg(&first)
            .arg("--folded"),
    );
    let grower = GROWERS * usable(208);
    assert!(
        diff.contains(&format!("[type] Grower {grower} {}\n", 2 * grower)),
        "{diff}"
    );

    // pprof: decoded independently, the same totals and the type's sample.
    let out = dir.join("second.pb.gz");
    support::stdout(leaktrail().arg("pprof").arg(&second).arg("-o").arg(&out));
    let p: Value = serde_json::from_str(&support::stdout(
        Command::new("python3")
            .arg(support::repo_root().join("crates/cli/tests/it/pprof_decode.py"))
            .arg(&out),
    ))
    .expect("decoder json");
    assert_eq!(p["totals"][0], c["totals"][1]["live_count"]);
    assert_eq!(p["totals"][1], c["totals"][1]["live_bytes"]);
    let sample = p["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| s["stack"][0]["function"] == "[type] Grower")
        .unwrap_or_else(|| panic!("no Grower sample in {p:#}"));
    assert_eq!(
        sample["values"],
        serde_json::json!([2 * GROWERS, 2 * grower])
    );
}

#[test]
fn report_of_an_untraced_recording_names_what_grows_and_says_there_are_no_stacks() {
    let exe = fixture("walker_growth", &[]);
    let rec = scratch("walker_growth_report").join("rec");
    let mut t = Target::start(false, &exe, &[]);
    // watch -p makes the recording; snapshots of the untraced process go
    // into it.
    let mut watch = Running::start(
        leaktrail()
            .args([
                "watch",
                "-p",
                &t.pid.to_string(),
                "--interval",
                "100ms",
                "--out",
            ])
            .arg(&rec)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        Pipe::Stderr,
        "leaktrail: watching pid",
    );
    const SNAPSHOTS: usize = 5;
    for k in 1..=SNAPSHOTS {
        support::snapshot_into(&rec, &[]);
        if k < SNAPSHOTS {
            t.run.send(b"\n");
            assert_eq!(t.run.line(), format!("step {}", k + 1));
        }
    }
    t.run.close_stdin();
    assert!(t.run.wait().success());
    assert!(watch.wait().success());
    let page = rec.join("report.html");
    let out = support::stdout(leaktrail().arg("report").arg(&rec).arg("-o").arg(&page));
    assert!(
        out.starts_with("growth above noise: [size 3072] keeps 3072 B buffers: 100 → 500 buffers"),
        "{out}"
    );
    assert!(
        out.contains("no stacks: the process was not traced"),
        "{out}"
    );
    let html = std::fs::read_to_string(&page).expect("report");
    assert!(html.contains("[type] Grower"));
    assert!(html.contains("no stacks: the process was not traced"));
}
