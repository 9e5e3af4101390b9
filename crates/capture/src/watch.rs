//! Sampling a process's memory over time into a recording directory.
//!
//! A [`Watcher`] is built by [`Watcher::attach`] (an existing pid) or
//! [`Watcher::launch`] (a command it starts). Both check that the process
//! can be read *before* anything is written, so a bad pid or a permission
//! refusal leaves no half-made directory behind. [`Watcher::run`] then
//! samples until the process exits, the duration passes or [`interrupted`]
//! turns true.
//!
//! # Keeping the sampler cheap
//!
//! Every interval we read `smaps_rollup`: one pass over the mappings in the
//! kernel, a few hundred bytes to parse. The full `smaps` (which per-region
//! totals need) costs a line per counter per mapping and holds the target's
//! mmap lock for the whole walk, so we read it adaptively: right away, then
//! no sooner than the CPU time it took (the kernel's walk and our parsing)
//! divided by [`WatchOptions::smaps_budget`] (2% by default). A small
//! program with a few hundred mappings has its full `smaps` read every
//! sample; a browser with 50,000 mappings every few seconds.
//!
//! Per-mapping detail files are kept for the first full sample, then for
//! every [`WatchOptions::detail_every`]-th full sample that is also at least
//! [`WatchOptions::detail_gap`] after the previous one, and for the last
//! one. A JVM with 5,000 mappings writes about 750 KB per detail, so the
//! gap (one minute by default) is what bounds a long watch's disk use to
//! some 45 MB an hour there.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::launch::Launched;
use leaktrail_recording::dir::{
    self as recording, Detail, End, EndReason, Meta, RecordingWriter, Sample,
};
use leaktrail_recording::{Mapping, RegionBytes};

use crate::procfs::{self, Reading};
use crate::Error;

/// How to watch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Time between samples.
    pub interval: Duration,
    /// Stop after this long (the process keeps running if we attached; a
    /// launched one is ended).
    pub duration: Option<Duration>,
    /// The recording directory; `None` for
    /// `./leaktrail-<comm>-<pid>-<time>`.
    pub out: Option<PathBuf>,
    /// Fraction of wall time the full `smaps` reads may take.
    pub smaps_budget: f64,
    /// Keep per-mapping detail every this many full samples…
    pub detail_every: u64,
    /// …and no more often than this.
    pub detail_gap: Duration,
    /// Send a launched target's stdout to `/dev/null`.
    pub quiet_target: bool,
    /// The tracer's audit-region header in the target, when known (`run`
    /// learns it from the start hand-over): its mapping is then the
    /// tracer's, not the program's, also on kernels that do not show
    /// `[anon:leaktrail]` (see [`leaktrail_recording::maps::mark_tracer`]).
    /// 0 when unknown; shared, because a process that execs gets a new
    /// tracer with a new header, which `run` learns while this samples.
    pub tracer_header: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            interval: Duration::from_secs(1),
            duration: None,
            out: None,
            smaps_budget: 0.02,
            detail_every: 10,
            detail_gap: Duration::from_secs(60),
            quiet_target: false,
            tracer_header: Default::default(),
        }
    }
}

