//! The suite's one harness: scratch directories of this test run, fixtures
//! compiled once per run, the binary under test and what we assert about
//! its runs, and children started and waited for through a pipe.
//!
//! Everything a test writes lives under `target/tmp/runs/<run id>/`, so two
//! `cargo test` runs sharing a target directory never remove each other's
//! recordings or overwrite each other's fixtures. A run holds an exclusive
//! `flock` on `runs/<run id>.lock` for as long as it lives; the first time
//! a run needs its directory it removes those of runs whose lock is free
//! (they have exited). We lock rather than look the pid up in
//! `/proc`, because a run in another pid namespace would look dead. What a
//! run wrote is kept until then, to look at after a failure.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// This test run's directory, `target/tmp/runs/<pid>-<nanoseconds>`,
/// created on first use (which also clears away those of exited runs).
fn run_dir() -> &'static Path {
    static RUN: OnceLock<(PathBuf, File)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let runs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runs");
        std::fs::create_dir_all(&runs).expect("create target/tmp/runs");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let id = format!("{}-{nanos}", std::process::id());
        // The lock first, then the directory: a directory without a held
        // lock beside it is never one that is being set up. The lock is
        // taken under another name and renamed into place, so no other
        // run ever sees it free.
        let taking = runs.join(format!("{id}.taking"));
        let lock = File::create(&taking).expect("create run lock");
        assert!(try_lock(&lock), "a new lock file is ours to lock");
        std::fs::rename(&taking, runs.join(format!("{id}.lock"))).expect("name run lock");
        remove_exited_runs(&runs, &id);
        let dir = runs.join(&id);
        std::fs::create_dir_all(&dir).expect("create run dir");
        (dir, lock)
    })
    .0
}

/// Takes an exclusive `flock` on `file` without waiting.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock takes a descriptor that `file` keeps open.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes the directories of runs other than `ours` whose lock no process
/// holds.
fn remove_exited_runs(runs: &Path, ours: &str) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".lock") else {
            continue;
        };
        if id == ours {
            continue;
        }
        let Ok(lock) = File::open(e.path()) else {
            continue;
        };
        if try_lock(&lock) {
            let _ = std::fs::remove_dir_all(runs.join(id));
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A fresh, empty directory for one test's outputs, in this run's
/// directory. Names are per test; a test that asks twice gets it emptied.
pub fn scratch(name: &str) -> PathBuf {
    let dir = run_dir().join(name);
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

/// Compiles `fixtures/<name>.c` (or `.cc`) once per test run with the given
/// extra flags and returns the executable's path.
pub fn fixture(name: &str, flags: &[&str]) -> PathBuf {
    build(name, "", &["-g", "-O1", "-pthread"], flags, &["-ldl"])
}

/// Compiles `fixtures/<name>.c` into a shared library once per test run
/// with the given extra flags, named with `suffix` (Node's `require` wants
/// `.node`).
pub fn fixture_library(name: &str, suffix: &str, flags: &[&str]) -> PathBuf {
    build(name, suffix, &["-shared", "-fPIC", "-g", "-O1"], flags, &[])
}

/// What `fixture` and `fixture_library` built in this run, by output path.
static BUILT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn build(name: &str, suffix: &str, base: &[&str], flags: &[&str], libs: &[&str]) -> PathBuf {
    let tag: String = flags
        .iter()
        .flat_map(|f| f.chars())
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let dir = run_dir().join("fixtures");
    let out = dir.join(format!(
        "{}{}{tag}{suffix}",
        name.replace('/', "_"),
        if tag.is_empty() { "" } else { "-" },
    ));
    // Held while compiling, so two tests wanting one fixture build it once.
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    if built.contains(&out) {
        return out;
    }
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
    let mut cmd = Command::new(compiler);
    cmd.args(base)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(flags)
        .args(libs);
    let status = cmd.status().expect("run the C compiler");
    assert!(
        status.success(),
        "compiling {} failed: {cmd:?}",
        src.display()
    );
    built.insert(out.clone());
    out
}

/// Kills and reaps the child when dropped, so a failing test leaves nothing
/// running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // After a wait, kill does nothing: std knows the child is reaped.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which of a child's pipes carries its ready line.
#[derive(Clone, Copy, Debug)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// A child that said it is ready, and the pipe it said so on. It is killed
/// and reaped when dropped.
pub struct Running {
    guard: ChildGuard,
    /// Its stdin, where the command piped it.
    pub stdin: Option<ChildStdin>,
    lines: BufReader<Box<dyn Read + Send>>,
    /// The ready line, without its newline.
    pub ready: String,
}

impl Running {
    /// Starts `cmd` with `pipe` piped (stdin as the caller set it) and
    /// waits for its first line there, which must begin with `ready`.
    pub fn start(cmd: &mut Command, pipe: Pipe, ready: &str) -> Running {
        Self::start_until(cmd, pipe, |line| {
            assert!(
                line.starts_with(ready),
                "expected a line starting {ready:?}, got {line:?}"
            );
            true
        })
    }

    /// Starts `cmd` like `start` and reads lines from `pipe` until
    /// `is_ready` says one is the ready line (it sees every line, and may
    /// keep what comes before or refuse it).
    pub fn start_until(
        cmd: &mut Command,
        pipe: Pipe,
        mut is_ready: impl FnMut(&str) -> bool,
    ) -> Running {
        match pipe {
            Pipe::Stdout => cmd.stdout(Stdio::piped()),
            Pipe::Stderr => cmd.stderr(Stdio::piped()),
        };
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let lines: Box<dyn Read + Send> = match pipe {
            Pipe::Stdout => Box::new(child.stdout.take().expect("stdout")),
            Pipe::Stderr => Box::new(child.stderr.take().expect("stderr")),
        };
        let mut running = Running {
            guard: ChildGuard(child),
            stdin,
            lines: BufReader::new(lines),
            ready: String::new(),
        };
        loop {
            let line = running.line();
            if is_ready(&line) {
                running.ready = line;
                return running;
            }
        }
    }

    /// The next line on the ready pipe, without its newline; it must come.
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.lines.read_line(&mut l).expect("read from child");
        assert!(
            n > 0,
            "the child closed its pipe before the line we wait for"
        );
        if l.ends_with('\n') {
            l.pop();
        }
        l
    }

    /// The ready pipe's remaining lines, to its end.
    pub fn rest(&mut self) -> Vec<String> {
        (&mut self.lines)
            .lines()
            .map(|l| l.expect("utf-8"))
            .collect()
    }

    /// Writes `bytes` to the child's stdin.
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(bytes).expect("write to child");
        stdin.flush().expect("flush");
    }

    /// Closes the child's stdin.
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.guard.0.id() as i32
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.guard.0.wait().expect("wait for child")
    }
}

