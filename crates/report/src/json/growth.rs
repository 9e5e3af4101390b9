//! `growth --json`.

use std::path::Path;

use leaktrail_analysis::growth::{ClassGrowth, Growth, Observation, SeriesPoint, Stats, Suspect};
use leaktrail_analysis::investigation::{first_suspect, FirstSuspect};
use leaktrail_analysis::v8::JsHeapGrowth;
use serde::Serialize;

use super::frame::{self, FrameRecord};
use super::trend::owner_name;
use super::SCHEMA_VERSION;

/// What `leaktrail growth --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct GrowthDocument<'a> {
    schema_version: u32,
    snapshots: Vec<ObservationRecord<'a>>,
    span_seconds: f64,
    noise_bytes: f64,
    grows_above_noise: bool,
    stackless: bool,
    suspects: Vec<SuspectRecord<'a>>,
    classes: Vec<ClassGrowthRecord>,
    sample_rate: u64,
    js_heap: Option<JsHeapRecord<'a>>,
    first_suspect: Option<FirstSuspectRecord>,
}

/// What grows most, malloc sites and the JS heap ranked together
/// (`investigation::first_suspect`): the same one, in the same words, as
/// the report's headline.
#[derive(Clone, Debug, Serialize)]
pub struct FirstSuspectRecord {
    /// `site` (a malloc site: the first of `suspects`) or `js_heap`.
    kind: &'static str,
    /// The bytes it rose by.
    rise_bytes: f64,
    /// The headline's words for it.
    headline: String,
}

impl From<FirstSuspect<'_>> for FirstSuspectRecord {
    fn from(f: FirstSuspect<'_>) -> Self {
        FirstSuspectRecord {
            kind: match f {
                FirstSuspect::Site(_) => "site",
                FirstSuspect::JsHeap(_) => "js_heap",
            },
            rise_bytes: f.rise_bytes(),
            headline: crate::diagnosis::first_suspect(&f),
        }
    }
}

/// The JS heap across the snapshots (`null` unless they are full
/// snapshots of node).
#[derive(Clone, Debug, Serialize)]
pub struct JsHeapRecord<'a> {
    verdict: &'static str,
    /// The rise a constructor's bytes must exceed to grow (1.96 × the
    /// standard deviation of the JS objects' bytes about their line).
    noise_bytes: f64,
    objects: &'a [u64],
    bytes: &'a [u64],
    used: &'a [u64],
    committed: &'a [u64],
    /// Global handles in use per snapshot (null: not found in every one).
    global_handles: Option<Vec<u64>>,
    /// Handle-scope blocks per snapshot (null: not found in every one).
    handle_scope_blocks: Option<Vec<u64>>,
    /// External strings' bytes per snapshot (off the JS heap).
    external_string_bytes: &'a [u64],
    constructors: Vec<ConstructorSeriesRecord<'a>>,
}

/// One constructor's objects across the snapshots.
#[derive(Clone, Debug, Serialize)]
pub struct ConstructorSeriesRecord<'a> {
    constructor: &'a str,
    counts: &'a [u64],
    bytes: &'a [u64],
    count_delta: i64,
    bytes_delta: i64,
    grows_steadily: bool,
}

impl<'a> From<&'a JsHeapGrowth> for JsHeapRecord<'a> {
    fn from(j: &'a JsHeapGrowth) -> Self {
        JsHeapRecord {
            verdict: j.verdict.name(),
            noise_bytes: j.noise_bytes,
            objects: &j.objects,
            bytes: &j.bytes,
            used: &j.used,
            committed: &j.committed,
            global_handles: j.global_handles(),
            handle_scope_blocks: j.handle_scope_blocks(),
            external_string_bytes: &j.external_string_bytes,
            // Those that gained objects: the rest is the bulk of a heap.
            constructors: j
                .constructors
                .iter()
                .filter(|c| c.count_delta() != 0 || c.bytes_delta() != 0)
                .map(|c| ConstructorSeriesRecord {
                    constructor: &c.constructor,
                    counts: &c.counts,
                    bytes: &c.bytes,
                    count_delta: c.count_delta(),
                    bytes_delta: c.bytes_delta(),
                    grows_steadily: c.grows_steadily(),
                })
                .collect(),
        }
    }
}

impl<'a> GrowthDocument<'a> {
    /// The document of `g` with the JS heap's growth, when there is one
    /// (and the first suspect ranked with it).
    pub fn with_js_heap(mut self, g: &'a Growth, j: Option<&'a JsHeapGrowth>) -> Self {
        self.js_heap = j.map(Into::into);
        self.first_suspect = first_suspect(Some(g), j).map(Into::into);
        self
    }
}

/// One snapshot of the series.
#[derive(Clone, Debug, Serialize)]
pub struct ObservationRecord<'a> {
    path: &'a Path,
    time_unix_ns: u64,
    pid: Option<i32>,
    live_bytes: u64,
    live_count: u64,
    stackless: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    before_attach: Option<super::leaks::TallyRecord>,
}

