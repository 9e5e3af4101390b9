//! Hostile paths and hostile files: an output never replaces what it did
//! not create, a bad `--out` is refused before the program starts, and
//! corrupt inputs are one line, never an abort.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core_edit::{self, file_offset, get_u64, put_u64};
use crate::support::{self, assert_bad_input, leaktrail, success};

/// The recording checked in under `fixtures/recordings/`.
fn recording() -> PathBuf {
    support::repo_root().join("fixtures/recordings/watch-malloc-leak-v1")
}

/// `leaktrail trend REC --svg OUT`: an output written in one pass.
fn trend_svg(out: &Path) -> std::process::Command {
    let mut cmd = leaktrail();
    cmd.arg("trend").arg(recording()).arg("--svg").arg(out);
    cmd
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn an_output_never_replaces_a_symlink_or_a_directory() {
    let dir = support::scratch("hostile_symlink");
    let precious = dir.join("precious");
    std::fs::write(&precious, "keep me").expect("write");
    let link = dir.join("chart.svg");
    std::os::unix::fs::symlink(&precious, &link).expect("symlink");
    assert_bad_input(
        &mut trend_svg(&link),
        &[
            "refusing to replace",
            "chart.svg",
            "symbolic link",
            "remove it",
        ],
    );
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&precious).expect("read"), b"keep me");

    let sub = dir.join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    assert_bad_input(
        &mut trend_svg(&sub),
        &["refusing to replace", "a directory"],
    );
    assert!(sub.is_dir());
    // Nothing else was left behind.
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["chart.svg", "precious", "sub"]);
}

#[test]
fn an_output_regular_file_is_replaced_and_dash_is_stdout() {
    let dir = support::scratch("hostile_regular");
    let out = dir.join("chart.svg");
    std::fs::write(&out, "old").expect("write");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    success(&mut trend_svg(&out));
    let body = std::fs::read_to_string(&out).expect("read");
    assert!(body.contains("<svg"), "{body}");
    let mode = std::fs::metadata(&out).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let got = success(&mut trend_svg(Path::new("-")));
    let stdout = String::from_utf8_lossy(&got.stdout);
    assert!(
        stdout.starts_with("<svg") || stdout.contains("<svg"),
        "{stdout}"
    );
    assert!(!Path::new("-").exists());
}

#[test]
fn an_output_fifo_is_written_through() {
    let dir = support::scratch("hostile_fifo");
    let fifo = dir.join("chart.svg");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(&fifo)
                .expect("open fifo")
                .read_to_string(&mut s)
                .expect("read fifo");
            s
        })
    };
    success(&mut trend_svg(&fifo));
    let body = reader.join().expect("reader");
    assert!(body.contains("<svg") && body.contains("</svg>"), "{body}");
    assert!(std::fs::symlink_metadata(&fifo)
        .expect("fifo")
        .file_type()
        .is_fifo());
}

#[test]
fn a_snapshot_is_never_written_over_a_device_a_pipe_or_a_symlink() {
    let dir = support::scratch("hostile_snapshot_out");
    let exe = support::fixture("snap_threads", &[]);
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("1").stdin(std::process::Stdio::piped());
    let mut run = support::Running::start(&mut cmd, support::Pipe::Stdout, "ready ");
    let pid: i32 = run.ready["ready ".len()..].trim().parse().expect("pid");

    assert_bad_input(
        &mut support::snapshot_cmd(pid, Path::new("/dev/null"), &[]),
        &["refusing to replace /dev/null", "character device"],
    );
    let null = std::fs::symlink_metadata("/dev/null").expect("/dev/null");
    assert!(null.file_type().is_char_device(), "/dev/null was replaced");
    assert!(!Path::new("/dev/null.tmp").exists());

    let fifo = dir.join("x.core");
    mkfifo(&fifo);
    assert_bad_input(
        &mut support::snapshot_cmd(pid, &fifo, &[]),
        &["refusing to replace", "a pipe"],
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .expect("fifo")
        .file_type()
        .is_fifo());

    let precious = dir.join("precious");
    std::fs::write(&precious, "keep me").expect("write");
    let link = dir.join("y.core");
    std::os::unix::fs::symlink(&precious, &link).expect("symlink");
    assert_bad_input(
        &mut support::snapshot_cmd(pid, &link, &[]),
        &["refusing to replace", "symbolic link"],
    );
    assert_eq!(std::fs::read(&precious).expect("read"), b"keep me");
    assert_bad_input(
        &mut support::snapshot_cmd(pid, Path::new("-"), &[]),
        &["standard output"],
    );

    // The target was never held.
    run.send(b"x");
    assert!(run.line().starts_with("ok "));
    run.send(b"q");
    assert_eq!(run.wait().code(), Some(0));
}

