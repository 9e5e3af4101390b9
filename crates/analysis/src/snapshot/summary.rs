//! What a snapshot holds, for `leaktrail info`: one serialisable value,
//! rendered as text or JSON by the caller.

use std::collections::BTreeMap;

use leaktrail_recording::snapshot::metadata::{Module, RegionKind, SmapsSummary};

use crate::heap_walk;
use leaktrail_recording::{Region, Snapshot};

/// The whole summary. Field names are part of `info --json`.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The file.
    pub path: String,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// Who wrote it: `leaktrail <version>`, or `foreign` for a core
    /// without our note (the kernel's, gdb's `gcore`).
    pub writer: String,
    /// Process id.
    pub pid: Option<i32>,
    /// Command name.
    pub comm: Option<String>,
    /// Command line.
    pub cmdline: Option<String>,
    /// Executable path.
    pub exe: Option<String>,
    /// When it was taken, ns since the epoch (leaktrail cores only).
    pub time_unix_ns: Option<u64>,
    /// The same, as `YYYY-MM-DDTHH:MM:SSZ`.
    pub time_utc: Option<String>,
    /// How long the target was stopped, ns (leaktrail cores only).
    pub pause_ns: Option<u64>,
    /// `full`, `tables` or `none` (leaktrail cores only).
    pub memory_mode: Option<String>,
    /// Threads, in core order.
    pub threads: Vec<ThreadSummary>,
    /// Loaded modules.
    pub modules: Vec<Module>,
    /// Captured memory per kind of region.
    pub regions: Vec<KindSummary>,
    /// Bytes of memory in the file, all kinds.
    pub captured_bytes: u64,
    /// Lines of `/tmp/perf-PID.map` kept (leaktrail cores only).
    pub perf_map_lines: Option<usize>,
    /// smaps totals when the snapshot was taken (leaktrail cores only).
    pub smaps: Option<SmapsSummary>,
    /// The tracer's audit region.
    pub audit: AuditSummary,
    /// glibc's heap from its own state (`None` when the snapshot holds no
    /// process memory).
    pub heap_walk: Option<WalkSummary>,
    /// The program's allocator: the tracer's word, else the libraries
    /// mapped.
    pub allocator: crate::glibc::locate::ProgramAllocator,
    /// Anything odd about the file that did not stop us reading it.
    pub warnings: Vec<String>,
}

/// One thread.
#[derive(Clone, Debug)]
pub struct ThreadSummary {
    /// Thread id.
    pub tid: i32,
    /// Instruction pointer.
    pub pc: u64,
    /// Stack pointer.
    pub sp: u64,
    /// Signal it was stopped with (0 for none).
    pub signal: i32,
}

/// Mappings of one kind.
#[derive(Clone, Debug, Default)]
pub struct KindSummary {
    /// A [`RegionKind`] name.
    pub kind: String,
    /// Mappings (leaktrail cores) or segments (foreign cores).
    pub mappings: u64,
    /// Bytes of address space.
    pub mapped_bytes: u64,
    /// Bytes of it in the file.
    pub captured_bytes: u64,
}

/// The audit region, if any.
#[derive(Clone, Debug, Default)]
pub struct AuditSummary {
    /// Whether a header was found in the captured memory.
    pub present: bool,
    /// Header addresses.
    pub headers: Vec<u64>,
    /// Live buffers recorded.
    pub live_blocks: Option<u64>,
    /// Their bytes.
    pub live_bytes: Option<u64>,
    /// Distinct allocation stacks of live buffers.
    pub stacks: Option<u64>,
    /// Allocations the tracer could not record.
    pub dropped_allocs: Option<u64>,
    /// Shards caught mid-update (counts there may be off by one).
    pub busy_shards: Option<u32>,
    /// Live entries and site records skipped as corrupt.
    pub corrupt_entries: Option<u64>,
    /// Mean bytes between sampled blocks (`run --sample`); 0 for a full
    /// audit, when the live blocks are all of them.
    pub sample_rate: Option<u64>,
    /// Why the region could not be decoded, if it could not.
    pub error: Option<String>,
}