/// A point of a series.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SeriesPointRecord {
    t_seconds: f64,
    count: u64,
    bytes: u64,
}

/// How a series grows.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StatsRecord {
    slope_bytes_per_hour: f64,
    rise_bytes: f64,
    monotonicity: f64,
    steadiness: f64,
    score: f64,
    fitted_rise_bytes: f64,
    slope_low_bytes_per_hour: f64,
    p_value: f64,
    significant: bool,
}

/// One growing allocation site.
#[derive(Clone, Debug, Serialize)]
pub struct SuspectRecord<'a> {
    rank: usize,
    stack: Vec<FrameRecord<'a>>,
    class: u64,
    series: Vec<SeriesPointRecord>,
    slope: f64,
    score: f64,
    stats: StatsRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'static str>,
    site: Option<super::sites::CountsRecord>,
}

/// One growing size class.
#[derive(Clone, Debug, Serialize)]
pub struct ClassGrowthRecord {
    class: u64,
    series: Vec<SeriesPointRecord>,
    stats: StatsRecord,
}

impl<'a> From<&'a Observation> for ObservationRecord<'a> {
    fn from(o: &'a Observation) -> Self {
        ObservationRecord {
            path: &o.path,
            time_unix_ns: o.time_unix_ns,
            pid: o.pid,
            live_bytes: o.live_bytes,
            live_count: o.live_count,
            stackless: o.stackless,
            before_attach: o.before_attach.map(Into::into),
        }
    }
}

impl From<SeriesPoint> for SeriesPointRecord {
    fn from(p: SeriesPoint) -> Self {
        SeriesPointRecord {
            t_seconds: p.t_seconds,
            count: p.count,
            bytes: p.bytes,
        }
    }
}

impl From<Stats> for StatsRecord {
    fn from(s: Stats) -> Self {
        StatsRecord {
            slope_bytes_per_hour: s.slope_bytes_per_hour,
            rise_bytes: s.rise_bytes,
            monotonicity: s.monotonicity,
            steadiness: s.steadiness,
            score: s.score,
            fitted_rise_bytes: s.fitted_rise_bytes,
            slope_low_bytes_per_hour: s.slope_low_bytes_per_hour,
            p_value: s.p_value,
            significant: s.significant,
        }
    }
}

fn series(points: &[SeriesPoint]) -> Vec<SeriesPointRecord> {
    points.iter().copied().map(Into::into).collect()
}

impl<'a> From<&'a Suspect> for SuspectRecord<'a> {
    fn from(s: &'a Suspect) -> Self {
        SuspectRecord {
            rank: s.rank,
            stack: frame::stack(&s.stack),
            class: s.class,
            series: series(&s.series),
            slope: s.slope,
            score: s.score,
            stats: s.stats.into(),
            owner: s.owner.map(owner_name),
            site: s.counts.as_ref().map(Into::into),
        }
    }
}

impl From<&ClassGrowth> for ClassGrowthRecord {
    fn from(c: &ClassGrowth) -> Self {
        ClassGrowthRecord {
            class: c.class,
            series: series(&c.series),
            stats: c.stats.into(),
        }
    }
}

