//! The payload of leaktrail's own note ([`leaktrail_format::NOTE_NAME`],
//! [`leaktrail_format::NOTE_TYPE`]): JSON, so that old readers skip fields
//! they do not know and new readers default the ones old writers lacked.

use std::collections::BTreeMap;

use leaktrail_format::MemoryMode;
use serde::{Deserialize, Serialize};

use crate::maps::Region;

/// Version of the note's JSON schema; bump on incompatible changes.
pub const METADATA_VERSION: u32 = 1;

/// Everything a snapshot records about the process beyond its memory and
/// registers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    /// [`METADATA_VERSION`] of the writer.
    pub version: u32,
    /// When the world was stopped, ns since the Unix epoch.
    pub time_unix_ns: u64,
    /// Process id.
    pub pid: i32,
    /// The command name (`/proc/PID/comm`).
    pub comm: String,
    /// The command line, one element per argument.
    pub cmdline: Vec<String>,
    /// The executable (`/proc/PID/exe`), if readable.
    pub exe: Option<String>,
    /// Thread ids, main thread first.
    pub threads: Vec<i32>,
    /// Loaded ELF modules.
    pub modules: Vec<Module>,
    /// `/tmp/perf-PID.map` as it was while the world was stopped.
    pub perf_map: Option<String>,
    /// Totals of `/proc/PID/smaps`, read just before the world was stopped
    /// (reading it walks every page table entry, too slow for the pause).
    pub smaps: SmapsSummary,
    /// Every mapping, with what the snapshot kept of it.
    pub regions: Vec<CapturedMapping>,
    /// How the snapshot was taken.
    pub options: CaptureOptions,
    /// How long the target was stopped, in ns.
    pub pause_ns: u64,
    /// Addresses of audit-region headers found in the target.
    pub audit_headers: Vec<u64>,
    /// Bytes the snapshot meant to capture but could not read (written as
    /// zeros).
    pub unreadable_bytes: u64,
    /// How the memory was taken and what it cost.
    pub capture: Capture,
    /// This snapshot's content id: random, kept when the file is rewritten
    /// with the same content (materialized, or folded when its base is
    /// dropped); what an incremental snapshot's [`BaseRef`] names. Empty
    /// in notes written before incremental snapshots.
    pub id: String,
    /// The previous snapshot this one is incremental to: the memory of
    /// every [`Metadata::inherited`] range is that snapshot's.
    pub base: Option<BaseRef>,
    /// `[start, end)` of the PT_LOAD segments (file size 0) whose bytes
    /// are the base's, not zeros. Empty for a standalone snapshot.
    pub inherited: Vec<[u64; 2]>,
}

/// How the memory of a snapshot was taken and what it cost the target
/// and the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capture {
    /// `cow` (copied from a forked copy-on-write image after the target
    /// was let go) or `stop` (copied while every thread was stopped).
    pub method: String,
    /// Why copy-on-write was not used, when it was the default.
    pub fallback: Option<String>,
    /// CPU time leaktrail spent on the snapshot (user + system, all its
    /// threads), in ns.
    pub cpu_ns: u64,
    /// Wall time from the stop to the committed file, in ns.
    pub total_ns: u64,
    /// Bytes of memory written into this file (PT_LOAD data).
    pub written_bytes: u64,
    /// Bytes of memory this file takes from its base instead.
    pub inherited_bytes: u64,
    /// The snapshot cleared the process's soft-dirty bits while it was
    /// stopped: the next one incremental to it may trust them.
    pub soft_dirty_epoch: bool,
}

/// The snapshot an incremental one builds on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaseRef {
    /// Its path: a file name in the same directory, or an absolute path.
    pub file: String,
    /// Its [`Metadata::id`].
    pub id: String,
}

/// One loaded ELF module.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Module {
    /// Path as the target's maps show it.
    pub path: String,
    /// Address of the mapping of file offset 0 (the ELF header).
    pub base: u64,
    /// Lowest and highest address of any of its mappings.
    pub start: u64,
    /// End of its highest mapping.
    pub end: u64,
    /// The GNU build id, lower-case hex, if the file has one.
    pub build_id: Option<String>,
}

/// What kind of memory a mapping holds; the key of the per-kind totals.
///
/// A writer takes it from the one classifier ([`crate::maps::classify`],
/// through `From<Region>`), except for the tracer's own memory, which is
/// [`RegionKind::Audit`]. Notes written before the classifier was shared
/// also hold `special` (the kernel's `[vdso]` and friends, now `file` as
/// `trend` has always counted them) and call glibc's arenas `anon`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RegionKind {
    /// The brk heap and glibc's arena heaps.
    Heap,
    /// A thread's stack.
    Stack,
    /// The tracer's audit region.
    Audit,
    /// Other anonymous memory (mmap'd buffers, GC heaps).
    #[default]
    Anon,
    /// File-backed memory (and the kernel's `[vdso]` and friends).
    File,
    /// Shared memory: tmpfs, SysV, memfd, shared anonymous mappings.
    Shmem,
    /// Kernel-provided mappings, in notes written by earlier versions.
    Special,
}