/// A scratch directory holding an empty regular file, and a script that
/// leaves a mark there if it ever runs: for checking that a bad output is
/// refused before the program starts.
struct BeforeStart {
    dir: PathBuf,
    file: PathBuf,
    mark: PathBuf,
    script: String,
}

impl BeforeStart {
    fn new(name: &str) -> BeforeStart {
        let dir = support::scratch(name);
        let mark = dir.join("MARK");
        let script = format!("touch '{}'", mark.display());
        let file = dir.join("file");
        std::fs::write(&file, "").expect("write");
        BeforeStart {
            dir,
            file,
            mark,
            script,
        }
    }

    /// `leaktrail ARGS OUT -- sh -c SCRIPT` is refused as bad input naming
    /// `needles`, and the script never ran.
    fn assert_refused(&self, args: &[&str], out: &Path, needles: &[&str]) {
        assert_bad_input(
            leaktrail()
                .args(args)
                .arg(out)
                .args(["--", "sh", "-c", &self.script]),
            needles,
        );
        assert!(
            !self.mark.exists(),
            "the program ran despite {args:?} {}",
            out.display()
        );
    }
}

#[test]
fn run_refuses_a_bad_out_before_the_program_starts() {
    let t = BeforeStart::new("hostile_run_out");
    let full = t.dir.join("full");
    std::fs::create_dir(&full).expect("mkdir");
    std::fs::write(full.join("x"), "").expect("write");
    let orphan = t.dir.join("missing/rec");
    for (out, needle) in [
        (&full, "files in it"),
        (&t.file, "found a file"),
        (&orphan, "missing"),
    ] {
        t.assert_refused(&["run", "--every", "0", "--out"], out, &[needle]);
    }
    let link = t.dir.join("audit.json");
    std::os::unix::fs::symlink(&t.file, &link).expect("symlink");
    t.assert_refused(
        &["run", "--no-record", "--dump-at-exit"],
        &link,
        &["refusing to replace", "symbolic link"],
    );
}

#[test]
fn watch_refuses_a_bad_out_before_the_program_starts() {
    let t = BeforeStart::new("hostile_watch_out");
    t.assert_refused(&["watch", "--out"], &t.file, &["found a file"]);
}

#[test]
fn an_empty_out_directory_becomes_private() {
    let dir = support::scratch("hostile_out_mode");
    let out = dir.join("rec");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dump = dir.join("audit.json");
    let mut cmd = leaktrail();
    cmd.args(["run", "--every", "0", "--out"])
        .arg(&out)
        .arg("--dump-at-exit")
        .arg(&dump)
        .args(["--", "true"]);
    // With no umask to mask them, the modes are leaktrail's own choice.
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::umask(0);
            Ok(())
        })
    };
    success(&mut cmd);
    // Every directory 0700, every file 0600 (issue 16, item 7): they hold
    // process memory and the program's command line.
    let mut seen = Vec::new();
    let mut todo = vec![out.clone()];
    while let Some(d) = todo.pop() {
        seen.push((d.clone(), 0o700));
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                seen.push((p, 0o600));
            }
        }
    }
    seen.push((dump, 0o600));
    for name in ["meta.json", "samples.jsonl", "snapshots/.lock"] {
        assert!(seen.iter().any(|(p, _)| *p == out.join(name)), "no {name}");
    }
    assert!(
        seen.iter()
            .any(|(p, _)| p.extension().is_some_and(|e| e == "core")),
        "no snapshot in {seen:?}"
    );
    for (path, want) in seen {
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, want, "{}", path.display());
    }
}

/// `core` with its LEAKTRAIL note's JSON passed through `edit`.
fn with_note(core: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut b = core.to_vec();
    assert!(core_edit::rewrite_note(&mut b, edit), "no LEAKTRAIL note");
    b
}

/// Runs `leaktrail CMD FILE` under a 1 GiB address-space limit: it must
/// refuse or report, never abort, panic or hang.
fn assert_survives(cmd: &str, file: &Path, what: &str) {
    let out = std::process::Command::new("prlimit")
        .arg("--as=1073741824")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_leaktrail"))
        .arg(cmd)
        .arg(file)
        .output()
        .expect("run prlimit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation"),
        "{cmd} on {what}: {err}"
    );
    let code = out.status.code();
    assert!(
        matches!(code, Some(0..=2)),
        "{cmd} on {what}: killed or aborted ({:?}): {err}",
        out.status
    );
    if code != Some(0) {
        assert_eq!(err.lines().count(), 1, "{cmd} on {what}: {err}");
    }
}

