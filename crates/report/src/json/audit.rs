//! `run --dump-at-exit FILE`: the audit of a process as it exits.

use std::collections::BTreeMap;

use leaktrail_analysis::audit_dump::AuditDump;
use leaktrail_recording::audit::{Audit, AuditCounters, ClassStats};
use leaktrail_recording::Block;
use serde::Serialize;

use super::frame::{self, FrameRecord};
use super::SCHEMA_VERSION;

/// What `leaktrail run --dump-at-exit` writes.
#[derive(Clone, Debug, Serialize)]
pub struct AuditDumpDocument<'a> {
    schema_version: u32,
    audit: AuditRecord<'a>,
    frames: BTreeMap<u32, Vec<FrameRecord<'a>>>,
}

/// The audit region, decoded.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord<'a> {
    header_addr: u64,
    pid: u32,
    state: &'a str,
    unwind: &'a str,
    max_depth: u32,
    sample_rate: u64,
    start_realtime_ns: u64,
    counters: CountersRecord,
    classes: Vec<ClassStatsRecord>,
    live: Vec<BlockRecord>,
    maps: Vec<BlockRecord>,
    /// Return addresses, innermost first (the tracer's notes, which
    /// `frames` has turned into lines, left out).
    stacks: BTreeMap<u32, Vec<u64>>,
    busy_shards: u32,
    corrupt: u64,
}

/// The tracer's counters.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CountersRecord {
    dropped_allocs: u64,
    unknown_frees: u64,
    dropped_stacks: u64,
    truncated_stacks: u64,
    region_bytes: u64,
    resizes: u64,
    dropped_maps: u64,
    shallow_stacks: u64,
}

/// One size class's counts.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClassStatsRecord {
    class: usize,
    size: u64,
    live_count: u64,
    live_bytes: u64,
    allocs: u64,
    frees: u64,
}

/// One live block.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BlockRecord {
    addr: u64,
    size: u64,
    time_ns: u64,
    stack: u32,
    tid: u32,
}

impl From<AuditCounters> for CountersRecord {
    fn from(c: AuditCounters) -> Self {
        CountersRecord {
            dropped_allocs: c.dropped_allocs,
            unknown_frees: c.unknown_frees,
            dropped_stacks: c.dropped_stacks,
            truncated_stacks: c.truncated_stacks,
            region_bytes: c.region_bytes,
            resizes: c.resizes,
            dropped_maps: c.dropped_maps,
            shallow_stacks: c.shallow_stacks,
        }
    }
}

impl From<&ClassStats> for ClassStatsRecord {
    fn from(c: &ClassStats) -> Self {
        ClassStatsRecord {
            class: c.class.index(),
            size: c.size,
            live_count: c.live_count,
            live_bytes: c.live_bytes,
            allocs: c.allocs,
            frees: c.frees,
        }
    }
}

impl From<&Block> for BlockRecord {
    fn from(b: &Block) -> Self {
        BlockRecord {
            addr: b.addr,
            size: b.size,
            time_ns: b.time_ns,
            stack: b.stack.0,
            tid: b.tid,
        }
    }
}

impl<'a> From<&'a Audit> for AuditRecord<'a> {
    fn from(a: &'a Audit) -> Self {
        AuditRecord {
            header_addr: a.header_addr,
            pid: a.pid,
            state: &a.state,
            unwind: &a.unwind,
            max_depth: a.max_depth,
            sample_rate: a.sample_rate,
            start_realtime_ns: a.start_realtime_ns,
            counters: a.counters.into(),
            classes: a.classes.iter().map(Into::into).collect(),
            live: a.live.iter().map(Into::into).collect(),
            maps: a.maps.iter().map(Into::into).collect(),
            stacks: a
                .stacks
                .iter()
                .map(|(id, f)| {
                    let addresses = f.iter().map(|&w| leaktrail_format::frame_address(w));
                    (id.0, addresses.collect())
                })
                .collect(),
            busy_shards: a.busy_shards,
            corrupt: a.corrupt,
        }
    }
}

impl<'a> From<&'a AuditDump> for AuditDumpDocument<'a> {
    fn from(d: &'a AuditDump) -> Self {
        AuditDumpDocument {
            schema_version: SCHEMA_VERSION,
            audit: (&d.audit).into(),
            frames: d
                .frames
                .iter()
                .map(|(&id, frames)| (id.0, frame::stack(frames)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;
    use leaktrail_format::{SizeClass, StackId};

    #[test]
    fn audit_dump_document_fields() {
        let dump = AuditDump {
            audit: Audit {
                header_addr: 0x5000,
                pid: 42,
                state: "running".into(),
                unwind: "dwarf".into(),
                max_depth: 64,
                sample_rate: 0,
                exit_tid: 0,
                allocator: leaktrail_format::Allocator::Unknown,
                attached: false,
                bypassed: 0,
                start_realtime_ns: 9,
                counters: AuditCounters {
                    dropped_allocs: 1,
                    unknown_frees: 2,
                    dropped_stacks: 3,
                    truncated_stacks: 4,
                    region_bytes: 5,
                    resizes: 6,
                    dropped_maps: 7,
                    shallow_stacks: 8,
                },
                classes: vec![ClassStats {
                    class: SizeClass(0),
                    size: 16,
                    live_count: 1,
                    live_bytes: 10,
                    allocs: 2,
                    frees: 1,
                }],
                live: vec![Block {
                    addr: 0x1000,
                    size: 10,
                    time_ns: 3,
                    stack: StackId(1),
                    tid: 42,
                }],
                maps: vec![],
                stacks: [(StackId(1), vec![0x2000])].into_iter().collect(),
                sites: None,
                peak: None,
                busy_shards: 0,
                corrupt: 0,
                ranges: vec![(0x5000, 0x6000)],
            },
            frames: [(StackId(1), vec![])].into_iter().collect(),
        };
        assert_json(
            &AuditDumpDocument::from(&dump),
            r#"
{
  "schema_version": 1,
  "audit": {
    "header_addr": 20480,
    "pid": 42,
    "state": "running",
    "unwind": "dwarf",
    "max_depth": 64,
    "sample_rate": 0,
    "start_realtime_ns": 9,
    "counters": {
      "dropped_allocs": 1,
      "unknown_frees": 2,
      "dropped_stacks": 3,
      "truncated_stacks": 4,
      "region_bytes": 5,
      "resizes": 6,
      "dropped_maps": 7,
      "shallow_stacks": 8
    },
    "classes": [
      {
        "class": 0,
        "size": 16,
        "live_count": 1,
        "live_bytes": 10,
        "allocs": 2,
        "frees": 1
      }
    ],
    "live": [
      {
        "addr": 4096,
        "size": 10,
        "time_ns": 3,
        "stack": 1,
        "tid": 42
      }
    ],
    "maps": [],
    "stacks": {
      "1": [
        8192
      ]
    },
    "busy_shards": 0,
    "corrupt": 0
  },
  "frames": {
    "1": []
  }
}"#,
        );
    }
}