/// glibc's heap walked from its own state, and how it compares with the
/// audit (issue 12's self-check: on a traced process they must agree).
#[derive(Clone, Debug, Default)]
pub struct WalkSummary {
    /// How glibc's state was found (`symbols` or `layout`).
    pub source: String,
    /// Arenas.
    pub arenas: usize,
    /// Heaps (the brk heap and each non-main one).
    pub heaps: usize,
    /// Chunks in use.
    pub chunks: u64,
    /// Their usable bytes.
    pub bytes: u64,
    /// Of them, glibc's own mmapped chunks.
    pub mmapped: u64,
    /// Free chunks in per-thread caches.
    pub tcache_chunks: u64,
    /// Free chunks in fastbins.
    pub fastbin_chunks: u64,
    /// Other free chunks (bins, top chunks).
    pub free_chunks: u64,
    /// What did not fit (a core taken mid-malloc), one line each.
    pub problems: Vec<String>,
    /// Why the heap could not be walked, when it could not.
    pub error: Option<String>,
    /// With an audit: how the walk and the audit's live set differ.
    pub difference: Option<WalkDifference>,
}

/// How a walk and the audit differ: counts and the first few addresses.
#[derive(Clone, Debug, Default)]
pub struct WalkDifference {
    /// Chunks in use the audit does not list.
    pub only_walked: u64,
    /// Audit blocks not in use in the walk.
    pub only_audited: u64,
    /// Chunks whose size is not the one malloc gives the audited size.
    pub size_mismatch: u64,
    /// Chunks in use the tracer allocated for itself before it recorded
    /// (its module table): not a difference, counted apart.
    pub tracer_own: u64,
    /// With a tracer `leaktrail attach` loaded: the chunks in use it does
    /// not list, which were allocated before it (not a difference either;
    /// `only_walked` is then 0).
    pub before_attach: u64,
    /// In a sampled audit: the chunks in use it does not list, which were
    /// not sampled (or, attached, allocated before; `only_walked` is then
    /// 0). `leaks`, `refs` and `whatis` take them from the walk.
    pub unsampled: u64,
    /// The first few of each: (address, walked usable size, audited size;
    /// 0 where that side has none).
    pub examples: Vec<(u64, u64, u64)>,
}

/// How many addresses of each difference `info` shows.
const DIFF_EXAMPLES: usize = 5;

