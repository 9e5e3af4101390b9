//! Single-snapshot analyses (issue 5): `leaks`, `caches`, `bufs`, `whatis`,
//! `refs --chain`, `dump`, against C fixtures whose answers are known by
//! construction (see the table at the top of `fixtures/leaks_roots.c`), and
//! mixed JS + native stacks under Node.
//!
//! Each target runs under `leaktrail run`, prints `ready PID ...` once its
//! state is built and waits on stdin; we snapshot it then. No sleeps.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::{
    self, assert_bad_input, fixture, leaktrail, preload_library, scratch, snapshot_into,
    snapshot_of, Pipe, Running,
};

/// A target running under `leaktrail run`.
struct Traced {
    run: Running,
    pid: i32,
    /// The rest of the ready line after the pid.
    ready: String,
}

impl Traced {
    fn start(argv: &[&str]) -> Traced {
        Self::start_with(&["--no-record"], argv)
    }

    fn start_with(run_flags: &[&str], argv: &[&str]) -> Traced {
        preload_library();
        let run = Running::start(
            leaktrail()
                .arg("run")
                .args(run_flags)
                .arg("--")
                .args(argv)
                .stdin(Stdio::piped()),
            Pipe::Stdout,
            "ready ",
        );
        let (pid, rest) = ready_pid(&run.ready);
        Traced {
            pid,
            ready: rest.to_string(),
            run,
        }
    }

    fn line(&mut self) -> String {
        self.run.line()
    }

    fn send(&mut self, b: &[u8]) {
        self.run.send(b);
    }

    fn snapshot(&self, out: &Path) {
        snapshot_of(self.pid, out, &[]);
    }

    /// A `key=0x...` value of the ready line.
    fn ready_addr(&self, key: &str) -> u64 {
        let v = self
            .ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.ready));
        u64::from_str_radix(v.trim_start_matches("0x"), 16).expect("hex")
    }

    fn finish(mut self) {
        self.send(b"q");
        self.run.wait();
    }
}

/// The pid of a `ready PID ...` line, and the rest after it.
fn ready_pid(line: &str) -> (i32, &str) {
    let rest = line.strip_prefix("ready ").expect("a ready line").trim();
    let (pid, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    (pid.parse().expect("pid"), rest)
}

/// The snapshot of `leaks_roots`, taken once per test run, and the address
/// of its 1012-byte holder.
pub(crate) fn roots_snapshot() -> &'static (PathBuf, u64) {
    static SNAP: OnceLock<(PathBuf, u64)> = OnceLock::new();
    SNAP.get_or_init(|| {
        let exe = fixture("leaks_roots", &[]);
        let dir = scratch("analyses_roots");
        let t = Traced::start(&[exe.to_str().expect("utf-8")]);
        let core = dir.join("roots.core");
        t.snapshot(&core);
        let holder = t.ready_addr("holder");
        t.finish();
        (core, holder)
    })
}

/// `leaktrail COMMAND SNAP ARGS...` for `args` = `[COMMAND, ARGS...]`.
fn on(args: &[&str], snap: &Path) -> Command {
    let mut cmd = leaktrail();
    cmd.arg(args[0]).arg(snap).args(&args[1..]);
    cmd
}

fn run(args: &[&str], snap: &Path) -> Output {
    on(args, snap).output().expect("run leaktrail")
}

fn json(args: &[&str], snap: &Path) -> Value {
    support::json(&mut on(args, snap))
}

/// Asserts that `leaktrail COMMAND SNAP ARGS...` refuses its input.
fn bad(args: &[&str], snap: &Path, needles: &[&str]) {
    assert_bad_input(&mut on(args, snap), needles);
}

fn tally(v: &Value) -> (u64, u64) {
    (
        v["bytes"].as_u64().expect("bytes"),
        v["blocks"].as_u64().expect("blocks"),
    )
}

/// (kind, bytes, blocks, top function) of every group.
fn groups(leaks: &Value) -> Vec<(String, u64, u64, String)> {
    leaks["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["kind"].as_str().expect("kind").to_string(),
                g["bytes"].as_u64().expect("bytes"),
                g["blocks"].as_u64().expect("blocks"),
                g["stack"][0]["function"]
                    .as_str()
                    .unwrap_or("??")
                    .to_string(),
            )
        })
        .collect()
}