impl<'a> From<&'a Growth> for GrowthDocument<'a> {
    fn from(g: &'a Growth) -> Self {
        GrowthDocument {
            schema_version: SCHEMA_VERSION,
            snapshots: g.snapshots.iter().map(Into::into).collect(),
            span_seconds: g.span_seconds,
            noise_bytes: g.noise_bytes,
            grows_above_noise: g.suspects.iter().any(|s| s.stats.significant),
            stackless: g.stackless(),
            suspects: g.suspects.iter().map(Into::into).collect(),
            classes: g.classes.iter().map(Into::into).collect(),
            sample_rate: g.sample_rate,
            js_heap: None,
            first_suspect: first_suspect(Some(g), None).map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;
    use leaktrail_analysis::owner::Owner;

    #[test]
    fn growth_document_fields() {
        let point = SeriesPoint {
            t_seconds: 1.5,
            count: 2,
            bytes: 64,
        };
        let stats = Stats {
            slope_bytes_per_hour: 10.0,
            rise_bytes: 32.0,
            monotonicity: 1.0,
            steadiness: 0.5,
            score: 0.25,
            fitted_rise_bytes: 30.0,
            slope_low_bytes_per_hour: 8.0,
            p_value: 0.01,
            significant: true,
        };
        let mut suspect = Suspect {
            rank: 1,
            stack: vec![],
            class: 32,
            series: vec![point],
            slope: 10.0,
            score: 0.25,
            stats,
            owner: Some(Owner::Native),
            counts: None,
        };
        let g = Growth {
            sample_rate: 0,
            snapshots: vec![Observation {
                path: "a.core".into(),
                time_unix_ns: 7,
                pid: Some(42),
                live_bytes: 64,
                live_count: 2,
                stackless: false,
                before_attach: None,
            }],
            span_seconds: 1.5,
            noise_bytes: 4.0,
            suspects: vec![suspect.clone()],
            classes: vec![],
        };
        assert_json(
            &GrowthDocument::from(&g),
            r#"
{
  "schema_version": 1,
  "snapshots": [
    {
      "path": "a.core",
      "time_unix_ns": 7,
      "pid": 42,
      "live_bytes": 64,
      "live_count": 2,
      "stackless": false
    }
  ],
  "span_seconds": 1.5,
  "noise_bytes": 4.0,
  "grows_above_noise": true,
  "stackless": false,
  "suspects": [
    {
      "rank": 1,
      "stack": [],
      "class": 32,
      "series": [
        {
          "t_seconds": 1.5,
          "count": 2,
          "bytes": 64
        }
      ],
      "slope": 10.0,
      "score": 0.25,
      "stats": {
        "slope_bytes_per_hour": 10.0,
        "rise_bytes": 32.0,
        "monotonicity": 1.0,
        "steadiness": 0.5,
        "score": 0.25,
        "fitted_rise_bytes": 30.0,
        "slope_low_bytes_per_hour": 8.0,
        "p_value": 0.01,
        "significant": true
      },
      "owner": "native",
      "site": null
    }
  ],
  "classes": [],
  "sample_rate": 0,
  "js_heap": null,
  "first_suspect": {
    "kind": "site",
    "rise_bytes": 32.0,
    "headline": "growth above noise: an unknown site keeps 32 B buffers: 2 → 2 buffers, 0 B, +10 B/h"
  }
}"#,
        );
        // A class carries the same point and stats records as a suspect.
        let class = ClassGrowth {
            class: 32,
            series: vec![point],
            stats,
        };
        let json = serde_json::to_string(&ClassGrowthRecord::from(&class)).unwrap();
        let point = serde_json::to_string(&SeriesPointRecord::from(point)).unwrap();
        let stats = serde_json::to_string(&StatsRecord::from(stats)).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"class":32,"series":[{point}],"stats":{stats}}}"#)
        );
        suspect.owner = None;
        let json = serde_json::to_string(&SuspectRecord::from(&suspect)).unwrap();
        assert!(!json.contains("owner"), "{json}");
    }

    #[test]
    fn js_heap_record_fields() {
        use leaktrail_analysis::v8::{self, Census, ConstructorCount, SpaceUse};
        let census = |listeners: u64| Census {
            constructors: vec![
                ConstructorCount {
                    constructor: "Listener".into(),
                    count: listeners,
                    bytes: 40 * listeners,
                    addrs: vec![],
                },
                ConstructorCount {
                    constructor: "Object".into(),
                    count: 7,
                    bytes: 280,
                    addrs: vec![],
                },
            ],
            objects: listeners + 7,
            bytes: 40 * listeners + 280,
            heap_objects: 100,
            heap_object_bytes: 5000,
            spaces: vec![SpaceUse {
                name: "old_space",
                pages: 1,
                committed: 262_144,
                used: 4000 + 40 * listeners,
            }],
            handles: v8::V8Handles {
                global: Some(v8::GlobalHandleCount {
                    in_use: 60 + listeners,
                    strong: 50 + listeners,
                    weak: 10,
                    blocks: 1,
                }),
                scopes: None,
            },
            external_strings: 2,
            external_string_bytes: 3000,
            ..Census::default()
        };
        // Four snapshots: the fewest in which a rise can be significant.
        let j = v8::compare(
            vec![
                "a.core".into(),
                "b.core".into(),
                "c.core".into(),
                "d.core".into(),
            ],
            &[census(10), census(20), census(30), census(40)],
        );
        assert_json(
            &JsHeapRecord::from(&j),
            r#"
{
  "verdict": "leak",
  "noise_bytes": 0.0,
  "objects": [
    17,
    27,
    37,
    47
  ],
  "bytes": [
    680,
    1080,
    1480,
    1880
  ],
  "used": [
    4400,
    4800,
    5200,
    5600
  ],
  "committed": [
    262144,
    262144,
    262144,
    262144
  ],
  "global_handles": [
    70,
    80,
    90,
    100
  ],
  "handle_scope_blocks": null,
  "external_string_bytes": [
    3000,
    3000,
    3000,
    3000
  ],
  "constructors": [
    {
      "constructor": "Listener",
      "counts": [
        10,
        20,
        30,
        40
      ],
      "bytes": [
        400,
        800,
        1200,
        1600
      ],
      "count_delta": 30,
      "bytes_delta": 1200,
      "grows_steadily": true
    }
  ]
}"#,
        );
    }
}
