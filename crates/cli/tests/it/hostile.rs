//! Hostile paths and hostile files: an output never replaces what it did
//! not create, a bad `--out` is refused before the program starts, and
//! corrupt inputs are one line, never an abort.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

#[test]
fn run_refuses_a_bad_out_before_the_program_starts() {
    let dir = support::scratch("hostile_run_out");
    let mark = dir.join("MARK");
    let script = format!("touch '{}'", mark.display());
    let full = dir.join("full");
    std::fs::create_dir(&full).expect("mkdir");
    std::fs::write(full.join("x"), "").expect("write");
    let file = dir.join("file");
    std::fs::write(&file, "").expect("write");
    let orphan = dir.join("missing/rec");
    for (out, needle) in [
        (&full, "files in it"),
        (&file, "found a file"),
        (&orphan, "missing"),
    ] {
        assert_bad_input(
            leaktrail()
                .args(["run", "--every", "0", "--out"])
                .arg(out)
                .args(["--", "sh", "-c", &script]),
            &[needle],
        );
        assert!(
            !mark.exists(),
            "the program ran despite --out {}",
            out.display()
        );
    }
    let link = dir.join("audit.json");
    std::os::unix::fs::symlink(&file, &link).expect("symlink");
    assert_bad_input(
        leaktrail()
            .args(["run", "--no-record", "--dump-at-exit"])
            .arg(&link)
            .args(["--", "sh", "-c", &script]),
        &["refusing to replace", "symbolic link"],
    );
    assert!(!mark.exists(), "the program ran despite --dump-at-exit");
}

#[test]
fn watch_refuses_a_bad_out_before_the_program_starts() {
    let dir = support::scratch("hostile_watch_out");
    let mark = dir.join("MARK");
    let script = format!("touch '{}'", mark.display());
    let file = dir.join("file");
    std::fs::write(&file, "").expect("write");
    assert_bad_input(
        leaktrail()
            .args(["watch", "--out"])
            .arg(&file)
            .args(["--", "sh", "-c", &script]),
        &["found a file"],
    );
    assert!(!mark.exists(), "the program ran despite --out");
}

#[test]
fn an_empty_out_directory_becomes_private() {
    let dir = support::scratch("hostile_out_mode");
    let out = dir.join("rec");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    success(
        leaktrail()
            .args(["run", "--every", "0", "--out"])
            .arg(&out)
            .args(["--", "true"]),
    );
    let mode = std::fs::metadata(&out).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let lock = out.join("snapshots/.lock");
    let mode = std::fs::metadata(&lock).expect("lock").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
