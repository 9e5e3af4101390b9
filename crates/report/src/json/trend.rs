//! `trend --json`.
//!
//! Unlike the other documents, this one has its keys in alphabetical order
//! at every level (after `schema_version`): `trend` used to print a
//! `serde_json::Value`, whose maps are sorted, and we keep that order.

use leaktrail_analysis::owner::{Owner, OwnerSeries, OwnerTrend};
use leaktrail_analysis::trend::{FitLine, MannKendall, RegionTrend, Trend, Verdict};
use leaktrail_recording::maps::LimitSource;
use serde::Serialize;

use super::SCHEMA_VERSION;

/// What `leaktrail trend --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct TrendDocument<'a> {
    schema_version: u32,
    analysed_samples: usize,
    ci_high: f64,
    ci_low: f64,
    duration_seconds: f64,
    fit: Option<FitRecord>,
    growth_region: Option<&'a str>,
    limit_bytes: Option<u64>,
    limit_source: Option<&'static str>,
    mann_kendall: Option<MannKendallRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owners: Option<OwnerTrendRecord>,
    reason: &'a str,
    regions: Vec<RegionTrendRecord<'a>>,
    rss_bytes: u64,
    samples: usize,
    slope_bytes_per_hour: f64,
    time_to_limit_seconds: Option<f64>,
    tracer_bytes: u64,
    verdict: &'static str,
    warmup_seconds: f64,
}

/// The fitted line.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FitRecord {
    intercept_bytes: f64,
    slope_bytes_per_second: f64,
    t_end: f64,
    t_start: f64,
}

/// The Mann-Kendall trend test.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MannKendallRecord {
    p: f64,
    s: i64,
    var_s: f64,
    z: f64,
}

/// One region's trend.
#[derive(Clone, Debug, Serialize)]
pub struct RegionTrendRecord<'a> {
    ci_high: f64,
    ci_low: f64,
    name: &'a str,
    reason: &'a str,
    rss_bytes: u64,
    slope_bytes_per_hour: f64,
    verdict: &'static str,
}

/// Memory by owner over time (Node.js).
#[derive(Clone, Debug, Serialize)]
pub struct OwnerTrendRecord {
    /// V8's global handles in use per snapshot (null: not full snapshots).
    global_handles: Option<Vec<u64>>,
    growing: Option<&'static str>,
    owners: Vec<OwnerSeriesRecord>,
    t_seconds: Vec<f64>,
}

/// One owner's bytes per snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct OwnerSeriesRecord {
    bytes: Vec<u64>,
    name: &'static str,
    owner: &'static str,
    slope_bytes_per_hour: f64,
}

impl<'a> TrendDocument<'a> {
    /// The document of `t`, with the owner split when there is one.
    pub fn new(t: &'a Trend, owners: Option<&OwnerTrend>) -> Self {
        TrendDocument {
            schema_version: SCHEMA_VERSION,
            analysed_samples: t.analysed_samples,
            ci_high: t.ci_high,
            ci_low: t.ci_low,
            duration_seconds: t.duration_seconds,
            fit: t.fit.map(Into::into),
            growth_region: t.growth_region.as_deref(),
            limit_bytes: t.limit_bytes,
            limit_source: t.limit_source.map(limit_source_name),
            mann_kendall: t.mann_kendall.map(Into::into),
            owners: owners.map(Into::into),
            reason: &t.reason,
            regions: t.regions.iter().map(Into::into).collect(),
            rss_bytes: t.rss_bytes,
            samples: t.samples,
            slope_bytes_per_hour: t.slope_bytes_per_hour,
            time_to_limit_seconds: t.time_to_limit_seconds,
            tracer_bytes: t.tracer_bytes,
            verdict: verdict_name(t.verdict),
            warmup_seconds: t.warmup_seconds,
        }
    }
}

impl From<FitLine> for FitRecord {
    fn from(f: FitLine) -> Self {
        FitRecord {
            intercept_bytes: f.intercept_bytes,
            slope_bytes_per_second: f.slope_bytes_per_second,
            t_end: f.t_end,
            t_start: f.t_start,
        }
    }
}

impl From<MannKendall> for MannKendallRecord {
    fn from(m: MannKendall) -> Self {
        MannKendallRecord {
            p: m.p,
            s: m.s,
            var_s: m.var_s,
            z: m.z,
        }
    }
}

impl<'a> From<&'a RegionTrend> for RegionTrendRecord<'a> {
    fn from(r: &'a RegionTrend) -> Self {
        RegionTrendRecord {
            ci_high: r.ci_high,
            ci_low: r.ci_low,
            name: &r.name,
            reason: &r.reason,
            rss_bytes: r.rss_bytes,
            slope_bytes_per_hour: r.slope_bytes_per_hour,
            verdict: verdict_name(r.verdict),
        }
    }
}

impl From<&OwnerTrend> for OwnerTrendRecord {
    fn from(o: &OwnerTrend) -> Self {
        OwnerTrendRecord {
            global_handles: o.global_handles.clone(),
            growing: o.growing.map(owner_name),
            owners: o.owners.iter().map(Into::into).collect(),
            t_seconds: o.t_seconds.clone(),
        }
    }
}

