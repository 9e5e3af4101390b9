//! Running a program under the tracer: `leaktrail run`.
//!
//! The supervisor starts the command with `libleaktrail_preload.so` in
//! `LD_PRELOAD` and one end of a socket pair in `LEAKTRAIL_SUPERVISOR_FD`.
//! When the program ends normally (return from `main`, or `exit`), the
//! tracer writes `exit PID STATUS HEADER_ADDR` on the socket and waits; the
//! supervisor runs its at-exit action (capture the final state) while the
//! heap is still intact, then answers with one byte and the program
//! finishes its exit. The child's exit status is passed through.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::recording::snapshots::Snapshots;
use crate::snapshot::MemoryMode;
use crate::watch::{WatchOptions, Watcher};
use crate::Error;

/// How to trace.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TraceOptions {
    /// The preload library.
    pub library: PathBuf,
    /// `dwarf`, `fp` or `none`.
    pub unwind: String,
    /// Frames per stack.
    pub depth: u32,
}

impl TraceOptions {
    /// Options with the library at `library` and default unwinding.
    pub fn new(library: PathBuf) -> Self {
        TraceOptions {
            library,
            unwind: "dwarf".to_string(),
            depth: leaktrail_format::DEFAULT_DEPTH as u32,
        }
    }
}

/// What the tracer says when the program ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitNotice {
    /// The process.
    pub pid: i32,
    /// The status it is exiting with.
    pub status: i32,
    /// Address of its audit region's header (0 if it has none).
    pub header_addr: u64,
}

impl ExitNotice {
    /// Parses `exit PID STATUS 0xADDR`.
    pub fn parse(line: &str) -> Option<ExitNotice> {
        let mut it = line.split_whitespace();
        if it.next()? != "exit" {
            return None;
        }
        let pid = it.next()?.parse().ok()?;
        let status = it.next()?.parse::<u32>().ok()? as i32;
        let addr = it.next()?;
        let header_addr = u64::from_str_radix(addr.strip_prefix("0x")?, 16).ok()?;
        Some(ExitNotice {
            pid,
            status,
            header_addr,
        })
    }
}

/// A traced child and our end of its hand-over socket.
pub struct Traced {
    child: Child,
    socket: Option<UnixStream>,
}

