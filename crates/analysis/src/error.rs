//! The crate's one error type.

/// Everything that can go wrong while analysing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address that no captured memory covers.
    #[error("address {addr:#x} is not in captured memory")]
    Unmapped {
        /// The address.
        addr: u64,
    },
    /// The input is not enough for the question asked.
    #[error("{0}")]
    Insufficient(String),
    /// A recording or snapshot could not be read.
    #[error(transparent)]
    Recording(#[from] leaktrail_recording::Error),
}

impl Error {
    /// Whether the error is the user's input rather than a failure of ours.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Unmapped { .. } | Error::Insufficient(_) => true,
            Error::Recording(e) => e.is_bad_input(),
        }
    }
}
