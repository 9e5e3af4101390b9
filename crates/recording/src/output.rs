//! Where leaktrail writes an output, and the one rule for what is already
//! there (DESIGN.md's invariant: no output replaces a file it did not
//! create).
//!
//! * Nothing there, or a regular file: written under a temporary name
//!   beside it and renamed over it, mode 0600, so a reader never sees half
//!   of one.
//! * `-`: standard output, where the output is a stream.
//! * A pipe (FIFO) or a character device (`/dev/null`, a terminal): written
//!   through — opened for writing, never renamed over — where the output is
//!   a stream; refused where it is not (a snapshot is written out of order).
//! * A symbolic link, a directory, a socket, a block device: refused with
//!   one line, and nothing changed.
//!
//! Every writer goes through [`OutputFile`]: [`write_atomically`] for
//! whole outputs held in memory, and the snapshot writer for cores.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Whether an output can be written front to back in one pass (and so to
/// a pipe, a device or standard output), or needs a seekable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written in one pass, front to back.
    Stream,
    /// Written out of order (with `pwrite`): only a regular file will do.
    Seekable,
}

/// An output being written: under its temporary name until
/// [`commit`](OutputFile::commit), or straight through to a pipe, device
/// or standard output. The temporary file is removed on drop unless
/// committed.
#[derive(Debug)]
pub struct OutputFile {
    file: File,
    path: PathBuf,
    tmp: Option<PathBuf>,
}

impl OutputFile {
    /// Opens the output `path` as the rule above says, with `tmp` as the
    /// temporary name where it is written and renamed.
    pub fn create(path: &Path, tmp: PathBuf, kind: Kind) -> Result<OutputFile, Error> {
        if path.as_os_str() == "-" {
            if kind == Kind::Seekable {
                return Err(Error::Refused {
                    path: path.to_path_buf(),
                    why: "this output cannot be written to standard output (it is written out of order); give a file name".into(),
                });
            }
            // Standard output, duplicated so that dropping ours closes only
            // the copy (and flushed first, so what was printed stays first).
            let _ = std::io::stdout().flush();
            let file = dup_stdout().map_err(|e| Error::write(path, e))?;
            return Ok(OutputFile {
                file,
                path: path.to_path_buf(),
                tmp: None,
            });
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) => {
                let t = m.file_type();
                if t.is_file() {
                    // Replaced atomically, below.
                } else if t.is_fifo() || t.is_char_device() {
                    let what = if t.is_fifo() {
                        "a pipe"
                    } else {
                        "a character device"
                    };
                    if kind == Kind::Seekable {
                        return Err(Error::Refused {
                            path: path.to_path_buf(),
                            why: format!("it is {what} and this output is written out of order; choose a regular file"),
                        });
                    }
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| Error::write(path, e))?;
                    return Ok(OutputFile {
                        file,
                        path: path.to_path_buf(),
                        tmp: None,
                    });
                } else {
                    return Err(Error::Refused {
                        path: path.to_path_buf(),
                        why: format!("it is {}; remove it or choose another path", describe(&t)),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::write(path, e)),
        }
        // The temporary name must not be someone else's either.
        if let Ok(m) = std::fs::symlink_metadata(&tmp) {
            if !m.file_type().is_file() {
                return Err(Error::Refused {
                    path: tmp,
                    why: format!(
                        "it is {}; remove it or choose another path",
                        describe(&m.file_type())
                    ),
                });
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| Error::write(&tmp, e))?;
        // `mode` applies only to a new file; an old one keeps its own.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::write(&tmp, e))?;
        Ok(OutputFile {
            file,
            path: path.to_path_buf(),
            tmp: Some(tmp),
        })
    }

    /// The open file to write to.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path being written now: the temporary name, or the output
    /// itself when written through.
    pub fn writing(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(&self.path)
    }

    /// The temporary name, if the output is written and renamed.
    pub fn temporary(&self) -> Option<&Path> {
        self.tmp.as_deref()
    }

    /// Makes the output visible under its name (a no-op for one written
    /// through) and returns that name.
    pub fn commit(mut self) -> Result<PathBuf, Error> {
        if let Some(tmp) = &self.tmp {
            self.file
                .sync_data()
                .map_err(|e| Error::write(&self.path, e))?;
            std::fs::rename(tmp, &self.path).map_err(|e| Error::write(&self.path, e))?;
            self.tmp = None;
        } else {
            self.file.flush().map_err(|e| Error::write(&self.path, e))?;
        }
        Ok(self.path.clone())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn dup_stdout() -> std::io::Result<File> {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = std::io::stdout().as_fd().try_clone_to_owned()?;
    Ok(File::from(fd))
}

/// "a symbolic link", "a directory", … for a refusal.
pub(crate) fn describe(t: &std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a pipe"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    }
}

/// `DIR/.NAME.tmp.PID`: the temporary name [`write_atomically`] uses.
pub fn hidden_temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// `PATH.tmp`: the temporary name of a snapshot, which a recording's
/// snapshot list knows to skip.
pub fn suffixed_temporary(path: &Path) -> PathBuf {
    let mut tmp: OsString = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Writes `bytes` to the output `path` by the rule above: through a
/// temporary name and a rename, mode 0600, or through to standard output,
/// a pipe or a character device.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let out = OutputFile::create(path, hidden_temporary(path), Kind::Stream)?;
    (&out.file)
        .write_all(bytes)
        .map_err(|e| Error::write(path, e))?;
    out.commit()?;
    Ok(())
}

/// Checks, without writing anything, that `path` could be written as an
/// output of `kind` (for checks made before a long job starts).
pub fn check(path: &Path, kind: Kind) -> Result<(), Error> {
    if path.as_os_str() == "-" {
        return match kind {
            Kind::Stream => Ok(()),
            Kind::Seekable => Err(Error::Refused {
                path: path.to_path_buf(),
                why: "this output cannot be written to standard output (it is written out of order); give a file name".into(),
            }),
        };
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            if t.is_file() || (kind == Kind::Stream && (t.is_fifo() || t.is_char_device())) {
                Ok(())
            } else if t.is_fifo() || t.is_char_device() {
                Err(Error::Refused {
                    path: path.to_path_buf(),
                    why: format!(
                        "it is {} and this output is written out of order; choose a regular file",
                        describe(&t)
                    ),
                })
            } else {
                Err(Error::Refused {
                    path: path.to_path_buf(),
                    why: format!("it is {}; remove it or choose another path", describe(&t)),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::write(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("leaktrail-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_regular_file_is_replaced_and_a_symlink_refused() {
        let d = scratch("rule");
        let f = d.join("out");
        std::fs::write(&f, "old").unwrap();
        write_atomically(&f, b"new").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        let link = d.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = write_atomically(&link, b"evil").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(e.is_bad_input());
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let e = write_atomically(&d, b"x").unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        assert!(check(Path::new("/dev/null"), Kind::Seekable).is_err());
        assert!(check(Path::new("/dev/null"), Kind::Stream).is_ok());
        write_atomically(Path::new("/dev/null"), b"x").unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }
}
