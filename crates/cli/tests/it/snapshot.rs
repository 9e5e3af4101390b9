//! `leaktrail snapshot` and `leaktrail info`: stop-the-world cores that gdb
//! opens, a target that never notices, and clean refusals of bad input.
//!
//! The target is `fixtures/snap_threads.c`: worker threads allocate hard
//! and keep their own checksums; each byte on its stdin makes it wait until
//! every worker has run two more rounds and answer `ok` (or `bad`). All
//! synchronisation goes through that pipe: no sleeps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{
    self, assert_bad_input, gcore, info_json, snapshot_cmd, snapshot_of, Pipe, Running,
};

/// A running `snap_threads`.
struct Target {
    run: Running,
    pid: i32,
    exe: PathBuf,
}

impl Target {
    fn spawn(args: &[&str]) -> Target {
        Self::spawn_with(args, |_| {})
    }

    fn spawn_with(args: &[&str], tweak: impl FnOnce(&mut Command)) -> Target {
        let exe = support::fixture("snap_threads", &[]);
        let mut cmd = Command::new(&exe);
        cmd.args(args).stdin(Stdio::piped());
        tweak(&mut cmd);
        let run = Running::start(&mut cmd, Pipe::Stdout, "ready ");
        let pid = run.ready["ready ".len()..].trim().parse().expect("pid");
        Target { run, pid, exe }
    }

    /// Asks the target to prove it still runs and is intact.
    fn check(&mut self) -> String {
        self.run.send(b"x");
        self.run.line()
    }

    /// Stops it and returns its exit code.
    fn finish(mut self) -> i32 {
        self.run.send(b"q");
        self.run.wait().code().unwrap_or(-1)
    }
}

#[test]
fn snapshot_of_a_multithreaded_target_opens_in_gdb_with_symbolic_backtraces() {
    let dir = support::scratch("snapshot_gdb");
    let mut t = Target::spawn(&["3"]);
    let core = dir.join("threads.core");
    let out = snapshot_of(t.pid, &core, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&core.display().to_string()), "{stdout}");
    assert!(stdout.contains("pause"), "{stdout}");
    assert!(t.check().starts_with("ok "), "target did not carry on");

    let gdb = Command::new("gdb")
        .args([
            "-batch",
            "-nx",
            "-ex",
            "info threads",
            "-ex",
            "thread apply all bt",
        ])
        .arg(&t.exe)
        .arg(&core)
        .output()
        .expect("run gdb");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&gdb.stdout),
        String::from_utf8_lossy(&gdb.stderr)
    );
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("warning:") && !l.contains("libthread_db"))
        .collect();
    assert!(
        warnings.is_empty(),
        "gdb warned:\n{}\n---\n{text}",
        warnings.join("\n")
    );
    // Every thread, each with a backtrace down to its entry function.
    let threads = text.lines().filter(|l| l.starts_with("Thread ")).count();
    assert_eq!(threads, 4, "gdb should list 4 threads:\n{text}");
    assert!(
        text.contains("main_wait") && text.contains(" main "),
        "main thread:\n{text}"
    );
    assert_eq!(
        text.matches("in worker_main").count(),
        3,
        "worker stacks:\n{text}"
    );
    assert!(
        text.matches("worker_spin").count() >= 3,
        "worker stacks:\n{text}"
    );
    assert_eq!(t.finish(), 0, "target's own checks failed");
}

#[test]
fn target_runs_unchanged_after_100_snapshots_while_allocating() {
    let dir = support::scratch("snapshot_100");
    // Four workers allocating hard, and a thread that creates and joins
    // threads non-stop so some are born and die during every stop.
    let mut t = Target::spawn(&["4", "churn"]);
    let core = dir.join("again.core");
    for i in 0..100 {
        let mode = ["full", "tables", "none", "full"][i % 4];
        snapshot_of(t.pid, &core, &["--memory", mode]);
        let answer = t.check();
        assert!(answer.starts_with("ok "), "after snapshot {i}: {answer:?}");
    }
    let info = info_json(&core);
    assert!(
        info["threads"].as_array().is_some_and(|a| a.len() >= 5),
        "{info}"
    );
    assert_eq!(
        t.finish(),
        0,
        "target's own checks failed after 100 snapshots"
    );
}

