//! Snapshots that barely stop the process: the copy-on-write image holds
//! memory as it was at the pause while the target writes on, the fallback
//! under seccomp and under a process limit, incremental snapshots that
//! read back byte-identical to full ones, materialized and dropped links
//! of a chain.
//!
//! The target is `fixtures/snap_cow.c`: a writer thread whose buffer is
//! self-consistent at every instant (pass and position published before
//! each slot), driven through its stdin; `fixtures/snap_seccomp.c` forbids
//! fork, `fixtures/snap_nproc.c` is over its `RLIMIT_NPROC`.
//! Synchronisation goes through pipes and the test seam
//! `pause-before-copy` (leaktrail waits for a byte on its stdin after
//! letting the target go, before copying): no sleeps.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use leaktrail_recording::{Memory, Snapshot};

use crate::support::{self, assert_bad_input, snapshot_cmd, snapshot_of, Pipe, Running};

/// A running `snap_cow` and the addresses it announced.
struct Target {
    run: Running,
    pid: i32,
    exe: std::path::PathBuf,
    buf: u64,
    slots: u64,
    pass: u64,
    at: u64,
    dontfork: u64,
    wipe: u64,
}

impl Target {
    fn spawn(mib: &str, mode: &str) -> Target {
        let exe = support::fixture("snap_cow", &[]);
        let mut cmd = Command::new(&exe);
        cmd.args([mib, mode]).stdin(Stdio::piped());
        // Without rseq the kernel writes nothing into a blocked thread's
        // memory (it updates the rseq area's CPU number whenever a thread
        // comes back on another CPU), so two snapshots of a waiting target
        // are of the same memory.
        cmd.env("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
        let run = Running::start(&mut cmd, Pipe::Stdout, "ready ");
        let f: Vec<u64> = run.ready["ready ".len()..]
            .split_ascii_whitespace()
            .map(|w| {
                let (digits, radix) = match w.strip_prefix("0x") {
                    Some(h) => (h, 16),
                    None => (w, 10),
                };
                u64::from_str_radix(digits, radix).expect("number")
            })
            .collect();
        Target {
            run,
            pid: f[0] as i32,
            exe,
            buf: f[1],
            slots: f[2],
            pass: f[3],
            at: f[4],
            dontfork: f[5],
            wipe: f[6],
        }
    }

    fn ask(&mut self, c: u8) -> String {
        self.run.send(&[c]);
        self.run.line()
    }
}

/// Checks that `core` holds `t`'s buffer exactly as it was at one instant
/// and returns the pass it was writing then.
fn assert_still_image(core: &Path, t: &Target) -> u64 {
    let snap = Snapshot::open(core).expect("open core");
    let pass = snap.read_u64(t.pass).expect("pass");
    let at = snap.read_u64(t.at).expect("at");
    let mut bytes = vec![0u8; t.slots as usize * 8];
    snap.read(t.buf, &mut bytes).expect("buffer");
    for (i, w) in bytes.chunks_exact(8).enumerate() {
        let v = u64::from_le_bytes(w.try_into().unwrap());
        let i = i as u64;
        let (now, before) = (pass << 32 | i, (pass.saturating_sub(1)) << 32 | i);
        let ok = match i.cmp(&at) {
            std::cmp::Ordering::Less => v == now,
            std::cmp::Ordering::Greater => v == before || pass == 0,
            std::cmp::Ordering::Equal => v == now || v == before,
        };
        assert!(
            ok,
            "slot {i} holds pass {} (index {:#x}); at the pause the writer was at slot {at} of pass {pass}",
            v >> 32,
            v & 0xffff_ffff
        );
    }
    let mut page = [0u8; 4096];
    snap.read(t.dontfork, &mut page).expect("dontfork page");
    assert!(
        page.iter().all(|&b| b == 0xd0),
        "MADV_DONTFORK page not kept"
    );
    snap.read(t.wipe, &mut page).expect("wipeonfork page");
    assert!(
        page.iter().all(|&b| b == 0xe0),
        "MADV_WIPEONFORK page not kept"
    );
    pass
}

fn method_of(core: &Path) -> (String, Option<String>) {
    let snap = Snapshot::open(core).expect("open core");
    let m = snap.metadata().expect("our note");
    (m.capture.method.clone(), m.capture.fallback.clone())
}

#[test]
fn cow_snapshot_holds_memory_as_it_was_at_the_pause_while_the_target_writes_on() {
    let dir = support::scratch("cow_still");
    let mut t = Target::spawn("32", "spin");
    for method in ["auto", "stop"] {
        let core = dir.join(format!("{method}.core"));
        let mut child = snapshot_cmd(t.pid, &core, &["--method", method, "-v"])
            .env("LEAKTRAIL_TEST_FAULT", "pause-before-copy")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leaktrail");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        while !line.contains("copy not started") {
            line.clear();
            assert!(
                err.read_line(&mut line).expect("read stderr") > 0,
                "leaktrail ended before the seam"
            );
        }
        // The target runs again, and rewrites every slot twice, before a
        // byte of its memory is copied from the image.
        let after: u64 = t.ask(b'w')["passes ".len()..].trim().parse().expect("pass");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"x")
            .expect("go on");
        let out = child.wait_with_output().expect("leaktrail");
        assert!(out.status.success(), "{out:?}");
        let captured = assert_still_image(&core, &t);
        assert!(
            captured + 2 <= after,
            "{method}: captured pass {captured}, but the target was writing pass {after} after two more"
        );
        let expect = if method == "auto" { "cow" } else { "stop" };
        assert_eq!(method_of(&core), (expect.to_string(), None));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("cost: {}: {expect}", core.display())),
            "{stdout}"
        );
    }
    // No copy is left behind, as a child or a zombie of the target's.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", t.pid)).unwrap_or_default();
    assert_eq!(children.trim(), "", "the target has children left");
    assert!(t.ask(b'w').starts_with("passes "), "target stopped writing");
}