/// Records `growth_sites` for one step with `--memory MEMORY` into `rec`
/// under `dir`, and returns the snapshot.
fn one_snapshot(dir: &Path, memory: &str) -> PathBuf {
    let rec = dir.join("rec");
    let exe = support::fixture("growth_sites", &[]);
    support::record_in_steps(&rec, memory, &[exe.as_os_str(), "1".as_ref()], 1);
    rec.join("snapshots/0001.core")
}

#[test]
fn corrupt_snapshots_are_one_line_never_an_abort() {
    let dir = support::scratch("hostile_corrupt");
    let core_path = one_snapshot(&dir, "full");
    let core = std::fs::read(&core_path).expect("read snapshot");
    for cmd in ["info", "leaks", "caches"] {
        assert_survives(cmd, &core_path, "the real snapshot");
    }

    // The audit header: page-aligned, starting with its magic.
    let header = (0..core.len())
        .step_by(4096)
        .find(|&o| core[o..].starts_with(&leaktrail_format::MAGIC))
        .expect("an audit header in the snapshot");
    let live0 = header + std::mem::offset_of!(leaktrail_format::Header, live);
    let cap_field = live0 + std::mem::offset_of!(leaktrail_format::ShardDesc, capacity);

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut b = core.clone();
    put_u64(&mut b, cap_field, 1 << 40);
    cases.push(("a shard capacity of 2^40", b));
    let mut b = core.clone();
    put_u64(&mut b, cap_field, u64::MAX / 2 + 1);
    cases.push(("a shard capacity that overflows", b));

    // A live entry with a huge size: the first used slot of any shard.
    let mut b = core.clone();
    let mut patched = false;
    for s in 0..leaktrail_format::LIVE_SHARDS {
        let d = live0 + s * std::mem::size_of::<leaktrail_format::ShardDesc>();
        let (table, cap) = (get_u64(&core, d + 16), get_u64(&core, d + 24));
        if table == 0 || patched {
            continue;
        }
        let Some(base) = file_offset(&core, table) else {
            continue;
        };
        for e in 0..cap as usize {
            let Some(addr) = core.get(base + e * 32..base + e * 32 + 8) else {
                break;
            };
            let addr = u64::from_le_bytes(addr.try_into().expect("8"));
            if addr > 1 {
                put_u64(&mut b, base + e * 32 + 8, 1 << 62);
                patched = true;
                break;
            }
        }
    }
    assert!(patched, "no live entry to patch");
    cases.push(("a live block of 2^62 bytes", b));

    cases.push((
        "a region from 0 to 2^64",
        with_note(&core, |v| {
            let r = &mut v["regions"][0];
            r["start"] = 0.into();
            r["end"] = u64::MAX.into();
        }),
    ));
    cases.push((
        "a region of 1 TiB at the heap",
        with_note(&core, |v| {
            let regions = v["regions"].as_array_mut().expect("regions");
            for r in regions.iter_mut() {
                let start = r["start"].as_u64().expect("start");
                r["end"] = start.saturating_add(1 << 40).into();
            }
        }),
    ));
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let path = dir.join(format!("corrupt{i}.core"));
        std::fs::write(&path, bytes).expect("write corrupt core");
        for cmd in ["info", "leaks", "caches"] {
            assert_survives(cmd, &path, what);
        }
    }

    // Not a file at all: one line, never a hang.
    let fifo = dir.join("fifo.core");
    mkfifo(&fifo);
    for (path, needle) in [(&fifo, "a pipe"), (&dir, "a directory")] {
        for cmd in ["info", "leaks"] {
            assert_bad_input(leaktrail().arg(cmd).arg(path), &[needle]);
        }
    }
    assert_bad_input(
        leaktrail().arg("info").arg("/dev/zero"),
        &["a character device"],
    );
}

#[test]
fn leaks_of_a_memory_none_snapshot_names_the_mode() {
    let core = one_snapshot(&support::scratch("hostile_memory_none"), "none");
    let out = leaktrail()
        .arg("leaks")
        .arg(core)
        .output()
        .expect("run leaks");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("taken with --memory none"), "{err}");
    assert!(!err.contains("not started under the tracer"), "{err}");
}
