//! `info --json`.

use leaktrail_analysis::summary::{
    AuditSummary, KindSummary, Summary, ThreadSummary, WalkDifference, WalkSummary,
};
#[cfg(test)]
use leaktrail_analysis::ProgramAllocator;
use leaktrail_recording::snapshot::metadata::{SmapsSummary, SmapsTotals};
use leaktrail_recording::Module;
use serde::Serialize;
use std::collections::BTreeMap;

use super::SCHEMA_VERSION;

/// What `leaktrail info --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct InfoDocument<'a> {
    schema_version: u32,
    path: &'a str,
    file_bytes: u64,
    writer: &'a str,
    pid: Option<i32>,
    comm: Option<&'a str>,
    cmdline: Option<&'a str>,
    exe: Option<&'a str>,
    time_unix_ns: Option<u64>,
    time_utc: Option<&'a str>,
    pause_ns: Option<u64>,
    memory_mode: Option<&'a str>,
    threads: Vec<ThreadRecord>,
    modules: Vec<ModuleRecord<'a>>,
    regions: Vec<KindRecord<'a>>,
    captured_bytes: u64,
    perf_map_lines: Option<usize>,
    smaps: Option<SmapsRecord<'a>>,
    audit: AuditRecord<'a>,
    heap_walk: Option<WalkRecord<'a>>,
    allocator: AllocatorRecord<'a>,
    warnings: &'a [String],
}

/// The program's allocator.
#[derive(Clone, Debug, Serialize)]
pub struct AllocatorRecord<'a> {
    name: &'static str,
    path: Option<&'a str>,
    source: &'static str,
}

/// glibc's heap walked from its own state.
#[derive(Clone, Debug, Serialize)]
pub struct WalkRecord<'a> {
    source: &'a str,
    arenas: usize,
    heaps: usize,
    chunks: u64,
    bytes: u64,
    mmapped: u64,
    tcache_chunks: u64,
    fastbin_chunks: u64,
    free_chunks: u64,
    problems: &'a [String],
    error: Option<&'a str>,
    difference: Option<DifferenceRecord>,
}

/// How the walk and the audit differ.
#[derive(Clone, Debug, Serialize)]
pub struct DifferenceRecord {
    only_walked: u64,
    only_audited: u64,
    size_mismatch: u64,
    tracer_own: u64,
    before_attach: u64,
    unsampled: u64,
    examples: Vec<DifferenceExample>,
}

/// One differing address.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DifferenceExample {
    address: u64,
    walked_size: Option<u64>,
    audited_size: Option<u64>,
}

impl<'a> From<&'a WalkSummary> for WalkRecord<'a> {
    fn from(w: &'a WalkSummary) -> Self {
        WalkRecord {
            source: &w.source,
            arenas: w.arenas,
            heaps: w.heaps,
            chunks: w.chunks,
            bytes: w.bytes,
            mmapped: w.mmapped,
            tcache_chunks: w.tcache_chunks,
            fastbin_chunks: w.fastbin_chunks,
            free_chunks: w.free_chunks,
            problems: &w.problems,
            error: w.error.as_deref(),
            difference: w.difference.as_ref().map(Into::into),
        }
    }
}

impl From<&WalkDifference> for DifferenceRecord {
    fn from(d: &WalkDifference) -> Self {
        DifferenceRecord {
            only_walked: d.only_walked,
            only_audited: d.only_audited,
            size_mismatch: d.size_mismatch,
            tracer_own: d.tracer_own,
            before_attach: d.before_attach,
            unsampled: d.unsampled,
            examples: d
                .examples
                .iter()
                .map(|&(address, w, a)| DifferenceExample {
                    address,
                    walked_size: (w > 0).then_some(w),
                    audited_size: (a > 0 || w == 0).then_some(a),
                })
                .collect(),
        }
    }
}

/// One thread at the stop.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ThreadRecord {
    tid: i32,
    pc: u64,
    sp: u64,
    signal: i32,
}

/// One loaded file.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleRecord<'a> {
    path: &'a str,
    base: u64,
    start: u64,
    end: u64,
    build_id: Option<&'a str>,
}

/// Mappings of one kind.
#[derive(Clone, Debug, Serialize)]
pub struct KindRecord<'a> {
    kind: &'a str,
    mappings: u64,
    mapped_bytes: u64,
    captured_bytes: u64,
}

/// smaps totals, overall and by kind.
#[derive(Clone, Debug, Serialize)]
pub struct SmapsRecord<'a> {
    total: SmapsTotalsRecord,
    by_kind: BTreeMap<&'a str, SmapsTotalsRecord>,
}

