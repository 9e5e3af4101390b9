//! Starting a target and ending it.
//!
//! `watch -- CMD` starts the command with the watcher's stdin, stdout and
//! stderr, so that it behaves as it would in the user's shell, and samples
//! it from the moment `exec` succeeded (`std`'s spawn returns only then, so
//! sample 0 never sees the forked copy of the watcher). A target that is
//! still running when the watch ends is ours to end: it gets `SIGTERM`, a
//! grace period, then `SIGKILL`, like `timeout(1)`.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::Error;

/// A process we started.
#[derive(Debug)]
pub struct Launched {
    child: Child,
    program: String,
    status: Option<ExitStatus>,
}

impl Launched {
    /// Starts `argv[0]` with the rest as arguments. The environment may add
    /// variables (the tracer's `LD_PRELOAD`, for instance). With `quiet`,
    /// the target's stdout goes to `/dev/null` (the demo's own output is the
    /// show).
    pub fn spawn(
        argv: &[String],
        env: &[(String, String)],
        quiet: bool,
    ) -> Result<Launched, Error> {
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::Spawn {
                program: String::new(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command given"),
            });
        };
        let mut command = Command::new(program);
        if quiet {
            command.stdout(std::process::Stdio::null());
        }
        let child = command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .map_err(|source| Error::Spawn {
                program: program.clone(),
                source,
            })?;
        Ok(Launched {
            child,
            program: program.clone(),
            status: None,
        })
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The program as given.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The exit status if the process has exited (it is then reaped).
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|source| Error::Sys {
                what: format!("waiting for {} (pid {})", self.program, self.pid()),
                source,
            })?;
        }
        Ok(self.status)
    }

    /// Ends the process if it still runs: `SIGTERM`, up to `grace` for it to
    /// exit, then `SIGKILL`. Returns how it ended.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, Error> {
        if let Some(s) = self.try_exit()? {
            return Ok(s);
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own unreaped child, so it cannot have been reused.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.try_exit()? {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|source| Error::Sys {
            what: format!("waiting for {} (pid {})", self.program, self.pid()),
            source,
        })?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        // Never leave a child behind when the watcher bails out with an error.
        if self.status.is_none() {
            let _ = self.terminate(Duration::from_secs(2));
        }
    }
}

/// leaktrail's folder in the user's cache: `$XDG_CACHE_HOME/leaktrail`, else
/// `~/.cache/leaktrail`; `None` when neither variable is set. Not created.
pub fn user_cache_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| std::path::PathBuf::from(h).join(".cache"))
        })
        .map(|c| c.join("leaktrail"))
}
