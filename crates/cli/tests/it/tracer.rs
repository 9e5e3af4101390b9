//! The tracer (issue 3): the audit read back holds exactly the survivors,
//! with stacks that match libgcc's; robustness cases behave identically
//! traced and untraced; real programs run unchanged.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{
    assert_bad_input, fixture, fixture_library, leaktrail, preload_library, scratch, ChildGuard,
    Pipe, Running,
};

/// Flags for fixtures the tracer must unwind by CFI alone.
const NO_FP: &[&str] = &["-fomit-frame-pointer", "-fno-optimize-sibling-calls"];

/// Runs `argv` under `leaktrail run --dump-at-exit` and returns (stdout,
/// exit code, dump).
fn run_traced(dir: &Path, extra: &[&str], argv: &[&str]) -> (String, i32, Option<Value>) {
    run_traced_with(dir, &[], extra, argv)
}

/// [`run_traced`] with variables added to leaktrail's environment.
fn run_traced_with(
    dir: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
    argv: &[&str],
) -> (String, i32, Option<Value>) {
    let dump = dir.join("audit.json");
    let _ = std::fs::remove_file(&dump);
    let out = leaktrail()
        .envs(env.iter().copied())
        .args(["run", "--no-record"])
        .args(extra)
        .arg("--dump-at-exit")
        .arg(&dump)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("run leaktrail");
    let value = std::fs::read(&dump)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("dump is JSON"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
        value,
    )
}

fn run_plain(argv: &[&str]) -> (String, i32) {
    run_plain_with(&[], argv)
}