#[test]
fn info_describes_our_snapshots_and_gcore_and_kernel_cores() {
    let dir = support::scratch("snapshot_info");
    let mut t = Target::spawn(&["2"]);
    // A JIT's symbol map, as V8's --perf-basic-prof writes it.
    let perf_map = PathBuf::from(format!("/tmp/perf-{}.map", t.pid));
    std::fs::write(
        &perf_map,
        "7f0000001000 40 LazyCompile:*hot a.js:1\n7f0000002000 20 Stub:x\n",
    )
    .expect("write perf map");
    let ours = dir.join("ours.core");
    let taken = snapshot_cmd(t.pid, &ours, &[]).output().expect("snapshot");
    let _ = std::fs::remove_file(&perf_map);
    assert!(taken.status.success());
    let none = dir.join("none.core");
    snapshot_of(t.pid, &none, &["--memory", "none"]);
    assert!(t.check().starts_with("ok "));

    let mode = std::fs::metadata(&ours).expect("core exists");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    assert!(!dir.join("ours.core.tmp").exists());

    let info = info_json(&ours);
    assert_eq!(info["pid"], t.pid);
    assert_eq!(info["threads"].as_array().map(Vec::len), Some(3));
    assert_eq!(info["memory_mode"], "full");
    assert!(info["pause_ns"].as_u64().is_some_and(|p| p > 0));
    assert_eq!(info["audit"]["present"], false);
    let modules = info["modules"].as_array().expect("modules");
    let exe = modules
        .iter()
        .find(|m| {
            m["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("snap_threads"))
        })
        .expect("the fixture is a module");
    assert!(
        exe["build_id"].as_str().is_some_and(|b| b.len() >= 16),
        "{exe}"
    );
    assert!(modules
        .iter()
        .any(|m| m["path"].as_str().is_some_and(|p| p.contains("libc"))));
    assert!(info["captured_bytes"].as_u64().is_some_and(|b| b > 0));
    assert_eq!(info["perf_map_lines"], 2);

    let info = info_json(&none);
    assert_eq!(info["captured_bytes"], 0);
    assert_eq!(info["threads"].as_array().map(Vec::len), Some(3));

    let text = String::from_utf8_lossy(
        &support::leaktrail()
            .arg("info")
            .arg(&ours)
            .output()
            .expect("info")
            .stdout,
    )
    .into_owned();
    assert!(text.contains("audit      none"), "{text}");
    assert!(text.contains("threads    3"), "{text}");

    // gdb's gcore of the same process: no leaktrail note, modules from
    // NT_FILE.
    let gcore = gcore(t.pid, &dir.join("gcore"));
    assert!(t.check().starts_with("ok "));
    let info = info_json(&gcore);
    assert_eq!(info["writer"], "foreign");
    assert_eq!(info["pid"], t.pid);
    assert_eq!(info["threads"].as_array().map(Vec::len), Some(3));
    // Build ids come from the ELF header pages gcore keeps.
    let has_exe_with_id = |info: &serde_json::Value| {
        info["modules"].as_array().is_some_and(|m| {
            m.iter().any(|m| {
                m["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("snap_threads"))
                    && m["build_id"].is_string()
            })
        })
    };
    assert!(has_exe_with_id(&info), "{info}");
    assert_eq!(t.finish(), 0);

    // A kernel core, where this machine lets a child dump one into its
    // working directory (core_pattern "core…", RLIMIT_CORE raised).
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if pattern.starts_with('|') || pattern.trim().contains('/') {
        eprintln!("kernel core skipped: core_pattern is {pattern:?}");
        return;
    }
    let kdir = dir.join("kernel");
    std::fs::create_dir_all(&kdir).expect("kernel dir");
    let mut k = Target::spawn_with(&["2"], |cmd| {
        cmd.current_dir(&kdir);
        allow_core_dumps(cmd);
    });
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(k.pid, libc::SIGABRT) };
    k.run.wait();
    let kernel_core = kernel_core_in(&kdir);
    let Some(kernel_core) = kernel_core else {
        eprintln!("kernel core skipped: no core was dumped (pattern {pattern:?})");
        return;
    };
    let info = info_json(&kernel_core);
    assert_eq!(info["writer"], "foreign");
    assert_eq!(info["pid"], k.pid);
    assert_eq!(info["threads"].as_array().map(Vec::len), Some(3));
    assert!(has_exe_with_id(&info), "{info}");
}

/// Regression (issue 10): `info` and `trend` classify memory with one
/// classifier. glibc's arena heaps, which `trend` has always counted as
/// `heap`, were `anon` in a snapshot's note. (A gcore has no note and
/// keeps neither the arenas' PROT_NONE tails nor `[heap]`'s name, so from
/// its segments alone an arena is anonymous memory.)
#[test]
fn info_counts_glibc_arenas_as_heap_as_trend_does() {
    let dir = support::scratch("snapshot_arenas");
    // Two workers allocating: each gets an arena of its own.
    let mut t = Target::spawn(&["2"]);
    let live = std::fs::read_to_string(format!("/proc/{}/smaps", t.pid)).expect("smaps");
    let mut maps = leaktrail_recording::maps::parse_smaps(&live).expect("parse");
    leaktrail_recording::maps::classify(&mut maps, &[]);
    let arenas = maps
        .iter()
        .filter(|m| m.region == leaktrail_recording::Region::Heap && m.path.is_empty())
        .count();
    assert!(arenas >= 2, "an arena heap and its tail expected:\n{live}");
    let ours = dir.join("ours.core");
    snapshot_of(t.pid, &ours, &[]);
    assert!(t.check().starts_with("ok "));
    assert_eq!(t.finish(), 0);
    let heap_mappings = |info: &serde_json::Value| {
        info["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .find(|k| k["kind"] == "heap")
            .and_then(|k| k["mappings"].as_u64())
            .unwrap_or(0)
    };
    // [heap] plus every arena mapping the live classifier saw.
    let info = info_json(&ours);
    assert!(heap_mappings(&info) > arenas as u64, "{info}");
}

/// Lets the child dump a kernel core (RLIMIT_CORE unlimited).
fn allow_core_dumps(cmd: &mut Command) {
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
    // child between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            let lim = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
            Ok(())
        });
    }
}