fn walk_summary(
    snap: &Snapshot,
    audit: Option<&leaktrail_recording::audit::Audit>,
) -> Option<WalkSummary> {
    if !snap
        .metadata()
        .is_none_or(|m| m.options.memory.keeps_memory())
    {
        return None;
    }
    if let Some(program) = audit
        .map(|a| crate::glibc::locate::program_allocator(snap, a.allocator))
        .filter(|p| !p.is_glibc())
    {
        return Some(WalkSummary {
            error: Some(
                program
                    .not_glibc(&snap.path().display().to_string())
                    .to_string(),
            ),
            ..Default::default()
        });
    }
    let exclude = audit.map(|a| a.ranges.clone()).unwrap_or_default();
    let w = match heap_walk::walk(snap, &exclude) {
        Ok(w) => w,
        Err(e) => {
            return Some(WalkSummary {
                error: Some(e.to_string()),
                ..Default::default()
            })
        }
    };
    let difference = audit.map(|a| {
        let mut d = heap_walk::compare(&w.chunks, &a.live);
        let tracer = heap_walk::take_tracer_own(snap, &mut d.only_walked);
        // Neither is a difference: in a sample, the blocks it lacks (and,
        // attached, those from before); attached, those from before.
        let (unsampled, before_attach) = if a.sampled() {
            (std::mem::take(&mut d.only_walked).len() as u64, 0)
        } else if a.attached {
            (0, std::mem::take(&mut d.only_walked).len() as u64)
        } else {
            (0, 0)
        };
        let mut examples: Vec<(u64, u64, u64)> = Vec::new();
        examples.extend(
            d.only_walked
                .iter()
                .take(DIFF_EXAMPLES)
                .map(|&(a, s)| (a, s, 0)),
        );
        examples.extend(
            d.only_audited
                .iter()
                .take(DIFF_EXAMPLES)
                .map(|&(a, s)| (a, 0, s)),
        );
        examples.extend(d.size_mismatch.iter().take(DIFF_EXAMPLES).copied());
        WalkDifference {
            only_walked: d.only_walked.len() as u64,
            only_audited: d.only_audited.len() as u64,
            size_mismatch: d.size_mismatch.len() as u64,
            tracer_own: tracer.len() as u64,
            before_attach,
            unsampled,
            examples,
        }
    });
    Some(WalkSummary {
        source: w.allocator.source.name().into(),
        arenas: w.arenas,
        heaps: w.heaps,
        chunks: w.chunks.len() as u64,
        bytes: w.chunks.iter().map(|c| c.size).sum(),
        mmapped: w.chunks.iter().filter(|c| c.mmapped).count() as u64,
        tcache_chunks: w.tcache_chunks,
        fastbin_chunks: w.fastbin_chunks,
        free_chunks: w.free_chunks,
        problems: w.problems,
        error: None,
        difference,
    })
}

/// Describes the snapshot. Cheap except for the audit totals, which
/// decode the region's tables.
pub fn of(snap: &Snapshot) -> Summary {
    let meta = snap.metadata();
    let mut warnings = Vec::new();
    if let Some(e) = snap.metadata_error() {
        warnings.push(e.to_string());
    }
    if let Some(m) = meta.filter(|m| m.unreadable_bytes > 0) {
        warnings.push(format!(
            "{} bytes could not be read and are zeros",
            m.unreadable_bytes
        ));
    }
    let threads = snap
        .threads()
        .iter()
        .map(|t| ThreadSummary {
            tid: t.tid,
            pc: t.pc(),
            sp: t.sp(),
            signal: t.signal,
        })
        .collect();
    let (audit, decoded) = audit_summary(snap);
    let heap_walk = walk_summary(snap, decoded.as_ref());
    warnings.extend(
        decoded
            .as_ref()
            .and_then(leaktrail_recording::Audit::bypass_note)
            .map(str::to_string),
    );
    let allocator = crate::glibc::locate::program_allocator(
        snap,
        decoded
            .as_ref()
            .map_or(leaktrail_format::Allocator::Unknown, |a| a.allocator),
    );
    Summary {
        path: snap.path().display().to_string(),
        file_bytes: snap.file_bytes(),
        writer: meta
            .map(|m| m.options.writer.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| {
                if meta.is_some() {
                    "leaktrail".into()
                } else {
                    "foreign".into()
                }
            }),
        pid: snap.pid(),
        comm: meta
            .map(|m| m.comm.clone())
            .or_else(|| snap.process().map(|p| p.fname.clone())),
        cmdline: meta
            .map(|m| m.cmdline.join(" "))
            .or_else(|| snap.process().map(|p| p.psargs.clone())),
        exe: meta.and_then(|m| m.exe.clone()),
        time_unix_ns: meta.map(|m| m.time_unix_ns),
        time_utc: meta.map(|m| utc(m.time_unix_ns / 1_000_000_000)),
        pause_ns: meta.map(|m| m.pause_ns),
        memory_mode: meta.map(|m| m.options.memory.name().into()),
        threads,
        modules: snap.modules(),
        regions: kinds(snap),
        captured_bytes: snap.captured_bytes(),
        perf_map_lines: meta
            .and_then(|m| m.perf_map.as_ref())
            .map(|p| p.lines().count()),
        smaps: meta.map(|m| m.smaps.clone()),
        audit,
        heap_walk,
        allocator,
        warnings,
    }
}