/// Runs `exe` untraced, then under `leaktrail run --every 0 --out rec`:
/// both must exit 0 with the same output. Returns `run`'s stderr.
fn record_like_untraced(exe: &Path, rec: &Path, what: &str) -> String {
    let (plain, plain_code) = run_plain_with(&[], &[path_str(exe)]);
    assert_eq!(plain_code, 0, "{what}: {plain}");
    let out = leaktrail()
        .args(["run", "--every", "0", "--out"])
        .arg(rec)
        .arg("--")
        .arg(exe)
        .stdin(Stdio::null())
        .output()
        .expect("run leaktrail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), plain, "{what}");
    stderr
}

fn run_plain_with(env: &[(&str, &str)], argv: &[&str]) -> (String, i32) {
    let out = Command::new(argv[0])
        .envs(env.iter().copied())
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .expect("run untraced");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Live blocks of a dump whose symbolized stack passes through `function`,
/// as (size, tid, function names of the stack).
fn blocks_through(dump: &Value, function: &str) -> Vec<(u64, u64, Vec<String>)> {
    let frames = &dump["frames"];
    dump["audit"]["live"]
        .as_array()
        .expect("live array")
        .iter()
        .filter_map(|b| {
            let names: Vec<String> = frames[b["stack"].to_string()]
                .as_array()?
                .iter()
                .map(|f| f["function"].as_str().unwrap_or("??").to_string())
                .collect();
            names.iter().any(|n| n == function).then(|| {
                (
                    b["size"].as_u64().expect("size"),
                    b["tid"].as_u64().expect("tid"),
                    names,
                )
            })
        })
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn audit_holds_exactly_the_survivors_with_their_stacks() {
    let exe = fixture("tracer_survivors", NO_FP);
    let dir = scratch("tracer_survivors");
    // Closed stdin: the fixture's fgets returns at once after "ready".
    let (stdout, code, dump) = run_traced(&dir, &[], &[path_str(&exe)]);
    assert_eq!(code, 0, "{stdout}");
    let dump = dump.expect("the at-exit dump was written");

    // traced_alloc's own printf buffer also has make_small on its stack;
    // the fixture's blocks are the ones traced_alloc allocated itself.
    let small: Vec<_> = blocks_through(&dump, "make_small")
        .into_iter()
        .filter(|b| b.2[0] == "traced_alloc")
        .collect();
    assert_eq!(small.len(), 50, "half of the 100 small blocks survive");
    for (size, _tid, names) in &small {
        assert_eq!(*size, 48);
        assert_eq!(
            &names[..5],
            ["traced_alloc", "make_small", "level2", "level1", "main"],
            "the stack from the allocating function up to main"
        );
    }
    let big = blocks_through(&dump, "make_big");
    assert_eq!(big.len(), 7);
    let main_tid = small[0].1;
    for (size, tid, names) in &big {
        assert_eq!(*size, 4000);
        assert_eq!(&names[..2], ["traced_alloc", "make_big"]);
        assert_ne!(*tid, main_tid, "allocated on the second thread");
    }
    // The class counters agree with the blocks.
    let class = |size: u64| {
        dump["audit"]["classes"]
            .as_array()
            .expect("classes")
            .iter()
            .find(|c| c["size"] == size)
            .cloned()
            .expect("class")
    };
    assert!(class(48)["live_count"].as_u64().expect("count") >= 50);
    assert!(class(48)["frees"].as_u64().expect("frees") >= 50);
    assert_eq!(dump["audit"]["counters"]["dropped_allocs"], 0);
    assert_eq!(dump["audit"]["busy_shards"], 0);
}

#[test]
fn stacks_match_libgcc_unwinder_through_code_without_frame_pointers() {
    let exe = fixture("tracer_survivors", NO_FP);
    let dir = scratch("tracer_libgcc");
    let (stdout, _code, dump) = run_traced(&dir, &[], &[path_str(&exe)]);
    let dump = dump.expect("dump");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("libgcc "))
        .expect("the fixture printed libgcc's stack");
    let (block, libgcc) = block_and_stack(line);
    assert_stack_is_libgccs(&dump, block, &libgcc, 5);
}

/// The block address and the return addresses on a fixture's line
/// `WORD BLOCK PC PC ...` (`(nil)`, libgcc's end, left out).
fn block_and_stack(line: &str) -> (u64, Vec<u64>) {
    let words: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter(|w| w.starts_with("0x"))
        .map(|w| u64::from_str_radix(&w[2..], 16).expect("hex"))
        .collect();
    (words[0], words[1..].to_vec())
}

/// The recorded stack of the live `block` is the one libgcc's unwinder
/// found (`libgcc`), whose callers of the allocating function are at
/// least `at_least` frames.
fn assert_stack_is_libgccs(dump: &Value, block: u64, libgcc: &[u64], at_least: usize) {
    let live = dump["audit"]["live"].as_array().expect("live");
    let rec = live
        .iter()
        .find(|b| b["addr"].as_u64() == Some(block))
        .expect("the block is live");
    let ours: Vec<u64> = dump["audit"]["stacks"][rec["stack"].to_string()]
        .as_array()
        .expect("stack")
        .iter()
        .map(|v| v.as_u64().expect("pc"))
        .collect();
    // libgcc's first frame is the allocating function's call of
    // _Unwind_Backtrace, ours its call of malloc; from its caller on, every
    // return address must be the same. libgcc also reports the tracer's
    // own wrapper of main (the hand-over at exit), which the tracer leaves
    // out of what it records: at most that one frame may be missing from
    // ours.
    let theirs: Vec<u64> = libgcc[1..]
        .iter()
        .copied()
        .filter(|a| ours.contains(a))
        .collect();
    assert!(
        libgcc.len() - 1 - theirs.len() <= 1,
        "ours {ours:x?} libgcc {libgcc:x?}"
    );
    assert!(
        theirs.len() >= at_least,
        "the allocating function's callers"
    );
    assert_eq!(
        &ours[1..=theirs.len()],
        &theirs[..],
        "ours {ours:x?} libgcc {libgcc:x?}"
    );
}

#[test]
fn issue_13_stacks_that_change_under_the_memo_match_libgccs_for_every_block() {
    // Every round re-enters the same outer frames with another rbp (which
    // none of them uses) and ends at another leaf: the stack memo must
    // replay the outer part and still give each block its own stack.
    let exe = fixture("tracer_memo", NO_FP);
    let dir = scratch("tracer_memo");
    let (stdout, code, dump) = run_traced(&dir, &[], &[path_str(&exe)]);
    assert_eq!(code, 0, "{stdout}");
    let dump = dump.expect("dump");
    let blocks: Vec<_> = stdout
        .lines()
        .filter(|l| l.starts_with("block "))
        .map(block_and_stack)
        .collect();
    assert_eq!(blocks.len(), 200);
    for (block, libgcc) in &blocks {
        // The leaf's callers: 13 descend frames, with_rbp, main.
        assert_stack_is_libgccs(&dump, *block, libgcc, 15);
    }
    let leaves: std::collections::BTreeSet<u64> = blocks.iter().map(|b| b.1[0]).collect();
    assert_eq!(leaves.len(), 8, "eight leaves");
}

#[test]
fn frame_pointer_and_no_stack_modes_still_audit_sizes() {
    let exe = fixture(
        "tracer_survivors",
        &["-fno-omit-frame-pointer", "-fno-optimize-sibling-calls"],
    );
    let dir = scratch("tracer_fp");
    let (_, code, dump) = run_traced(&dir, &["--unwind", "fp"], &[path_str(&exe)]);
    assert_eq!(code, 0);
    let dump = dump.expect("dump");
    assert_eq!(dump["audit"]["unwind"], "fp");
    let small: Vec<_> = blocks_through(&dump, "make_small")
        .into_iter()
        .filter(|b| b.2[0] == "traced_alloc")
        .collect();
    assert_eq!(small.len(), 50);
    assert_eq!(&small[0].2[..2], ["traced_alloc", "make_small"]);

    let (_, _, dump) = run_traced(&dir, &["--unwind", "none"], &[path_str(&exe)]);
    let dump = dump.expect("dump");
    let n48 = dump["audit"]["live"]
        .as_array()
        .expect("live")
        .iter()
        .filter(|b| b["size"] == 48 && b["stack"] == 0)
        .count();
    assert!(n48 >= 50);
}

/// Runs a robustness mode traced and untraced: same output, same status.
fn same_traced_and_untraced(name: &str, argv: &[&str]) -> Option<Value> {
    let dir = scratch(&format!("tracer_robust_{name}"));
    let (plain_out, plain_code) = run_plain(argv);
    let (traced_out, traced_code, dump) = run_traced(&dir, &[], argv);
    assert_eq!(
        traced_out, plain_out,
        "{name}: output differs under the tracer"
    );
    assert_eq!(
        traced_code, plain_code,
        "{name}: status differs under the tracer"
    );
    dump
}

fn robust() -> PathBuf {
    fixture("tracer_robust", NO_FP)
}

#[test]
fn threads_created_and_exiting_fast() {
    let exe = robust();
    let dump = same_traced_and_untraced("threads", &[path_str(&exe), "threads"]).expect("dump");
    let kept = blocks_through(&dump, "keep_block");
    assert_eq!(kept.len(), 200);
    assert!(kept
        .iter()
        .all(|(size, _, names)| *size == 24 && names[1] == "thread_body"));
    let tids: std::collections::HashSet<u64> = kept.iter().map(|k| k.1).collect();
    assert!(tids.len() > 8, "blocks carry the ids of many threads");
}

#[test]
fn fork_child_keeps_an_audit_of_its_own_heap() {
    let exe = robust();
    let dump_path = scratch("tracer_fork").join("audit.json");
    let mut child = Running::start(
        leaktrail()
            .args(["run", "--no-record", "--dump-at-exit"])
            .arg(&dump_path)
            .arg("--")
            .args([path_str(&exe), "fork"]),
        Pipe::Stdout,
        "child ",
    );
    let pid: i32 = child.ready["child ".len()..].parse().expect("pid");
    // The child waits for SIGUSR1, so its audit is stable while we read it.
    let live = leaktrail_capture::memory::LiveProcess::open(pid).expect("child maps");
    let audit = leaktrail_analysis::audit_dump::read_live(&live.memory, &live.mappings, pid, None)
        .expect("child audit");
    let json = serde_json::to_value(leaktrail_report::json::AuditDumpDocument::from(&audit))
        .expect("json");
    assert_eq!(
        json["audit"]["pid"], pid,
        "the child's region names the child"
    );
    assert_eq!(
        blocks_through(&json, "parent_keep").len(),
        5,
        "5 of the parent's 10 freed by the child"
    );
    assert_eq!(blocks_through(&json, "child_keep").len(), 5);
    // SAFETY: kill sends a signal to the child we are waiting for.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    assert_eq!(child.rest(), ["fork ok child status 7"]);
    let status = child.wait();
    assert_eq!(status.code(), Some(5));
    let parent: Value =
        serde_json::from_slice(&std::fs::read(&dump_path).expect("dump")).expect("json");
    assert_eq!(blocks_through(&parent, "parent_keep").len(), 10);
    assert_eq!(blocks_through(&parent, "child_keep").len(), 0);
}

#[test]
fn exec_posix_spawn_and_vfork() {
    let exe = robust();
    same_traced_and_untraced("exec", &[path_str(&exe), "exec"]);
    same_traced_and_untraced("spawn", &[path_str(&exe), "spawn"]).expect("dump");
}

#[test]
fn signals_delivered_inside_the_tracer() {
    let exe = robust();
    let dump = same_traced_and_untraced("signal", &[path_str(&exe), "signal"]).expect("dump");
    assert_eq!(
        blocks_through(&dump, "loop_alloc").len(),
        0,
        "every loop block was freed"
    );
}

#[test]
fn dlopen_and_dlclose_of_a_library_that_allocates() {
    let exe = robust();
    let lib = fixture_library("tracer_plugin", ".so", &[]);
    let dump = same_traced_and_untraced("dlopen", &[path_str(&exe), "dlopen", path_str(&lib)])
        .expect("dump");
    let live_of = |size: u64| {
        dump["audit"]["live"]
            .as_array()
            .expect("live")
            .iter()
            .filter(|b| b["size"] == size)
            .count()
    };
    assert_eq!(live_of(104), 6, "3 blocks per load, kept across dlclose");
    // The second load is still mapped at exit: at least its frames resolve
    // (the first load's do too when the loader maps it at the same place).
    let resolved = blocks_through(&dump, "plugin_alloc");
    assert!(resolved.len() >= 3, "{resolved:?}");
    assert!(resolved.iter().all(|b| b.0 == 104));
    // The constructor runs inside dlopen, before the tracer's table knows
    // the library: its blocks still get their whole stack, from the
    // allocating function through the loader's call of the constructor
    // and dlopen up to main.
    let ctor: Vec<_> = blocks_through(&dump, "ctor_keep")
        .into_iter()
        .filter(|b| b.2[0] == "ctor_keep")
        .collect();
    assert!(ctor.len() >= 2, "{ctor:?}");
    for (size, _, names) in &ctor {
        assert_eq!(*size, 88);
        assert_eq!(names[1], "plugin_init", "{names:?}");
        for caller in ["call_init", "mode_dlopen", "main"] {
            assert!(names.iter().any(|n| n == caller), "{caller}: {names:?}");
        }
    }
    assert_eq!(live_of(88), 4, "2 blocks per load");
    // The tracer's own bookkeeping for dlopen and dlclose stays out of the
    // program's heap: no allocation goes unrecorded.
    assert_eq!(dump["audit"]["counters"]["dropped_allocs"], 0);
}

#[test]
fn blocks_from_constructors_that_ran_before_the_tracer_are_in_the_audit() {
    let exe = fixture("tracer_cxx", &[]);
    let dir = scratch("tracer_cxx");
    let (out, code, dump) = run_traced(&dir, &[], &[path_str(&exe)]);
    assert_eq!((out.as_str(), code), ("caught 100\n", 0));
    let dump = dump.expect("dump");
    // libstdc++'s emergency exception pool, allocated by its constructor,
    // which the loader runs before the tracer's.
    let frames = &dump["frames"];
    let pool: Vec<&Value> = dump["audit"]["live"]
        .as_array()
        .expect("live")
        .iter()
        .filter(|b| {
            let stack = frames[b["stack"].to_string()].as_array();
            stack.is_some_and(|s| {
                s[0]["module"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("libstdc++.so"))
                    && s.iter().any(|f| f["function"] == "_dl_init")
            })
        })
        .collect();
    assert_eq!(pool.len(), 1, "{pool:?}");
    assert_eq!(pool[0]["size"], 72704, "GCC 12's pool: {pool:?}");
    assert_eq!(dump["audit"]["counters"]["dropped_allocs"], 0);
}

#[test]
fn stacks_captured_on_coroutine_and_signal_stacks_are_bounded_by_their_mapping() {
    let exe = fixture("tracer_foreign", NO_FP);
    let dir = scratch("tracer_foreign");
    let (out, code, dump) = run_traced(&dir, &[], &[path_str(&exe)]);
    assert_eq!((out.as_str(), code), ("ok 7\n", 0));
    let dump = dump.expect("dump");
    // Two coroutines (a stack in the heap, one in a mapping of its own),
    // three blocks each, unwound up to the coroutine's entry.
    let co = blocks_through(&dump, "co_alloc");
    assert_eq!(co.len(), 6, "{co:?}");
    for (size, _, names) in &co {
        assert_eq!(*size, 56);
        assert_eq!(&names[..2], ["co_alloc", "co_body"]);
    }
    // A signal handler on an alternate stack.
    let sig = blocks_through(&dump, "sig_alloc");
    assert_eq!(sig.len(), 1, "{sig:?}");
    assert_eq!(sig[0].0, 72);
    assert_eq!(&sig[0].2[..2], ["sig_alloc", "on_signal"]);
}

#[test]
fn realloc_memalign_and_allocation_failures() {
    let exe = robust();
    let dump = same_traced_and_untraced("edges", &[path_str(&exe), "edges"]).expect("dump");
    let chain: Vec<_> = blocks_through(&dump, "mode_edges")
        .into_iter()
        .filter(|b| b.2[0] == "mode_edges")
        .collect();
    let sizes: Vec<u64> = chain.iter().map(|c| c.0).collect();
    // What mode_edges keeps: the realloc chain's last block and one
    // memalign'd block; everything else was freed (memalign'd ones by free).
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [256, 100000], "{chain:?}");
}

#[test]
fn tls_destructors_that_allocate_during_thread_teardown() {
    let exe = robust();
    let dump = same_traced_and_untraced("teardown", &[path_str(&exe), "teardown"]).expect("dump");
    assert_eq!(blocks_through(&dump, "teardown_body").len(), 0);
    assert_eq!(blocks_through(&dump, "destructor").len(), 0);
}

#[test]
fn threads_with_the_smallest_stack_glibc_allows() {
    // The tracer's static TLS comes out of every thread's stack, and its
    // hook runs on it: a 16 KiB thread must still be created, and its
    // blocks recorded; with too little stack left to unwind safely they are
    // recorded without a stack, and counted. Under jemalloc too, linked
    // or in the executable: its first `mmap` in the thread comes from deep
    // in its own frames, and our hook's frames overflowed the 16 KiB
    // (SIGSEGV) until the room to unwind was checked before allocating
    // them.
    let flags: Vec<&str> = NO_FP.iter().copied().chain(["-ljemalloc"]).collect();
    let static_flags: Vec<&str> = NO_FP.iter().copied().chain(STATIC_JEMALLOC).collect();
    for exe in [
        robust(),
        fixture("tracer_robust", &flags),
        fixture("tracer_robust", &static_flags),
    ] {
        let dump =
            same_traced_and_untraced("smallstack", &[path_str(&exe), "smallstack"]).expect("dump");
        let main_tid = dump["audit"]["pid"].as_u64().expect("pid");
        let kept: Vec<&Value> = dump["audit"]["live"]
            .as_array()
            .expect("live")
            .iter()
            .filter(|b| b["size"] == 40 && b["tid"].as_u64() != Some(main_tid))
            .collect();
        assert_eq!(kept.len(), 1, "{exe:?}: {kept:?}");
        assert_eq!(kept[0]["stack"], 0, "{exe:?}");
        assert!(
            dump["audit"]["counters"]["shallow_stacks"]
                .as_u64()
                .expect("counter")
                >= 1,
            "{exe:?}"
        );
    }
}

#[test]
fn a_program_that_reuses_the_supervisor_descriptor_gets_nothing_written_into_it() {
    let exe = robust();
    let file = scratch("tracer_closefds").join("data.txt");
    let (out, code, _) = run_traced(
        &file.with_file_name(""),
        &[],
        &[path_str(&exe), "closefds", path_str(&file)],
    );
    assert_eq!(out, "closefds ok\n");
    assert_eq!(code, 5);
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "data\n");
}