impl From<Region> for RegionKind {
    fn from(r: Region) -> RegionKind {
        match r {
            Region::Heap => RegionKind::Heap,
            Region::Anon => RegionKind::Anon,
            Region::Stack => RegionKind::Stack,
            Region::File => RegionKind::File,
            Region::Shmem => RegionKind::Shmem,
            Region::Tracer => RegionKind::Audit,
        }
    }
}

impl RegionKind {
    /// The name used in JSON and text output.
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Heap => "heap",
            RegionKind::Stack => "stack",
            RegionKind::Audit => "audit",
            RegionKind::Anon => "anon",
            RegionKind::File => "file",
            RegionKind::Shmem => "shmem",
            RegionKind::Special => "special",
        }
    }
}

/// One mapping of the target and what the snapshot kept of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapturedMapping {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// `rwxp` as in maps.
    pub perms: String,
    /// The path column of maps (empty for anonymous memory).
    pub path: String,
    /// What it holds.
    pub kind: RegionKind,
    /// Resident bytes just before the stop (0 for a mapping made since).
    pub rss: u64,
    /// Bytes written into the core for it (0 if not captured).
    pub captured: u64,
}

/// Per-kind and overall smaps totals, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmapsSummary {
    /// All mappings together.
    pub total: SmapsTotals,
    /// Per [`RegionKind::name`].
    pub by_kind: BTreeMap<String, SmapsTotals>,
}

/// Sums of a few smaps fields, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmapsTotals {
    /// Mappings counted.
    pub mappings: u64,
    /// Virtual size.
    pub size: u64,
    /// Resident.
    pub rss: u64,
    /// Proportional share.
    pub pss: u64,
    /// Anonymous resident.
    pub anonymous: u64,
    /// Swapped out.
    pub swap: u64,
}

/// How the snapshot was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureOptions {
    /// Which memory was kept (JSON: its name, `full`, `tables` or `none`).
    pub memory: MemoryMode,
    /// The leaktrail version that wrote the file.
    pub writer: String,
}

/// Whether `program` (a path or a name) is Node.js: `node`, `nodejs`,
/// `node20`...
pub fn is_node(program: &str) -> bool {
    let name = program.rsplit('/').next().unwrap_or(program);
    let rest = name
        .strip_prefix("nodejs")
        .or_else(|| name.strip_prefix("node"));
    rest.is_some_and(|r| r.bytes().all(|b| b.is_ascii_digit()))
}

impl Metadata {
    /// The note's payload.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a note's payload.
    /// Refuses a note whose regions could not be a process's mappings (an
    /// end before its start, a span wider than the 57-bit address space,
    /// more bytes captured or resident than mapped, overlapping regions):
    /// every reader sizes work by them.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let m: Metadata = serde_json::from_slice(bytes)?;
        let bad = |why: String| <serde_json::Error as serde::de::Error>::custom(why);
        for r in m.inherited.iter() {
            if r[1] < r[0] || r[1] - r[0] > MAX_SPAN {
                return Err(bad(format!(
                    "inherited range {:#x}..{:#x} is not a range",
                    r[0], r[1]
                )));
            }
        }
        for r in &m.regions {
            let span = r.end.checked_sub(r.start);
            if !span.is_some_and(|s| s <= MAX_SPAN && r.captured <= s && r.rss <= s) {
                return Err(bad(format!(
                    "region {:#x}..{:#x} (captured {}, rss {}) is not a mapping",
                    r.start, r.end, r.captured, r.rss
                )));
            }
        }
        // Disjoint, as in any address space: so a sum over the regions
        // fits in a u64.
        let spans = m.regions.iter().map(|r| (r.start, r.end)).collect();
        if let Some((a, b)) = crate::maps::first_overlap(spans) {
            return Err(bad(format!(
                "regions {:#x}..{:#x} and {:#x}..{:#x} overlap",
                a.0, a.1, b.0, b.1
            )));
        }
        Ok(m)
    }
}

/// A fresh random content id: 32 hex digits.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // No entropy source: time and pid are unique enough for an id.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The widest span a mapping can have: a 57-bit (5-level paging) address
/// space.
pub(crate) const MAX_SPAN: u64 = 1 << 57;

#[cfg(test)]
mod tests {
    use super::*;

    /// The options part of a note written before the mode had a type.
    const OLD_NOTE: &str = r#"{"version":1,"pid":7,"comm":"app",
        "options":{"memory":"tables","writer":"leaktrail 0.1.0"}}"#;

    #[test]
    fn old_notes_read_back() {
        let m = Metadata::from_json(OLD_NOTE.as_bytes()).unwrap();
        assert_eq!(m.options.memory, MemoryMode::Tables);
        assert_eq!(m.options.writer, "leaktrail 0.1.0");
        assert_eq!(m.pid, 7);
    }

    #[test]
    fn modes_keep_their_json_spelling() {
        for &memory in MemoryMode::ALL {
            let mut m = Metadata::default();
            m.options.memory = memory;
            let json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
            assert_eq!(json["options"]["memory"], memory.name());
            assert_eq!(Metadata::from_json(&m.to_json()).unwrap(), m);
        }
        let bad = r#"{"options":{"memory":"most"}}"#;
        assert!(Metadata::from_json(bad.as_bytes()).is_err());
    }
}
