//! Who owns memory in a Node.js process, in the terms a Node user thinks in:
//! the V8 heap, ArrayBuffer/Buffer backing stores, V8 handle storage, and
//! other native memory.
//!
//! Derived from allocation stacks and mappings, never from sizes: a block
//! belongs to backing stores when Node's array-buffer allocator (or V8's
//! backing-store code) allocated it, to handles when V8's handle scopes or
//! global handles did; an anonymous mapping belongs to the V8 heap when V8
//! made it. Everything else malloc'd is native memory.

use crate::audit_dump::AuditDump;
use crate::symbolize::Frame;

/// An owner of memory in a Node.js process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// Anonymous mappings V8 made for its garbage-collected heap.
    V8Heap,
    /// `ArrayBuffer`/`Buffer` backing stores.
    ArrayBuffers,
    /// V8 handle storage (handle scopes, global and persistent handles).
    Handles,
    /// Every other malloc'd block.
    Native,
    /// Anonymous mappings made by anyone else.
    OtherMappings,
}

impl Owner {
    /// Every owner, in display order.
    pub const ALL: [Owner; 5] = [
        Owner::V8Heap,
        Owner::ArrayBuffers,
        Owner::Handles,
        Owner::Native,
        Owner::OtherMappings,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Owner::V8Heap => "V8 heap (JS)",
            Owner::ArrayBuffers => "ArrayBuffer/Buffer backing stores",
            Owner::Handles => "V8 handles",
            Owner::Native => "other native (malloc heap)",
            Owner::OtherMappings => "other anonymous mappings",
        }
    }
}

fn any_function(frames: &[Frame], pred: impl Fn(&str) -> bool) -> bool {
    frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .any(pred)
}

/// The owner of a malloc'd block with this allocation stack.
pub fn of_block(frames: &[Frame]) -> Owner {
    let backing = |f: &str| {
        f.contains("ArrayBufferAllocator::Allocate")
            || f.contains("ArrayBufferAllocator::Reallocate")
            || f.contains("v8::internal::BackingStore::Allocate")
            || f.contains("v8::ArrayBuffer::NewBackingStore")
    };
    let handles = |f: &str| {
        f.contains("v8::internal::HandleScope::Extend")
            || f.contains("v8::internal::HandleScopeImplementer")
            || f.contains("v8::internal::GlobalHandles::")
            || f.contains("v8::internal::PersistentHandles")
            || f.contains("v8::internal::EternalHandles")
    };
    // The innermost match decides: a handle block allocated while
    // constructing a buffer is still a handle block.
    for f in frames.iter().filter_map(|f| f.function.as_deref()) {
        if handles(f) {
            return Owner::Handles;
        }
        if backing(f) {
            return Owner::ArrayBuffers;
        }
    }
    if any_function(frames, handles) {
        Owner::Handles
    } else {
        Owner::Native
    }
}

/// The owner of an anonymous mapping with this stack.
pub fn of_mapping(frames: &[Frame]) -> Owner {
    if any_function(frames, |f| f.starts_with("v8::") || f.contains("cppgc::")) {
        Owner::V8Heap
    } else {
        Owner::OtherMappings
    }
}

/// Bytes per owner in one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerSplit {
    /// `(owner, bytes)` for every owner, in [`Owner::ALL`] order.
    pub owners: Vec<(Owner, u64)>,
}

impl OwnerSplit {
    /// Bytes of one owner.
    pub fn get(&self, owner: Owner) -> u64 {
        self.owners
            .iter()
            .find(|(o, _)| *o == owner)
            .map_or(0, |(_, b)| *b)
    }
}

