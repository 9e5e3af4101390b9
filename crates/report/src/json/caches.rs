//! `caches --json`.

use leaktrail_analysis::caches::{Caches, ClassCounts, ClassDelta, ClassRow};
use serde::Serialize;

use super::SCHEMA_VERSION;

/// What `leaktrail caches --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct CachesDocument {
    schema_version: u32,
    classes: Vec<ClassRecord>,
    totals: Vec<ClassCountsRecord>,
    sample_rate: u64,
}

/// One size class across the snapshots.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRecord {
    size: u64,
    live_count: u64,
    live_bytes: u64,
    allocs: u64,
    frees: u64,
    snapshots: Vec<ClassCountsRecord>,
    delta: Option<ClassDeltaRecord>,
    grew_most: bool,
}

/// `{live_count, live_bytes, allocs, frees}` in one snapshot.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClassCountsRecord {
    live_count: u64,
    live_bytes: u64,
    allocs: u64,
    frees: u64,
}

/// The same counts, last minus first.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClassDeltaRecord {
    live_count: i64,
    live_bytes: i64,
    allocs: i64,
    frees: i64,
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
            sample_rate: c.sample_rate,
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
            sample_rate: 0,
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
  ],
  "sample_rate": 0
}"#,
        );
    }
}