impl WatchOptions {
    /// Options with this interval, duration and output directory, and the
    /// defaults for the rest.
    pub fn new(interval: Duration, duration: Option<Duration>, out: Option<PathBuf>) -> Self {
        WatchOptions {
            interval,
            duration,
            out,
            ..WatchOptions::default()
        }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Set by the handler [`install_interrupt_handler`] installs; a watch stops
/// at the next check once it is true.
pub fn interrupted() -> &'static AtomicBool {
    &INTERRUPTED
}

extern "C" fn on_interrupt(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes `SIGINT`, `SIGTERM` and `SIGHUP` stop a watch cleanly (the
/// recording is finished and the verdict printed) instead of killing the
/// watcher mid-write.
pub fn install_interrupt_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `sa` is fully initialised (zeroed, then the
        // handler and an empty mask set) before sigaction reads it.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// CPU time this thread has used (user and system, which is where the
/// kernel's smaps walk is charged), if the clock is available.
fn thread_cpu_seconds() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// Tells a running watch that its process is gone (the supervisor has
/// reaped it), so that the sampler stops now instead of at its next tick.
/// Cheap to clone; stopping twice is harmless.
#[derive(Debug, Clone)]
pub struct StopHandle {
    write: Arc<OwnedFd>,
}

impl StopHandle {
    /// Wakes the sampler and makes it end the watch as exited.
    pub fn stop(&self) {
        // SAFETY: a one-byte write from a valid buffer to our own pipe; a
        // full pipe (EAGAIN) means the sampler has been told already.
        unsafe { libc::write(self.write.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    }
}

/// What the sampler sleeps on between samples: the process's pidfd, which
/// turns readable the moment it exits (Linux 5.3+; the sampler then checks
/// every 50 ms as before), and the read end of the [`StopHandle`] pipe.
/// `poll` on both is how a watch of `/bin/true` ends within a millisecond
/// of the exit rather than a whole interval later (issue 13).
struct ExitWatch {
    pidfd: Option<OwnedFd>,
    stop: Option<OwnedFd>,
}

impl ExitWatch {
    fn open(pid: i32, stop: Option<OwnedFd>) -> ExitWatch {
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor or -1; nothing is read from our memory.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: the kernel just returned this descriptor to us.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        });
        ExitWatch { pidfd, stop }
    }

    /// Sleeps up to `timeout`; true if the process exited or a stop came.
    fn wait(&self, timeout: Duration) -> bool {
        let mut fds: Vec<libc::pollfd> = [&self.pidfd, &self.stop]
            .into_iter()
            .flatten()
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // Round up: a 0 ms poll for the last 0.4 ms would spin.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds that lives
        // across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        n > 0 && fds.iter().any(|f| f.revents != 0)
    }
}

/// A pipe for a [`StopHandle`]: close-on-exec, the write end non-blocking.
fn stop_pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if r != 0 {
        return Err(Error::Sys {
            what: "create the watch's stop pipe".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: pipe2 just returned these two descriptors to us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The watcher's ends of its stop pipe.
#[derive(Debug)]
struct StopPipe {
    read: Option<OwnedFd>,
    write: Arc<OwnedFd>,
}

/// A watch that is ready to run: the process is readable and the recording
/// directory exists with its `meta.json`.
#[derive(Debug)]
pub struct Watcher {
    pid: i32,
    start_time: u64,
    child: Option<Launched>,
    writer: RecordingWriter,
    meta: Meta,
    options: WatchOptions,
    stop: StopPipe,
}

/// How a watch went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The recording directory.
    pub dir: PathBuf,
    /// How it ended.
    pub end: End,
    /// Number of samples written.
    pub samples: u64,
}

/// Whether the process whose `/proc/PID/stat` says `stat` has a live
/// thread: a zombie main thread (it called pthread_exit) may have others.
fn live(stat: &procfs::Stat, pid: i32) -> bool {
    stat.state != 'Z' || procfs::address_space_thread(pid).is_some()
}

/// Checks that `pid` exists and that we may read its memory statistics.
fn check_readable(pid: i32) -> Result<procfs::Stat, Error> {
    let stat = procfs::read_stat(pid)?;
    if !live(&stat, pid) {
        return Err(Error::NoUserMemory { pid });
    }
    match procfs::read_rollup(pid)? {
        Reading::Present(_) => Ok(stat),
        Reading::Gone => Err(Error::NoUserMemory { pid }),
    }
}

impl Watcher {
    /// Prepares to watch a running process.
    pub fn attach(pid: i32, options: WatchOptions) -> Result<Watcher, Error> {
        if pid <= 0 {
            return Err(Error::NoSuchProcess { pid });
        }
        let stat = check_readable(pid)?;
        let cmdline = procfs::read_cmdline(pid).unwrap_or_default();
        Watcher::new(pid, stat, cmdline, None, options)
    }

    /// Prepares to watch a process that `leaktrail run` started (and
    /// reaps): the recording says `launched`, and the supervisor records
    /// the exit status with [`record_exit_status`] once it has it.
    pub(crate) fn supervised(pid: i32, options: WatchOptions) -> Result<Watcher, Error> {
        let mut w = Watcher::attach(pid, options)?;
        w.meta.launched = true;
        w.writer.write_meta(&w.meta)?;
        Ok(w)
    }

    /// Starts `argv` and prepares to watch it.
    pub fn launch(argv: &[String], options: WatchOptions) -> Result<Watcher, Error> {
        if let Some(out) = &options.out {
            recording::check_new_dir(out)?;
        }
        let child = Launched::spawn(argv, &[], options.quiet_target)?;
        let pid = child.pid();
        let stat = check_readable(pid)?;
        Watcher::new(pid, stat, argv.to_vec(), Some(child), options)
    }

    fn new(
        pid: i32,
        stat: procfs::Stat,
        cmdline: Vec<String>,
        child: Option<Launched>,
        options: WatchOptions,
    ) -> Result<Watcher, Error> {
        let now = recording::unix_ms(SystemTime::now());
        let dir = options
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(recording::default_dir_name(&stat.comm, pid, now)));
        let meta = Meta {
            format: recording::FORMAT.into(),
            version: recording::VERSION,
            pid,
            comm: stat.comm.clone(),
            cmdline,
            launched: child.is_some(),
            start_unix_ms: now,
            interval_ms: options.interval.as_millis() as u64,
            memory_limit: procfs::memory_limit(pid),
            end: None,
        };
        let (read, write) = stop_pipe()?;
        let writer = RecordingWriter::create(&dir, &meta)?;
        Ok(Watcher {
            stop: StopPipe {
                read: Some(read),
                write: Arc::new(write),
            },
            pid,
            start_time: stat.start_time,
            child,
            writer,
            meta,
            options,
        })
    }

    /// A handle that ends the watch at once (as exited) from another
    /// thread: `leaktrail run` stops it when it has reaped the program.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            write: self.stop.write.clone(),
        }
    }

    /// The watched pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The recording's metadata as written at the start.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The recording directory.
    pub fn dir(&self) -> &std::path::Path {
        self.writer.dir()
    }

    /// Whether the launched child has exited (always false when attached).
    fn child_exited(&mut self) -> Result<bool, Error> {
        match &mut self.child {
            Some(c) => Ok(c.try_exit()?.is_some()),
            None => Ok(false),
        }
    }

    /// Why we should stop now, if we should.
    fn stop_reason(&mut self, start: Instant) -> Result<Option<EndReason>, Error> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Ok(Some(EndReason::Interrupted));
        }
        if self.options.duration.is_some_and(|d| start.elapsed() >= d) {
            return Ok(Some(EndReason::Duration));
        }
        if self.child_exited()? {
            return Ok(Some(EndReason::Exited));
        }
        Ok(None)
    }

    /// Samples until the process exits, the duration passes or the watch is
    /// interrupted, calling `on_sample` with each new sample and every
    /// sample so far. The recording is complete when this returns, also on
    /// error (the samples gathered until then are kept).
    pub fn run(mut self, mut on_sample: impl FnMut(&[Sample])) -> Result<Outcome, Error> {
        // Sample 0 is now: make `start_unix_ms` say so (the recording was
        // created a moment earlier).
        self.meta.start_unix_ms = recording::unix_ms(SystemTime::now());
        self.writer.write_meta(&self.meta)?;
        let start = Instant::now();
        let interval = self.options.interval.max(Duration::from_millis(1));
        let mut samples: Vec<Sample> = Vec::new();
        let mut next = start;
        let mut next_full = start;
        let mut fulls_since_detail: Option<u64> = None;
        let mut last_detail_at = start;
        // The last full sample whose detail was not written, to keep at the end.
        let mut pending: Option<Detail> = None;
        let exit = ExitWatch::open(self.pid, self.stop.read.take());
        let result = (|| -> Result<EndReason, Error> {
            loop {
                if let Some(reason) = self.stop_reason(start)? {
                    return Ok(reason);
                }
                let now = Instant::now();
                let t = now.duration_since(start).as_secs_f64();
                let rollup = match procfs::read_rollup(self.pid)? {
                    Reading::Present(r) => r,
                    Reading::Gone => return Ok(EndReason::Exited),
                };
                let i = samples.len() as u64;
                let mut sample = Sample {
                    i,
                    t: (t * 1000.0).round() / 1000.0,
                    rss: rollup.rss,
                    pss: rollup.pss,
                    anon: rollup.anonymous,
                    swap: rollup.swap,
                    regions: None,
                    detail: false,
                };
                if now >= next_full {
                    let began = Instant::now();
                    let cpu_began = thread_cpu_seconds();
                    let mut maps: Vec<Mapping> = match procfs::read_smaps(self.pid)? {
                        Reading::Present(m) => m,
                        Reading::Gone => return Ok(EndReason::Exited),
                    };
                    let header = self
                        .options
                        .tracer_header
                        .load(std::sync::atomic::Ordering::Relaxed);
                    if header != 0 {
                        // One read of the header (its descriptors name the
                        // tables), charged to the smaps budget with the rest.
                        let readable = maps.iter().map(|m| (m.start, m.end)).collect();
                        let thread = procfs::address_space_thread(self.pid).unwrap_or(self.pid);
                        let mem = crate::memory::ProcessMemory::new(thread, readable);
                        let ranges = leaktrail_recording::audit::locate(&mem, header);
                        leaktrail_recording::maps::mark_tracer(&mut maps, header, &ranges);
                    }
                    // A reused pid is another process: stop rather than mix.
                    match procfs::read_stat(self.pid) {
                        Ok(s) if s.start_time == self.start_time && live(&s, self.pid) => {}
                        Ok(_) | Err(Error::NoSuchProcess { .. }) => return Ok(EndReason::Exited),
                        Err(e) => return Err(e),
                    }
                    // CPU time, not wall time: on a loaded machine the read
                    // waits for a CPU without costing anyone anything.
                    let cost = match (cpu_began, thread_cpu_seconds()) {
                        (Some(a), Some(b)) => b - a,
                        _ => began.elapsed().as_secs_f64(),
                    };
                    let wait = (cost / self.options.smaps_budget.max(1e-6)).max(0.0);
                    next_full = began + Duration::from_secs_f64(wait.min(3600.0));
                    sample.regions = Some(RegionBytes::of(&maps));
                    let detail = Detail {
                        i,
                        t: sample.t,
                        mappings: maps,
                    };
                    let keep = match fulls_since_detail {
                        None => true,
                        Some(n) => {
                            n + 1 >= self.options.detail_every
                                && began.duration_since(last_detail_at) >= self.options.detail_gap
                        }
                    };
                    if keep {
                        self.writer.write_detail(&detail)?;
                        sample.detail = true;
                        fulls_since_detail = Some(0);
                        last_detail_at = began;
                        pending = None;
                    } else {
                        fulls_since_detail = fulls_since_detail.map(|n| n + 1);
                        pending = Some(detail);
                    }
                }
                self.writer.append(&sample)?;
                samples.push(sample);
                on_sample(&samples);

                next += interval;
                let now = Instant::now();
                if next < now {
                    // We fell behind (a slow smaps, a loaded machine): skip
                    // the missed ticks rather than sampling in a burst.
                    next = now + interval;
                }
                while Instant::now() < next {
                    if let Some(reason) = self.stop_reason(start)? {
                        return Ok(reason);
                    }
                    let left = next.saturating_duration_since(Instant::now());
                    if exit.wait(left.min(Duration::from_millis(50))) {
                        // Exited (or the supervisor reaped it): one more
                        // check lets a launched child be reaped with its
                        // status.
                        return Ok(self.stop_reason(start)?.unwrap_or(EndReason::Exited));
                    }
                }
            }
        })();

        // Keep the last full sample's mappings, so `maps diff DIR@first
        // DIR@last` compares the whole watch.
        if let Some(detail) = pending.take() {
            if self.writer.write_detail(&detail).is_ok() {
                let last = detail.i;
                if let Some(s) = samples.iter_mut().find(|s| s.i == last) {
                    s.detail = true;
                }
                // samples.jsonl is append-only: record the late detail as a
                // rewrite of the whole file (once, at the end).
                let mut text = Vec::new();
                for s in &samples {
                    if let Ok(line) = serde_json::to_vec(s) {
                        text.extend_from_slice(&line);
                        text.push(b'\n');
                    }
                }
                recording::write_atomically(&self.writer.dir().join("samples.jsonl"), &text)?;
            }
        }

        let reason = match &result {
            Ok(r) => *r,
            Err(_) => EndReason::Exited,
        };
        let status = match &mut self.child {
            Some(c) => Some(c.terminate(Duration::from_secs(2))?),
            None => None,
        };
        use std::os::unix::process::ExitStatusExt;
        let end = End {
            unix_ms: recording::unix_ms(SystemTime::now()),
            reason,
            exit_code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
        };
        self.meta.end = Some(end);
        self.writer.write_meta(&self.meta)?;
        result?;
        Ok(Outcome {
            dir: self.writer.dir().to_path_buf(),
            end,
            samples: samples.len() as u64,
        })
    }
}

/// Adds a supervised process's exit status to the `end` of the recording
/// in `dir` (its watcher, which did not reap it, wrote `end` without one).
pub(crate) fn record_exit_status(
    dir: &std::path::Path,
    status: std::process::ExitStatus,
) -> Result<(), Error> {
    use std::os::unix::process::ExitStatusExt;
    let path = dir.join("meta.json");
    let malformed = |why: String| Error::Malformed {
        path: path.clone(),
        why,
    };
    let text = std::fs::read(&path).map_err(|e| malformed(e.to_string()))?;
    let mut meta: Meta = serde_json::from_slice(&text).map_err(|e| malformed(e.to_string()))?;
    let end = meta.end.get_or_insert(End {
        unix_ms: recording::unix_ms(SystemTime::now()),
        reason: EndReason::Exited,
        exit_code: None,
        signal: None,
    });
    end.exit_code = status.code();
    end.signal = status.signal();
    let mut text = serde_json::to_vec_pretty(&meta).map_err(|e| malformed(e.to_string()))?;
    text.push(b'\n');
    recording::write_atomically(&path, &text)?;
    Ok(())
}
