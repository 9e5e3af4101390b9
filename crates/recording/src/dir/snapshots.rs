//! The snapshots of a recording: `DIR/snapshots/NNNN.core`, numbered in
//! the order they were taken, the one taken at exit named `NNNN-exit.core`.
//!
//! Whoever takes a snapshot into a recording (the supervisor of `leaktrail
//! run` on its timer and at exit, `leaktrail snapshot --recording DIR` on
//! demand) holds an exclusive `flock` on `snapshots/.lock` for the whole
//! capture: only one tracer can stop a process at a time, and the lock also
//! makes the numbering race-free.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// The snapshots folder of one recording.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dir: PathBuf,
}

/// An exclusive hold on a recording's snapshot lock; released on drop.
struct Hold(File);

/// The next snapshot's path, with the recording's snapshot lock held.
pub struct Reservation {
    /// Where the snapshot goes.
    pub path: PathBuf,
    _hold: Hold,
}

impl Drop for Hold {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Snapshots {
    /// The snapshots folder of the recording at `recording` (created, 0700,
    /// if missing).
    pub fn of(recording: &Path) -> Result<Snapshots, Error> {
        let dir = recording.join("snapshots");
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| Error::write(&dir, e))?;
        }
        Ok(Snapshots { dir })
    }

    fn lock(&self) -> Result<Hold, Error> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(&path, std::io::Error::last_os_error()));
        }
        Ok(Hold(file))
    }

    /// Reserves the name of the next snapshot of the recording (`at_exit`
    /// marks the final one) and holds the recording's snapshot lock until
    /// the [`Reservation`] is dropped: whoever captures into the path is the
    /// only one stopping the process, and numbering cannot race.
    pub fn reserve(&self, at_exit: bool) -> Result<Reservation, Error> {
        let hold = self.lock()?;
        let next = self
            .list()?
            .iter()
            .filter_map(|p| index_of(p))
            .max()
            .map_or(1, |i| i + 1);
        let name = if at_exit {
            format!("{next:04}-exit.core")
        } else {
            format!("{next:04}.core")
        };
        Ok(Reservation {
            path: self.dir.join(name),
            _hold: hold,
        })
    }

    /// The snapshots, in the order they were taken.
    pub fn list(&self) -> Result<Vec<PathBuf>, Error> {
        list_in(&self.dir)
    }

    /// Deletes periodic snapshots so that at most `keep` remain: the first
    /// (the baseline growth is measured from) and the newest `keep - 1`.
    /// The one taken at exit is never deleted. Deleting one that a later
    /// incremental snapshot builds on folds its pages into that one first.
    pub fn prune(&self, keep: usize) -> Result<(), Error> {
        let _hold = self.lock()?;
        let periodic: Vec<PathBuf> = self.list()?.into_iter().filter(|p| !is_exit(p)).collect();
        if keep == 0 || periodic.len() <= keep {
            return Ok(());
        }
        let doomed = &periodic[1..periodic.len() - (keep - 1)];
        for p in doomed {
            // An incremental snapshot after it keeps its pages (folded in);
            // a file that is no readable core has nothing to fold.
            match crate::snapshot::chain::drop_snapshot(p) {
                Err(Error::Malformed { .. }) => {
                    std::fs::remove_file(p).map_err(|e| Error::write(p, e))?
                }
                r => {
                    r?;
                }
            }
        }
        Ok(())
    }
}

/// The snapshots of the recording at `recording`, in the order taken
/// (empty if it has none).
pub fn list(recording: &Path) -> Result<Vec<PathBuf>, Error> {
    let dir = recording.join("snapshots");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    list_in(&dir)
}

/// The snapshots of the recording at `recording` that make a time series
/// of the running program: all but the one taken at exit, unless fewer
/// than two others exist. A program's exit path may already have torn its
/// heap down before the hand-over (Node.js frees its whole environment
/// before `main` returns), so the exit snapshot answers "what is still
/// live at exit" (leaks), not "what grows".
pub fn series(recording: &Path) -> Result<Vec<PathBuf>, Error> {
    let all = list(recording)?;
    let running: Vec<PathBuf> = all.iter().filter(|p| !is_exit(p)).cloned().collect();
    Ok(if running.len() >= 2 { running } else { all })
}

fn list_in(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| index_of(p).is_some())
        .collect();
    out.sort_by_key(|p| index_of(p));
    Ok(out)
}

/// `NNNN` of `NNNN.core` / `NNNN-exit.core`.
fn index_of(p: &Path) -> Option<u32> {
    let name = p.file_name()?.to_str()?;
    let stem = name.strip_suffix(".core")?;
    let digits = stem.strip_suffix("-exit").unwrap_or(stem);
    (digits.len() >= 4 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Whether `p` names the snapshot a recording took at exit
/// (`NNNN-exit.core`).
pub fn is_exit(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with("-exit.core"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(index_of(Path::new("x/0007.core")), Some(7));
        assert_eq!(index_of(Path::new("0012-exit.core")), Some(12));
        assert_eq!(index_of(Path::new("12.core")), None);
        assert_eq!(index_of(Path::new("0012.core.tmp")), None);
        assert_eq!(index_of(Path::new(".lock")), None);
        assert!(is_exit(Path::new("0003-exit.core")));
    }

    #[test]
    fn prune_keeps_the_first_the_newest_and_the_exit() {
        let dir = std::env::temp_dir().join(format!("leaktrail-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let s = Snapshots::of(&dir).unwrap();
        for name in [
            "0001.core",
            "0002.core",
            "0003.core",
            "0004.core",
            "0005.core",
            "0006-exit.core",
        ] {
            std::fs::write(s.dir.join(name), b"x").unwrap();
        }
        s.prune(3).unwrap();
        let names: Vec<String> = s
            .list()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["0001.core", "0004.core", "0005.core", "0006-exit.core"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