/// Starts `fixture` (a target that cannot fork, printing "ready PID"),
/// snapshots it by the default method with `args` and checks the fallback:
/// stop-and-copy, `said` on stderr, `noted` in the note's fallback, and
/// `--method cow` refused naming `cause` (exit 2, no file). Returns the
/// running target, its pid, the core and leaktrail's stdout.
fn assert_falls_back(
    fixture: &str,
    args: &[&str],
    said: &str,
    noted: &str,
    cause: &str,
) -> (Running, i32, std::path::PathBuf, String) {
    let dir = support::scratch(&format!("cow_{fixture}"));
    let exe = support::fixture(fixture, &[]);
    let mut cmd = Command::new(&exe);
    cmd.stdin(Stdio::piped());
    let run = Running::start(&mut cmd, Pipe::Stdout, "ready ");
    let pid: i32 = run.ready["ready ".len()..].trim().parse().expect("pid");
    let core = dir.join("fallback.core");
    let out = snapshot_of(pid, &core, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("copy-on-write not used ({said}")),
        "{stderr}"
    );
    let (method, fallback) = method_of(&core);
    assert_eq!(method, "stop");
    assert!(
        fallback.as_deref().is_some_and(|f| f.contains(noted)),
        "{fallback:?}"
    );
    assert_bad_input(
        &mut snapshot_cmd(pid, &dir.join("forced.core"), &["--method", "cow"]),
        &[
            "copy-on-write capture cannot be used",
            cause,
            "--method stop",
        ],
    );
    assert!(!dir.join("forced.core").exists());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (run, pid, core, stdout)
}

#[test]
fn a_seccomp_filter_that_forbids_fork_falls_back_to_stop_and_copy_and_says_so() {
    let (mut run, ..) = assert_falls_back(
        "snap_seccomp",
        &[],
        "the process has a seccomp filter",
        "seccomp",
        "seccomp",
    );
    run.send(b"x");
    assert_eq!(run.line(), "fork EPERM", "the filter no longer holds");
}