/// Runs `cmd`, which must exit 0, and returns its output.
pub fn success(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: exit {:?}: {}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Runs `cmd`, which must exit 0 and print UTF-8, and returns its stdout.
pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(success(cmd).stdout).expect("utf-8 on stdout")
}

/// Runs `cmd`, which must exit 0, and parses its stdout as JSON.
pub fn json(cmd: &mut Command) -> Value {
    serde_json::from_slice(&success(cmd).stdout).expect("JSON on stdout")
}

/// Runs `leaktrail ARGS...`, which must succeed, and parses its stdout as
/// JSON.
pub fn leaktrail_json<I, S>(args: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    json(leaktrail().args(args))
}

/// Runs `cmd`, which must refuse bad input the way leaktrail does: exit
/// status 2, nothing on stdout, and on stderr exactly one line, beginning
/// `leaktrail: ` and containing each of `needles`. Returns that line.
pub fn assert_bad_input(cmd: &mut Command, needles: &[&str]) -> String {
    let err = refused(cmd, "leaktrail: ", needles);
    assert_eq!(
        err.lines().count(),
        1,
        "{cmd:?}: expected one line: {err:?}"
    );
    err
}

/// Runs `cmd`, which the argument parser must refuse: exit status 2,
/// nothing on stdout, and clap's complaint on stderr (`error: ...`, then a
/// hint on further lines) containing each of `needles`.
pub fn assert_usage_error(cmd: &mut Command, needles: &[&str]) -> String {
    refused(cmd, "error: ", needles)
}

