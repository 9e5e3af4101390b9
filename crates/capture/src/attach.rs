//! `leaktrail attach` and `detach`: the tracer injected into a running
//! process, and taken out of its way again (issue 12, item 3).
//!
//! # How
//!
//! 1. [`check`] looks at the process without touching it: it must exist,
//!    have no tracer and no seccomp filter (a filter may kill the process
//!    for a call `dlopen` makes), and map a glibc whose `libc.so.6`
//!    exports `dlopen` (2.34 and later; before that it is in `libdl`). A
//!    static binary maps no `libc.so.6`. Anything missing is one
//!    [`Error::CannotAttach`] line, and the process was never stopped.
//! 2. We listen on an abstract Unix socket, `leaktrail-attach-PID-OURPID`
//!    (its name is also how `detach` finds us: `/proc/net/unix`).
//! 3. We stop every thread (`PTRACE_SEIZE`, `PTRACE_INTERRUPT`), pick one
//!    at a *safe point* (below), let every other thread go, and make the
//!    picked one call `dlopen(LIBRARY, RTLD_NOW)` and then the library's
//!    `leaktrail_attach(SPEC)` ([`crate::inject::call`]), then let it go.
//!    `leaktrail_attach` connects to our socket, redirects the malloc
//!    family in every module's GOT and writes its `start` line; from there
//!    the recording is `run`'s ([`crate::supervise`]).
//! 4. At detach (`leaktrail detach -p PID`, or Ctrl-C of `attach`, which
//!    `detach` sends), we take a last snapshot and make one thread call
//!    `leaktrail_detach()`: every GOT entry back, recording stopped, the
//!    link closed. The library stays loaded, idle: `dlclose` is unsafe
//!    while a thread may still be inside a hook.
//!
//! # The safe point
//!
//! A remote call runs `dlopen` and our init in the borrowed thread: they
//! take the loader's lock and malloc's arena locks and use the thread's
//! malloc state (its tcache). Two rules make that safe:
//!
//! - **Every other thread runs** while the call does. A thread holding the
//!   loader lock or an arena lock (inside `malloc`, `dlopen`,
//!   `dl_iterate_phdr`) releases it in its own time, as it would for any
//!   thread of the program calling `dlopen`; had we kept it stopped, the
//!   call could wait for it forever.
//! - **The borrowed thread is not inside the allocator or the loader**:
//!   its instruction pointer is outside `libc.so.6`, `ld-linux`, our own
//!   library and any allocator library (`*malloc*`), so no frame of it can
//!   be half-way through malloc's state or hold a lock the call takes (the
//!   loader calls user code with its lock held only from constructors and
//!   `dl_iterate_phdr` callbacks, and that lock is recursive); or it is
//!   blocked in a system call that only waits (read, poll, nanosleep,
//!   accept, epoll_wait, …), which libc's wrappers make holding no lock of
//!   malloc's or the loader's. Not a futex wait: that may be inside malloc,
//!   waiting for an arena. A thread interrupted by a signal handler that
//!   itself runs user code is the case this rule cannot see (the handler
//!   would have interrupted malloc); such handlers are rare and unsafe by
//!   POSIX already.
//!
//! When no thread is at a safe point (every one inside malloc at the
//! instant we look), we let them all go and look again, for at most
//! [`AttachOptions::safe_point_wait`].

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leaktrail_format::handover;
use leaktrail_recording::Memory;

use crate::inject;
use crate::snapshot::ptrace::{Thread, World, GREGS_BYTES};
use crate::supervise::{RecordOptions, Recorded, Started, TraceOptions, Traced};
use crate::Error;

/// How to attach.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AttachOptions {
    /// The tracer library and how it unwinds.
    pub trace: TraceOptions,
    /// How long to look for a thread at a safe point.
    pub safe_point_wait: Duration,
}

impl AttachOptions {
    /// Options for the library at `library`.
    pub fn new(library: PathBuf) -> Self {
        AttachOptions {
            trace: TraceOptions::new(library),
            safe_point_wait: Duration::from_secs(5),
        }
    }
}

