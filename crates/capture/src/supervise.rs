//! Running a program under the tracer: `leaktrail run`.
//!
//! The supervisor starts the command with `libleaktrail_preload.so` in
//! `LD_PRELOAD` and one end of a socket pair in `LEAKTRAIL_SUPERVISOR_FD`.
//! When the program ends normally (return from `main`, or `exit`), the
//! tracer writes `exit PID STATUS HEADER_ADDR` on the socket and waits; the
//! supervisor runs its at-exit action (capture the final state) while the
//! heap is still intact, then answers with one byte and the program
//! finishes its exit. The child's exit status is passed through. Both
//! sides of that contract are in [`leaktrail_format::handover`].

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use leaktrail_format::handover;
pub use leaktrail_format::handover::{ExitNotice, Notice};
use leaktrail_format::UnwindMode;
use leaktrail_recording::dir::snapshots::Snapshots;
use leaktrail_recording::dir::Meta;
use leaktrail_recording::Sample;

use crate::snapshot::{self, MemoryMode};
use crate::watch::{StopHandle, WatchOptions, Watcher};
use crate::Error;

/// How to trace.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TraceOptions {
    /// The preload library.
    pub library: PathBuf,
    /// How the tracer captures stacks.
    pub unwind: UnwindMode,
    /// Frames per stack.
    pub depth: u32,
    /// Mean bytes between sampled blocks; 0 records every block.
    pub sample: u64,
}

impl TraceOptions {
    /// Options with the library at `library` and default unwinding.
    pub fn new(library: PathBuf) -> Self {
        TraceOptions {
            library,
            unwind: UnwindMode::Dwarf,
            depth: leaktrail_format::DEFAULT_DEPTH as u32,
            sample: 0,
        }
    }
}

/// A traced child and our end of its hand-over socket; or a process
/// `leaktrail attach` injected the tracer into (no child of ours).
pub struct Traced {
    child: Option<Child>,
    pid: i32,
    socket: Option<UnixStream>,
    /// Told the recording's snapshots when it starts (attach takes the
    /// last one at detach, from another thread).
    started: Option<Arc<Started>>,
}

/// A preload library carried inside the binary (the `leaktrail` binary
/// embeds the one it was built with), with a name for its contents.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedLibrary<'a> {
    /// The library's bytes.
    pub bytes: &'a [u8],
    /// A hash of `bytes` (hex): it names the cache directory, so two
    /// builds' libraries never share a file.
    pub hash: &'a str,
}

/// Finds the preload library: `$LEAKTRAIL_PRELOAD`, next to the running
/// binary, or in `../lib/leaktrail/` beside it (an installed layout); else
/// writes `embedded`, when given, to a private cache directory and returns
/// that file (see [`unpack`]).
pub fn find_library(exe: &Path, embedded: Option<EmbeddedLibrary<'_>>) -> Result<PathBuf, Error> {
    const NAME: &str = "libleaktrail_preload.so";
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os(handover::PRELOAD) {
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
    if let Some(lib) = embedded {
        return unpack(lib, NAME);
    }
    Err(Error::Malformed {
        path: PathBuf::from(NAME),
        why: format!(
            "the tracer library is not where leaktrail looks ({}); build it with `cargo build --workspace` or set {}",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            handover::PRELOAD,
        ),
    })
}

/// Writes an embedded library to
/// `$XDG_CACHE_HOME/leaktrail/preload-HASH/NAME` (else `~/.cache/…`, else
/// `$TMPDIR/leaktrail-UID/…`) unless the same bytes are there already, and
/// returns its path.
///
/// Every traced program maps this file, so nobody else may be able to
/// change it: the `preload-HASH` directory is made mode 0700 and must be
/// ours and closed to others, as must the folder above it; the file is
/// written under a temporary name and renamed, so a concurrent `run` never
/// maps half of it. A file already there is compared with the embedded
/// bytes (a few MB read, cheaper than the program it traces) and rewritten
/// when they differ, so a damaged cache mends itself.
fn unpack(lib: EmbeddedLibrary<'_>, name: &str) -> Result<PathBuf, Error> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let base = crate::launch::user_cache_dir()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("leaktrail-{uid}")));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)
        .map_err(io(&base))?;
    let dir = base.join(format!("preload-{}", lib.hash));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&dir)(e)),
    }
    for (path, private) in [(&base, false), (&dir, true)] {
        let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
        // The folder above may be group-writable (user private groups).
        let open = if private { 0o077 } else { 0o002 };
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & open != 0 {
            return Err(Error::Malformed {
                path: path.clone(),
                why: format!(
                    "expected a directory of user {uid} that others cannot write{} to hold the tracer library, found one of user {} with mode {:o}",
                    if private { " or read (mode 0700)" } else { "" },
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            });
        }
    }
    let path = dir.join(name);
    if std::fs::read(&path).is_ok_and(|b| b == lib.bytes) {
        return Ok(path);
    }
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(lib.bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&path)(e));
    }
    Ok(path)
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
        .env(handover::UNWIND, opts.unwind.name())
        .env(handover::DEPTH, opts.depth.to_string())
        .env(handover::SAMPLE, opts.sample.to_string())
        .env(handover::SUPERVISOR_FD, link_value(&theirs)?);
    let child = cmd
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    drop(theirs);
    forward_signals_to(child.id() as i32);
    Ok(Traced {
        pid: child.id() as i32,
        child: Some(child),
        socket: Some(ours),
        started: None,
    })
}

