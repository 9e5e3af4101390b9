//! `summary --json`.

use leaktrail_analysis::profile::SiteCounts;
use leaktrail_analysis::sites::Summary;
use leaktrail_format::size_bucket_limit;
use serde::Serialize;

use super::frame::{stack, FrameRecord};
use super::SCHEMA_VERSION;

/// What `leaktrail summary --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryDocument<'a> {
    schema_version: u32,
    snapshot: String,
    runtime_seconds: f64,
    /// 0 for a full audit; else every count and byte figure but the total
    /// allocations is an estimate from a sample at this rate.
    sample_rate: u64,
    totals: TotalsRecord,
    sites: Vec<SiteCountsRecord<'a>>,
    by_allocations: Vec<usize>,
    by_peak: Vec<usize>,
    by_temporary: Vec<usize>,
}

/// The process's totals.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TotalsRecord {
    allocations: u64,
    temporary: u64,
    peak_bytes: u64,
    peak_seconds: f64,
    leaked_bytes: u64,
    leaked_blocks: u64,
}

/// What the tracer counted at one site.
#[derive(Clone, Debug, Serialize)]
pub struct SiteCountsRecord<'a> {
    stack: Vec<FrameRecord<'a>>,
    #[serde(flatten)]
    counts: CountsRecord,
}

/// A site's counts: the fields `summary`, `growth` and the report share.
#[derive(Clone, Debug, Serialize)]
pub struct CountsRecord {
    allocations: u64,
    frees: u64,
    temporary: u64,
    allocated_bytes: u64,
    live_count: u64,
    live_bytes: u64,
    peak_bytes: u64,
    peak_seconds: f64,
    sizes: Vec<BucketRecord>,
}

/// One non-empty size bucket: sizes up to `max_size` (null: no bound).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BucketRecord {
    max_size: Option<u64>,
    count: u64,
}

impl From<&SiteCounts> for CountsRecord {
    fn from(s: &SiteCounts) -> Self {
        CountsRecord {
            allocations: s.allocs,
            frees: s.frees,
            temporary: s.temporary,
            allocated_bytes: s.bytes,
            live_count: s.allocs.saturating_sub(s.frees),
            live_bytes: s.live_bytes,
            peak_bytes: s.peak_bytes,
            peak_seconds: s.peak_time_ns as f64 / 1e9,
            sizes: s
                .sizes
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(b, &count)| BucketRecord {
                    max_size: Some(size_bucket_limit(b)).filter(|&l| l != u64::MAX),
                    count,
                })
                .collect(),
        }
    }
}

impl<'a> SummaryDocument<'a> {
    /// The document of `s`, its top lists `limit` sites long.
    pub fn new(s: &'a Summary, limit: usize) -> Self {
        let index = |list: Vec<&SiteCounts>| -> Vec<usize> {
            list.into_iter()
                .take(limit)
                .filter_map(|x| s.sites.iter().position(|y| std::ptr::eq(x, y)))
                .collect()
        };
        SummaryDocument {
            schema_version: SCHEMA_VERSION,
            snapshot: s.path.display().to_string(),
            runtime_seconds: s.runtime_ns as f64 / 1e9,
            sample_rate: s.sample_rate,
            totals: TotalsRecord {
                allocations: s.allocations,
                temporary: s.temporary,
                peak_bytes: s.peak_bytes,
                peak_seconds: s.peak_time_ns as f64 / 1e9,
                leaked_bytes: s.leaked_bytes,
                leaked_blocks: s.leaked_blocks,
            },
            sites: s
                .sites
                .iter()
                .map(|x| SiteCountsRecord {
                    stack: stack(&x.frames),
                    counts: x.into(),
                })
                .collect(),
            by_allocations: index(s.by_allocations()),
            by_peak: index(s.by_peak()),
            by_temporary: index(s.by_temporary()),
        }
    }
}