fn kind_of(groups: &[(String, u64, u64, String)], function: &str) -> Vec<(String, u64, u64)> {
    groups
        .iter()
        .filter(|g| g.3 == function)
        .map(|g| (g.0.clone(), g.1, g.2))
        .collect()
}

fn g(kind: &str, bytes: u64, blocks: u64) -> (String, u64, u64) {
    (kind.to_string(), bytes, blocks)
}

#[test]
fn leaks_classifies_every_root_and_leak_kind_exactly() {
    let (snap, _) = roots_snapshot();
    let l = json(&["leaks", "--json"], snap);
    // Definite: the cycle's first block, the tree's root, two plain leaks.
    assert_eq!(tally(&l["definite"]), (1006 + 1007 + 2 * 1010, 4), "{l:#}");
    // Indirect: the cycle's second block and the tree's three children.
    assert_eq!(tally(&l["indirect"]), (1006 + 3 * 1008, 4));
    let gs = groups(&l);
    for (function, size) in [
        ("alloc_global", 1001),
        ("alloc_tls", 1002),
        ("alloc_on_thread", 1003),
        ("alloc_register", 1004),
        ("alloc_anon", 1009),
        ("alloc_holder", 1012),
        ("alloc_beside", 1013),
        ("alloc_big", 300000),
    ] {
        assert_eq!(
            kind_of(&gs, function),
            [g("reachable", size, 1)],
            "{function}"
        );
    }
    assert_eq!(kind_of(&gs, "alloc_interior"), [g("possible", 1005, 1)]);
    assert_eq!(kind_of(&gs, "alloc_tagged"), [g("possible", 1011, 1)]);
    // The compiler unrolls leak_plain's loop: two call sites, two stacks.
    let plain = kind_of(&gs, "leak_plain");
    assert!(plain.iter().all(|p| p.0 == "definite"), "{plain:?}");
    assert_eq!(
        (
            plain.iter().map(|p| p.1).sum::<u64>(),
            plain.iter().map(|p| p.2).sum::<u64>()
        ),
        (2020, 2)
    );
    assert_eq!(
        kind_of(&gs, "leak_cycle"),
        [g("definite", 1006, 1), g("indirect", 1006, 1)]
    );
    assert_eq!(
        kind_of(&gs, "leak_tree"),
        [g("definite", 1007, 1), g("indirect", 3024, 3)]
    );
    // Every group of the fixture's own names its allocating function first;
    // frames carry file and line from DWARF.
    let tree = support::allocated_in(&l, "groups", "leak_tree")
        .next()
        .expect("tree group");
    assert!(tree["stack"][0]["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("leaks_roots.c")));
    assert!(tree["stack"][0]["line"].as_u64().is_some());
    assert_eq!(tree["stack"][1]["function"], "main");
    // The possible class holds ours plus whatever the C library keeps by
    // interior pointers (glibc's dtv is pointed to at +16).
    assert!(tally(&l["possible"]).0 >= 1005 + 1011);

    // Our mmap and glibc's mapping of the big buffer are one mapping; its
    // part outside the buffer is still scanned as anonymous memory.
    let (snap, _) = roots_snapshot();
    let beside = json(
        &["refs", &format!("{:#x}", beside_target(snap)), "--json"],
        snap,
    );
    let r = &beside["refs"][0]["whatis"];
    assert!(
        ["chunks", "anon"].contains(&r["area"]["kind"].as_str().unwrap_or("")),
        "{beside:#}"
    );
}

/// The 1013-byte buffer held only from the mmap beside the big buffer.
fn beside_target(snap: &Path) -> u64 {
    let b = json(&["bufs", "--size", "1013..1013", "--json"], snap);
    b["buffers"][0]["addr"].as_u64().expect("the 1013 buffer")
}

/// Issue 11 (<https://github.com/leaktrail/leaktrail/issues/11>), item 4:
/// valgrind's loss records. The tree's definite root owns its three
/// children, the cycle's first block the second; plain leaks own nothing.
#[test]
fn issue_11_definite_groups_carry_the_indirect_bytes_they_own() {
    let (snap, _) = roots_snapshot();
    let l = json(&["leaks", "--json"], snap);
    let owned = |function: &str| -> Vec<(u64, u64, u64)> {
        support::allocated_in(&l, "groups", function)
            .filter(|g| g["kind"] == "definite")
            .map(|g| {
                (
                    g["bytes"].as_u64().expect("bytes"),
                    g["indirect_bytes"].as_u64().expect("indirect_bytes"),
                    g["indirect_blocks"].as_u64().expect("indirect_blocks"),
                )
            })
            .collect()
    };
    assert_eq!(owned("leak_tree"), [(1007, 3 * 1008, 3)], "{l:#}");
    assert_eq!(owned("leak_cycle"), [(1006, 1006, 1)], "{l:#}");
    // Two calls from main: two stacks, two groups.
    assert_eq!(owned("leak_plain"), [(1010, 0, 0); 2], "{l:#}");
    let text = String::from_utf8(run(&["leaks"], snap).stdout).expect("utf-8");
    assert!(
        text.contains(
            "definitely lost: 4,031 (1,007 direct, 3,024 indirect) bytes in 1 (+3 indirect) blocks"
        ),
        "{text}"
    );
}

#[test]
fn leaks_roots_flag_drops_root_kinds() {
    let (snap, _) = roots_snapshot();
    let with_roots = |roots| groups(&json(&["leaks", "--json", "--roots", roots], snap));
    let no_regs = with_roots("stacks,globals,tls,anon");
    assert_eq!(
        kind_of(&no_regs, "alloc_register"),
        [g("definite", 1004, 1)]
    );
    let no_anon = with_roots("registers,stacks,globals,tls");
    assert_eq!(kind_of(&no_anon, "alloc_anon"), [g("definite", 1009, 1)]);
    assert_eq!(kind_of(&no_anon, "alloc_global"), [g("reachable", 1001, 1)]);
}

#[test]
fn leaks_function_filter_fail_on_and_text() {
    let (snap, _) = roots_snapshot();
    let only = json(&["leaks", "--json", "--function", "leak_tree"], snap);
    let gs = groups(&only);
    assert_eq!(gs.len(), 2, "{gs:?}");
    assert!(gs.iter().all(|g| g.3 == "leak_tree"));

    let out = run(&["leaks", "--fail-on", "definite"], snap);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("definitely lost:"), "{text}");
    assert!(text.contains("leak_tree"), "{text}");
    // Single-threaded scanning finds the same.
    let one = json(&["leaks", "--json", "--threads", "1"], snap);
    let two = json(&["leaks", "--json"], snap);
    for k in ["definite", "indirect", "possible", "reachable"] {
        assert_eq!(one[k], two[k], "{k}");
    }
}

/// Issue 11 (<https://github.com/leaktrail/leaktrail/issues/11>), item 5:
/// `--function` limits what `--fail-on` counts. `leak_plain` leaks;
/// `alloc_global` only holds reachable memory, though the snapshot as a
/// whole has definite leaks.
#[test]
fn issue_11_function_limits_what_fail_on_counts() {
    let (snap, _) = roots_snapshot();
    let status = |args: &[&str]| run(args, snap).status.code();
    let fail_on = ["leaks", "--fail-on", "definite", "--function"];
    assert_eq!(status(&[&fail_on[..], &["leak_plain"]].concat()), Some(3));
    assert_eq!(status(&[&fail_on[..], &["alloc_global"]].concat()), Some(0));
    // A reachable-only function passes --fail-on possible too; an
    // interior pointer's block is possibly lost.
    let possible = ["leaks", "--fail-on", "possible", "--function"];
    assert_eq!(
        status(&[&possible[..], &["alloc_global"]].concat()),
        Some(0)
    );
    assert_eq!(
        status(&[&possible[..], &["alloc_interior"]].concat()),
        Some(3)
    );
    // With no function, the whole snapshot counts, as before.
    assert_eq!(status(&["leaks", "--fail-on", "definite"]), Some(3));
}

#[test]
fn refs_invmask_chain_finds_the_holder_and_the_global() {
    let (snap, holder) = roots_snapshot();
    let bufs = json(&["bufs", "--size", "1011..1011", "--json"], snap);
    let target = bufs["buffers"][0]["addr"]
        .as_u64()
        .expect("the tagged target");
    let t = format!("{target:#x}");

    // Without the mask nothing refers to it: the only pointer is tagged.
    let plain = json(&["refs", &t, "--json"], snap);
    assert_eq!(plain["refs"].as_array().expect("refs").len(), 0);

    let masked = json(&["refs", &t, "--invmask", "0x7", "--json"], snap);
    let refs = masked["refs"].as_array().expect("refs");
    assert_eq!(refs.len(), 1, "{masked:#}");
    assert_eq!(refs[0]["at"], holder + 16);
    assert_eq!(refs[0]["value"], target | 1);
    assert_eq!(refs[0]["whatis"]["buffer"]["addr"], *holder);
    assert_eq!(refs[0]["whatis"]["buffer"]["offset"], 16);

    // The same word through --mask and --range.
    for how in [&["--mask", "0xfffffffffffffff8"][..], &["--range", "8"]] {
        let mut args = vec!["refs", t.as_str(), "--json"];
        args.extend_from_slice(how);
        let r = json(&args, snap);
        let refs = r["refs"].as_array().expect("refs");
        assert_eq!(refs.len(), 1, "{how:?}: {r:#}");
        assert_eq!(refs[0]["at"], holder + 16);
    }

    let chains = json(&["refs", &t, "--invmask", "0x7", "--chain", "--json"], snap);
    let list = chains["chains"].as_array().expect("chains");
    let via_global = list
        .iter()
        .find(|c| c["hops"][0]["whatis"]["symbol"][0] == "g_holder")
        .unwrap_or_else(|| panic!("no chain from the global g_holder: {chains:#}"));
    let hops = via_global["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[0]["holder"], "global");
    assert_eq!(hops[1]["at"], holder + 16);
    assert_eq!(
        hops[1]["whatis"]["buffer"]["stack"][0]["function"],
        "alloc_holder"
    );
    assert_eq!(via_global["target"]["addr"], target);
    assert_eq!(via_global["target"]["stack"][0]["function"], "alloc_tagged");

    let text =
        String::from_utf8_lossy(&run(&["refs", &t, "--invmask", "7", "--chain"], snap).stdout)
            .into_owned();
    assert!(text.contains("global g_holder"), "{text}");

    // A leaked tree's child: no root leads there.
    let child = json(&["bufs", "--size", "1008..1008", "--json"], snap);
    let child = child["buffers"][0]["addr"].as_u64().expect("a tree child");
    let leaked = json(&["refs", &format!("{child:#x}"), "--chain", "--json"], snap);
    assert_eq!(leaked["unreached"], true, "{leaked:#}");
}

#[test]
fn whatis_and_dump_describe_buffers_globals_and_stacks() {
    let (snap, holder) = roots_snapshot();
    let w = json(&["whatis", &format!("{:#x}", holder + 16), "--json"], snap);
    assert_eq!(w["buffer"]["addr"], *holder);
    assert_eq!(w["buffer"]["offset"], 16);
    assert_eq!(w["buffer"]["size"], 1012);
    assert_eq!(w["buffer"]["stack"][0]["function"], "alloc_holder");

    let text = String::from_utf8_lossy(&run(&["whatis", &format!("{holder:#x}")], snap).stdout)
        .into_owned();
    assert!(text.contains("a live buffer of 1,012 bytes"), "{text}");

    let words = json(&["dump", &format!("{holder:#x}"), "32", "--json"], snap);
    assert_eq!(words["schema_version"], 1);
    let words = words["words"].as_array().expect("words");
    assert_eq!(words.len(), 4);
    assert_eq!(words[2]["meaning"]["kind"], "tagged");
    assert_eq!(words[2]["meaning"]["tag"], 1);
    assert_eq!(words[0]["meaning"]["kind"], "zero");

    // The global that holds the holder, by its address from refs.
    let r = json(&["refs", &format!("{holder:#x}"), "--json"], snap);
    let global = r["refs"]
        .as_array()
        .expect("refs")
        .iter()
        .find(|x| x["whatis"]["symbol"][0] == "g_holder")
        .expect("g_holder refers to the holder");
    assert_eq!(global["whatis"]["area"]["kind"], "module-data");

    // The tracer's own region says what it is.
    let info = support::info_json(snap);
    let header = info["audit"]["headers"][0].as_u64().expect("audit header");
    let w = json(&["whatis", &format!("{:#x}", header + 64), "--json"], snap);
    assert_eq!(w["audit"], true);
    assert_eq!(w["area"]["kind"], "audit");

    // The 1003 buffer is held only by the other thread's stack: its one
    // referrer above the stack pointer is described as that thread's
    // stack. (Below it, dead words of the calls the thread made, the
    // tracer's hooks among them, may still hold the address: not a hold.)
    let b = json(&["bufs", "--size", "1003..1003", "--json"], snap);
    let thread_buf = &b["buffers"][0];
    let r = json(
        &[
            "refs",
            &format!("{:#x}", thread_buf["addr"].as_u64().expect("addr")),
            "--json",
        ],
        snap,
    );
    let on_stack: Vec<&Value> = r["refs"]
        .as_array()
        .expect("refs")
        .iter()
        .filter(|x| {
            x["whatis"]["area"]["kind"] == "stack"
                && x["whatis"]["stack"]["sp_offset"].as_i64().expect("offset") >= 0
        })
        .collect();
    assert_eq!(on_stack.len(), 1, "{r:#}");
    let w = &on_stack[0]["whatis"];
    assert_eq!(w["stack"]["tid"], thread_buf["tid"]);
    // Unwound by CFI through libc's read() into the thread's function.
    assert_eq!(w["stack"]["frame"]["function"], "thread_main", "{w:#}");
    let text = String::from_utf8_lossy(
        &run(
            &[
                "whatis",
                &format!("{:#x}", on_stack[0]["at"].as_u64().expect("at")),
            ],
            snap,
        )
        .stdout,
    )
    .into_owned();
    assert!(
        text.contains(&format!("on the stack of thread {}", thread_buf["tid"])),
        "{text}"
    );
}

#[test]
fn caches_names_the_growing_4k_class_first_with_exact_counts() {
    let exe = fixture("leaks_grow", &[]);
    let dir = scratch("analyses_caches");
    let mut t = Traced::start(&[exe.to_str().expect("utf-8")]);
    let a = dir.join("a.core");
    let b = dir.join("b.core");
    t.snapshot(&a);
    t.send(b"g");
    assert_eq!(t.line().trim(), "grew 1700");
    t.snapshot(&b);
    t.finish();

    let c = support::json(leaktrail().args(["caches"]).arg(&a).arg(&b).arg("--json"));
    let first = &c["classes"][0];
    assert_eq!(first["size"], 4096, "{c:#}");
    assert_eq!(first["delta"]["live_count"], 1530);
    assert_eq!(first["delta"]["live_bytes"], 1530 * 4000);
    assert_eq!(first["delta"]["allocs"], 1530);
    assert_eq!(first["delta"]["frees"], 0);
    let per = first["snapshots"].as_array().expect("per snapshot");
    assert_eq!(per.len(), 2);
    let before = per[0]["live_count"].as_u64().expect("count");
    assert!(before >= 170, "{before}");
    assert_eq!(per[1]["live_count"].as_u64(), Some(before + 1530));
    assert_eq!(first["grew_most"], true);
    // The churn class (100 bytes) is level.
    let churn = support::entry(&c, "classes", "size", 112);
    assert_eq!(churn["delta"]["live_count"], 0);
    assert_eq!(churn["delta"]["allocs"], 100);
    assert_eq!(churn["delta"]["frees"], 100);

    let text = String::from_utf8_lossy(
        &leaktrail()
            .arg("caches")
            .arg(&a)
            .arg(&b)
            .output()
            .expect("caches")
            .stdout,
    )
    .into_owned();
    let first_row = text.lines().nth(1).expect("a row");
    assert!(first_row.trim_start().starts_with("4,096"), "{text}");
    assert!(
        first_row.contains("+1,530") && first_row.contains("grew most"),
        "{text}"
    );

    // bufs: the class's buffers grouped by stack name grow_cache.
    let g = json(
        &["bufs", "--class", "4096", "--group-by", "stack", "--json"],
        &b,
    );
    // Two call sites of grow_cache: the 1530 of the 'g' and the first 170.
    let top = &g["groups"][0];
    assert_eq!(top["count"], 1530);
    assert_eq!(top["bytes"], 1530 * 4000);
    assert_eq!(top["stack"][0]["function"], "grow_cache");
    let grow: u64 = support::allocated_in(&g, "groups", "grow_cache")
        .map(|x| x["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(grow, 1700);
    let some = json(
        &[
            "bufs",
            "--size",
            "4000..4000",
            "--stack-contains",
            "grow_cache",
            "--json",
        ],
        &b,
    );
    assert_eq!(some["buffers"].as_array().expect("buffers").len(), 1700);
    let none = json(
        &[
            "bufs",
            "--size",
            "4000..4000",
            "--stack-contains",
            "churn",
            "--json",
        ],
        &b,
    );
    assert_eq!(none["buffers"].as_array().expect("buffers").len(), 0);
    let v = run(&["bufs", "--class", "4096", "-v"], &a);
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(text.contains("grow_cache"), "{text}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let (snap, _) = roots_snapshot();
    bad(
        &["whatis", "0x10"],
        snap,
        &["0x10", "not in captured memory"],
    );
    bad(&["refs", "0x10"], snap, &["0x10"]);
    bad(
        &["refs", "0x1000", "--mask", "banana"],
        snap,
        &["--mask", "not a number"],
    );
    bad(&["dump", "0xzz"], snap, &["not a number"]);
    bad(&["bufs", "--size", "10-20"], snap, &["LO..HI"]);
    bad(&["leaks", "--roots", "stacks,heap"], snap, &["heap"]);

    // A snapshot of a process that was not traced and whose heap cannot
    // be walked (static: no libc.so.6 to find malloc's state in; a
    // dynamic one is walked, see `walker.rs`).
    let exe = fixture("leaks_grow", &["-static"]);
    let dir = scratch("analyses_untraced");
    let untraced = Running::start(
        Command::new(&exe).stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready ",
    );
    let core = dir.join("untraced.core");
    snapshot_of(ready_pid(&untraced.ready).0, &core, &[]);
    drop(untraced);
    for cmd in [
        &["leaks"][..],
        &["caches"],
        &["bufs"],
        &["whatis", "0x1000"],
    ] {
        bad(
            cmd,
            &core,
            &[
                "no leaktrail audit region",
                "could not be walked",
                "no glibc mapped",
                "leaktrail run",
            ],
        );
    }
}

#[test]
fn node_buffers_show_their_js_function_below_the_native_frames() {
    let script = support::repo_root().join("fixtures/leaks_node.js");
    let dir = scratch("analyses_node");
    let t = Traced::start(&[
        "node",
        "--perf-basic-prof",
        "--interpreted-frames-native-stack",
        script.to_str().expect("utf-8"),
    ]);
    let core = dir.join("node.core");
    t.snapshot(&core);
    t.finish();
    let b = json(
        &[
            "bufs",
            "--size",
            "50001..50001",
            "--group-by",
            "stack",
            "--json",
        ],
        &core,
    );
    let groups = b["groups"].as_array().expect("groups");
    let total: u64 = groups
        .iter()
        .map(|g| g["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(total, 20, "{b:#}");
    for g in groups {
        let stack = g["stack"].as_array().expect("stack");
        let js = stack
            .iter()
            .position(|f| f["kind"] == "js" && f["function"] == "allocateBuffers")
            .unwrap_or_else(|| panic!("no JS allocateBuffers frame in {stack:#?}"));
        let f = &stack[js];
        assert!(
            f["file"]
                .as_str()
                .is_some_and(|p| p.ends_with("leaks_node.js")),
            "{f}"
        );
        assert_eq!(f["line"], 14);
        // Node's allocator and V8's C++ sit above it, innermost first.
        assert_eq!(stack[0]["kind"], "native");
        assert!(
            stack[..js].iter().any(|f| f["function"]
                .as_str()
                .is_some_and(|n| n.contains("ArrayBufferAllocator"))),
            "{stack:#?}"
        );
    }
    let text = String::from_utf8_lossy(
        &run(
            &["bufs", "--size", "50001..50001", "--group-by", "stack"],
            &core,
        )
        .stdout,
    )
    .into_owned();
    assert!(text.contains("JS allocateBuffers "), "{text}");

    // whatis on that frame's address names the JS function.
    let stack = groups[0]["stack"].as_array().expect("stack");
    let js = stack
        .iter()
        .find(|f| f["function"] == "allocateBuffers")
        .expect("JS frame");
    let w = json(
        &[
            "whatis",
            &format!("{:#x}", js["address"].as_u64().expect("address")),
            "--json",
        ],
        &core,
    );
    let named = [&w["code"], &w["jit"]]
        .iter()
        .any(|f| f["kind"] == "js" && f["function"] == "allocateBuffers");
    assert!(named, "{w:#}");
}

#[test]
fn a_module_changed_on_disk_is_reported_not_misread() {
    let dir = scratch("analyses_changed");
    let exe = dir.join("changing");
    let src = support::repo_root().join("fixtures/leaks_grow.c");
    let build = |extra: &str| {
        let ok = Command::new("gcc")
            .args(["-g", "-O1", "-Wl,--build-id", extra, "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .expect("gcc")
            .success();
        assert!(ok);
    };
    build("-DVARIANT=1");
    let t = Traced::start(&[exe.to_str().expect("utf-8")]);
    let core = dir.join("changed.core");
    t.snapshot(&core);
    t.finish();
    // Same path, different code: a rebuild after the snapshot.
    std::fs::write(
        dir.join("pad.c"),
        "int leaktrail_pad(int x) { return x * 3; }\n",
    )
    .expect("write");
    let ok = Command::new("gcc")
        .args(["-g", "-O0", "-Wl,--build-id", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg(dir.join("pad.c"))
        .status()
        .expect("gcc")
        .success();
    assert!(ok);
    let l = json(&["leaks", "--json", "--reachable"], &core);
    let warnings = l["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("changing") && w.contains("changed on disk"))),
        "{warnings:?}"
    );
    // Its frames stay as module+offset rather than taking the new file's
    // names.
    let frames: Vec<&Value> = l["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["stack"].as_array().expect("stack").iter())
        .filter(|f| f["module"] == "changing")
        .collect();
    assert!(!frames.is_empty());
    assert!(frames.iter().all(|f| f["function"].is_null()), "{frames:?}");
}

#[test]
fn leaks_and_refs_refuse_a_snapshot_without_memory() {
    let exe = fixture("leaks_grow", &[]);
    let dir = scratch("analyses_tables");
    let t = Traced::start(&[exe.to_str().expect("utf-8")]);
    let core = dir.join("tables.core");
    snapshot_of(t.pid, &core, &["--memory", "tables"]);
    t.finish();
    // The audit alone answers caches and bufs.
    let c = json(&["caches", "--json"], &core);
    assert_eq!(c["classes"][0]["size"], 4096);
    bad(
        &["leaks"],
        &core,
        &["--memory tables", "leaktrail snapshot"],
    );
    bad(&["refs", "0x1000"], &core, &["--memory tables"]);
}

#[test]
fn caches_reads_every_snapshot_of_a_recording() {
    let exe = fixture("leaks_grow", &[]);
    let dir = scratch("analyses_recording");
    let rec = dir.join("rec");
    let rec_s = rec.to_str().expect("utf-8");
    let mut t = Traced::start_with(
        &["--out", rec_s, "--every", "0"],
        &[exe.to_str().expect("utf-8")],
    );
    let snap = || snapshot_into(&rec, &[]);
    snap();
    t.send(b"g");
    assert_eq!(t.line().trim(), "grew 1700");
    snap();
    t.finish();
    let c = support::json(leaktrail().arg("caches").arg(&rec).arg("--json"));
    let first = &c["classes"][0];
    assert_eq!(first["size"], 4096, "{c:#}");
    assert!(first["snapshots"].as_array().expect("per snapshot").len() >= 2);
    assert_eq!(first["delta"]["live_count"], 1530);
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    assert_bad_input(leaktrail().arg("caches").arg(&empty), &["no snapshots"]);
}

#[test]
fn leaks_on_gdbs_gcore_of_a_traced_process_gives_the_same_answer() {
    let exe = fixture("leaks_roots", &[]);
    let dir = scratch("analyses_gcore");
    let t = Traced::start(&[exe.to_str().expect("utf-8")]);
    let core = support::gcore(t.pid, &dir.join("gcore"));
    t.finish();
    let l = json(&["leaks", "--json"], &core);
    assert_eq!(tally(&l["definite"]), (1006 + 1007 + 2 * 1010, 4), "{l:#}");
    assert_eq!(tally(&l["indirect"]), (1006 + 3 * 1008, 4));
    let gs = groups(&l);
    for f in [
        "alloc_global",
        "alloc_tls",
        "alloc_on_thread",
        "alloc_register",
        "alloc_anon",
    ] {
        assert_eq!(kind_of(&gs, f).len(), 1, "{f}");
        assert_eq!(kind_of(&gs, f)[0].0, "reachable", "{f}");
    }
}