#[test]
fn a_program_that_execs_without_forking_is_followed_into_its_new_image() {
    let exe = fixture("tracer_allocators", &[]);
    let dir = scratch("tracer_follow_exec");
    let (plain, _) = run_plain(&[path_str(&exe)]);
    for wrapper in [&["env", "X=1"][..], &["nice"], &["stdbuf", "-o0"]] {
        let argv: Vec<&str> = wrapper.iter().copied().chain([path_str(&exe)]).collect();
        let (out, code, dump) = run_traced(&dir, &[], &argv);
        assert_eq!((out.as_str(), code), (plain.as_str(), 0), "{wrapper:?}");
        // The exit hand-over came from the program, not the wrapper.
        let dump = dump.expect("dump");
        let leaked = blocks_through(&dump, "leak_some");
        assert_eq!(leaked.len(), 5, "{wrapper:?}: {leaked:?}");
        assert!(leaked.iter().all(|b| b.0 == 333));
    }
    // Recorded: the final snapshot is the program's.
    let rec = dir.join("rec");
    let out = leaktrail()
        .args(["run", "--every", "0", "--out"])
        .arg(&rec)
        .args(["--", "env", "X=1", path_str(&exe)])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let snaps: Vec<String> = std::fs::read_dir(rec.join("snapshots"))
        .expect("snapshots")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".core"))
        .collect();
    assert_eq!(snaps, ["0001-exit.core"]);
}