static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Ctrl-C, SIGTERM and SIGHUP go to the traced program instead of ending
/// the supervisor: the program then exits its own way, through the exit
/// hand-over, and the recording gets its final snapshot (as `strace` and
/// `time` let their child decide). A Ctrl-C from a terminal reaches the
/// program directly too; it gets the signal twice, which programs handle
/// like one.
fn forward_signals_to(pid: i32) {
    CHILD.store(pid, std::sync::atomic::Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only loads an atomic and calls
        // kill, both async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// The [`handover::SUPERVISOR_FD`] value for the child's end: `FD:INODE`.
fn link_value(theirs: &OwnedFd) -> Result<String, Error> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::from(theirs.try_clone().map_err(|source| Error::Sys {
        what: "duplicate the supervisor socket".into(),
        source,
    })?);
    let meta = file.metadata().map_err(|source| Error::Sys {
        what: "stat the supervisor socket".into(),
        source,
    })?;
    Ok(format!("{}:{}", theirs.as_raw_fd(), meta.ino()))
}

/// Whether `pid` still runs and is not on its way out: some thread that is
/// neither a zombie nor dead nor exiting (`PF_EXITING`, set as a thread
/// enters the kernel's exit path, before its descriptors are closed).
fn runs_on(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_ascii_whitespace().collect())
            .unwrap_or_default();
        let state = fields.first().copied().unwrap_or("X");
        let flags = fields
            .get(6)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        !matches!(state, "Z" | "X" | "x") && flags & PF_EXITING == 0
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
    /// A process the tracer was injected into, talking on `socket`: its
    /// recording is made exactly as `run`'s, and ends when the link closes
    /// (a detach, or the process's end). `started` gets the recording's
    /// snapshots once it exists.
    pub(crate) fn attached(pid: i32, socket: UnixStream, started: Arc<Started>) -> Traced {
        Traced {
            child: None,
            pid,
            socket: Some(socket),
            started: Some(started),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the program to end, calling `on_notice` for each thing the
    /// tracer says: at its start (before the program's own code runs) and at
    /// the program's exit (paused in its exit path, heap intact). The tracer
    /// goes on when `on_notice` returns. Returns the child's status.
    pub fn wait(self, on_notice: impl FnMut(Notice)) -> Result<ExitStatus, Error> {
        self.wait_or_cut(on_notice, |_| {})
    }

    /// [`Traced::wait`], calling `on_cut` (with the pid) if the program
    /// closes its end of the link and runs on (daemons close every
    /// descriptor): no hand-over can come after that.
    fn wait_or_cut(
        mut self,
        mut on_notice: impl FnMut(Notice),
        on_cut: impl FnOnce(i32),
    ) -> Result<ExitStatus, Error> {
        let pid = self.pid();
        if let Some(socket) = self.socket.take() {
            let mut writer = socket.try_clone().map_err(|source| Error::Sys {
                what: "clone the supervisor socket".into(),
                source,
            })?;
            let mut lines = BufReader::new(socket).lines();
            let attached = self.child.is_none();
            // The socket reaches EOF when the child (and every process that
            // inherited its end) is gone, hand-over or not.
            while let Some(Ok(line)) = lines.next() {
                if let Some(notice) = Notice::parse(&line) {
                    on_notice(notice);
                    // A tracer loaded by `leaktrail attach` does not wait
                    // for an answer to its start line: unread, the answer
                    // would end its wait at exit before the snapshot.
                    if !(attached && matches!(notice, Notice::Start(_))) {
                        let _ = writer.write_all(b"k");
                    }
                }
            }
            if runs_on(pid) {
                on_cut(pid);
            }
        }
        match self.child.as_mut() {
            Some(child) => child.wait().map_err(|source| Error::Sys {
                what: format!("wait for process {pid}"),
                source,
            }),
            // Not our child: its status is its parent's to know.
            None => Ok(ExitStatus::from_raw(0)),
        }
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
    /// What each snapshot captures and how.
    pub snapshots: snapshot::Periodic,
    /// Time between watch samples.
    pub interval: Duration,
    /// Called with each snapshot once it is complete (`leaktrail run
    /// --export`, an upload).
    pub after_snapshot: Option<SnapshotHook>,
    /// Told of every watch sample, from the sampler's thread (the CLI's
    /// live line).
    pub on_sample: Option<SampleHook>,
}

/// What runs after each snapshot of a recording, with its path, on the
/// thread that took it (the target is already running again); an error it
/// returns becomes one of the run's problems.
#[derive(Clone)]
pub struct SnapshotHook(pub Arc<AfterSnapshot>);

/// The function a [`SnapshotHook`] calls.
pub type AfterSnapshot = dyn Fn(&Path) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for SnapshotHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotHook")
    }
}

impl SnapshotHook {
    fn after(
        &self,
        taken: &Result<crate::snapshot::Outcome, Error>,
        problems: &Arc<Mutex<Vec<String>>>,
    ) {
        if let Ok(o) = taken {
            if let Err(e) = (self.0)(&o.path) {
                note(
                    problems,
                    format!("after snapshot {}: {e}", o.path.display()),
                );
            }
        }
    }
}

/// A callback given the recording's metadata and every sample so far,
/// after each new one. It runs on the sampler's thread: it must be quick.
#[derive(Clone)]
pub struct SampleHook(pub Arc<SampleFn>);

/// What a [`SampleHook`] calls.
pub type SampleFn = dyn Fn(&Meta, &[Sample]) + Send + Sync;

impl std::fmt::Debug for SampleHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampleHook")
    }
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            out: None,
            every: Some(Duration::from_secs(600)),
            keep: 0,
            snapshots: snapshot::Periodic::new(MemoryMode::Full),
            interval: Duration::from_secs(1),
            after_snapshot: None,
            on_sample: None,
        }
    }
}

