//! Renderers for leaktrail: text tables, JSON, SVG charts.
//!
//! Renderers take analysis results and produce text; they compute nothing.
#![deny(missing_docs)]

pub mod diagnosis;
pub mod flamegraph;
pub mod growth;
pub mod heap;
pub mod html;
pub mod pprof;
pub mod svg;
pub mod text;
