//! The audit of a live process, read while it is paused in its exit path
//! (`leaktrail run --dump-at-exit`), or of a snapshot, with every stack
//! symbolized: what a test suite or a quick look needs without a full
//! snapshot. The live process is read through the [`Memory`] the caller
//! gives (`leaktrail_capture::memory::LiveProcess`), never directly.

use leaktrail_format::StackId;
use std::collections::BTreeMap;

use leaktrail_recording::audit::{self, Audit};
use leaktrail_recording::{Mapping, Memory};

use leaktrail_recording::snapshot::note::FileRange;

use crate::symbolize::{Frame, Symbolizer};
use crate::Error;

/// A decoded audit plus symbolized stacks.
#[derive(Debug)]
pub struct AuditDump {
    /// The decoded region.
    pub audit: Audit,
    /// Each stack of `audit.stacks`, symbolized.
    pub frames: BTreeMap<StackId, Vec<Frame>>,
}

/// How often a busy shard is re-read before we accept it as it is: the
/// writer finishes its change within nanoseconds once it runs.
const REREADS: usize = 1000;

/// Reads the audit of live process `pid` through `mem` (its readable
/// memory) and `mappings` (its maps, for symbols), from the header at
/// `header_addr` or, if `None`, wherever its magic is. The caller keeps the
/// process from exiting meanwhile; a shard caught mid-change is re-read.
pub fn read_live(
    mem: &(impl Memory + ?Sized),
    mappings: &[Mapping],
    pid: i32,
    header_addr: Option<u64>,
) -> Result<AuditDump, Error> {
    let header_addr = match header_addr {
        Some(a) => a,
        None => audit::find_headers(mem)
            .into_iter()
            .find(|&a| audit::decode(mem, a).is_ok_and(|d| d.pid == pid as u32))
            .ok_or_else(|| {
                Error::Insufficient(format!(
                    "process {pid} has no leaktrail audit region (was it started with `leaktrail run`?)"
                ))
            })?,
    };
    let decoded = decode_settled(mem, header_addr)?;
    Ok(symbolized(decoded, &live_symbolizer(mappings)))
}

/// Decodes the audit at `header_addr` of a process that keeps running:
/// a shard caught mid-change is re-read (up to [`REREADS`] times). `leaktrail
/// top` reads a running process this way, without stopping it.
pub fn decode_settled(mem: &(impl Memory + ?Sized), header_addr: u64) -> Result<Audit, Error> {
    let mut decoded = audit::decode(mem, header_addr)?;
    for _ in 0..REREADS {
        if decoded.busy_shards == 0 {
            break;
        }
        std::thread::yield_now();
        decoded = audit::decode(mem, header_addr)?;
    }
    Ok(decoded)
}

/// A symbolizer over the files a live process has mapped (`mappings`).
/// Costly to build, cheap to reuse: build it once per process.
pub fn live_symbolizer(mappings: &[Mapping]) -> Symbolizer {
    let files = mappings
        .iter()
        .filter(|m| m.path.starts_with('/') && !m.deleted)
        .map(|m| FileRange {
            path: m.path.clone(),
            start: m.start,
            end: m.end,
            offset: m.offset,
        })
        .collect();
    Symbolizer::new(files)
}

/// Pairs a decoded audit with every one of its stacks symbolized.
fn symbolized(audit: Audit, symbolizer: &Symbolizer) -> AuditDump {
    let frames = audit
        .stacks
        .iter()
        .map(|(&id, pcs)| (id, symbolizer.stack(pcs)))
        .collect();
    AuditDump { audit, frames }
}

/// The audit carried by a snapshot, with every stack symbolized from the
/// files the process had mapped and the JIT map the snapshot carries.
pub fn from_snapshot(snapshot: &leaktrail_recording::Snapshot) -> Result<AuditDump, Error> {
    let pid = snapshot.pid().map(|p| p as u32);
    let decoded = audit::find(snapshot, pid)?.ok_or_else(|| {
        Error::Insufficient(format!(
            "{} holds no leaktrail audit: the process was not started with `leaktrail run`",
            snapshot.path().display()
        ))
    })?;
    Ok(symbolized(decoded, &Symbolizer::for_snapshot(snapshot)))
}