fn kinds(snap: &Snapshot) -> Vec<KindSummary> {
    let mut by: BTreeMap<RegionKind, KindSummary> = BTreeMap::new();
    let mut add = |kind: RegionKind, mapped: u64, captured: u64| {
        let k = by.entry(kind).or_insert_with(|| KindSummary {
            kind: kind.name().into(),
            ..Default::default()
        });
        k.mappings += 1;
        k.mapped_bytes += mapped;
        k.captured_bytes += captured;
    };
    // The one classifier decides every kind but the tracer's own memory,
    // also for notes written before it was shared (which called glibc's
    // arenas `anon` and the vDSO `special`) and for foreign cores.
    let region_of: BTreeMap<u64, Region> = snap
        .mappings()
        .into_iter()
        .map(|m| (m.start, m.region))
        .collect();
    let kind_of = |start: u64| {
        region_of
            .get(&start)
            .map_or(RegionKind::Anon, |&r| r.into())
    };
    match snap.metadata().filter(|m| !m.regions.is_empty()) {
        Some(m) => {
            for r in &m.regions {
                let kind = if r.kind == RegionKind::Audit {
                    RegionKind::Audit
                } else {
                    kind_of(r.start)
                };
                add(kind, r.end - r.start, r.captured);
            }
        }
        None => {
            let audit = snap.audit_headers();
            for s in snap.segments() {
                let kind = if audit.contains(&s.vaddr) {
                    RegionKind::Audit
                } else {
                    kind_of(s.vaddr)
                };
                add(kind, s.memsz, s.filesz);
            }
        }
    }
    by.into_values().collect()
}

/// The audit's totals, from `leaktrail_recording::audit`'s decoder:
/// everything `info` says about the region is gathered here.
fn audit_summary(snap: &Snapshot) -> (AuditSummary, Option<leaktrail_recording::audit::Audit>) {
    let headers = snap.audit_headers();
    let mut s = AuditSummary {
        present: !headers.is_empty(),
        headers: headers.clone(),
        ..Default::default()
    };
    let Some(&first) = headers.first() else {
        return (s, None);
    };
    // With several headers (a forked child's inherited copy beside its
    // own), the one written by this process is the one that counts.
    let pid = snap.pid();
    let mut chosen = None;
    for &h in &headers {
        match leaktrail_recording::audit::decode(snap, h) {
            Ok(a) => {
                let mine = pid.is_some_and(|p| p as u32 == a.pid);
                if mine || chosen.is_none() {
                    chosen = Some(a);
                }
                if mine {
                    break;
                }
            }
            Err(e) if h == first => s.error = Some(e.to_string()),
            Err(_) => {}
        }
    }
    if let Some(a) = &chosen {
        s.error = None;
        s.live_blocks = Some(a.live.len() as u64);
        s.live_bytes = Some(a.live_bytes());
        s.stacks = Some(a.stacks.len() as u64);
        s.dropped_allocs = Some(a.counters.dropped_allocs);
        s.busy_shards = Some(a.busy_shards);
        s.corrupt_entries = Some(a.corrupt);
        s.sample_rate = Some(a.sample_rate);
    }
    (s, chosen)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
fn utc(secs: u64) -> String {
    // Reuse the capture crate's file naming, which already does the
    // calendar: `leaktrail-x-0-YYYYMMDDTHHMMSSZ.core`.
    let name = leaktrail_recording::snapshot::default_file_name("x", 0, secs);
    let stamp = name
        .trim_start_matches("leaktrail-x-0-")
        .trim_end_matches(".core");
    if stamp.len() != 16 {
        return stamp.to_string();
    }
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats() {
        assert_eq!(super::utc(1_709_210_096), "2024-02-29T12:34:56Z");
    }
}