/// The kernel core a child dumped into `dir`, if the machine's
/// `core_pattern` put one there.
fn kernel_core_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("core"))
        })
}

#[test]
fn snapshot_of_a_missing_pid_is_bad_input() {
    let mut gone = Command::new("true").spawn().expect("run true");
    let pid = gone.id() as i32;
    gone.wait().expect("reap true");
    let dir = support::scratch("snapshot_missing");
    assert_bad_input(
        &mut snapshot_cmd(pid, &dir.join("x.core"), &[]),
        &["no process with pid", &pid.to_string()],
    );
    assert!(
        std::fs::read_dir(&dir).expect("dir").next().is_none(),
        "left a file behind"
    );
    assert_bad_input(
        &mut snapshot_cmd(0, &dir.join("x.core"), &[]),
        &["no process"],
    );
}

#[test]
fn snapshot_without_ptrace_permission_is_bad_input_with_the_hint() {
    // SAFETY: getuid takes nothing and cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let dir = support::scratch("snapshot_eperm");
    let mut t = Target::spawn(&["1"]);
    let mut cmd = snapshot_cmd(t.pid, &dir.join("x.core"), &[]);
    if root {
        // As "nobody", a root-owned process is off limits.
        std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
        std::os::unix::process::CommandExt::gid(&mut cmd, 65534);
    } else {
        // Not root: a process of another user (init) is off limits.
        cmd.args(["-p", "1"]);
    }
    assert_bad_input(&mut cmd, &["not permitted", "ptrace"]);
    assert!(
        std::fs::read_dir(&dir).expect("dir").next().is_none(),
        "left a file behind"
    );
    assert!(t.check().starts_with("ok "));
    assert_eq!(t.finish(), 0);
}