#[test]
fn a_fork_refused_by_a_process_limit_falls_back_to_stop_and_copy_and_says_so() {
    // No filter this time: the clone we run inside the target reaches the
    // kernel and fails there (EAGAIN, RLIMIT_NPROC), with every thread
    // stopped; the snapshot carries on by the old method.
    let (mut run, pid, core, stdout) = assert_falls_back(
        "snap_nproc",
        &["-v"],
        "clone in the process failed: Resource temporarily unavailable",
        "(a pids limit?)",
        "clone in the process failed",
    );
    assert!(
        stdout.contains(&format!("cost: {}: stop (fallback)", core.display())),
        "{stdout}"
    );
    // The stop-and-copy core is whole: the process's one thread, memory.
    let snap = Snapshot::open(&core).expect("open core");
    assert_eq!(snap.metadata().expect("note").threads, vec![pid]);
    assert!(snap.ranges().iter().any(|&(s, e)| e > s));
    // The target lives on, its registers and its limit as they were, and
    // the failed clone left no child.
    run.send(b"x");
    assert_eq!(run.line(), "fork EAGAIN");
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    assert_eq!(children.trim(), "", "the failed clone left a child");
}

/// The children of every thread of `pid` (a clone's child belongs to the
/// thread that made it), zombies included.
fn children_of(pid: i32) -> String {
    let mut all = String::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let path = task.expect("task").path().join("children");
        all.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    }
    all.trim().to_string()
}

#[test]
fn a_failed_clone_end_falls_back_to_stop_and_copy_and_leaves_no_child() {
    // The seam makes ending the injected clone fail after the kernel made
    // the child, every thread still stopped: the snapshot is taken by
    // stop-and-copy, and the child (killed, then a zombie of the
    // target's) is reaped once the threads run again, not left behind.
    let dir = support::scratch("cow_clone_end");
    let mut t = Target::spawn("8", "spin");
    let core = dir.join("fallback.core");
    let out = snapshot_cmd(t.pid, &core, &["-v"])
        .env("LEAKTRAIL_TEST_FAULT", "fail-clone-end")
        .output()
        .expect("leaktrail");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("copy-on-write not used (ending the injected clone failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("zombie"), "{stderr}");
    let (method, fallback) = method_of(&core);
    assert_eq!(method, "stop");
    assert!(
        fallback
            .as_deref()
            .is_some_and(|f| f.contains("ending the injected clone failed")),
        "{fallback:?}"
    );
    assert_still_image(&core, &t);
    assert_eq!(children_of(t.pid), "", "the failed clone left a child");
    assert!(t.ask(b'w').starts_with("passes "), "target stopped writing");
}

/// Every byte of every range of `full` reads the same in `other`, and both
/// cover the same addresses.
fn assert_same_memory(full: &Snapshot, other: &Snapshot) {
    let merge = |r: Vec<(u64, u64)>| {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, e) in r {
            match out.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => out.push((s, e)),
            }
        }
        out
    };
    let ranges = merge(full.ranges());
    assert_eq!(ranges, merge(other.ranges()), "different address ranges");
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for (s, e) in ranges {
        let mut at = s;
        while at < e {
            let n = ((e - at) as usize).min(a.len());
            full.read(at, &mut a[..n]).expect("full");
            other.read(at, &mut b[..n]).expect("incremental");
            if a[..n] != b[..n] {
                let i = a[..n]
                    .iter()
                    .zip(&b[..n])
                    .position(|(x, y)| x != y)
                    .unwrap();
                panic!("memory differs at {:#x}", at + i as u64);
            }
            at += n as u64;
        }
    }
}

