//! One module per subcommand: its flags, and the one library call it makes.

pub mod addr;
pub mod attach;
pub mod bufs;
pub mod caches;
pub mod completions;
pub mod demo;
pub mod dump;
pub mod export;
pub mod filter;
pub mod flamegraph;
pub mod growth;
pub mod info;
pub mod job;
pub mod jsobjects;
pub mod jsprint;
pub mod leaks;
pub mod man;
pub mod maps;
pub mod pprof;
pub mod refs;
pub mod remote;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod summary;
pub mod top;
pub mod trend;
pub mod watch;
pub mod whatis;

use std::path::{Path, PathBuf};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use leaktrail_format::UnknownName;

/// The parser of a flag that takes one of a mode's `names`: help and errors
/// list them, as they would for a literal list.
pub fn spelled<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = UnknownName> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).try_map(|s| s.parse::<T>())
}

/// A reading command's input as a local path: itself, or for an
/// `s3://BUCKET/PREFIX` URL its mirror in the local cache (fetched once per
/// ETag; see `leaktrail_store`).
pub fn local(input: &Path) -> anyhow::Result<PathBuf> {
    Ok(leaktrail_store::local(input)?)
}

/// [`local`] of a recording whose watch series alone is read (`trend`,
/// `maps`): its snapshots stay in the store. A URL naming one object (a
/// snapshot) is fetched whole.
pub fn local_series(input: &Path) -> anyhow::Result<PathBuf> {
    Ok(leaktrail_store::local_some(
        input,
        leaktrail_store::is_series,
    )?)
}

/// [`local`] of each input.
pub fn locals(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    inputs.iter().map(|p| local(p)).collect()
}