/// Sums of a few smaps fields, bytes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SmapsTotalsRecord {
    mappings: u64,
    size: u64,
    rss: u64,
    pss: u64,
    anonymous: u64,
    swap: u64,
}

/// What the audit region holds.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord<'a> {
    present: bool,
    headers: &'a [u64],
    live_blocks: Option<u64>,
    live_bytes: Option<u64>,
    stacks: Option<u64>,
    dropped_allocs: Option<u64>,
    busy_shards: Option<u32>,
    corrupt_entries: Option<u64>,
    sample_rate: Option<u64>,
    error: Option<&'a str>,
}

impl From<&ThreadSummary> for ThreadRecord {
    fn from(t: &ThreadSummary) -> Self {
        ThreadRecord {
            tid: t.tid,
            pc: t.pc,
            sp: t.sp,
            signal: t.signal,
        }
    }
}

impl<'a> From<&'a Module> for ModuleRecord<'a> {
    fn from(m: &'a Module) -> Self {
        ModuleRecord {
            path: &m.path,
            base: m.base,
            start: m.start,
            end: m.end,
            build_id: m.build_id.as_deref(),
        }
    }
}

impl<'a> From<&'a KindSummary> for KindRecord<'a> {
    fn from(k: &'a KindSummary) -> Self {
        KindRecord {
            kind: &k.kind,
            mappings: k.mappings,
            mapped_bytes: k.mapped_bytes,
            captured_bytes: k.captured_bytes,
        }
    }
}

impl From<&SmapsTotals> for SmapsTotalsRecord {
    fn from(t: &SmapsTotals) -> Self {
        SmapsTotalsRecord {
            mappings: t.mappings,
            size: t.size,
            rss: t.rss,
            pss: t.pss,
            anonymous: t.anonymous,
            swap: t.swap,
        }
    }
}

impl<'a> From<&'a SmapsSummary> for SmapsRecord<'a> {
    fn from(s: &'a SmapsSummary) -> Self {
        SmapsRecord {
            total: (&s.total).into(),
            by_kind: s
                .by_kind
                .iter()
                .map(|(k, t)| (k.as_str(), t.into()))
                .collect(),
        }
    }
}

impl<'a> From<&'a AuditSummary> for AuditRecord<'a> {
    fn from(a: &'a AuditSummary) -> Self {
        AuditRecord {
            present: a.present,
            headers: &a.headers,
            live_blocks: a.live_blocks,
            live_bytes: a.live_bytes,
            stacks: a.stacks,
            dropped_allocs: a.dropped_allocs,
            busy_shards: a.busy_shards,
            corrupt_entries: a.corrupt_entries,
            sample_rate: a.sample_rate,
            error: a.error.as_deref(),
        }
    }
}