#[test]
fn snapshot_of_a_target_that_exits_midway_leaves_nothing() {
    let dir = support::scratch("snapshot_exit");
    let mut t = Target::spawn(&["2"]);
    let core = dir.join("x.core");
    // The fault seam kills the target once every thread is stopped, so the
    // death lands mid-capture every time.
    assert_bad_input(
        snapshot_cmd(t.pid, &core, &[]).env("LEAKTRAIL_TEST_FAULT", "exit-during-capture"),
        &["exited during the capture"],
    );
    assert!(
        std::fs::read_dir(&dir).expect("dir").next().is_none(),
        "left a file behind"
    );
    // It died of the SIGKILL, and is not held stopped by anyone.
    let status = t.run.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}

#[test]
fn info_rejects_truncated_and_non_core_files() {
    let dir = support::scratch("snapshot_badinfo");
    let t = Target::spawn(&["1"]);
    let core = dir.join("whole.core");
    snapshot_of(t.pid, &core, &[]);
    assert_eq!(t.finish(), 0);
    let bytes = std::fs::read(&core).expect("read core");

    let info = |p: &Path| {
        let mut cmd = support::leaktrail();
        cmd.arg("info").arg(p);
        cmd
    };
    let cut = dir.join("cut.core");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write cut core");
    assert_bad_input(&mut info(&cut), &["truncated", "cut.core"]);
    std::fs::write(&cut, &bytes[..40]).expect("write cut core");
    assert_bad_input(&mut info(&cut), &["cut.core"]);

    let exe = support::fixture("snap_threads", &[]);
    assert_bad_input(&mut info(&exe), &["not a core file"]);
    let text = dir.join("notes.txt");
    std::fs::write(&text, "just some text\n").expect("write text");
    assert_bad_input(&mut info(&text), &["not an ELF file"]);
    assert_bad_input(&mut info(&dir.join("missing.core")), &["missing.core"]);
}

#[test]
fn traced_snapshot_recovers_exactly_the_live_allocations() {
    use leaktrail_recording::Snapshot;

    let dir = support::scratch("snapshot_traced");
    let exe = support::fixture("snap_live", &[]);
    let kdir = dir.join("kernel");
    std::fs::create_dir_all(&kdir).expect("kernel core dir");
    let mut cmd = Command::new(&exe);
    cmd.env("LD_PRELOAD", support::preload_library())
        .current_dir(&kdir)
        .stdin(Stdio::piped());
    allow_core_dumps(&mut cmd);
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
    let mut keep_block = 0;
    let mut expected = Vec::new();
    let mut live = Running::start_until(&mut cmd, Pipe::Stdout, |l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["fn", a] => keep_block = hex(a),
            ["live", a, s] => expected.push((hex(a), s.parse::<u64>().expect("size"))),
            ["ready", _] => return true,
            _ => panic!("unexpected line from snap_live: {l:?}"),
        }
        false
    });
    let pid: i32 = live
        .ready
        .split_whitespace()
        .nth(1)
        .expect("pid")
        .parse()
        .expect("pid");
    assert_eq!(expected.len(), 20);

    let mut cores = Vec::new();
    for mode in ["tables", "full"] {
        let core = dir.join(format!("{mode}.core"));
        snapshot_of(pid, &core, &["--memory", mode]);
        cores.push(core);
    }
    cores.push(gcore(pid, &dir.join("gcore")));
    live.send(b"x");
    assert_eq!(live.line().trim(), "ok");

    // And the kernel's core of the same process, where the machine lets
    // it dump one into its working directory.
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(pid, libc::SIGABRT) };
    live.wait();
    match kernel_core_in(&kdir) {
        Some(k) => cores.push(k),
        None => eprintln!("kernel core skipped: none was dumped here"),
    }

    for core in &cores {
        let snap = Snapshot::open(core).expect("open core");
        let audit = leaktrail_recording::audit::find(&snap, Some(pid as u32))
            .expect("decode audit")
            .unwrap_or_else(|| panic!("{}: no audit region", core.display()));
        // Our blocks are the ones of our distinctive sizes; the C library
        // allocates others of its own.
        let mut got: Vec<(u64, u64)> = audit
            .live
            .iter()
            .filter(|b| (7001..7081).contains(&b.size))
            .map(|b| (b.addr, b.size))
            .collect();
        got.sort_unstable();
        let mut want = expected.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{}", core.display());
        for b in audit.live.iter().filter(|b| (7001..7081).contains(&b.size)) {
            let frames = audit.frames(b.stack);
            assert!(
                frames
                    .first()
                    .is_some_and(|&f| f > keep_block && f < keep_block + 256),
                "{}: block {:#x} stack {frames:x?} should start in keep_block at {keep_block:#x}",
                core.display(),
                b.addr
            );
        }
        let info = info_json(core);
        assert_eq!(info["audit"]["present"], true, "{info}");
        assert!(
            info["audit"]["live_blocks"]
                .as_u64()
                .is_some_and(|n| n >= 20),
            "{info}"
        );
    }
    drop(live);
}