/// The moment a recording starts, for another thread: its snapshots, or
/// `None` once it is clear there will be none.
#[derive(Default)]
pub(crate) struct Started {
    state: Mutex<Option<Option<Snapshots>>>,
    changed: Condvar,
}

impl Started {
    /// Says the recording started (with its snapshots) or never will; the
    /// first word counts.
    fn set(&self, snapshots: Option<Snapshots>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_none() {
            *s = Some(snapshots);
            self.changed.notify_all();
        }
    }

    /// Waits until the recording started or ended; its snapshots if it
    /// started.
    pub(crate) fn wait(&self) -> Option<Snapshots> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while s.is_none() {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.clone().flatten()
    }
}

/// What a recorded run produced.
#[derive(Debug)]
pub struct Recorded {
    /// The child's exit status.
    pub status: ExitStatus,
    /// The recording directory (`None` if the tracer never started).
    pub dir: Option<PathBuf>,
    /// Snapshots now in it, in order.
    pub snapshots: Vec<PathBuf>,
    /// Snapshots or samples that failed (the run went on).
    pub problems: Vec<String>,
}

/// The periodic-snapshot timer's shared state: stop flag and its condvar.
type Stop = Arc<(Mutex<bool>, Condvar)>;

/// A recording being made: the sampler thread, the snapshot timer.
struct Recorder {
    /// The process recorded.
    pid: i32,
    /// Its tracer's header address, which an exec changes.
    header: Arc<AtomicU64>,
    dir: PathBuf,
    snapshots: Snapshots,
    watching: std::thread::JoinHandle<Result<crate::watch::Outcome, Error>>,
    timer: Option<std::thread::JoinHandle<()>>,
    stop: Stop,
    stop_watch: StopHandle,
}