#[test]
fn incremental_snapshots_read_back_byte_identical_to_full_ones_through_materialize_and_drop() {
    let dir = support::scratch("cow_incremental");
    let mut t = Target::spawn("16", "steps");
    let pid = t.pid;
    let snap = |name: &str, extra: &[&str]| {
        let core = dir.join(name);
        snapshot_of(pid, &core, extra);
        core
    };
    let full1 = snap("full1.core", &[]);
    assert!(t.ask(b'c').starts_with("changed "));
    let full2 = snap("full2.core", &[]);
    let inc2 = snap("inc2.core", &["--since", full1.to_str().unwrap()]);
    assert!(t.ask(b'c').starts_with("changed "));
    let full3 = snap("full3.core", &[]);
    let inc3 = snap("inc3.core", &["--since", inc2.to_str().unwrap()]);

    let open = |p: &Path| Snapshot::open(p).expect("open");
    assert_same_memory(&open(&full2), &open(&inc2));
    assert_same_memory(&open(&full3), &open(&inc3));
    // Only about an eighth of the buffer changed each time.
    for (full, inc) in [(&full2, &inc2), (&full3, &inc3)] {
        let (f, i) = (open(full), open(inc));
        let written = i.metadata().unwrap().capture.written_bytes;
        assert!(
            written * 4 < f.captured_bytes() && i.file_bytes() * 3 < f.file_bytes(),
            "{}: {written} bytes written of {}",
            inc.display(),
            f.captured_bytes()
        );
    }

    let standalone = dir.join("inc3-standalone.core");
    support::success(
        support::leaktrail()
            .args(["snapshot", "--materialize"])
            .arg(&inc3)
            .arg("-o")
            .arg(&standalone),
    );
    let m = open(&standalone);
    assert!(m.metadata().unwrap().base.is_none());
    assert_same_memory(&open(&full3), &m);
    let gdb = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "info threads"])
        .arg(&t.exe)
        .arg(&standalone)
        .output()
        .expect("run gdb");
    let text = String::from_utf8_lossy(&gdb.stdout);
    let threads = text
        .lines()
        .filter(|l| {
            l.trim_start_matches('*')
                .trim_start()
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .filter(|l| l.contains("Thread ") || l.contains("LWP"))
        .count();
    assert_eq!(
        threads, 3,
        "gdb should list main, writer and idle thread:\n{text}"
    );

    // Dropping the middle link keeps the last one whole.
    support::success(support::leaktrail().args(["snapshot", "--drop"]).arg(&inc2));
    assert!(!inc2.exists());
    assert_same_memory(&open(&full3), &open(&inc3));
    // Replacing its base, then deleting it, behind leaktrail's back: one
    // clear line each, exit 2.
    let kept = dir.join("full1.kept");
    std::fs::rename(&full1, &kept).unwrap();
    std::fs::copy(&full2, &full1).unwrap();
    assert_bad_input(
        support::leaktrail().arg("info").arg(&inc3),
        &["inc3.core", "full1.core", "is another snapshot", "replaced"],
    );
    std::fs::rename(&kept, &full1).unwrap();
    assert_same_memory(&open(&full3), &open(&inc3));
    std::fs::remove_file(&full1).unwrap();
    assert_bad_input(
        support::leaktrail().arg("info").arg(&inc3),
        &["inc3.core", "full1.core", "cannot be read", "--materialize"],
    );
    assert!(
        t.ask(b'c').starts_with("changed "),
        "target stopped answering"
    );
}

#[test]
fn a_recordings_incremental_snapshots_chain_and_survive_dropping_a_link() {
    let dir = support::scratch("cow_recording");
    let rec = dir.join("rec");
    let exe = support::fixture("snap_cow", &[]);
    let mut cmd = support::leaktrail();
    cmd.args(["run", "--every", "0", "--incremental", "-v", "--out"])
        .arg(&rec)
        .arg("--")
        .arg(&exe)
        .args(["16", "steps"])
        .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
        .stdin(Stdio::piped());
    let mut run = Running::start(&mut cmd, Pipe::Stdout, "ready ");
    let pid: i32 = run.ready["ready ".len()..]
        .split_ascii_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid");
    let core = |k: usize| rec.join(format!("snapshots/{k:04}.core"));
    let mut refs = Vec::new();
    for k in 1..=3 {
        support::snapshot_into(&rec, &["--incremental"]);
        let reference = dir.join(format!("ref{k}.core"));
        snapshot_of(pid, &reference, &[]);
        refs.push(reference);
        run.send(b"c");
        assert!(run.line().starts_with("changed "));
    }
    let open = |p: &Path| Snapshot::open(p).expect("open");
    let base_of = |p: &Path| open(p).metadata().unwrap().base.clone().map(|b| b.file);
    assert_eq!(base_of(&core(1)), None);
    assert_eq!(base_of(&core(2)).as_deref(), Some("0001.core"));
    assert_eq!(base_of(&core(3)).as_deref(), Some("0002.core"));
    for k in 1..=3 {
        assert_same_memory(&open(&refs[k - 1]), &open(&core(k)));
    }
    let out = support::success(
        support::leaktrail()
            .args(["snapshot", "--drop"])
            .arg(core(2)),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("folded into"),
        "{out:?}"
    );
    assert_eq!(base_of(&core(3)).as_deref(), Some("0001.core"));
    assert_same_memory(&open(&refs[2]), &open(&core(3)));
    // The exit snapshot is incremental too, to the newest one, and the
    // run printed what each cost.
    run.send(b"q");
    let status = run.wait();
    assert!(status.success(), "{status}");
    let exit = rec.join("snapshots/0004-exit.core");
    assert_eq!(base_of(&exit).as_deref(), Some("0003.core"));
    assert!(open(&exit).metadata().unwrap().capture.cpu_ns > 0);
}

/// The start addresses of `pid`'s mappings (from `/proc/PID/smaps`), each
/// with its end and whether its `VmFlags` has `dc` (`MADV_DONTFORK`).
fn dontfork_flags(pid: i32) -> Vec<(u64, u64, bool)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut out: Vec<(u64, u64, bool)> = Vec::new();
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(last) = out.last_mut() {
                last.2 = flags.split_ascii_whitespace().any(|f| f == "dc");
            }
        } else if let Some((range, _)) = line.split_once(' ') {
            if let Some((s, e)) = range.split_once('-') {
                if let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) {
                    out.push((s, e, false));
                }
            }
        }
    }
    out
}