#[test]
fn every_exec_function_is_followed_into_the_new_image() {
    // Issue 16, item 4: glibc's execl* (and posix_spawn*) call execve
    // internally, not through the PLT: execl lost the link.
    let wrapper = fixture("tracer_execs", &[]);
    let exe = fixture("tracer_allocators", &[]);
    let dir = scratch("tracer_exec_functions");
    let (plain, _) = run_plain(&[path_str(&exe)]);
    let name = exe.file_name().and_then(|n| n.to_str()).expect("name");
    let path = format!(
        "{}:{}",
        exe.parent().and_then(|d| d.to_str()).expect("dir"),
        std::env::var("PATH").unwrap_or_default()
    );
    for how in [
        "execl", "execlp", "execle", "execv", "execvp", "execvpe", "fexecve",
    ] {
        // The p variants search PATH for a bare name.
        let prog = if how.contains('p') {
            name
        } else {
            path_str(&exe)
        };
        let (out, code, dump) = run_traced_with(
            &dir,
            &[("PATH", &path)],
            &[],
            &[path_str(&wrapper), how, prog],
        );
        assert_eq!((out.as_str(), code), (plain.as_str(), 0), "{how}");
        // The exit hand-over came from the new image, and its blocks are
        // recorded with their stacks.
        let dump = dump.unwrap_or_else(|| panic!("{how}: no dump: the link was lost"));
        let leaked = blocks_through(&dump, "leak_some");
        assert_eq!(leaked.len(), 5, "{how}: {leaked:?}");
        assert!(leaked.iter().all(|b| b.0 == 333), "{how}: {leaked:?}");
    }
    // A spawned program is a process of its own (as a forked one is): it
    // runs traced, without the link; the recording is the spawner's, and
    // the status is the program's.
    for how in ["posix_spawn", "posix_spawnp"] {
        let prog = if how.ends_with('p') {
            name
        } else {
            path_str(&exe)
        };
        let out = leaktrail()
            .env("PATH", &path)
            .args(["run", "--no-record", "--dump-at-exit"])
            .arg(dir.join("spawn.json"))
            .args(["--", path_str(&wrapper), how, prog])
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert_eq!(String::from_utf8_lossy(&out.stdout), plain, "{how}");
        assert_eq!(out.status.code(), Some(0), "{how}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("recording stopped"), "{how}: {stderr}");
        let dump: Value =
            serde_json::from_slice(&std::fs::read(dir.join("spawn.json")).expect("dump"))
                .expect("JSON");
        assert!(blocks_through(&dump, "leak_some").is_empty(), "{how}");
    }
}

#[test]
fn a_program_that_cuts_the_link_runs_on_and_run_says_recording_stopped() {
    let exe = robust();
    let rec = scratch("tracer_cutlink").join("rec");
    let mut run = Running::start_until(
        leaktrail()
            .args(["run", "--every", "0", "--out"])
            .arg(&rec)
            .args(["--", path_str(&exe), "cutlink"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
        Pipe::Stderr,
        |line| line.contains("closed the tracer's link"),
    );
    assert!(run.ready.contains("recording stopped"), "{}", run.ready);
    // The program waited for us only now: it runs on and ends its own way.
    run.send(b"go\n");
    let rest = run.rest();
    assert_eq!(run.wait().code(), Some(5), "the program's own status");
    assert!(
        !rest.iter().any(|l| l.contains("closed the tracer's link")),
        "said once: {rest:?}"
    );
    assert!(rec.join("snapshots").is_dir());
}

#[test]
fn a_supervisor_that_never_answers_does_not_hold_the_program() {
    // A stand-in for `leaktrail run` that reads the tracer's line and
    // never answers: the program goes on after the hand-over deadline.
    let exe = robust();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    // SAFETY: dup of our own descriptor; the copy is not close-on-exec.
    let fd = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(&theirs)) };
    assert!(fd >= 0);
    let inode = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(format!("/proc/self/fd/{fd}")).expect("stat"),
    );
    let out = Command::new(&exe)
        .arg("edges")
        .env("LD_PRELOAD", preload_library())
        .env("LEAKTRAIL_SUPERVISOR_FD", format!("{fd}:{inode}"))
        .env("LEAKTRAIL_HANDOVER_DEADLINE_MS", "50")
        .stdin(Stdio::null())
        .output()
        .expect("run the program");
    // SAFETY: closing our copy.
    unsafe { libc::close(fd) };
    drop(theirs);
    let (plain, plain_code) = run_plain(&[path_str(&exe), "edges"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), plain);
    assert_eq!(out.status.code(), Some(plain_code));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("did not answer within 50 ms").count(),
        1,
        "once, at the start; the exit hand-over is not tried again: {stderr}"
    );
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&ours), &mut line).expect("read");
    assert!(line.starts_with("start "), "{line}");
}

#[test]
fn a_full_region_stops_recording_says_so_once_and_the_program_goes_on() {
    let exe = robust();
    let (plain_out, plain_code) = run_plain(&[path_str(&exe), "full"]);
    let out = leaktrail()
        .args(["run", "--no-record", "--"])
        .args([path_str(&exe), "full"])
        .env("LEAKTRAIL_REGION_LIMIT", "2000000")
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), plain_out);
    assert_eq!(out.status.code(), Some(plain_code));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("audit region cannot grow").count(),
        1,
        "one line on stderr: {stderr}"
    );
}