impl Recorder {
    /// Starts recording `pid`, which the tracer holds at its start: returns
    /// once the first watch sample is on disk.
    fn start(
        pid: i32,
        header_addr: u64,
        opts: &RecordOptions,
        problems: &Arc<Mutex<Vec<String>>>,
    ) -> Result<Recorder, Error> {
        let watch = WatchOptions::new(opts.interval, None, opts.out.clone());
        watch.tracer_header.store(header_addr, Ordering::Relaxed);
        let header = watch.tracer_header.clone();
        let watcher = Watcher::supervised(pid, watch)?;
        let dir = watcher.dir().to_path_buf();
        let stop_watch = watcher.stop_handle();
        let snapshots = Snapshots::of(&dir)?;
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let hook = opts.on_sample.clone();
        let watching = std::thread::spawn(move || {
            let mut first = Some(first_tx);
            let meta = watcher.meta().clone();
            watcher.run(|samples| {
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
                if let Some(h) = &hook {
                    (h.0)(&meta, samples);
                }
            })
        });
        // Returns on the first sample, or when the sampler ends without one
        // (its sender is dropped).
        let _ = first_rx.recv();
        let stop: Stop = Arc::new((Mutex::new(false), Condvar::new()));
        let timer = opts.every.map(|every| {
            let (stop, snapshots, problems) = (stop.clone(), snapshots.clone(), problems.clone());
            let (how, keep, hook) = (opts.snapshots, opts.keep, opts.after_snapshot.clone());
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
                let taken = snapshot::take_into(&snapshots, pid, &how, false);
                if let Some(h) = &hook {
                    h.after(&taken, &problems);
                }
                let taken = taken.and_then(|_| snapshots.prune(keep).map_err(Error::from));
                if let Err(e) = taken {
                    note(&problems, format!("periodic snapshot: {e}"));
                }
            })
        });
        Ok(Recorder {
            pid,
            header,
            dir,
            snapshots,
            watching,
            timer,
            stop,
            stop_watch,
        })
    }

    /// Stops the timer and the sampler (the program has been reaped; the
    /// sampler has most likely seen the exit on its pidfd already) and
    /// waits for both.
    fn finish(self, problems: &Arc<Mutex<Vec<String>>>) -> (PathBuf, Snapshots) {
        self.stop_watch.stop();
        {
            let (lock, cvar) = &*self.stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cvar.notify_all();
        }
        if let Some(t) = self.timer {
            let _ = t.join();
        }
        match self.watching.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => note(problems, format!("watch: {e}")),
            Err(_) => note(problems, "watch: the sampler stopped".into()),
        }
        (self.dir, self.snapshots)
    }
}

fn note(problems: &Arc<Mutex<Vec<String>>>, what: String) {
    problems
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(what);
}

