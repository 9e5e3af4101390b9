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