/// Runs `cmd` and asserts exit status 2, nothing on stdout, and a stderr
/// that begins with `start` and contains each of `needles`; returns stderr.
fn refused(cmd: &mut Command, start: &str, needles: &[&str]) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{cmd:?}: expected exit 2, stderr: {err}"
    );
    assert!(err.starts_with(start), "{cmd:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{cmd:?}: stderr lacks {n:?}: {err}");
    }
    assert!(
        out.stdout.is_empty(),
        "{cmd:?}: nothing on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// `leaktrail snapshot --recording DIR [extra...]`, which must succeed.
pub fn snapshot_into(recording: &Path, extra: &[&str]) {
    success(
        leaktrail()
            .arg("snapshot")
            .args(extra)
            .arg("--recording")
            .arg(recording),
    );
}

/// `leaktrail snapshot -p PID -o OUT [extra...]`, which must succeed.
pub fn snapshot_of(pid: i32, out: &Path, extra: &[&str]) -> Output {
    success(&mut snapshot_cmd(pid, out, extra))
}

/// The command `leaktrail snapshot -p PID -o OUT [extra...]`.
pub fn snapshot_cmd(pid: i32, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = leaktrail();
    cmd.args(["snapshot", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(extra);
    cmd
}

/// Runs `argv` under `leaktrail run --every 0 --memory MEMORY --out DIR`;
/// the program does one step per line of stdin and prints `step K` after
/// step K. Takes a snapshot of the recording after each of `steps` steps,
/// then closes stdin (the program exits) and waits. Returns the traced
/// program's pid, from the recording's `meta.json`.
pub fn record_in_steps(dir: &Path, memory: &str, argv: &[&OsStr], steps: usize) -> i32 {
    record_in_steps_with(dir, memory, &[], argv, steps)
}

/// [`record_in_steps`] with more flags for `run` (`--sample 16KiB`, say).
pub fn record_in_steps_with(
    dir: &Path,
    memory: &str,
    run_flags: &[&str],
    argv: &[&OsStr],
    steps: usize,
) -> i32 {
    let mut run = start_in_steps_with(dir, memory, run_flags, argv);
    for k in 1..=steps {
        if k > 1 {
            assert_eq!(run.line(), format!("step {k}"));
        }
        snapshot_into(dir, &["--memory", memory]);
        if k < steps {
            run.send(b"\n");
        }
    }
    run.close_stdin();
    let status = run.wait();
    assert!(status.success(), "the traced program exited with {status}");
    recorded_pid(dir)
}

/// The traced program's pid, from the recording's `meta.json`.
pub fn recorded_pid(dir: &Path) -> i32 {
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json"))
            .expect("meta JSON");
    meta["pid"].as_i64().expect("pid") as i32
}

/// Starts `argv` (a program of the step protocol) under `leaktrail run
/// --out dir` without periodic snapshots, and returns it once it printed
/// "step 1".
pub fn start_in_steps(dir: &Path, memory: &str, argv: &[&OsStr]) -> Running {
    start_in_steps_with(dir, memory, &[], argv)
}

/// The sampler's seed in the tests' sampled runs.
pub const SAMPLE_SEED: &str = "1";

/// [`start_in_steps`] with more flags for `run`.
pub fn start_in_steps_with(
    dir: &Path,
    memory: &str,
    run_flags: &[&str],
    argv: &[&OsStr],
) -> Running {
    let run = Running::start(
        leaktrail()
            .arg("run")
            .args(run_flags)
            .args([
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
            // A sampled run (`--sample` in `run_flags`) samples the same
            // blocks every time; a full audit ignores it.
            .env("LEAKTRAIL_SAMPLE_SEED", SAMPLE_SEED)
            .stdin(Stdio::piped()),
        Pipe::Stdout,
        "step 1",
    );
    assert_eq!(run.ready, "step 1");
    run
}

/// `leaktrail info PATH --json`, which must succeed.
pub fn info_json(path: &Path) -> Value {
    json(leaktrail().arg("info").arg(path).arg("--json"))
}

/// gdb's `gcore -o PREFIX PID`, which must succeed; returns the core's
/// path, `PREFIX.PID`.
pub fn gcore(pid: i32, prefix: &Path) -> PathBuf {
    success(
        Command::new("gcore")
            .arg("-o")
            .arg(prefix)
            .arg(pid.to_string()),
    );
    PathBuf::from(format!("{}.{pid}", prefix.display()))
}

/// `leaktrail demo --duration 4s --interval 100ms --out DIR`, run once per
/// test run for the tests that read it: the recording's directory and
/// what the demo printed.
pub fn demo() -> &'static (PathBuf, String) {
    static DEMO: OnceLock<(PathBuf, String)> = OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = scratch("demo").join("rec");
        let stdout = stdout(
            leaktrail()
                .args(["demo", "--duration", "4s", "--interval", "100ms", "--out"])
                .arg(&dir),
        );
        (dir, stdout)
    })
}

/// The function names of a JSON stack, innermost first (`??` for none).
pub fn functions(stack: &Value) -> Vec<String> {
    stack
        .as_array()
        .expect("stack")
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("??").to_string())
        .collect()
}

/// The state letter of `/proc/PID/stat` (the field after the name in
/// parentheses, which may hold parentheses itself), `?` if it cannot be read.
pub fn proc_state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.trim_start().chars().next().unwrap_or('?')
}

/// The entries of `doc[list]` (groups, samples) whose innermost frame is
/// `function`.
pub fn allocated_in<'a>(
    doc: &'a Value,
    list: &str,
    function: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    doc[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {doc}"))
        .iter()
        .filter(move |x| x["stack"][0]["function"] == function)
}

/// The first entry of `doc[list]` whose `key` is `value`.
pub fn entry<'a>(doc: &'a Value, list: &str, key: &str, value: u64) -> &'a Value {
    doc[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {doc}"))
        .iter()
        .find(|x| x[key] == value)
        .unwrap_or_else(|| panic!("no {list} entry with {key} {value} in {doc}"))
}
