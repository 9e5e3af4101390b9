//! The `--json` documents: what every analysis command prints with
//! `--json`, one serializable type per command.
//!
//! The analysis types are free to change; these are not. Each document is
//! built from an analysis result by `From` (conversion only, nothing is
//! computed here) and spells its JSON field names, their order and their
//! value formats explicitly, so renaming a Rust field in `analysis` cannot
//! change the interface without a failing test here. `docs/json.md` lists
//! every document and what each field means: that is the one place the
//! interface is described, so the fields here carry no comments of their
//! own (they are private; a document is only ever built and serialized).
//!
//! Every document opens with `schema_version` ([`SCHEMA_VERSION`]). We bump
//! it when a field is removed or renamed, or its meaning or value format
//! changes; adding a field does not bump it (readers ignore fields they do
//! not know).
//!
//! Records shared between documents (a stack frame, a mapping, a live
//! buffer) are defined once, in [`frame`] and [`whatis`].
//!
//! ```
//! use leaktrail_analysis::leaks::Leaks;
//! use leaktrail_report::json::LeaksDocument;
//!
//! fn print(found: &Leaks) -> serde_json::Result<String> {
//!     serde_json::to_string_pretty(&LeaksDocument::from(found))
//! }
//! ```

pub mod audit;
pub mod bufs;
pub mod caches;
pub mod dump;
pub mod fleet;
pub mod frame;
pub mod growth;
pub mod info;
pub mod js;
pub mod leaks;
pub mod maps_diff;
pub mod refs;
pub mod sites;
pub mod trend;
pub mod whatis;

pub use audit::AuditDumpDocument;
pub use bufs::BufsDocument;
pub use caches::CachesDocument;
pub use dump::DumpDocument;
pub use fleet::FleetGrowthDocument;
pub use growth::GrowthDocument;
pub use info::InfoDocument;
pub use js::{JsObjectsDocument, JsPrintDocument};
pub use leaks::LeaksDocument;
pub use maps_diff::MapsDiffDocument;
pub use refs::{ChainsDocument, RefsDocument};
pub use sites::SummaryDocument;
pub use trend::TrendDocument;
pub use whatis::WhatisDocument;

/// The version of every document's shape, its first field.
///
/// Bump it when a field is removed or renamed, or when a value's meaning or
/// format changes; not when a field is added.
pub const SCHEMA_VERSION: u32 = 1;

/// A document as the CLI prints it: pretty JSON and a newline.
pub fn to_string<T: serde::Serialize>(doc: &T) -> serde_json::Result<String> {
    let mut s = serde_json::to_string_pretty(doc)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
pub(crate) mod golden {
    //! What the golden tests share.

    /// Asserts that `doc` serializes to exactly `expected` (pretty JSON).
    #[track_caller]
    pub fn assert_json<T: serde::Serialize>(doc: &T, expected: &str) {
        let got = serde_json::to_string_pretty(doc).expect("serializable");
        assert_eq!(
            got,
            expected.trim(),
            "\n--- got ---\n{got}\n--- expected ---\n{expected}"
        );
    }
}