/// Splits a snapshot's audited memory by owner. Blocks count their
/// requested bytes; mappings count their resident bytes, from
/// `resident(start, end)` (the snapshot's smaps), since V8 reserves far more
/// address space than it touches.
pub fn split(dump: &AuditDump, resident: impl Fn(u64, u64) -> u64) -> OwnerSplit {
    let mut bytes = [0u64; 5];
    let index = |o: Owner| Owner::ALL.iter().position(|x| *x == o).unwrap_or(3);
    let empty: Vec<Frame> = Vec::new();
    // Blocks share stacks: each stack's owner is found once (a stack has
    // dozens of frames, each matched against a dozen names).
    let mut owners: std::collections::HashMap<leaktrail_format::StackId, Owner> =
        std::collections::HashMap::new();
    for b in &dump.audit.live {
        let owner = *owners
            .entry(b.stack)
            .or_insert_with(|| of_block(dump.frames.get(&b.stack).unwrap_or(&empty)));
        bytes[index(owner)] += b.size;
    }
    for m in &dump.audit.maps {
        let frames = dump.frames.get(&m.stack).unwrap_or(&empty);
        bytes[index(of_mapping(frames))] += resident(m.addr, m.addr + m.size);
    }
    OwnerSplit {
        owners: Owner::ALL.iter().map(|&o| (o, bytes[index(o)])).collect(),
    }
}

/// [`split`] with resident bytes from the snapshot's own smaps summary
/// (regions of leaktrail's note; a core without it counts whole mappings).
pub fn split_snapshot(snapshot: &leaktrail_recording::Snapshot, dump: &AuditDump) -> OwnerSplit {
    let regions: Vec<(u64, u64, u64)> = snapshot
        .metadata()
        .map(|m| m.regions.iter().map(|r| (r.start, r.end, r.rss)).collect())
        .unwrap_or_default();
    split(dump, |start, end| {
        if regions.is_empty() {
            return end - start;
        }
        regions
            .iter()
            .filter(|(s, e, _)| *s < end && start < *e)
            .map(|&(s, e, rss)| {
                // Resident bytes spread evenly over the region: the part
                // that overlaps the mapping.
                let overlap = e.min(end) - s.max(start);
                (rss as u128 * overlap as u128 / (e - s).max(1) as u128) as u64
            })
            .sum()
    })
}

/// One owner's bytes across a recording's snapshots.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerSeries {
    /// The owner.
    pub owner: Owner,
    /// Its display name.
    pub name: &'static str,
    /// Bytes in each snapshot, in capture order.
    pub bytes: Vec<u64>,
    /// Theil–Sen slope over the snapshots, bytes per hour.
    pub slope_bytes_per_hour: f64,
}

/// Memory by owner across the snapshots of a recording of a Node.js
/// process: what `trend` and the report show a Node user.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerTrend {
    /// Seconds since the first snapshot, per snapshot.
    pub t_seconds: Vec<f64>,
    /// One series per owner.
    pub owners: Vec<OwnerSeries>,
    /// The owner that grew the most (bytes per hour) among those that grow
    /// above noise, if any does.
    pub growing: Option<Owner>,
    /// V8's global handles in use per snapshot, when every snapshot is a
    /// full one in which they were found (`crate::v8::handles_of`).
    pub global_handles: Option<Vec<u64>>,
}