/// What [`check`] found: where the process's libc and `dlopen` are.
#[derive(Clone, Debug)]
pub struct Target {
    /// The process.
    pub pid: i32,
    /// `dlopen`'s address in it.
    dlopen: u64,
    /// `dlerror`'s address in it (0 if not found).
    dlerror: u64,
    /// Executable ranges no borrowed thread may be inside.
    unsafe_code: Vec<(u64, u64)>,
}

/// A mapping line of `/proc/PID/maps`: range, permissions, offset, path.
struct MapLine {
    start: u64,
    end: u64,
    exec: bool,
    offset: u64,
    path: String,
}

fn maps(pid: i32) -> Result<Vec<MapLine>, Error> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                pid,
                what: "reading its maps".into(),
            },
            _ => Error::io(format!("/proc/{pid}/maps"), e),
        })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let line = leaktrail_format::maps_line::parse(l.as_bytes())?;
            Some(MapLine {
                start: line.start,
                end: line.end,
                exec: line.perms.get(2) == Some(&b'x'),
                offset: line.offset,
                path: String::from_utf8_lossy(line.path).into_owned(),
            })
        })
        .collect())
}

/// The kernel's refusal to let us ptrace or read `pid` (`doing` says
/// which, and its errno), said as what it means for an attach; other errors
/// as they are.
fn refused(pid: i32, doing: &str, e: Error) -> Error {
    match e {
        Error::PermissionDenied { .. } => cannot(
            pid,
            format!(
                "the kernel refused {doing}: ptrace needs the process's real user, and CAP_SYS_PTRACE for \
                 another user's process or one that is not dumpable; left untouched"
            ),
        ),
        e => e,
    }
}

fn cannot(pid: i32, why: impl Into<String>) -> Error {
    Error::CannotAttach {
        pid,
        why: why.into(),
    }
}

/// The field `name` of `/proc/PID/status` (or of a task's).
fn status_field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
}

/// Whether and how `pid` can be attached, looked at from outside: nothing
/// is stopped or changed (see the module documentation, step 1).
pub fn check(pid: i32) -> Result<Target, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| Error::NoSuchProcess { pid })?;
    if status_field(&status, "State:").is_some_and(|s| s.starts_with('Z')) {
        return Err(Error::Zombie { pid });
    }
    if let Some(tracer) = status_field(&status, "TracerPid:").and_then(|v| v.parse().ok()) {
        if tracer != 0 {
            return Err(Error::AlreadyTraced { pid, tracer });
        }
    }
    let filtered = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|_| Error::NoSuchProcess { pid })?
        .flatten()
        .any(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .ok()
                .and_then(|s| status_field(&s, "Seccomp:"))
                .is_some_and(|v| v != "0")
        });
    if filtered {
        return Err(cannot(
            pid,
            "it runs under a seccomp filter, which may kill it for a system call dlopen makes; left untouched",
        ));
    }
    let maps = maps(pid).map_err(|e| refused(pid, "to let us read its maps (EACCES)", e))?;
    if maps.is_empty() {
        return Err(Error::KernelThread { pid });
    }
    if preloaded(pid) {
        return Err(cannot(
            pid,
            "it was started under leaktrail run (the tracer is in its LD_PRELOAD): its recording is run's",
        ));
    }
    let Some(libc) = maps
        .iter()
        .find(|m| m.offset == 0 && file_name(&m.path).starts_with("libc.so.6"))
    else {
        return Err(cannot(
            pid,
            "it maps no libc.so.6 (a static binary, or another C library): there is no dlopen to load the tracer with; left untouched",
        ));
    };
    let libc_file = proc_path(pid, &libc.path);
    let dlopen = dynamic_symbol(&libc_file, "dlopen")?.ok_or_else(|| {
        cannot(
            pid,
            format!("its {} exports no dlopen (glibc older than 2.34 keeps it in libdl); left untouched", libc.path),
        )
    })?;
    let dlerror = dynamic_symbol(&libc_file, "dlerror")?.unwrap_or(0);
    let unsafe_code = maps
        .iter()
        .filter(|m| {
            let name = file_name(&m.path);
            m.exec
                && (name.starts_with("libc.so")
                    || name.starts_with("ld-linux")
                    || name.contains("leaktrail_preload")
                    || name.contains("malloc"))
        })
        .map(|m| (m.start, m.end))
        .collect();
    Ok(Target {
        pid,
        dlopen: libc.start + dlopen,
        dlerror: if dlerror == 0 {
            0
        } else {
            libc.start + dlerror
        },
        unsafe_code,
    })
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The file of a mapping as this process can open it: through the
/// target's root (`/proc/PID/root`), so a container's files are found.
fn proc_path(pid: i32, path: &str) -> PathBuf {
    let rooted = PathBuf::from(format!("/proc/{pid}/root{path}"));
    if rooted.exists() {
        rooted
    } else {
        PathBuf::from(path)
    }
}

