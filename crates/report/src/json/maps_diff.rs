//! `maps diff --json`.

use leaktrail_analysis::maps_diff::{MappingDelta, MapsDiff, Presence, RegionDelta};
use serde::Serialize;

use super::SCHEMA_VERSION;

/// What `leaktrail maps diff --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct MapsDiffDocument<'a> {
    schema_version: u32,
    rss_a: u64,
    rss_b: u64,
    delta: i64,
    regions: Vec<RegionDeltaRecord<'a>>,
    mappings: Vec<MappingDeltaRecord<'a>>,
    tracer_a: u64,
    tracer_b: u64,
}

/// One region's RSS in A and B.
#[derive(Clone, Debug, Serialize)]
pub struct RegionDeltaRecord<'a> {
    name: &'a str,
    rss_a: u64,
    rss_b: u64,
    delta: i64,
}

/// One mapping matched between A and B.
#[derive(Clone, Debug, Serialize)]
pub struct MappingDeltaRecord<'a> {
    name: &'a str,
    region: &'static str,
    perms: &'a str,
    start: u64,
    end: u64,
    size_a: u64,
    size_b: u64,
    rss_a: u64,
    rss_b: u64,
    delta: i64,
    presence: &'static str,
}

impl<'a> From<&'a RegionDelta> for RegionDeltaRecord<'a> {
    fn from(r: &'a RegionDelta) -> Self {
        RegionDeltaRecord {
            name: &r.name,
            rss_a: r.rss_a,
            rss_b: r.rss_b,
            delta: r.delta,
        }
    }
}

impl<'a> From<&'a MappingDelta> for MappingDeltaRecord<'a> {
    fn from(m: &'a MappingDelta) -> Self {
        MappingDeltaRecord {
            name: &m.name,
            region: m.region.name(),
            perms: &m.perms,
            start: m.start,
            end: m.end,
            size_a: m.size_a,
            size_b: m.size_b,
            rss_a: m.rss_a,
            rss_b: m.rss_b,
            delta: m.delta,
            presence: presence_name(m.presence),
        }
    }
}

impl<'a> From<&'a MapsDiff> for MapsDiffDocument<'a> {
    fn from(d: &'a MapsDiff) -> Self {
        MapsDiffDocument {
            schema_version: SCHEMA_VERSION,
            rss_a: d.rss_a,
            rss_b: d.rss_b,
            delta: d.delta,
            regions: d.regions.iter().map(Into::into).collect(),
            mappings: d.mappings.iter().map(Into::into).collect(),
            tracer_a: d.tracer_a,
            tracer_b: d.tracer_b,
        }
    }
}

fn presence_name(p: Presence) -> &'static str {
    match p {
        Presence::Both => "both",
        Presence::Added => "added",
        Presence::Removed => "removed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;
    use leaktrail_recording::Region;

    #[test]
    fn maps_diff_document_fields() {
        let d = MapsDiff {
            rss_a: 10,
            rss_b: 30,
            delta: 20,
            regions: vec![RegionDelta {
                name: "heap".into(),
                rss_a: 10,
                rss_b: 30,
                delta: 20,
            }],
            mappings: vec![MappingDelta {
                name: "[heap]".into(),
                region: Region::Heap,
                perms: "rw-p".into(),
                start: 0x1000,
                end: 0x3000,
                size_a: 0,
                size_b: 8192,
                rss_a: 0,
                rss_b: 20,
                delta: 20,
                presence: Presence::Added,
            }],
            tracer_a: 1,
            tracer_b: 2,
        };
        assert_json(
            &MapsDiffDocument::from(&d),
            r#"
{
  "schema_version": 1,
  "rss_a": 10,
  "rss_b": 30,
  "delta": 20,
  "regions": [
    {
      "name": "heap",
      "rss_a": 10,
      "rss_b": 30,
      "delta": 20
    }
  ],
  "mappings": [
    {
      "name": "[heap]",
      "region": "heap",
      "perms": "rw-p",
      "start": 4096,
      "end": 12288,
      "size_a": 0,
      "size_b": 8192,
      "rss_a": 0,
      "rss_b": 20,
      "delta": 20,
      "presence": "added"
    }
  ],
  "tracer_a": 1,
  "tracer_b": 2
}"#,
        );
    }
}