/// The full path of the shared library `name` where gcc finds it.
fn system_library(name: &str) -> String {
    let out = Command::new("gcc")
        .arg(format!("-print-file-name={name}"))
        .output()
        .expect("run gcc");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        Path::new(&path).is_absolute(),
        "{name} is not installed (.ci/run installs it)"
    );
    path
}

#[test]
fn programs_on_jemalloc_tcmalloc_and_mimalloc_get_their_own_blocks_recorded() {
    let glibc = fixture("tracer_allocators", &[]);
    let jemalloc_linked = fixture("tracer_allocators", &["-ljemalloc"]);
    let mimalloc_linked = fixture("tracer_allocators", &["-lmimalloc"]);
    let jemalloc = system_library("libjemalloc.so.2");
    let tcmalloc = system_library("libtcmalloc_minimal.so.4");
    let mimalloc = system_library("libmimalloc.so.2");
    let static_jemalloc = fixture("tracer_allocators", &STATIC_JEMALLOC);
    let static_exported = fixture(
        "tracer_allocators",
        &[&["-rdynamic"][..], &STATIC_JEMALLOC[..]].concat(),
    );
    let cases: [(&str, &Path, Option<&str>); 8] = [
        ("glibc", &glibc, None),
        ("jemalloc linked", &jemalloc_linked, None),
        // Diverted at its entries (its extended API only where exported).
        ("static jemalloc", &static_jemalloc, None),
        ("jemalloc static, -rdynamic", &static_exported, None),
        ("jemalloc preloaded", &glibc, Some(&jemalloc)),
        ("tcmalloc preloaded", &glibc, Some(&tcmalloc)),
        ("mimalloc linked", &mimalloc_linked, None),
        ("mimalloc preloaded", &glibc, Some(&mimalloc)),
    ];
    let dir = scratch("tracer_allocators");
    for (name, exe, preload) in cases {
        let env: Vec<(&str, &str)> = preload.map(|p| ("LD_PRELOAD", p)).into_iter().collect();
        let argv = [path_str(exe)];
        let (plain, plain_code) = run_plain_with(&env, &argv);
        let (traced, code, dump) = run_traced_with(&dir, &env, &[], &argv);
        assert_eq!(plain_code, 0, "{name}: {plain}");
        assert_eq!(code, 0, "{name}: {traced}");
        // Every block came from the program's own allocator: it answers
        // malloc_usable_size about them as it does untraced.
        assert_eq!(traced, plain, "{name}: output differs under the tracer");
        let dump = dump.expect("dump");
        let leaked = blocks_through(&dump, "leak_some");
        assert_eq!(leaked.len(), 5, "{name}: {leaked:?}");
        for (size, _, names) in &leaked {
            assert_eq!(*size, 333, "{name}");
            assert_eq!(&names[..2], ["leak_some", "main"], "{name}");
        }
        // (stdout's buffer, allocated by the first printf, is libc's.)
        let churned: Vec<_> = blocks_through(&dump, "churn")
            .into_iter()
            .filter(|b| b.2[0] == "churn")
            .collect();
        assert!(churned.is_empty(), "{name}: churn frees all: {churned:?}");
        let extended = blocks_through(&dump, "leak_x");
        if name.starts_with("jemalloc") {
            assert!(plain.contains("xallocx "), "{name}: {plain}");
            // mallocx'd, grown in place by xallocx, rallocx'd and
            // dallocx'd/sdallocx'd blocks: one left, of the size asked.
            assert_eq!(extended.len(), 1, "{name}: {extended:?}");
            assert_eq!(extended[0].0, 760, "{name}");
        } else {
            assert!(plain.contains("no jemalloc API"), "{name}: {plain}");
            assert!(extended.is_empty(), "{name}");
        }
        assert_eq!(dump["audit"]["counters"]["unknown_frees"], 0, "{name}");
        assert_eq!(dump["audit"]["counters"]["dropped_allocs"], 0, "{name}");
    }
}

/// How a fixture links jemalloc into its executable (Debian's
/// `libjemalloc.a`, which brings its C++ operators along).
pub(crate) const STATIC_JEMALLOC: [&str; 4] =
    ["-Wl,-Bstatic", "-ljemalloc", "-Wl,-Bdynamic", "-lm"];

/// The fixture built against each packaged allocator, linked and in
/// `LD_PRELOAD`, and jemalloc linked statically (diverted at its entries),
/// with glibc's first: (name, program, `LD_PRELOAD`).
pub(crate) fn on_every_allocator(
    fixture_name: &str,
) -> Vec<(&'static str, PathBuf, Option<String>)> {
    let glibc = fixture(fixture_name, &[]);
    let mut cases = vec![("glibc", glibc.clone(), None)];
    for (linked, preloaded, flag, library) in [
        (
            "jemalloc linked",
            "jemalloc preloaded",
            "-ljemalloc",
            "libjemalloc.so.2",
        ),
        (
            "tcmalloc linked",
            "tcmalloc preloaded",
            "-l:libtcmalloc_minimal.so.4",
            "libtcmalloc_minimal.so.4",
        ),
        (
            "mimalloc linked",
            "mimalloc preloaded",
            "-lmimalloc",
            "libmimalloc.so.2",
        ),
    ] {
        cases.push((linked, fixture(fixture_name, &[flag]), None));
        cases.push((preloaded, glibc.clone(), Some(system_library(library))));
    }
    cases.push((
        "static jemalloc",
        fixture(fixture_name, &STATIC_JEMALLOC),
        None,
    ));
    cases
}