/// Whether the tracer is in the process's `LD_PRELOAD` (a `run` target).
fn preloaded(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .any(|v| {
            v.starts_with(b"LD_PRELOAD=") && v.windows(20).any(|w| w == b"libleaktrail_preload")
        })
}

/// The value of the defined dynamic symbol `name` of the ELF file `path`.
fn dynamic_symbol(path: &Path, name: &str) -> Result<Option<u64>, Error> {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = object::File::parse(&*bytes).map_err(|e| Error::Malformed {
        path: path.to_path_buf(),
        why: format!("expected an ELF shared object: {e}"),
    })?;
    Ok(file
        .dynamic_symbols()
        .find(|s| s.is_definition() && s.name() == Ok(name))
        .map(|s| s.address()))
}

/// The abstract socket name an `attach` of `pid` by `supervisor` listens on.
fn socket_name(pid: i32, supervisor: u32) -> String {
    format!("leaktrail-attach-{pid}-{supervisor}")
}

/// The `attach` processes that hold `pid` now, from the abstract sockets
/// they listen on (`/proc/net/unix`).
pub fn supervisors_of(pid: i32) -> Vec<i32> {
    let prefix = format!("@leaktrail-attach-{pid}-");
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_ascii_whitespace().nth(7))
        .filter_map(|name| name.strip_prefix(&prefix)?.parse().ok())
        .collect()
}

/// System calls a thread may be blocked in, inside libc, and still be
/// borrowed: they wait and hold no lock of malloc's or the loader's.
const WAITING_CALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_pause,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_readv,
    libc::SYS_pread64,
];