#[test]
fn a_stopped_target_stays_stopped_and_a_thread_id_is_refused() {
    let dir = support::scratch("snapshot_stopped");
    let mut t = Target::spawn(&["2"]);
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(t.pid, libc::SIGSTOP) };
    while support::proc_state(t.pid) != 'T' {
        std::thread::yield_now();
    }
    snapshot_of(t.pid, &dir.join("stopped.core"), &[]);
    assert_eq!(
        support::proc_state(t.pid),
        'T',
        "the job-control stop must survive the snapshot"
    );
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(t.pid, libc::SIGCONT) };
    assert!(t.check().starts_with("ok "));

    let tid = std::fs::read_dir(format!("/proc/{}/task", t.pid))
        .expect("task dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|&tid| tid != t.pid)
        .expect("a worker thread");
    assert_bad_input(
        &mut snapshot_cmd(tid, &dir.join("thread.core"), &[]),
        &["is a thread of process", &t.pid.to_string()],
    );
    assert_eq!(t.finish(), 0);
}

#[test]
fn snapshot_interrupted_by_a_signal_resumes_the_target_and_leaves_nothing() {
    // Issue 16, item 6: SIGTERM mid-capture used to leave NAME.core.tmp
    // behind, silently.
    for (signal, name, status) in [
        (libc::SIGTERM, "SIGTERM", 143),
        (libc::SIGINT, "SIGINT", 130),
    ] {
        let dir = support::scratch(&format!("snapshot_interrupt_{name}"));
        let mut t = Target::spawn(&["2"]);
        let core = dir.join("x.core");
        // The fault seam holds every thread stopped and says so on stderr,
        // so the signal lands mid-capture every time.
        let mut cmd = snapshot_cmd(t.pid, &core, &[]);
        cmd.env("LEAKTRAIL_TEST_FAULT", "pause-after-stop")
            .stdout(Stdio::piped());
        let mut snap = Running::start(&mut cmd, Pipe::Stderr, "leaktrail: test fault: ");
        assert_eq!(support::proc_state(t.pid), 't', "target held stopped");
        let names = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        };
        let during = names(&dir);
        assert!(
            during.len() == 1 && during[0].ends_with(".tmp"),
            "{name}: a temporary file is being written: {during:?}"
        );
        // SAFETY: kill takes no pointers.
        assert_eq!(unsafe { libc::kill(snap.pid(), signal) }, 0);
        let rest = snap.rest();
        let exit = snap.wait();
        assert_eq!(
            rest,
            [format!(
                "leaktrail: snapshot interrupted by {name}: process {} resumed, nothing written",
                t.pid
            )]
        );
        assert_eq!(exit.code(), Some(status), "{name}: {exit:?}");
        let left = names(&dir);
        assert!(left.is_empty(), "{name}: left {left:?} behind");
        assert!(
            t.check().starts_with("ok "),
            "{name}: target did not carry on"
        );
        assert_eq!(t.finish(), 0);
    }
}

#[test]
fn snapshot_of_an_already_traced_process_names_its_tracer() {
    // Issue 16, item 7: this used to be a permission message, even as root.
    if !Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = support::scratch("snapshot_traced_by_strace");
    let exe = support::fixture("snap_threads", &[]);
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-o", "/dev/null"])
        .arg(&exe)
        .arg("1")
        .stdin(Stdio::piped());
    // The fixture prints its own pid, not strace's: that is the one to ask for.
    let mut run = Running::start(&mut cmd, Pipe::Stdout, "ready ");
    let pid: i32 = run.ready["ready ".len()..].trim().parse().expect("pid");
    let tracer = run.pid();
    assert_ne!(pid, tracer);
    assert_bad_input(
        &mut snapshot_cmd(pid, &dir.join("x.core"), &[]),
        &[&format!(
            "process {pid} is already traced by PID {tracer} (a debugger or strace?); detach it first"
        )],
    );
    assert!(
        std::fs::read_dir(&dir).expect("dir").next().is_none(),
        "left a file behind"
    );
    run.send(b"x");
    assert!(run.line().starts_with("ok "), "target did not carry on");
    run.send(b"q");
    assert_eq!(run.wait().code(), Some(0));
}

