//! `caches --json`.

use leaktrail_analysis::caches::{Caches, ClassCounts, ClassDelta, ClassRow};
use serde::Serialize;

use super::SCHEMA_VERSION;

/// What `leaktrail caches --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct CachesDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Classes with any activity, the most grown (or largest) first.
    pub classes: Vec<ClassRecord>,
    /// Live buffers and bytes per snapshot, in the order given.
    pub totals: Vec<ClassCountsRecord>,
}

/// One size class across the snapshots.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRecord {
    /// Largest request size in the class.
    pub size: u64,
    /// Live buffers in the last snapshot.
    pub live_count: u64,
    /// Live bytes in the last snapshot.
    pub live_bytes: u64,
    /// Allocations in the last snapshot.
    pub allocs: u64,
    /// Frees in the last snapshot.
    pub frees: u64,
    /// The counts in each snapshot.
    pub snapshots: Vec<ClassCountsRecord>,
    /// Last minus first, null with one snapshot.
    pub delta: Option<ClassDeltaRecord>,
    /// Among the classes that grew the most.
    pub grew_most: bool,
}

/// `{live_count, live_bytes, allocs, frees}` in one snapshot.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClassCountsRecord {
    /// Live buffers.
    pub live_count: u64,
    /// Their requested bytes.
    pub live_bytes: u64,
    /// Allocations ever made.
    pub allocs: u64,
    /// Frees ever made.
    pub frees: u64,
}

/// The same counts, last minus first.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClassDeltaRecord {
    /// Change in live buffers.
    pub live_count: i64,
    /// Change in live bytes.
    pub live_bytes: i64,
    /// Allocations between the two.
    pub allocs: i64,
    /// Frees between the two.
    pub frees: i64,
}

impl From<ClassCounts> for ClassCountsRecord {
    fn from(c: ClassCounts) -> Self {
        ClassCountsRecord {
            live_count: c.live_count,
            live_bytes: c.live_bytes,
            allocs: c.allocs,
            frees: c.frees,
        }
    }
}

impl From<ClassDelta> for ClassDeltaRecord {
    fn from(d: ClassDelta) -> Self {
        ClassDeltaRecord {
            live_count: d.live_count,
            live_bytes: d.live_bytes,
            allocs: d.allocs,
            frees: d.frees,
        }
    }
}

impl From<&ClassRow> for ClassRecord {
    fn from(r: &ClassRow) -> Self {
        ClassRecord {
            size: r.size,
            live_count: r.live_count,
            live_bytes: r.live_bytes,
            allocs: r.allocs,
            frees: r.frees,
            snapshots: r.snapshots.iter().copied().map(Into::into).collect(),
            delta: r.delta.map(Into::into),
            grew_most: r.grew_most,
        }
    }
}

impl From<&Caches> for CachesDocument {
    fn from(c: &Caches) -> Self {
        CachesDocument {
            schema_version: SCHEMA_VERSION,
            classes: c.classes.iter().map(ClassRecord::from).collect(),
            totals: c.totals.iter().copied().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;

    #[test]
    fn caches_document_fields() {
        let counts = ClassCounts {
            live_count: 1,
            live_bytes: 2,
            allocs: 3,
            frees: 4,
        };
        let caches = Caches {
            classes: vec![ClassRow {
                size: 32,
                live_count: 1,
                live_bytes: 2,
                allocs: 3,
                frees: 4,
                snapshots: vec![counts],
                delta: Some(ClassDelta {
                    live_count: -1,
                    live_bytes: 2,
                    allocs: 3,
                    frees: 4,
                }),
                grew_most: true,
            }],
            totals: vec![counts],
        };
        assert_json(
            &CachesDocument::from(&caches),
            r#"
{
  "schema_version": 1,
  "classes": [
    {
      "size": 32,
      "live_count": 1,
      "live_bytes": 2,
      "allocs": 3,
      "frees": 4,
      "snapshots": [
        {
          "live_count": 1,
          "live_bytes": 2,
          "allocs": 3,
          "frees": 4
        }
      ],
      "delta": {
        "live_count": -1,
        "live_bytes": 2,
        "allocs": 3,
        "frees": 4
      },
      "grew_most": true
    }
  ],
  "totals": [
    {
      "live_count": 1,
      "live_bytes": 2,
      "allocs": 3,
      "frees": 4
    }
  ]
}"#,
        );
    }
}