impl From<&OwnerSeries> for OwnerSeriesRecord {
    fn from(s: &OwnerSeries) -> Self {
        OwnerSeriesRecord {
            bytes: s.bytes.clone(),
            name: s.name,
            owner: owner_name(s.owner),
            slope_bytes_per_hour: s.slope_bytes_per_hour,
        }
    }
}

/// A verdict as JSON spells it.
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Growing => "growing",
        Verdict::Flat => "flat",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// An owner as JSON spells it (also in `growth --json`).
pub fn owner_name(o: Owner) -> &'static str {
    match o {
        Owner::V8Heap => "v8_heap",
        Owner::ArrayBuffers => "array_buffers",
        Owner::Handles => "handles",
        Owner::Native => "native",
        Owner::OtherMappings => "other_mappings",
    }
}

fn limit_source_name(s: LimitSource) -> &'static str {
    match s {
        LimitSource::CgroupV2 => "cgroup_v2",
        LimitSource::CgroupV1 => "cgroup_v1",
        LimitSource::Physical => "physical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;

    fn trend() -> Trend {
        Trend {
            verdict: Verdict::Growing,
            reason: "r".into(),
            slope_bytes_per_hour: 3600.0,
            ci_low: 1.0,
            ci_high: 2.0,
            regions: vec![RegionTrend {
                name: "heap".into(),
                verdict: Verdict::Flat,
                slope_bytes_per_hour: 0.5,
                ci_low: -1.0,
                ci_high: 1.0,
                rss_bytes: 4096,
                reason: "q".into(),
            }],
            growth_region: Some("heap".into()),
            warmup_seconds: 2.0,
            time_to_limit_seconds: None,
            tracer_bytes: 4096,
            limit_bytes: Some(1 << 30),
            limit_source: Some(LimitSource::CgroupV2),
            samples: 10,
            analysed_samples: 8,
            duration_seconds: 9.0,
            rss_bytes: 8192,
            mann_kendall: Some(MannKendall {
                s: 20,
                var_s: 125.0,
                z: 1.5,
                p: 0.25,
            }),
            fit: Some(FitLine {
                intercept_bytes: 100.0,
                slope_bytes_per_second: 1.0,
                t_start: 2.0,
                t_end: 9.0,
            }),
        }
    }

    #[test]
    fn trend_document_fields_are_alphabetical() {
        assert_json(
            &TrendDocument::new(&trend(), None),
            r#"
{
  "schema_version": 1,
  "analysed_samples": 8,
  "ci_high": 2.0,
  "ci_low": 1.0,
  "duration_seconds": 9.0,
  "fit": {
    "intercept_bytes": 100.0,
    "slope_bytes_per_second": 1.0,
    "t_end": 9.0,
    "t_start": 2.0
  },
  "growth_region": "heap",
  "limit_bytes": 1073741824,
  "limit_source": "cgroup_v2",
  "mann_kendall": {
    "p": 0.25,
    "s": 20,
    "var_s": 125.0,
    "z": 1.5
  },
  "reason": "r",
  "regions": [
    {
      "ci_high": 1.0,
      "ci_low": -1.0,
      "name": "heap",
      "reason": "q",
      "rss_bytes": 4096,
      "slope_bytes_per_hour": 0.5,
      "verdict": "flat"
    }
  ],
  "rss_bytes": 8192,
  "samples": 10,
  "slope_bytes_per_hour": 3600.0,
  "time_to_limit_seconds": null,
  "tracer_bytes": 4096,
  "verdict": "growing",
  "warmup_seconds": 2.0
}"#,
        );
    }

    #[test]
    fn trend_document_with_owners() {
        let mut t = trend();
        t.fit = None;
        t.mann_kendall = None;
        t.limit_source = None;
        let owners = OwnerTrend {
            t_seconds: vec![0.0, 1.5],
            owners: vec![OwnerSeries {
                owner: Owner::ArrayBuffers,
                name: "ArrayBuffer/Buffer backing stores",
                bytes: vec![1, 2],
                slope_bytes_per_hour: 7.0,
            }],
            growing: Some(Owner::V8Heap),
            global_handles: Some(vec![1070, 2070]),
        };
        let v = serde_json::to_string_pretty(&TrendDocument::new(&t, Some(&owners))).unwrap();
        let expected = r#"
  "mann_kendall": null,
  "owners": {
    "global_handles": [
      1070,
      2070
    ],
    "growing": "v8_heap",
    "owners": [
      {
        "bytes": [
          1,
          2
        ],
        "name": "ArrayBuffer/Buffer backing stores",
        "owner": "array_buffers",
        "slope_bytes_per_hour": 7.0
      }
    ],
    "t_seconds": [
      0.0,
      1.5
    ]
  },
  "reason": "r","#;
        assert!(v.contains(expected), "{v}");
        assert!(v.contains("\"fit\": null,") && v.contains("\"limit_source\": null,"));
    }
}