/// `jsobjects --json`'s census: constructor, count, bytes.
fn js_census(core: &Path) -> Vec<(String, u64, u64)> {
    let doc = support::leaktrail_json([
        std::ffi::OsStr::new("jsobjects"),
        "--json".as_ref(),
        core.as_os_str(),
    ]);
    let mut census: Vec<(String, u64, u64)> = doc["constructors"]
        .as_array()
        .expect("constructors")
        .iter()
        .map(|c| {
            (
                c["constructor"].as_str().expect("name").to_string(),
                c["count"].as_u64().expect("count"),
                c["bytes"].as_u64().expect("bytes"),
            )
        })
        .collect();
    census.sort();
    census
}

/// Issue 18: V8 advises its whole heap `MADV_DONTFORK`, which a fork's
/// image lacks. The target marks it `MADV_DOFORK` for the fork and
/// `MADV_DONTFORK` again after it, so the JS heap is copied from the image
/// after the release: the same heap as a stop-and-copy snapshot's, and
/// the target's flags as they were.
#[test]
fn nodes_dontfork_heap_is_copied_from_the_image_and_its_flags_are_given_back() {
    let dir = support::scratch("cow_node_dontfork");
    let script = support::repo_root().join("fixtures/node/jsheap.js");
    let mut cmd = Command::new("node");
    cmd.arg("--expose-gc")
        .arg(&script)
        .arg("4000")
        .stdin(Stdio::piped());
    let node = Running::start(&mut cmd, Pipe::Stdout, "step 1");
    let pid = node.pid();
    let before = dontfork_flags(pid);
    let dontfork: Vec<(u64, u64)> = before.iter().filter(|m| m.2).map(|m| (m.0, m.1)).collect();
    assert!(!dontfork.is_empty(), "node has no MADV_DONTFORK mapping");

    let cow = dir.join("cow.core");
    let out = snapshot_of(pid, &cow, &["--method", "cow", "-v"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mib: f64 = text
        .split_once("MiB of MADV_DONTFORK memory")
        .and_then(|(head, _)| head.rsplit(' ').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no MADV_DONTFORK memory in the image: {text}"));
    assert!(mib > 0.0, "{text}");
    // Every mapping over memory that was MADV_DONTFORK still is.
    let after = dontfork_flags(pid);
    for &(s, e) in &dontfork {
        for m in after.iter().filter(|m| m.0 < e && s < m.1) {
            assert!(
                m.2,
                "{:#x}-{:#x} lost MADV_DONTFORK in the snapshot",
                m.0, m.1
            );
        }
    }
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    assert_eq!(children.trim(), "", "the target has children left");

    let stop = dir.join("stop.core");
    snapshot_of(pid, &stop, &["--method", "stop"]);
    let census = js_census(&cow);
    let listeners = census.iter().find(|c| c.0 == "Listener");
    assert_eq!(listeners, Some(&("Listener".to_string(), 4000, 4000 * 40)));
    assert_eq!(census, js_census(&stop));
    drop(node);
}