impl Traced {
    /// Like [`Traced::wait`], recording as it goes: when the tracer starts,
    /// a recording directory with a watch series, a snapshot every
    /// `opts.every`, and at the program's exit a final snapshot, before
    /// `at_exit` runs.
    pub fn record(
        self,
        opts: RecordOptions,
        mut at_exit: impl FnMut(ExitNotice),
    ) -> Result<Recorded, Error> {
        let problems = Arc::new(Mutex::new(Vec::<String>::new()));
        let recorder: std::cell::RefCell<Option<Recorder>> = Default::default();
        let mut failed: Option<Error> = None;
        // Set when the link was cut: the recording ended there.
        let finished: std::cell::RefCell<Option<(PathBuf, Snapshots)>> = Default::default();
        let (attached, started) = (self.child.is_none(), self.started.clone());
        let status = self.wait_or_cut(
            |notice| match notice {
                Notice::Start(n) if n.header_addr == 0 => {
                    note(
                        &problems,
                        format!("the tracer in process {} has no audit region (it said why above): the recording has no audit", n.pid),
                    );
                    start_recording(&recorder, &mut failed, n, &opts, &problems);
                }
                Notice::Start(n) => {
                    start_recording(&recorder, &mut failed, n, &opts, &problems);
                    if let (Some(tell), Some(r)) = (&started, recorder.borrow().as_ref()) {
                        tell.set(Some(r.snapshots.clone()));
                    }
                }
                Notice::Exit(n) => {
                    if let Some(r) = recorder.borrow().as_ref().filter(|r| r.pid == n.pid) {
                        let taken = snapshot::take_into(&r.snapshots, n.pid, &opts.snapshots, true);
                        if let Some(h) = &opts.after_snapshot {
                            h.after(&taken, &problems);
                        }
                        if let Err(e) = taken {
                            note(&problems, format!("snapshot at exit: {e}"));
                        }
                    }
                    at_exit(n);
                }
            },
            |pid| {
                if let Some(r) = recorder.borrow_mut().take() {
                    // Said at once: the program may run on for a long time.
                    // (An attached process's link closes at detach: that
                    // is its recording's normal end.)
                    if !attached {
                        eprintln!(
                        "leaktrail: process {pid} closed the tracer's link and runs on (it closed every descriptor, as daemons do, or exec'd through execl, which the tracer cannot follow): recording stopped there, the program runs on untouched"
                    );
                    }
                    *finished.borrow_mut() = Some(r.finish(&problems));
                }
            },
        )?;
        if let Some(tell) = &started {
            // Whoever waits for the start learns it will not come now.
            tell.set(None);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let ended = match (recorder.into_inner(), finished.into_inner()) {
            (Some(r), _) => Some(r.finish(&problems)),
            (None, done) => done,
        };
        let Some((dir, snapshots)) = ended else {
            note(
                &problems,
                "the tracer never started in the program (a static binary, or one that clears LD_PRELOAD or LEAKTRAIL_SUPERVISOR_FD?): nothing was recorded".into(),
            );
            return Ok(Recorded {
                status,
                dir: None,
                snapshots: Vec::new(),
                problems: take(&problems),
            });
        };
        // Only we reap the child, so only we know how it ended.
        if !attached {
            if let Err(e) = crate::watch::record_exit_status(&dir, status) {
                note(&problems, format!("recording the exit status: {e}"));
            }
        }
        Ok(Recorded {
            status,
            snapshots: snapshots.list()?,
            dir: Some(dir),
            problems: take(&problems),
        })
    }
}

/// At a tracer's `start` line: the first starts the recording; a later one
/// from the same process is its new image after an exec (a wrapper such as
/// `env`), whose audit region the recording follows. Lines from any other
/// process (none should come) are answered and ignored.
fn start_recording(
    recorder: &std::cell::RefCell<Option<Recorder>>,
    failed: &mut Option<Error>,
    n: ExitNotice,
    opts: &RecordOptions,
    problems: &Arc<Mutex<Vec<String>>>,
) {
    let mut recorder = recorder.borrow_mut();
    match recorder.as_ref() {
        Some(r) if r.pid == n.pid => r.header.store(n.header_addr, Ordering::Relaxed),
        Some(_) => {}
        None if failed.is_some() => {}
        None => match Recorder::start(n.pid, n.header_addr, opts, problems) {
            Ok(r) => *recorder = Some(r),
            Err(e) => *failed = Some(e),
        },
    }
}

fn take(problems: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    std::mem::take(&mut *problems.lock().unwrap_or_else(|p| p.into_inner()))
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