#[test]
fn snapshot_of_a_zombie_says_so() {
    let dir = support::scratch("snapshot_zombie");
    let child = Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("start sleep");
    let mut child = support::ChildGuard(child);
    let pid = child.0.id() as i32;
    // SAFETY: kill takes no pointers.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    // Wait for it to die but leave it unreaped (WNOWAIT): a zombie.
    // SAFETY: siginfo_t is plain data, valid when zeroed.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a writable siginfo_t that outlives the call.
    let waited = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(waited, 0, "waitid");
    assert_eq!(support::proc_state(pid), 'Z');
    assert_bad_input(
        &mut snapshot_cmd(pid, &dir.join("x.core"), &[]),
        &[&format!(
            "process {pid} is a zombie (it exited; its parent has not reaped it)"
        )],
    );
    assert!(
        std::fs::read_dir(&dir).expect("dir").next().is_none(),
        "left a file behind"
    );
    let _ = child.0.wait();
}

#[test]
fn snapshot_of_a_kernel_thread_says_so() {
    // Pid 2 is kthreadd on Linux, unless we are in a pid namespace.
    let comm = std::fs::read_to_string("/proc/2/comm").unwrap_or_default();
    if comm.trim() != "kthreadd" {
        eprintln!("skipped: pid 2 is not kthreadd here ({comm:?})");
        return;
    }
    let dir = support::scratch("snapshot_kthread");
    assert_bad_input(
        &mut snapshot_cmd(2, &dir.join("x.core"), &[]),
        &["process 2 is a kernel thread: it has no user memory"],
    );
    assert!(
        std::fs::read_dir(&dir).expect("dir").next().is_none(),
        "left a file behind"
    );
}

#[test]
fn snapshot_of_a_process_whose_main_thread_exited_reads_a_live_thread() {
    // Issue 16, item 7: a main thread that called pthread_exit is a zombie
    // whose /proc/PID/{maps,mem} show nothing; this was "exited during the
    // capture", and the tracer (reading /proc/self/maps) lost every stack.
    let exe = support::fixture("snap_main_exit", &[]);
    for method in ["cow", "stop"] {
        let dir = support::scratch(&format!("snapshot_main_exit_{method}"));
        let mut run = support::start_in_steps(&dir, "full", &[exe.as_os_str()]);
        let pid = support::recorded_pid(&dir);
        assert_eq!(support::proc_state(pid), 'Z', "the main thread is a zombie");
        let out = support::success(
            support::leaktrail()
                .args(["snapshot", "--method", method, "--recording"])
                .arg(&dir),
        );
        let core = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .expect("the snapshot's path"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("task dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|&tid| tid != pid)
            .expect("the worker");
        assert!(
            stderr.contains(&format!(
                "leaktrail: the main thread of process {pid} has exited (pthread_exit): its memory was read through thread {tid}"
            )),
            "{method}: {stderr}"
        );
        let leaks = support::json(support::leaktrail().arg("leaks").arg(&core).arg("--json"));
        assert_eq!(leaks["definite"]["blocks"], 3, "{method}: {leaks:#}");
        assert_eq!(leaks["definite"]["bytes"], 3 * 777, "{method}: {leaks:#}");
        let group = support::allocated_in(&leaks, "groups", "leak_in_worker")
            .next()
            .unwrap_or_else(|| panic!("{method}: no group at leak_in_worker: {leaks:#}"));
        assert_eq!(group["kind"], "definite");
        assert_eq!(support::functions(&group["stack"])[1], "worker");
        run.close_stdin();
        assert!(run.wait().success(), "{method}: the program's own status");
    }
}
