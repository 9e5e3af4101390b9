//! Renderers for leaktrail: text tables, JSON, SVG charts.
//!
//! Renderers take analysis results and produce text; they compute nothing.
//! [`json`] holds the `--json` documents: the interface types, one per
//! command, built from the analysis results, each with a `schema_version`.
#![deny(missing_docs)]

pub mod diagnosis;
pub mod flamegraph;
pub mod fleet;
pub mod growth;
pub mod heap;
pub mod html;
pub mod json;
pub mod pprof;
pub mod svg;
pub mod text;

#[cfg(test)]
mod testing;
