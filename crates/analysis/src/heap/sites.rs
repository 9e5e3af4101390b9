//! heaptrack's numbers per allocation site: how many allocations each site
//! made, how many were temporary, the most it held at once and when, and
//! its sizes, with the process's totals (calls to allocation functions,
//! temporary allocations, peak heap memory, memory leaked).
//!
//! Snapshots hold live blocks only, so these come from the tracer's own
//! counters ([`Counted`]), which grow from its start to the snapshot: a
//! recording's summary is its newest snapshot's. heaptrack's definitions,
//! with two differences we chose:
//!
//! - a *temporary* allocation is one freed by the thread that made it with
//!   no allocation or free of that thread in between (heaptrack reads one
//!   interleaved stream of every thread's calls, so a free on another
//!   thread in between breaks its run);
//! - a site's *peak* is the most it held at any one time; heaptrack's is
//!   what the site held at the process's peak, which is the same number
//!   for a site at its own peak then, and lower otherwise.
//!
//! *Leaked* is what is live at the snapshot: at the exit snapshot, what the
//! program never freed, as heaptrack's "memory leaked" is.
//!
//! ```no_run
//! let s = leaktrail_analysis::sites::open("rec/".as_ref())?;
//! for site in s.by_temporary().iter().take(3) {
//!     println!("{} temporary of {} from {:?}", site.temporary, site.allocs, site.frames.first());
//! }
//! # Ok::<(), leaktrail_analysis::Error>(())
//! ```

use std::path::{Path, PathBuf};

use crate::profile::{Counted, Profile, SiteCounts};
use crate::Error;

/// A heaptrack-style summary of one snapshot.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The snapshot it was read from.
    pub path: PathBuf,
    /// From the tracer's start to the snapshot, ns.
    pub runtime_ns: u64,
    /// Calls to allocation functions (every allocation the tracer saw,
    /// with or without a stack).
    pub allocations: u64,
    /// Temporary allocations (at sites with a stack).
    pub temporary: u64,
    /// The most bytes of live buffers the process held.
    pub peak_bytes: u64,
    /// When, ns after the tracer's start.
    pub peak_time_ns: u64,
    /// Live bytes at the snapshot.
    pub leaked_bytes: u64,
    /// Live buffers at the snapshot.
    pub leaked_blocks: u64,
    /// Every site that allocated, by allocations (most first).
    pub sites: Vec<SiteCounts>,
    /// Mean bytes between sampled blocks (`run --sample`), 0 for a full
    /// audit. When sampling, every figure but `allocations` (which the
    /// size classes count exactly) is an estimate: the tracer weighs each
    /// sampled block by the blocks it stands for (format version 3).
    pub sample_rate: u64,
}

impl Summary {
    /// Summarizes `profile`, which must carry the tracer's counts.
    pub fn of(profile: &Profile) -> Result<Summary, Error> {
        let Some(Counted {
            sites,
            peak,
            start_unix_ns,
        }) = &profile.counted
        else {
            return Err(Error::Insufficient(format!(
                "{} has no per-site counts: its tracer predates them (audit format 1) or its blocks were walked from glibc's heap; record it again with this leaktrail's `leaktrail run`",
                profile.path.display()
            )));
        };
        Ok(Summary {
            path: profile.path.clone(),
            runtime_ns: profile.time_unix_ns.saturating_sub(*start_unix_ns),
            allocations: profile.class_totals.values().map(|&(a, _)| a).sum(),
            temporary: sites.iter().map(|s| s.temporary).sum(),
            peak_bytes: peak.bytes,
            peak_time_ns: peak.time_ns,
            leaked_bytes: profile.bytes(),
            leaked_blocks: profile.count(),
            sites: sites.clone(),
            sample_rate: profile.sample_rate,
        })
    }

    /// Sites by allocations, most first (heaptrack's "most calls to
    /// allocation functions").
    pub fn by_allocations(&self) -> Vec<&SiteCounts> {
        self.ranked(|s| s.allocs)
    }

    /// Sites that made temporary allocations, most first.
    pub fn by_temporary(&self) -> Vec<&SiteCounts> {
        self.ranked(|s| s.temporary)
    }

    /// Sites by peak bytes, most first (heaptrack's "peak memory
    /// consumers").
    pub fn by_peak(&self) -> Vec<&SiteCounts> {
        self.ranked(|s| s.peak_bytes)
    }

    /// Sites still holding memory, most bytes first.
    pub fn by_leaked(&self) -> Vec<&SiteCounts> {
        self.ranked(|s| s.live_bytes)
    }

    fn ranked(&self, by: impl Fn(&SiteCounts) -> u64) -> Vec<&SiteCounts> {
        let mut out: Vec<&SiteCounts> = self.sites.iter().filter(|s| by(s) > 0).collect();
        out.sort_by(|a, b| by(b).cmp(&by(a)).then(a.key.cmp(&b.key)));
        out
    }
}

/// The summary of a snapshot, or of a recording's newest snapshot.
pub fn open(input: &Path) -> Result<Summary, Error> {
    let paths = crate::growth::snapshot_paths(&[input.to_path_buf()])?;
    let Some(newest) = paths.last() else {
        return Err(Error::Insufficient(format!(
            "{} has no snapshot",
            input.display()
        )));
    };
    Summary::of(&Profile::open(newest)?)
}