impl<'a> From<&'a Summary> for InfoDocument<'a> {
    fn from(s: &'a Summary) -> Self {
        InfoDocument {
            schema_version: SCHEMA_VERSION,
            path: &s.path,
            file_bytes: s.file_bytes,
            writer: &s.writer,
            pid: s.pid,
            comm: s.comm.as_deref(),
            cmdline: s.cmdline.as_deref(),
            exe: s.exe.as_deref(),
            time_unix_ns: s.time_unix_ns,
            time_utc: s.time_utc.as_deref(),
            pause_ns: s.pause_ns,
            memory_mode: s.memory_mode.as_deref(),
            threads: s.threads.iter().map(Into::into).collect(),
            modules: s.modules.iter().map(Into::into).collect(),
            regions: s.regions.iter().map(Into::into).collect(),
            captured_bytes: s.captured_bytes,
            perf_map_lines: s.perf_map_lines,
            smaps: s.smaps.as_ref().map(Into::into),
            audit: (&s.audit).into(),
            heap_walk: s.heap_walk.as_ref().map(Into::into),
            allocator: AllocatorRecord {
                name: s.allocator.kind.name(),
                path: s.allocator.path.as_deref(),
                source: s.allocator.source,
            },
            warnings: &s.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;

    #[test]
    fn info_document_fields() {
        let totals = SmapsTotals {
            mappings: 1,
            size: 2,
            rss: 3,
            pss: 4,
            anonymous: 5,
            swap: 6,
        };
        let s = Summary {
            path: "a.core".into(),
            file_bytes: 100,
            writer: "leaktrail".into(),
            pid: Some(42),
            comm: Some("app".into()),
            cmdline: None,
            exe: Some("/bin/app".into()),
            time_unix_ns: Some(7),
            time_utc: Some("1970-01-01T00:00:00Z".into()),
            pause_ns: None,
            memory_mode: Some("full".into()),
            threads: vec![ThreadSummary {
                tid: 42,
                pc: 1,
                sp: 2,
                signal: 19,
            }],
            modules: vec![Module {
                path: "/bin/app".into(),
                base: 0x1000,
                start: 0x1000,
                end: 0x2000,
                build_id: Some("ab".into()),
            }],
            regions: vec![KindSummary {
                kind: "heap".into(),
                mappings: 1,
                mapped_bytes: 4096,
                captured_bytes: 4096,
            }],
            captured_bytes: 4096,
            perf_map_lines: None,
            smaps: Some(SmapsSummary {
                total: totals.clone(),
                by_kind: Default::default(),
            }),
            audit: AuditSummary {
                sample_rate: Some(0),
                present: true,
                headers: vec![0x5000],
                live_blocks: Some(3),
                live_bytes: Some(96),
                stacks: Some(2),
                dropped_allocs: Some(0),
                busy_shards: Some(0),
                corrupt_entries: Some(0),
                error: None,
            },
            heap_walk: Some(WalkSummary {
                source: "symbols".into(),
                arenas: 2,
                heaps: 2,
                chunks: 4,
                bytes: 200,
                mmapped: 1,
                tcache_chunks: 5,
                fastbin_chunks: 6,
                free_chunks: 7,
                problems: vec!["main arena was locked".into()],
                error: None,
                difference: Some(WalkDifference {
                    only_walked: 1,
                    only_audited: 0,
                    size_mismatch: 0,
                    tracer_own: 2,
                    before_attach: 0,
                    unsampled: 0,
                    examples: vec![(0x6000, 40, 0)],
                }),
            }),
            allocator: ProgramAllocator {
                kind: leaktrail_format::Allocator::Jemalloc,
                path: Some("/lib/libjemalloc.so.2".into()),
                source: "tracer",
            },
            warnings: vec![],
        };
        assert_json(
            &InfoDocument::from(&s),
            r#"
{
  "schema_version": 1,
  "path": "a.core",
  "file_bytes": 100,
  "writer": "leaktrail",
  "pid": 42,
  "comm": "app",
  "cmdline": null,
  "exe": "/bin/app",
  "time_unix_ns": 7,
  "time_utc": "1970-01-01T00:00:00Z",
  "pause_ns": null,
  "memory_mode": "full",
  "threads": [
    {
      "tid": 42,
      "pc": 1,
      "sp": 2,
      "signal": 19
    }
  ],
  "modules": [
    {
      "path": "/bin/app",
      "base": 4096,
      "start": 4096,
      "end": 8192,
      "build_id": "ab"
    }
  ],
  "regions": [
    {
      "kind": "heap",
      "mappings": 1,
      "mapped_bytes": 4096,
      "captured_bytes": 4096
    }
  ],
  "captured_bytes": 4096,
  "perf_map_lines": null,
  "smaps": {
    "total": {
      "mappings": 1,
      "size": 2,
      "rss": 3,
      "pss": 4,
      "anonymous": 5,
      "swap": 6
    },
    "by_kind": {}
  },
  "audit": {
    "present": true,
    "headers": [
      20480
    ],
    "live_blocks": 3,
    "live_bytes": 96,
    "stacks": 2,
    "dropped_allocs": 0,
    "busy_shards": 0,
    "corrupt_entries": 0,
    "sample_rate": 0,
    "error": null
  },
  "heap_walk": {
    "source": "symbols",
    "arenas": 2,
    "heaps": 2,
    "chunks": 4,
    "bytes": 200,
    "mmapped": 1,
    "tcache_chunks": 5,
    "fastbin_chunks": 6,
    "free_chunks": 7,
    "problems": [
      "main arena was locked"
    ],
    "error": null,
    "difference": {
      "only_walked": 1,
      "only_audited": 0,
      "size_mismatch": 0,
      "tracer_own": 2,
      "before_attach": 0,
      "unsampled": 0,
      "examples": [
        {
          "address": 24576,
          "walked_size": 40,
          "audited_size": null
        }
      ]
    }
  },
  "allocator": {
    "name": "jemalloc",
    "path": "/lib/libjemalloc.so.2",
    "source": "tracer"
  },
  "warnings": []
}"#,
        );
        // Each kind's sums are the same record as the overall ones.
        let summary = SmapsSummary {
            total: totals.clone(),
            by_kind: [("heap".to_string(), totals.clone())].into_iter().collect(),
        };
        let json = serde_json::to_string(&SmapsRecord::from(&summary)).unwrap();
        let total = serde_json::to_string(&SmapsTotalsRecord::from(&totals)).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"total":{total},"by_kind":{{"heap":{total}}}}}"#)
        );
    }
}