fn reg(regs: &[u8], i: usize) -> u64 {
    regs.get(i * 8..i * 8 + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Whether thread `t` is at a safe point (see the module documentation).
fn at_safe_point(t: &Thread, unsafe_code: &[(u64, u64)]) -> bool {
    const ORIG_RAX: usize = 15;
    const RIP: usize = 16;
    if !inject::usable(t.stop_signal, t.pending_signal) || t.regs.len() != GREGS_BYTES {
        return false;
    }
    let rip = reg(&t.regs, RIP);
    if !unsafe_code.iter().any(|&(s, e)| s <= rip && rip < e) {
        return true;
    }
    let call = reg(&t.regs, ORIG_RAX) as i64;
    WAITING_CALLS.contains(&call)
}

/// Runs `f` with one thread of the process at a safe point, every other
/// thread running; `f` gets the thread. Returns `f`'s result and how long
/// the other threads were stopped.
fn with_borrowed_thread<R>(
    target: &Target,
    wait: Duration,
    f: impl FnOnce(&Thread) -> Result<R, Error>,
) -> Result<(R, Duration), Error> {
    let pid = target.pid;
    let give_up = Instant::now() + wait;
    loop {
        let stopped = Instant::now();
        let mut world = World::stop(pid, Duration::from_secs(2))
            .map_err(|e| refused(pid, "to let us ptrace it (EPERM)", e))?;
        let picked = world
            .threads()
            .iter()
            .find(|t| at_safe_point(t, &target.unsafe_code))
            .cloned();
        let Some(t) = picked else {
            drop(world);
            if Instant::now() >= give_up {
                return Err(cannot(
                    pid,
                    format!(
                        "no thread came to a safe point within {:.1} s (each was inside libc, the loader or the allocator, or in a futex wait, every time we looked); left untouched",
                        wait.as_secs_f64()
                    ),
                ));
            }
            // Look again soon: a thread inside malloc leaves it within
            // microseconds.
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        world.release_all_but(t.tid);
        let pause = stopped.elapsed();
        let r = f(&t)?;
        world.release()?;
        return Ok((r, pause));
    }
}

/// A process the tracer is now in, and our end of its link.
pub struct Attached {
    pid: i32,
    socket: UnixStream,
    /// Kept open until the recording ends: `detach` finds us by its name.
    _listener: UnixListener,
    /// How long the process's other threads were stopped.
    pub pause: Duration,
    /// How long the borrowed thread spent in `dlopen` and our init.
    pub injection: Duration,
}

/// Injects the tracer into `pid` (see the module documentation). On any
/// error the process is as it was, except that after a failed
/// `leaktrail_attach` the library may stay loaded, idle.
pub fn attach(pid: i32, opts: &AttachOptions) -> Result<Attached, Error> {
    let target = check(pid)?;
    let name = socket_name(pid, std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(|source| Error::Sys {
        what: "name the attach socket".into(),
        source,
    })?;
    let listener = UnixListener::bind_addr(&addr).map_err(|source| Error::Sys {
        what: format!("listen on the abstract socket @{name}"),
        source,
    })?;
    let library = std::fs::canonicalize(&opts.trace.library)
        .map_err(|e| Error::io(&opts.trace.library, e))?;
    let entry =
        dynamic_symbol(&library, handover::ATTACH_SYMBOL)?.ok_or_else(|| Error::Malformed {
            path: library.clone(),
            why: format!(
                "expected the tracer library, which exports {}",
                handover::ATTACH_SYMBOL
            ),
        })?;
    let path =
        CString::new(library.as_os_str().as_encoded_bytes()).map_err(|_| Error::Malformed {
            path: library.clone(),
            why: "a path without NUL bytes".into(),
        })?;
    // The sampler's seed as `run` passes it (tests fix it); else the
    // tracer draws one.
    let seed = std::env::var(handover::SAMPLE_SEED.as_str())
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(String::new(), |s| format!(" {s}"));
    let spec = CString::new(format!(
        "{} {} {name} {}{seed}",
        opts.trace.unwind.name(),
        opts.trace.depth,
        opts.trace.sample
    ))
    .map_err(|_| cannot(pid, "a spec without NUL bytes"))?;
    let started = Instant::now();
    let (code, pause) = with_borrowed_thread(&target, opts.safe_point_wait, |t| {
        const RTLD_NOW: u64 = 2;
        let opened = inject::call(
            pid,
            t.tid,
            &t.regs,
            target.dlopen,
            path.as_bytes_with_nul(),
            |at| [at, RTLD_NOW, 0, 0, 0, 0],
        )?;
        if opened.ret == 0 {
            let why = dl_error(&target, t);
            return Err(cannot(
                pid,
                format!("its dlopen refused the tracer library ({why}); left untouched"),
            ));
        }
        // A glibc dlopen handle is its `struct link_map`, whose first
        // field is the load bias.
        let mut bias = [0u8; 8];
        crate::memory::ProcessMemory::new(pid, vec![(opened.ret as u64, opened.ret as u64 + 8)])
            .read(opened.ret as u64, &mut bias)
            .map_err(|e| cannot(pid, format!("reading the library's load address: {e}")))?;
        let func = u64::from_le_bytes(bias) + entry;
        let done = inject::call(pid, t.tid, &t.regs, func, spec.as_bytes_with_nul(), |at| {
            [at, 0, 0, 0, 0, 0]
        })?;
        Ok(done.ret as i32)
    })?;
    let injection = started.elapsed();
    if code != 0 {
        return Err(cannot(
            pid,
            match code {
                handover::ATTACH_PRELOADED => "it is traced from its start by leaktrail run".to_string(),
                handover::ATTACH_BUSY => "another leaktrail attach holds it (leaktrail detach -p PID first)".to_string(),
                handover::ATTACH_NO_REGION => "the tracer could not map its audit region (out of memory?)".to_string(),
                handover::ATTACH_OWN_ALLOCATOR => "its executable defines malloc itself (an allocator linked into it), which attach cannot divert while the program runs; start it under `leaktrail run -- CMD` to trace it; the library stays loaded, idle".to_string(),
                handover::ATTACH_NO_LINK => format!("the tracer could not reach our socket @{name} (another network namespace?); the library stays loaded, idle"),
                c => format!("the tracer refused with code {c}"),
            },
        ));
    }
    let (socket, _) = listener.accept().map_err(|source| Error::Sys {
        what: "accept the tracer's connection".into(),
        source,
    })?;
    if peer_pid(&socket) != Some(pid) {
        return Err(cannot(pid, format!("something else connected to @{name}")));
    }
    Ok(Attached {
        pid,
        socket,
        _listener: listener,
        pause,
        injection,
    })
}

/// What `dlerror()` says in the process, for the message.
fn dl_error(target: &Target, t: &Thread) -> String {
    if target.dlerror == 0 {
        return "no reason given".into();
    }
    let Ok(r) = inject::call(target.pid, t.tid, &t.regs, target.dlerror, &[0], |_| [0; 6]) else {
        return "no reason given".into();
    };
    let at = r.ret as u64;
    let mut buf = vec![0u8; 512];
    let mem = crate::memory::ProcessMemory::new(target.pid, vec![(at, at + 512)]);
    if at == 0 || mem.read(at, &mut buf).is_err() {
        return "no reason given".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn peer_pid(socket: &UnixStream) -> Option<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out-pointers of the right size.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.pid)
}

/// The write end of the pipe our stop signals write to.
static STOP_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_stop(_sig: libc::c_int) {
    let fd = STOP_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; one byte from a static.
        unsafe { libc::write(fd, b"s".as_ptr().cast(), 1) };
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP write to a pipe, whose read end is
/// returned: the detach thread waits on it.
fn stop_signals() -> Result<std::fs::File, Error> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Sys {
            what: "pipe".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    STOP_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only loads an atomic and writes one byte,
        // both async-signal-safe; `sa` is initialised before use.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // SAFETY: pipe2 just gave us this descriptor.
    Ok(unsafe { std::fs::File::from_raw_fd(fds[0]) })
}

/// What an attached recording produced.
#[derive(Debug)]
pub struct AttachRecorded {
    /// The recording, as `run`'s (its `status` means nothing here).
    pub recorded: Recorded,
    /// Whether we detached (a stop signal) rather than the process ending.
    pub detached: bool,
    /// GOT entries put back at detach.
    pub restored: i32,
    /// The status the process passed to `exit` (or returned from `main`)
    /// while attached: the recording's last snapshot was taken there, as
    /// `run` takes one, before the exit handlers the program registered
    /// before the attach ran. `None` when it was detached, or ended without
    /// `exit` (a signal, `_exit`): then the last snapshot is the last one
    /// taken before.
    pub exit_status: Option<i32>,
}

impl Attached {
    /// The process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Records as `run` does until a stop signal (Ctrl-C, or `leaktrail
    /// detach`) or the process's end. At a stop signal: a last snapshot,
    /// then the detach; the process runs on as before.
    pub fn record(
        self,
        opts: RecordOptions,
        detach_wait: Duration,
    ) -> Result<AttachRecorded, Error> {
        let pid = self.pid;
        let mut stop = stop_signals()?;
        let started: Arc<Started> = Arc::default();
        let how = opts.snapshots;
        let outcome: Arc<Mutex<Option<Result<i32, Error>>>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let stopper = {
            let (started, outcome, stopping) = (started.clone(), outcome.clone(), stopping.clone());
            std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                if stop.read(&mut byte).unwrap_or(0) == 0 {
                    return;
                }
                stopping.store(true, Ordering::SeqCst);
                // A stop right after the attach: the recording first.
                let last = started.wait();
                let mut problems = Vec::new();
                if let Some(snapshots) = last {
                    if let Err(e) = crate::snapshot::take_into(&snapshots, pid, &how, false) {
                        problems.push(e);
                    }
                }
                let r = detach_now(pid, detach_wait);
                *outcome.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(problems.into_iter().next().map_or(r, Err));
            })
        };
        let traced = Traced::attached(pid, self.socket, started);
        let mut exit_status = None;
        let recorded = traced.record(opts, |n| exit_status = Some(n.status))?;
        // The link closes inside the detach: wait for the detach itself.
        if stopping.load(Ordering::SeqCst) {
            let _ = stopper.join();
        }
        let done = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (detached, restored) = match done {
            Some(Ok(n)) => (true, n),
            Some(Err(e)) => return Err(e),
            None => (false, 0),
        };
        Ok(AttachRecorded {
            recorded,
            detached,
            restored,
            exit_status,
        })
    }
}

/// Makes `pid` call `leaktrail_detach()` in every copy of the tracer it
/// has loaded; returns the GOT entries put back. [`Error::CannotAttach`]
/// if it has none.
pub fn detach_now(pid: i32, wait: Duration) -> Result<i32, Error> {
    let target = check(pid)?;
    let libs: Vec<(u64, PathBuf)> = maps(pid)?
        .into_iter()
        .filter(|m| m.offset == 0 && file_name(&m.path).starts_with("libleaktrail_preload"))
        .map(|m| (m.start, proc_path(pid, &m.path)))
        .collect();
    if libs.is_empty() {
        return Err(cannot(
            pid,
            "the tracer is not loaded in it: nothing to detach",
        ));
    }
    let mut funcs = Vec::new();
    for (base, file) in &libs {
        if let Some(f) = dynamic_symbol(file, handover::DETACH_SYMBOL)? {
            funcs.push(base + f);
        }
    }
    let (restored, _) = with_borrowed_thread(&target, wait, |t| {
        let mut n = 0;
        for &f in &funcs {
            n += inject::call(pid, t.tid, &t.regs, f, &[0], |_| [0; 6])?.ret as i32;
        }
        Ok(n)
    })?;
    Ok(restored)
}

/// `leaktrail detach -p PID`: asks the `attach` holding `pid` to stop
/// (as Ctrl-C would: last snapshot, then the detach) and waits for it to
/// end; with no `attach` alive (it was killed), detaches directly.
/// Returns whether an `attach` did it.
pub fn detach(pid: i32, wait: Duration) -> Result<bool, Error> {
    let holders = supervisors_of(pid);
    if holders.is_empty() {
        detach_now(pid, wait)?;
        return Ok(false);
    }
    for &holder in &holders {
        // SAFETY: pidfd_open takes no pointers.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, holder, 0) } as i32;
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(holder, libc::SIGINT) };
        if fd >= 0 {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // The attach takes a snapshot first: give it a minute.
            // SAFETY: `p` is one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 60_000) };
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_in_user_code_or_waiting_in_libc_is_at_a_safe_point() {
        let libc_code = [(0x7000, 0x8000)];
        let mut t = Thread::for_test(1, vec![0u8; GREGS_BYTES]);
        let set = |t: &mut Thread, i: usize, v: u64| {
            t.regs[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes())
        };
        set(&mut t, 16, 0x1234);
        set(&mut t, 15, u64::MAX);
        assert!(at_safe_point(&t, &libc_code), "user code");
        set(&mut t, 16, 0x7100);
        assert!(!at_safe_point(&t, &libc_code), "inside libc, not in a call");
        set(&mut t, 15, libc::SYS_read as u64);
        assert!(at_safe_point(&t, &libc_code), "blocked in read");
        set(&mut t, 15, libc::SYS_futex as u64);
        assert!(
            !at_safe_point(&t, &libc_code),
            "a futex wait may be inside malloc"
        );
        t.stop_signal = libc::SIGSTOP;
        set(&mut t, 16, 0x1234);
        assert!(!at_safe_point(&t, &libc_code), "job-control stopped");
    }

    #[test]
    fn socket_names_are_found_in_proc_net_unix() {
        let name = socket_name(4242, std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _l = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(supervisors_of(4242), vec![std::process::id() as i32]);
    }
}
