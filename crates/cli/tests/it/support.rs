//! Shared helpers: fixture compilation, the binary under test, child guards.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh directory for one test's outputs.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The `leaktrail` binary under test.
pub fn leaktrail() -> Command {
    Command::new(env!("CARGO_BIN_EXE_leaktrail"))
}

/// The preload library built next to the binary (`cargo build` makes it).
pub fn preload_library() -> PathBuf {
    let lib = Path::new(env!("CARGO_BIN_EXE_leaktrail"))
        .parent()
        .expect("binary has a directory")
        .join("libleaktrail_preload.so");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build --workspace` before the tests (the README's test command does)",
        lib.display()
    );
    lib
}

static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// Compiles `fixtures/<name>.c` (or `.cc`) once per test run with the given
/// extra flags and returns the executable's path.
pub fn fixture(name: &str, flags: &[&str]) -> PathBuf {
    let key = format!("{name} {}", flags.join(" "));
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let c = repo_root().join("fixtures").join(format!("{name}.c"));
    let (src, compiler) = if c.exists() {
        (c, "gcc")
    } else {
        (
            repo_root().join("fixtures").join(format!("{name}.cc")),
            "g++",
        )
    };
    let tag: String = flags
        .iter()
        .flat_map(|f| f.chars())
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let out = dir.join(format!(
        "{name}{}{tag}",
        if tag.is_empty() { "" } else { "-" }
    ));
    let status = Command::new(compiler)
        .args(["-g", "-O1", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .args(flags)
        .args(["-ldl"])
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "compiling {} failed", src.display());
    map.insert(key, out.clone());
    out
}

/// Kills and reaps the child when dropped, so a failing test leaves nothing
/// running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `leaktrail snapshot --recording DIR [extra...]`, which must succeed.
pub fn snapshot_into(recording: &Path, extra: &[&str]) {
    let out = leaktrail()
        .arg("snapshot")
        .args(extra)
        .arg("--recording")
        .arg(recording)
        .output()
        .expect("run leaktrail snapshot");
    assert!(
        out.status.success(),
        "snapshot --recording {} failed: {}",
        recording.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `argv` under `leaktrail run --every 0 --memory MEMORY --out DIR`;
/// the program does one step per line of stdin and prints `step K` after
/// step K. Takes a snapshot of the recording after each of `steps` steps,
/// then closes stdin (the program exits) and waits. Returns the traced
/// program's pid, from the recording's `meta.json`.
pub fn record_in_steps(dir: &Path, memory: &str, argv: &[&std::ffi::OsStr], steps: usize) -> i32 {
    use std::io::{BufRead, BufReader, Write};
    let mut run = ChildGuard(
        leaktrail()
            .args([
                "run",
                "--every",
                "0",
                "--interval",
                "100ms",
                "--memory",
                memory,
                "--out",
            ])
            .arg(dir)
            .arg("--")
            .args(argv)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("leaktrail run"),
    );
    let mut stdin = run.0.stdin.take().expect("stdin");
    let mut lines = BufReader::new(run.0.stdout.take().expect("stdout")).lines();
    for k in 1..=steps {
        let line = lines.next().expect("a step line").expect("utf-8");
        assert_eq!(line, format!("step {k}"));
        snapshot_into(dir, &["--memory", memory]);
        if k < steps {
            stdin.write_all(b"\n").expect("next step");
        }
    }
    drop(stdin);
    let status = run.0.wait().expect("wait");
    assert!(status.success(), "the traced program exited with {status}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json"))
            .expect("meta JSON");
    meta["pid"].as_i64().expect("pid") as i32
}

/// Runs `leaktrail ARGS...`, which must succeed, and parses its stdout as
/// JSON.
pub fn leaktrail_json<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = leaktrail().args(args).output().expect("run leaktrail");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}