#[test]
fn cxx_operators_of_every_allocator_are_forwarded_and_recorded() {
    // Issue 16, item 2: tcmalloc's, jemalloc's and mimalloc's own
    // `operator new` do not call malloc; their blocks went unrecorded.
    let dir = scratch("tracer_operators");
    for (name, exe, preload) in on_every_allocator("tracer_operators") {
        let env: Vec<(&str, &str)> = preload.iter().map(|p| ("LD_PRELOAD", p.as_str())).collect();
        // mimalloc ends the program when `new` fails, new-handler or not
        // (its own weak `std::get_new_handler` answers first): no throw.
        let mut argv = vec![path_str(&exe)];
        if !name.starts_with("mimalloc") {
            argv.push("throw");
        }
        let (plain, plain_code) = run_plain_with(&env, &argv);
        let (traced, code, dump) = run_traced_with(&dir, &env, &[], &argv);
        assert_eq!(plain_code, 0, "{name}: {plain}");
        assert_eq!(code, 0, "{name}: {traced}");
        // The same usable sizes: every block is the program's allocator's.
        assert_eq!(traced, plain, "{name}: output differs under the tracer");
        if argv.len() > 1 {
            assert_eq!(
                plain.matches("bad_alloc caught after").count(),
                2,
                "{name}: {plain}"
            );
        }
        let dump = dump.expect("dump");
        for (function, count, size) in [
            ("make_objects()", 4, 424),
            ("leak_arrays()", 3, 1000),
            ("leak_aligned()", 2, 192),
            ("leak_nothrow()", 2, 88),
        ] {
            // Allocated right there: below it only `operator new` frames
            // (libstdc++'s, which call malloc), then main.
            let blocks: Vec<_> = blocks_through(&dump, function)
                .into_iter()
                .filter(|(_, _, names)| {
                    let at = names.iter().position(|n| n == function).unwrap_or(0);
                    names[..at].iter().all(|n| n.starts_with("operator new"))
                })
                .collect();
            assert_eq!(blocks.len(), count, "{name}: {function}: {blocks:?}");
            for (got, _, names) in &blocks {
                assert_eq!(*got, size, "{name}: {function}: {names:?}");
                let at = names.iter().position(|n| n == function).unwrap_or(0);
                assert_eq!(names[at + 1], "main", "{name}: {names:?}");
            }
        }
        // (make_objects' first printf allocates stdout's buffer: libc's,
        // under printf's frames.)
        let churned = blocks_through(&dump, "churn()");
        assert!(churned.is_empty(), "{name}: churn frees all: {churned:?}");
        assert_eq!(dump["audit"]["counters"]["unknown_frees"], 0, "{name}");
        assert_eq!(dump["audit"]["counters"]["dropped_allocs"], 0, "{name}");
    }
}

/// The `leaks` classes of the program's own blocks in an exit snapshot:
/// (kind, the function that allocated, called by `main`) to (bytes,
/// blocks). An allocator's own blocks (tcmalloc's constructor leaks one
/// of 8 bytes) are left out: they are not the program's.
fn program_leaks(core: &Path) -> std::collections::BTreeMap<(String, String), (u64, u64)> {
    let l = crate::support::leaktrail_json([
        OsStr::new("leaks"),
        OsStr::new("--json"),
        core.as_os_str(),
    ]);
    let mut out = std::collections::BTreeMap::new();
    for g in l["groups"].as_array().expect("groups") {
        let names = crate::support::functions(&g["stack"]);
        let Some(at) = names.iter().position(|n| n == "main").filter(|&i| i > 0) else {
            continue;
        };
        let e = out
            .entry((
                g["kind"].as_str().expect("kind").to_string(),
                names[at - 1].clone(),
            ))
            .or_insert((0, 0));
        e.0 += g["bytes"].as_u64().expect("bytes");
        e.1 += g["blocks"].as_u64().expect("blocks");
    }
    out
}

#[test]
fn leaks_under_every_allocator_are_the_leaks_under_glibc() {
    // Issue 16, item 2: under jemalloc every leak was "still reachable":
    // its extents hold stale copies of the addresses it handed out (tcache
    // stacks), and they were scanned as roots.
    let dir = scratch("tracer_allocator_leaks");
    let entry = |kind: &str, function: &str, bytes: u64, blocks: u64| {
        ((kind.to_string(), function.to_string()), (bytes, blocks))
    };
    for (fixture_name, expected) in [
        (
            "tracer_allocators",
            vec![
                entry("definite", "lose_some", 3 * 555, 3),
                entry("reachable", "leak_some", 5 * 333, 5),
            ],
        ),
        (
            "tracer_operators",
            vec![
                entry("definite", "make_objects()", 4 * 424, 4),
                entry("definite", "leak_arrays()", 3 * 1000, 3),
                entry("definite", "leak_aligned()", 2 * 192, 2),
                entry("definite", "leak_nothrow()", 2 * 88, 2),
            ],
        ),
    ] {
        let expected: std::collections::BTreeMap<_, _> = expected.into_iter().collect();
        for (name, exe, preload) in on_every_allocator(fixture_name) {
            let rec = dir.join(format!("{fixture_name}-{}", name.replace(' ', "-")));
            let mut cmd = leaktrail();
            cmd.args(["run", "--every", "0", "--out"])
                .arg(&rec)
                .args(["--", path_str(&exe)])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            if let Some(p) = &preload {
                cmd.env("LD_PRELOAD", p);
            }
            crate::support::success(&mut cmd);
            let mut leaks = program_leaks(&rec.join("snapshots/0001-exit.core"));
            if fixture_name == "tracer_allocators" && name.starts_with("jemalloc") {
                // The mallocx'd block a static keeps.
                let x = leaks.remove(&("reachable".to_string(), "leak_x".to_string()));
                assert_eq!(x, Some((760, 1)), "{name}: {leaks:?}");
            }
            assert_eq!(leaks, expected, "{fixture_name} on {name}");
        }
    }
}

#[test]
fn the_programs_allocator_is_named_and_glibc_state_is_not_guessed() {
    // Issue 16, item 2: on jemalloc, `info`'s self-check walked an idle
    // glibc arena and reported every audited block "not in use", with 127
    // problems.
    let glibc = fixture("tracer_allocators", &[]);
    let mimalloc_linked = fixture("tracer_allocators", &["-lmimalloc"]);
    let jemalloc = system_library("libjemalloc.so.2");
    let tcmalloc = system_library("libtcmalloc_minimal.so.4");
    let dir = scratch("tracer_allocator_named");
    let cases: [(&str, &Path, Option<&str>, &str); 4] = [
        ("glibc", &glibc, None, "libc.so.6"),
        ("jemalloc", &glibc, Some(&jemalloc), "libjemalloc.so.2"),
        (
            "tcmalloc",
            &glibc,
            Some(&tcmalloc),
            "libtcmalloc_minimal.so.4",
        ),
        ("mimalloc", &mimalloc_linked, None, "libmimalloc.so.2"),
    ];
    for (name, exe, preload, file) in cases {
        let rec = dir.join(name);
        let mut cmd = leaktrail();
        cmd.args(["run", "--every", "0", "--out"])
            .arg(&rec)
            .args(["--", path_str(exe)])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(p) = preload {
            cmd.env("LD_PRELOAD", p);
        }
        crate::support::success(&mut cmd);
        let info = crate::support::info_json(&rec.join("snapshots/0001-exit.core"));
        let allocator = &info["allocator"];
        assert_eq!(allocator["name"], name, "{allocator}");
        assert_eq!(allocator["source"], "tracer", "{allocator}");
        let path = allocator["path"].as_str().expect("path");
        // (The mapping names the file the symbolic link leads to.)
        let mapped = Path::new(path).file_name().and_then(|n| n.to_str());
        assert!(
            mapped.is_some_and(|n| n.starts_with(file)),
            "{name}: {path}"
        );
        let error = info["heap_walk"]["error"].as_str();
        if name == "glibc" {
            assert_eq!(error, None, "{name}: {info:#}");
            assert!(info["heap_walk"]["chunks"].as_u64() > Some(0));
        } else {
            let error = error.unwrap_or_else(|| panic!("{name}: walked: {info:#}"));
            assert!(
                error.contains(&format!(
                    "the program's allocator is {name} ({path}, named by the tracer), not glibc's malloc"
                )),
                "{error}"
            );
        }
    }
    // Without the tracer, the libraries mapped say it: an analysis that
    // would walk glibc's heap refuses in one line.
    let exe = fixture("snap_threads", &[]);
    let mut target = Running::start(
        Command::new(&exe)
            .arg("1")
            .env("LD_PRELOAD", &jemalloc)
            .stdin(Stdio::piped()),
        Pipe::Stdout,
        "ready ",
    );
    let core = dir.join("untraced.core");
    crate::support::snapshot_of(target.pid(), &core, &[]);
    target.send(b"q");
    assert_eq!(target.wait().code(), Some(0));
    let info = crate::support::info_json(&core);
    assert_eq!(info["allocator"]["name"], "jemalloc", "{info:#}");
    assert_eq!(info["allocator"]["source"], "mappings");
    let mapped = info["allocator"]["path"].as_str().expect("path");
    assert_bad_input(
        leaktrail().arg("leaks").arg(&core),
        &[&format!(
            "the program's allocator is jemalloc ({mapped}, from the libraries mapped), not glibc's malloc"
        )],
    );
}

