//! `growth --json` over many processes' recordings (a fleet's prefix).

use std::path::Path;

use leaktrail_analysis::fleet::{FleetGrowth, FleetSite, HostGrowth, Share, Skipped};
use serde::Serialize;

use super::frame::{self, FrameRecord};
use super::growth::GrowthDocument;
use super::SCHEMA_VERSION;

/// What `leaktrail growth --json PREFIX` prints when PREFIX holds several
/// recordings.
#[derive(Clone, Debug, Serialize)]
pub struct FleetGrowthDocument<'a> {
    schema_version: u32,
    hosts: Vec<HostRecord<'a>>,
    skipped: Vec<SkippedRecord<'a>>,
    sites: Vec<FleetSiteRecord<'a>>,
}

/// One process's recording: its host, and `growth --json` of it.
#[derive(Clone, Debug, Serialize)]
pub struct HostRecord<'a> {
    host: &'a str,
    recording: &'a Path,
    growth: GrowthDocument<'a>,
}

/// A recording left out.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedRecord<'a> {
    recording: &'a Path,
    why: &'a str,
}

/// A site's share on one process.
#[derive(Clone, Debug, Serialize)]
pub struct ShareRecord<'a> {
    host: &'a str,
    recording: &'a Path,
    rank: usize,
    slope_bytes_per_hour: f64,
    rise_bytes: f64,
    score: f64,
    significant: bool,
}

/// A site and size class across the fleet.
#[derive(Clone, Debug, Serialize)]
pub struct FleetSiteRecord<'a> {
    rank: usize,
    stack: Vec<FrameRecord<'a>>,
    class: u64,
    slope_bytes_per_hour: f64,
    rise_bytes: f64,
    score: f64,
    processes: usize,
    significant_processes: usize,
    shares: Vec<ShareRecord<'a>>,
}

fn share<'a>(hosts: &'a [HostGrowth], s: &Share) -> ShareRecord<'a> {
    ShareRecord {
        host: &hosts[s.host].host,
        recording: &hosts[s.host].recording,
        rank: s.rank,
        slope_bytes_per_hour: s.slope_bytes_per_hour,
        rise_bytes: s.rise_bytes,
        score: s.score,
        significant: s.significant,
    }
}

fn site<'a>(hosts: &'a [HostGrowth], s: &'a FleetSite) -> FleetSiteRecord<'a> {
    FleetSiteRecord {
        rank: s.rank,
        stack: frame::stack(&s.stack),
        class: s.class,
        slope_bytes_per_hour: s.slope_bytes_per_hour,
        rise_bytes: s.rise_bytes,
        score: s.score,
        processes: s.shares.len(),
        significant_processes: s.significant_hosts,
        shares: s.shares.iter().map(|x| share(hosts, x)).collect(),
    }
}

impl<'a> From<&'a Skipped> for SkippedRecord<'a> {
    fn from(s: &'a Skipped) -> Self {
        SkippedRecord {
            recording: &s.recording,
            why: &s.why,
        }
    }
}

impl<'a> From<&'a FleetGrowth> for FleetGrowthDocument<'a> {
    fn from(f: &'a FleetGrowth) -> Self {
        FleetGrowthDocument {
            schema_version: SCHEMA_VERSION,
            hosts: f
                .hosts
                .iter()
                .map(|h| HostRecord {
                    host: &h.host,
                    recording: &h.recording,
                    growth: GrowthDocument::from(&h.growth),
                })
                .collect(),
            skipped: f.skipped.iter().map(Into::into).collect(),
            sites: f.sites.iter().map(|s| site(&f.hosts, s)).collect(),
        }
    }
}
