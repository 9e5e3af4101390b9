//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while gathering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No process with that pid.
    #[error("no process with pid {pid}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: i32,
    },
    /// The kernel refused us access to the process.
    #[error("not permitted to read process {pid} ({what}); run as the same user or as root, and check /proc/sys/kernel/yama/ptrace_scope")]
    PermissionDenied {
        /// The pid asked for.
        pid: i32,
        /// What we tried.
        what: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file did not hold what we expected.
    #[error("{path}: {why}")]
    Malformed {
        /// The path involved.
        path: PathBuf,
        /// What was expected and what was found.
        why: String,
    },
    /// The process exited while we were capturing it.
    #[error("process {pid} exited during the capture; nothing was written")]
    Exited {
        /// The pid.
        pid: i32,
    },
    /// `SIGINT` or `SIGTERM` arrived during a snapshot (after
    /// [`snapshot::catch_interrupts`](crate::snapshot::catch_interrupts)):
    /// every thread was let go and no file was left.
    #[error("snapshot interrupted by {}: process {pid} resumed, nothing written", crate::snapshot::interrupt::name(*.signal))]
    Interrupted {
        /// The pid being captured.
        pid: i32,
        /// The signal's number.
        signal: i32,
    },
    /// The process is already traced (by a debugger, strace, …); the
    /// kernel allows one tracer at a time.
    #[error(
        "process {pid} is already traced by PID {tracer} (a debugger or strace?); detach it first"
    )]
    AlreadyTraced {
        /// The pid asked for.
        pid: i32,
        /// Its tracer, from `TracerPid` in `/proc/PID/status`.
        tracer: i32,
    },
    /// Every thread of the process has exited; only its exit status is
    /// left, for its parent to collect.
    #[error("process {pid} is a zombie (it exited; its parent has not reaped it)")]
    Zombie {
        /// The pid asked for.
        pid: i32,
    },
    /// The pid is a kernel thread, which has no user address space.
    #[error("process {pid} is a kernel thread: it has no user memory")]
    KernelThread {
        /// The pid asked for.
        pid: i32,
    },
    /// `leaktrail attach` cannot inject the tracer into the process (or
    /// `detach` finds nothing to undo); it was left as it was.
    #[error("cannot attach to process {pid}: {why}")]
    CannotAttach {
        /// The pid asked for.
        pid: i32,
        /// Why, and what was left.
        why: String,
    },
    /// A command could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The process exists but has no user memory to sample: a kernel
    /// thread, or a zombie that has exited but not been reaped.
    #[error(
        "process {pid} has no user memory to watch (a kernel thread, or it has already exited)"
    )]
    NoUserMemory {
        /// The pid asked for.
        pid: i32,
    },
    /// Reading or writing a recording or snapshot file failed.
    #[error(transparent)]
    Recording(#[from] leaktrail_recording::Error),
    /// Any other system call failure.
    #[error("{what}: {source}")]
    Sys {
        /// What we were doing.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the error is the user's input (a bad pid, a missing or foreign
    /// file) rather than a failure of ours; the binary exits 2 for these.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::NoSuchProcess { .. }
                | Error::NoUserMemory { .. }
                | Error::PermissionDenied { .. }
                | Error::Malformed { .. }
                | Error::Spawn { .. }
                | Error::Exited { .. }
                | Error::AlreadyTraced { .. }
                | Error::Zombie { .. }
                | Error::KernelThread { .. }
                | Error::CannotAttach { .. }
        ) || matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
            || matches!(self, Error::Recording(e) if e.is_bad_input())
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
