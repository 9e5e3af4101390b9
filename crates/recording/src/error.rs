//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing what leaktrail records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file or memory image did not hold what we expected.
    #[error("{what}: {why}")]
    Malformed {
        /// The file or object involved.
        what: String,
        /// What was expected and what was found.
        why: String,
    },
    /// An address that no readable memory covers.
    #[error("address {addr:#x} is not in captured memory")]
    Unmapped {
        /// The address.
        addr: u64,
    },
    /// An output path holds something leaktrail must not replace (a
    /// symbolic link, a directory, …) or cannot write there (a pipe, for
    /// an output written out of order).
    #[error("refusing to replace {path}: {why}")]
    Refused {
        /// The output path.
        path: PathBuf,
        /// What is there, and what to do.
        why: String,
    },
    /// A record could not be encoded.
    #[error("{what}: {source}")]
    Encode {
        /// What we were encoding.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether the error is the user's input (a missing, unreadable or
    /// foreign file, an address outside the image) rather than a failure of
    /// ours; the binary exits 2 for these.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Io { .. }
            | Error::Malformed { .. }
            | Error::Unmapped { .. }
            | Error::Refused { .. } => true,
            Error::Write { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            Error::Encode { .. } => false,
        }
    }

    /// Wraps a read error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a write error with its path.
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Write {
            path: path.into(),
            source,
        }
    }

    /// A file that did not hold what we expected.
    pub fn malformed(path: impl AsRef<std::path::Path>, why: impl Into<String>) -> Self {
        Error::Malformed {
            what: path.as_ref().display().to_string(),
            why: why.into(),
        }
    }
}