#[test]
fn a_region_limit_too_small_to_start_is_named_as_such() {
    let out_dir = scratch("tracer_tiny_limit").join("rec");
    let out = leaktrail()
        .args(["run", "--every", "0", "--out"])
        .arg(&out_dir)
        .args(["--", "sh", "-c", "exit 3"])
        .env("LEAKTRAIL_REGION_LIMIT", "1000")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the region limit (LEAKTRAIL_REGION_LIMIT=1000 bytes) is too small"),
        "{stderr}"
    );
    assert!(stderr.contains("has no audit region"), "{stderr}");
    assert!(!stderr.contains("static binary"), "{stderr}");
}

#[test]
fn real_programs_run_unchanged() {
    let dir = scratch("tracer_real");
    let script = "d = {}\nfor i in range(200000):\n    d[i] = str(i) * 3\n    if i % 3 == 0: del d[i]\nprint(len(d), sum(len(v) for v in d.values()))";
    let python = ["python3", "-c", script];
    let node = ["node", "-e", "const a=[];for(let i=0;i<100000;i++)a.push({i,s:String(i)});console.log(a.length, JSON.stringify(a).length)"];
    let src = dir.join("small.c");
    std::fs::write(&src, "int add(int a, int b) { return a + b; }\n").expect("write");
    let gcc = ["gcc", "-S", "-O2", "-o", "-", path_str(&src)];
    let git = ["git", "hash-object", path_str(&src)];
    for argv in [&python[..], &node[..], &gcc[..], &git[..]] {
        let (plain, plain_code) = run_plain(argv);
        let out = leaktrail()
            .args(["run", "--no-record", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert_eq!(String::from_utf8_lossy(&out.stdout), plain, "{argv:?}");
        assert_eq!(out.status.code(), Some(plain_code), "{argv:?}");
        assert!(
            out.stderr.is_empty(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn run_passes_the_exit_status_through_and_reports_a_missing_program() {
    let out = leaktrail()
        .args(["run", "--no-record", "--", "sh", "-c", "exit 42"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(42));
    assert_bad_input(
        leaktrail().args(["run", "--no-record", "--", "/nonexistent/program"]),
        &["/nonexistent/program"],
    );
    let _ = preload_library();
    let mut input = ChildGuard(
        leaktrail()
            .args(["run", "--no-record", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    input
        .0
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"through\n")
        .expect("write");
    let out = input.0.wait_with_output_ref();
    assert_eq!(out, "through\n");
}

trait WaitOutput {
    fn wait_with_output_ref(&mut self) -> String;
}

impl WaitOutput for std::process::Child {
    fn wait_with_output_ref(&mut self) -> String {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut self.stdout.take().expect("stdout"), &mut s)
            .expect("read");
        let _ = self.wait();
        s
    }
}

/// Issue 16: an executable that defines the allocation functions itself
/// comes before the tracer in the loader's search order, and its own calls
/// are direct: none reaches a symbol of ours. An allocator linked
/// statically (jemalloc, with or without `-rdynamic`, which exports its
/// extended API too) is diverted at its functions' entries instead: the
/// program's output is its own, and every block of the program is
/// recorded with its stack, as under jemalloc as a shared library.
#[test]
fn an_allocator_linked_into_the_executable_is_diverted_and_recorded() {
    let static_jemalloc = STATIC_JEMALLOC;
    let exported: Vec<&str> = std::iter::once("-rdynamic")
        .chain(static_jemalloc)
        .collect();
    let dir = scratch("tracer_static_allocator");
    for (name, exe) in [
        (
            "static jemalloc",
            fixture("tracer_allocators", &static_jemalloc),
        ),
        (
            "static jemalloc, -rdynamic",
            fixture("tracer_allocators", &exported),
        ),
    ] {
        let rec = dir.join(name.replace([' ', ',', '.'], "-"));
        let stderr = record_like_untraced(&exe, &rec, name);
        assert!(
            !stderr.contains("defines malloc itself"),
            "{name}: {stderr}"
        );
        let core = rec.join("snapshots/0001-exit.core");
        let info = crate::support::stdout(leaktrail().arg("info").arg(&core));
        assert!(
            !info.contains("not recorded") && !info.contains("bypass"),
            "{name}: {info}"
        );
        // Every live block of the program, at its function, exactly.
        let doc = crate::support::leaktrail_json([
            OsStr::new("bufs"),
            OsStr::new("--group-by"),
            OsStr::new("stack"),
            OsStr::new("--json"),
            core.as_os_str(),
        ]);
        let mut live = std::collections::BTreeMap::new();
        for g in doc["groups"].as_array().expect("groups") {
            let names = crate::support::functions(&g["stack"]);
            let at = names.iter().position(|n| n == "main").filter(|&i| i > 0);
            // The program's own sites (not stdout's buffer, which printf
            // allocates under `churn`).
            if let Some(at) =
                at.filter(|&at| names[at - 1].contains("_some") || names[at - 1] == "leak_x")
            {
                let e = live.entry(names[at - 1].clone()).or_insert((0, 0));
                e.0 += g["count"].as_u64().expect("count");
                e.1 += g["bytes"].as_u64().expect("bytes");
            }
        }
        let mut expected = std::collections::BTreeMap::from([
            ("leak_some".to_string(), (5, 5 * 333)),
            ("lose_some".to_string(), (3, 3 * 555)),
        ]);
        if name.contains("rdynamic") {
            // mallocx'd, then grown in place by xallocx: both diverted.
            expected.insert("leak_x".to_string(), (1, 760));
        }
        assert_eq!(live, expected, "{name}: {doc:#}");
        if !name.contains("rdynamic") {
            let leaks = program_leaks(&core);
            assert_eq!(
                leaks.get(&("definite".to_string(), "lose_some".to_string())),
                Some(&(3 * 555, 3)),
                "{name}: {leaks:?}"
            );
        }
    }
}

/// Issue 16: an allocator of the program's own in its executable, with
/// two names at one address (`aligned_alloc` an alias of `memalign`, as
/// tcmalloc's are) and a `malloc` that calls its `memalign` without
/// aligning the stack (gcc does so within one file): the address is
/// diverted once, the misaligned inner call runs the allocator as it was
/// (our hook faulted on it, SIGSEGV), and `leaks` finds exactly the lost
/// blocks of both names.
#[test]
fn an_own_allocator_with_aliases_is_diverted_once_and_recorded() {
    let exe = fixture("tracer_own_allocator", &[]);
    // (Not "tracer_own_allocator": the bypass test's directory, which
    // `scratch` would empty under it.)
    let rec = scratch("tracer_own_allocator_aliases").join("rec");
    let stderr = record_like_untraced(&exe, &rec, "own allocator");
    assert!(!stderr.contains("defines malloc itself"), "{stderr}");
    let expected: std::collections::BTreeMap<_, _> = [
        (
            ("definite".to_string(), "lose_some".to_string()),
            (3 * 555, 3),
        ),
        (
            ("definite".to_string(), "lose_aligned".to_string()),
            (2 * 200, 2),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        program_leaks(&rec.join("snapshots/0001-exit.core")),
        expected
    );
}

/// Issue 16: `mimalloc-new-delete.h` defines C++'s operators in the
/// program itself, calling `mi_new` and `mi_free`, and the compiler
/// inlines them: no operator of ours is called, and none of `new`'s blocks
/// was recorded. mimalloc's entry points are hooked: the output is the
/// program's own, nothing is said to bypass the tracer, and `leaks` finds
/// exactly what it finds on every other allocator.
#[test]
fn mimalloc_new_delete_h_blocks_are_recorded() {
    let exe = fixture(
        "tracer_operators",
        &["-include", "mimalloc-new-delete.h", "-lmimalloc"],
    );
    let rec = scratch("tracer_mimalloc_new_delete").join("rec");
    let stderr = record_like_untraced(&exe, &rec, "mimalloc-new-delete.h");
    assert!(!stderr.contains("bypass"), "{stderr}");
    let core = rec.join("snapshots/0001-exit.core");
    let info = crate::support::stdout(leaktrail().arg("info").arg(&core));
    assert!(!info.contains("bypass"), "{info}");
    let entry = |function: &str, bytes: u64, blocks: u64| {
        (
            ("definite".to_string(), function.to_string()),
            (bytes, blocks),
        )
    };
    let expected: std::collections::BTreeMap<_, _> = [
        entry("make_objects()", 4 * 424, 4),
        entry("leak_arrays()", 3 * 1000, 3),
        entry("leak_aligned()", 2 * 192, 2),
        entry("leak_nothrow()", 2 * 88, 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(program_leaks(&core), expected);
}

/// Issue 16: an executable's own allocator that cannot be diverted (its
/// `malloc` starts with `jrcxz`, which has no inverse to move it with;
/// `tracer_own_malloc.c`), and C++'s operators defined in the executable
/// calling an entry point we do not hook (`tcmalloc_new_delete.h`, calling
/// tcmalloc's `tc_new`). The program must run as
/// untraced, `run` say once what bypasses the tracer, and `info` and
/// `leaks` on the recording say it too, never a clean "no leaks".
#[test]
fn an_executables_own_allocator_is_named_as_bypassing_the_tracer() {
    let malloc_line = "leaktrail: this program's executable defines malloc itself";
    let operators_line =
        "leaktrail: this program's executable defines C++'s operator new and delete itself";
    let cases = [
        (
            "own malloc",
            fixture("tracer_own_malloc", &[]),
            malloc_line,
            "defines malloc itself",
        ),
        (
            "tcmalloc_new_delete.h",
            fixture(
                "tracer_operators",
                &[
                    "-include",
                    path_str(&crate::support::repo_root().join("fixtures/tcmalloc_new_delete.h")),
                    "-l:libtcmalloc_minimal.so.4",
                ],
            ),
            operators_line,
            "defines C++'s operator new and delete itself",
        ),
    ];
    let dir = scratch("tracer_own_allocator");
    for (name, exe, said, note) in cases {
        let rec = dir.join(name.replace([' ', ',', '.'], "-"));
        let stderr = record_like_untraced(&exe, &rec, name);
        assert_eq!(stderr.matches(said).count(), 1, "{name}: {stderr}");
        let core = rec.join("snapshots/0001-exit.core");
        let info = crate::support::stdout(leaktrail().arg("info").arg(&core));
        assert!(info.contains(note), "{name}: {info}");
        let text = crate::support::stdout(leaktrail().arg("leaks").arg(&core));
        assert!(text.contains(note), "{name}: {text}");
        assert!(
            text.contains("no leaks among the blocks the tracer saw")
                && !text.contains("every live buffer is still referenced"),
            "{name}: {text}"
        );
        let doc = crate::support::leaktrail_json([
            OsStr::new("leaks"),
            OsStr::new("--json"),
            core.as_os_str(),
        ]);
        assert_eq!(doc["incomplete"], true, "{name}: {doc:#}");
        // Nothing of the program's own was seen: its lost blocks (the
        // fixtures lose some at known functions) are not in the audit.
        assert_eq!(doc["definite"]["blocks"], 0, "{name}: {doc:#}");
    }
}

/// A copy of the tracer under another name (`$LEAKTRAIL_PRELOAD`) was taken
/// for one `leaktrail attach` loaded late, since `LD_PRELOAD` did not hold
/// our usual name: it looked `__libc_start_main` up in the global scope,
/// found itself and called itself for ever. It must trace as the library
/// does under its own name.
#[test]
fn a_renamed_tracer_library_traces_the_program() {
    let dir = scratch("tracer_renamed");
    let copy = dir.join("libtracer-renamed.so");
    std::fs::copy(crate::support::preload_library(), &copy).expect("copy the tracer");
    let exe = fixture("tracer_allocators", &[]);
    let (plain, _) = run_plain_with(&[], &[path_str(&exe)]);
    let rec = dir.join("rec");
    let out = crate::support::success(
        leaktrail()
            .env("LEAKTRAIL_PRELOAD", &copy)
            .args(["run", "--every", "0", "--out"])
            .arg(&rec)
            .arg("--")
            .arg(&exe)
            .stdin(Stdio::null()),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), plain);
    let leaks = program_leaks(&rec.join("snapshots/0001-exit.core"));
    assert_eq!(
        leaks.get(&("definite".to_string(), "lose_some".to_string())),
        Some(&(3 * 555, 3)),
        "{leaks:?}"
    );
}