/// Finds the preload library: `$LEAKTRAIL_PRELOAD`, next to the running
/// binary, or in `../lib/leaktrail/` beside it (an installed layout).
pub fn find_library(exe: &Path) -> Result<PathBuf, Error> {
    const NAME: &str = "libleaktrail_preload.so";
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("LEAKTRAIL_PRELOAD") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p);
    }
    if let Some(dir) = exe.parent() {
        for candidate in [dir.join(NAME), dir.join("../lib/leaktrail").join(NAME)] {
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate);
        }
    }
    Err(Error::Malformed {
        path: PathBuf::from(NAME),
        why: format!(
            "the tracer library is not where leaktrail looks ({}); build it with `cargo build --workspace` or set LEAKTRAIL_PRELOAD",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Starts `cmd` under the tracer.
pub fn spawn(mut cmd: Command, opts: &TraceOptions) -> Result<Traced, Error> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (ours, theirs) = socket_pair()?;
    let preload = match std::env::var_os("LD_PRELOAD") {
        Some(existing) if !existing.is_empty() => {
            let mut s = opts.library.clone().into_os_string();
            s.push(":");
            s.push(existing);
            s
        }
        _ => opts.library.clone().into_os_string(),
    };
    cmd.env("LD_PRELOAD", preload)
        .env("LEAKTRAIL_UNWIND", &opts.unwind)
        .env("LEAKTRAIL_DEPTH", opts.depth.to_string())
        .env("LEAKTRAIL_SUPERVISOR_FD", theirs.as_raw_fd().to_string());
    let child = cmd
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    drop(theirs);
    Ok(Traced {
        child,
        socket: Some(ours),
    })
}

/// A connected socket pair: ours closes on exec, theirs is inherited.
fn socket_pair() -> Result<(UnixStream, OwnedFd), Error> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    if r != 0 {
        return Err(Error::Sys {
            what: "socketpair".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: socketpair just returned these two descriptors to us.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((UnixStream::from(ours), theirs))
}

impl Traced {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the program to end. `at_exit` runs when the tracer hands
    /// over at exit, with the program paused in its exit path; the program
    /// finishes exiting when it returns. Returns the child's status.
    pub fn wait(mut self, mut at_exit: impl FnMut(ExitNotice)) -> Result<ExitStatus, Error> {
        if let Some(socket) = self.socket.take() {
            let mut writer = socket.try_clone().map_err(|source| Error::Sys {
                what: "clone the supervisor socket".into(),
                source,
            })?;
            let mut lines = BufReader::new(socket).lines();
            // The socket reaches EOF when the child (and every process that
            // inherited its end) is gone, hand-over or not.
            while let Some(Ok(line)) = lines.next() {
                if let Some(notice) = ExitNotice::parse(&line) {
                    at_exit(notice);
                    let _ = writer.write_all(b"k");
                }
            }
        }
        self.child.wait().map_err(|source| Error::Sys {
            what: format!("wait for process {}", self.child.id()),
            source,
        })
    }
}

/// How `leaktrail run` records: a watch series beside the snapshots.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecordOptions {
    /// The recording directory; `None` for the watch default name.
    pub out: Option<PathBuf>,
    /// Time between periodic snapshots; `None` for none (the final one is
    /// still taken).
    pub every: Option<Duration>,
    /// Keep at most this many periodic snapshots (the first and the
    /// newest); 0 keeps all.
    pub keep: usize,
    /// What each snapshot captures.
    pub memory: MemoryMode,
    /// Time between watch samples.
    pub interval: Duration,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            out: None,
            every: Some(Duration::from_secs(600)),
            keep: 0,
            memory: MemoryMode::Full,
            interval: Duration::from_secs(1),
        }
    }
}

/// What a recorded run produced.
#[derive(Debug)]
pub struct Recorded {
    /// The child's exit status.
    pub status: ExitStatus,
    /// The recording directory.
    pub dir: PathBuf,
    /// Snapshots now in it, in order.
    pub snapshots: Vec<PathBuf>,
    /// Snapshots or samples that failed (the run went on).
    pub problems: Vec<String>,
}

/// The periodic-snapshot timer's shared state: stop flag and its condvar.
type Stop = Arc<(Mutex<bool>, Condvar)>;

impl Traced {
    /// Like [`Traced::wait`], recording as it goes: a watch series into the
    /// recording directory, a snapshot every `opts.every`, and a final one
    /// at the hand-over, before `at_exit` runs.
    pub fn record(
        self,
        opts: RecordOptions,
        mut at_exit: impl FnMut(ExitNotice),
    ) -> Result<Recorded, Error> {
        let pid = self.pid();
        let watch = WatchOptions::new(opts.interval, None, opts.out.clone());
        let watcher = Watcher::attach(pid, watch)?;
        let dir = watcher.dir().to_path_buf();
        let snapshots = Snapshots::of(&dir)?;
        let problems = Arc::new(Mutex::new(Vec::<String>::new()));
        let watching = std::thread::spawn(move || watcher.run(|_| {}));
        let stop: Stop = Arc::new((Mutex::new(false), Condvar::new()));
        let timer = opts.every.map(|every| {
            let (stop, snapshots, problems) = (stop.clone(), snapshots.clone(), problems.clone());
            let (memory, keep) = (opts.memory, opts.keep);
            std::thread::spawn(move || loop {
                let (lock, cvar) = &*stop;
                let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                let (guard, _) = cvar
                    .wait_timeout_while(guard, every, |stopped| !*stopped)
                    .unwrap_or_else(|p| p.into_inner());
                if *guard {
                    return;
                }
                drop(guard);
                let taken = snapshots
                    .take(pid, memory, false)
                    .and_then(|_| snapshots.prune(keep));
                if let Err(e) = taken {
                    problems
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("periodic snapshot: {e}"));
                }
            })
        });
        let status = self.wait(|notice| {
            if let Err(e) = snapshots.take(notice.pid, opts.memory, true) {
                problems
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("snapshot at exit: {e}"));
            }
            at_exit(notice);
        });
        {
            let (lock, cvar) = &*stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cvar.notify_all();
        }
        if let Some(t) = timer {
            let _ = t.join();
        }
        match watching.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("watch: {e}")),
            Err(_) => problems
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push("watch: the sampler stopped".into()),
        }
        let status = status?;
        let problems = std::mem::take(&mut *problems.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Recorded {
            status,
            snapshots: snapshots.list()?,
            dir,
            problems,
        })
    }
}

/// The shell-style exit code for a child's status: its code, or 128 plus
/// the signal that ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exit_notices() {
        assert_eq!(
            ExitNotice::parse("exit 42 3 0x7f0000001000"),
            Some(ExitNotice {
                pid: 42,
                status: 3,
                header_addr: 0x7f00_0000_1000
            })
        );
        assert_eq!(ExitNotice::parse("exit 42 3"), None);
        assert_eq!(ExitNotice::parse("hello"), None);
        assert_eq!(ExitNotice::parse("exit x 3 0x1"), None);
    }
}