/// The owner trend of the recording in `dir`: `Ok(None)` when it is not a
/// Node.js recording or has fewer than two snapshots with an audit.
/// Expensive (decodes and symbolizes every snapshot): build once.
pub fn trend_of_recording(dir: &std::path::Path) -> Result<Option<OwnerTrend>, crate::Error> {
    let paths = leaktrail_recording::dir::snapshots::series(dir)?;
    let mut points: Vec<(f64, OwnerSplit)> = Vec::new();
    let mut handles: Vec<Option<u64>> = Vec::new();
    for path in &paths {
        let snap = leaktrail_recording::Snapshot::open(path)?;
        let Some(meta) = snap.metadata() else {
            continue;
        };
        if !is_node_command(&meta.cmdline) {
            return Ok(None);
        }
        let t = meta.time_unix_ns as f64 / 1e9;
        let Ok(dump) = crate::audit_dump::from_snapshot(&snap) else {
            continue;
        };
        points.push((t, split_snapshot(&snap, &dump)));
        handles.push(crate::v8::handles_of(&snap).and_then(|h| h.global.map(|g| g.in_use)));
    }
    if points.len() < 2 {
        return Ok(None);
    }
    let t0 = points[0].0;
    let t_seconds: Vec<f64> = points.iter().map(|(t, _)| t - t0).collect();
    let owners: Vec<OwnerSeries> = Owner::ALL
        .iter()
        .map(|&owner| {
            let bytes: Vec<u64> = points.iter().map(|(_, s)| s.get(owner)).collect();
            let pts: Vec<crate::series::stats::Point> = t_seconds
                .iter()
                .zip(&bytes)
                .map(|(&t, &b)| crate::series::stats::Point { t, v: b as f64 })
                .collect();
            let slope =
                crate::series::stats::theil_sen(&pts, 0.0).map_or(0.0, |f| f.slope * 3600.0);
            OwnerSeries {
                owner,
                name: owner.name(),
                bytes,
                slope_bytes_per_hour: slope,
            }
        })
        .collect();
    let growing = growing_owner(&t_seconds, &owners);
    Ok(Some(OwnerTrend {
        t_seconds,
        owners,
        growing,
        global_handles: handles.into_iter().collect(),
    }))
}

/// The owner that grows most among those whose bytes grow above noise by
/// the test growth applies to a site ([`crate::growth::Stats::grows_above`]),
/// against the owner's own noise (the wobble of its bytes about their
/// line: one owner's drop, a freed Buffer, must not hide another's rise):
/// none in a steady program, so `trend` names no owner where growth names
/// no suspect.
fn growing_owner(t_seconds: &[f64], owners: &[OwnerSeries]) -> Option<Owner> {
    owners
        .iter()
        .filter(|o| {
            let bytes: Vec<f64> = o.bytes.iter().map(|&b| b as f64).collect();
            let noise = crate::growth::heap_noise(t_seconds, &bytes);
            crate::growth::Stats::of(t_seconds, &bytes).grows_above(noise)
        })
        .max_by(|a, b| a.slope_bytes_per_hour.total_cmp(&b.slope_bytes_per_hour))
        .map(|o| o.owner)
}

/// Whether the snapshot's process is Node.js, judged by its command line.
pub fn is_node_command(cmdline: &[String]) -> bool {
    cmdline
        .first()
        .is_some_and(|p| leaktrail_recording::is_node(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(names: &[&str]) -> Vec<Frame> {
        names
            .iter()
            .map(|n| Frame {
                address: 0,
                function: Some(n.to_string()),
                file: None,
                line: None,
                module: None,
                module_offset: 0,
                kind: crate::symbolize::FrameKind::Native,
                column: None,
                inlined: false,
                start_line: None,
                start_column: None,
            })
            .collect()
    }

    #[test]
    fn owners_follow_the_allocating_code() {
        assert_eq!(
            of_block(&frames(&[
                "node::NodeArrayBufferAllocator::Allocate(unsigned long)",
                "v8::internal::Heap::AllocateExternalBackingStore",
                "JS retainBuffers"
            ])),
            Owner::ArrayBuffers
        );
        assert_eq!(
            of_block(&frames(&[
                "v8::internal::HandleScope::Extend(v8::internal::Isolate*)",
                "x"
            ])),
            Owner::Handles
        );
        assert_eq!(
            of_block(&frames(&["addon_leak", "JS handler"])),
            Owner::Native
        );
        assert_eq!(
            of_mapping(&frames(&[
                "v8::base::OS::Allocate",
                "v8::internal::MemoryAllocator::AllocatePage"
            ])),
            Owner::V8Heap
        );
        assert_eq!(
            of_mapping(&frames(&["my_arena_grow"])),
            Owner::OtherMappings
        );
    }
}
