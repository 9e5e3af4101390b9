//! `::bufctl -v` and `::umausers` for malloc: the live buffers of a
//! snapshot, filtered by class, size, age, thread and stack, listed one by
//! one or grouped by allocation stack.

use leaktrail_format::StackId;
use std::collections::HashMap;

use crate::heap::model::Heap;
use crate::heap::types;
use crate::symbolize::{Frame, Symbolizer};
use leaktrail_recording::audit::{Audit, Block};

/// Which buffers to keep. Every set field must match.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Filter {
    /// Size class, by its largest size (`--class 4096`).
    pub class: Option<u64>,
    /// Requested size within `lo..=hi`.
    pub size: Option<(u64, u64)>,
    /// Allocated at least this many ns before the snapshot's newest buffer.
    pub older_than_ns: Option<u64>,
    /// Allocated at most this many ns before the newest buffer.
    pub newer_than_ns: Option<u64>,
    /// Allocating thread.
    pub thread: Option<u32>,
    /// A frame of the stack has a function containing this.
    pub stack_contains: Option<String>,
}

/// One buffer.
#[derive(Clone, Debug)]
pub struct Buf {
    /// Address.
    pub addr: u64,
    /// Requested bytes.
    pub size: u64,
    /// Its size class (largest size).
    pub class: u64,
    /// Allocation time, ns after the tracer started.
    pub time_ns: u64,
    /// Allocating thread.
    pub tid: u32,
    /// Stack id.
    pub stack_id: StackId,
    /// What it holds, when [`name_types`] could tell ([`crate::types`]).
    pub type_name: Option<String>,
}

impl Buf {
    /// The audit's record of it.
    pub fn block(&self) -> Block {
        Block {
            addr: self.addr,
            size: self.size,
            time_ns: self.time_ns,
            stack: self.stack_id,
            tid: self.tid,
        }
    }
}

/// Buffers with one allocation stack.
#[derive(Clone, Debug)]
pub struct StackGroup {
    /// Stack id.
    pub stack_id: StackId,
    /// Their bytes.
    pub bytes: u64,
    /// How many.
    pub count: u64,
    /// The oldest.
    pub example_address: u64,
    /// The stack, innermost first.
    pub stack: Vec<Frame>,
    /// What its buffers hold ([`name_types`]): for buffers without stacks
    /// (a heap walk's), which are grouped by it, theirs; else the oldest's.
    pub type_name: Option<String>,
    /// Groups of buffers without stacks that are no C++ class: their size
    /// class, which groups them with the type hint.
    pub size_class: Option<u64>,
    /// Its buffers were allocated before `leaktrail attach` loaded the
    /// tracer: no stack (they predate it), grouped by type.
    pub before_attach: bool,
}

/// What [`select`] found.
#[derive(Clone, Debug)]
pub struct Bufs {
    /// Matching buffers, by address.
    pub buffers: Vec<Buf>,
    /// Their bytes.
    pub bytes: u64,
    /// Symbolized stacks of the buffers (by stack id), when asked for.
    pub stacks: HashMap<StackId, Vec<Frame>>,
    /// Groups by stack, by bytes, when asked for.
    pub groups: Vec<StackGroup>,
    /// The audit's sampling rate (0: a full audit). When sampling,
    /// `buffers` are the sampled ones, while `bytes` and every group's
    /// `bytes` and `count` are estimates of all the blocks they stand for.
    pub sample_rate: u64,
}

/// Selects buffers of `audit` by `filter`; with `group` groups them by
/// stack; with `with_stacks` symbolizes every selected buffer's stack.
pub fn select(
    audit: &Audit,
    filter: &Filter,
    symbolizer: &Symbolizer,
    group: bool,
    with_stacks: bool,
) -> Bufs {
    let newest = audit.live.iter().map(|b| b.time_ns).max().unwrap_or(0);
    let mut stack_match: HashMap<StackId, bool> = HashMap::new();
    let mut stacks: HashMap<StackId, Vec<Frame>> = HashMap::new();
    let mut keep = |b: &Block| -> bool {
        let class = leaktrail_format::class_size(leaktrail_format::class_of(b.size));
        if filter.class.is_some_and(|c| c != class)
            || filter
                .size
                .is_some_and(|(lo, hi)| b.size < lo || b.size > hi)
            || filter.thread.is_some_and(|t| t != b.tid)
            || filter
                .older_than_ns
                .is_some_and(|a| newest.saturating_sub(b.time_ns) < a)
            || filter
                .newer_than_ns
                .is_some_and(|a| newest.saturating_sub(b.time_ns) > a)
        {
            return false;
        }
        if let Some(f) = &filter.stack_contains {
            return *stack_match.entry(b.stack).or_insert_with(|| {
                let frames = symbolizer.stack_inlined(audit.frames(b.stack));
                let hit = frames.iter().any(|fr| {
                    fr.function
                        .as_deref()
                        .is_some_and(|n| n.contains(f.as_str()))
                });
                stacks.insert(b.stack, frames);
                hit
            });
        }
        true
    };
    let canon = crate::heap::model::canonical_stacks(audit, symbolizer);
    let buffers: Vec<Buf> = audit
        .live
        .iter()
        .filter(|b| keep(b))
        .map(|b| Buf {
            addr: b.addr,
            size: b.size,
            class: leaktrail_format::class_size(leaktrail_format::class_of(b.size)),
            time_ns: b.time_ns,
            tid: b.tid,
            stack_id: canon.get(&b.stack).copied().unwrap_or(b.stack),
            type_name: None,
        })
        .collect();
    let mut groups = Vec::new();
    if group {
        let mut by: HashMap<StackId, StackGroup> = HashMap::new();
        let mut weighed: HashMap<StackId, (f64, f64)> = HashMap::new();
        let mut oldest: HashMap<StackId, u64> = HashMap::new();
        for b in &buffers {
            let g = by.entry(b.stack_id).or_insert_with(|| StackGroup {
                stack_id: b.stack_id,
                bytes: 0,
                count: 0,
                example_address: b.addr,
                stack: Vec::new(),
                type_name: None,
                size_class: None,
                before_attach: false,
            });
            let w = audit.weight(b.size);
            let e = weighed.entry(b.stack_id).or_default();
            e.0 += w;
            e.1 += w * b.size as f64;
            g.count = e.0.round() as u64;
            g.bytes = e.1.round() as u64;
            let t = oldest.entry(b.stack_id).or_insert(b.time_ns);
            if b.time_ns < *t {
                *t = b.time_ns;
                g.example_address = b.addr;
            }
        }
        groups = by.into_values().collect();
        for g in &mut groups {
            g.stack = stacks
                .get(&g.stack_id)
                .cloned()
                .unwrap_or_else(|| symbolizer.stack_inlined(audit.frames(g.stack_id)));
        }
        groups.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.stack_id.cmp(&b.stack_id)));
    }
    if with_stacks {
        for b in &buffers {
            stacks
                .entry(b.stack_id)
                .or_insert_with(|| symbolizer.stack_inlined(audit.frames(b.stack_id)));
        }
    } else {
        stacks.clear();
    }
    let bytes = buffers
        .iter()
        .map(|b| audit.weight(b.size) * b.size as f64)
        .sum::<f64>()
        .round() as u64;
    Bufs {
        buffers,
        bytes,
        stacks,
        groups,
        sample_rate: audit.sample_rate,
    }
}

/// Names what each buffer of `found` holds ([`crate::types::of`]). The
/// buffers known from a heap walk alone (all of an untraced process's, or
/// those from before an attach), which have no stack and would be one
/// group, are grouped by type instead: a C++ class each, else by size
/// class and hint. Groups by bytes.
pub fn name_types(heap: &Heap<'_>, symbolizer: &Symbolizer, found: &mut Bufs) {
    for b in &mut found.buffers {
        b.type_name = types::of(heap, symbolizer, b.addr, b.size).map(|t| t.name());
    }
    if found.groups.is_empty() {
        return;
    }
    let mut by: HashMap<types::Label, StackGroup> = HashMap::new();
    // What leaves the group without a stack (the walk's blocks are never
    // sampled: each weighs 1).
    let (mut moved, mut moved_bytes) = (0, 0);
    for b in found.buffers.iter().filter(|b| heap.typed_by_label(b.addr)) {
        let key = types::Label::of(heap, symbolizer, b.addr, b.size);
        let g = by.entry(key.clone()).or_insert_with(|| StackGroup {
            stack_id: StackId::NONE,
            bytes: 0,
            count: 0,
            example_address: b.addr,
            stack: Vec::new(),
            type_name: key.type_name,
            size_class: key.size_class,
            before_attach: !heap.walked(),
        });
        g.bytes += b.size;
        g.count += 1;
        g.example_address = g.example_address.min(b.addr);
        moved += 1;
        moved_bytes += b.size;
    }
    found.groups.retain_mut(|g| {
        if g.stack_id == StackId::NONE && moved > 0 {
            g.count -= moved.min(g.count);
            g.bytes -= moved_bytes.min(g.bytes);
            if g.count == 0 {
                return false;
            }
            // What stays has no stack for another reason (--unwind none):
            // its oldest is no longer known.
            g.example_address = found
                .buffers
                .iter()
                .filter(|b| b.stack_id == StackId::NONE && !heap.typed_by_label(b.addr))
                .min_by_key(|b| b.time_ns)
                .map_or(g.example_address, |b| b.addr);
        }
        true
    });
    for g in &mut found.groups {
        let size = heap.block_at(g.example_address).map_or(0, |b| b.size);
        g.type_name = types::of(heap, symbolizer, g.example_address, size).map(|t| t.name());
    }
    if by.is_empty() {
        return;
    }
    found.groups.extend(by.into_values());
    found.groups.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(a.example_address.cmp(&b.example_address))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, HeapBuilder};

    fn sizes(b: &Bufs) -> Vec<u64> {
        b.buffers.iter().map(|b| b.size).collect()
    }

    fn sample() -> crate::synthetic::Synthetic {
        let mut b = HeapBuilder::new();
        b.stack(2, &[0x10]);
        b.stack(3, &[0x20]);
        b.stack(4, &[0x10]); // the frames of 2 again
        for (size, stack, tid) in [
            (8, 1, 1),
            (9, 2, 1),
            (16, 2, 2),
            (17, 3, 2),
            (4096, 3, 1),
            (4097, 4, 1),
            (100_000, 4, 3),
        ] {
            b.block_with(size, stack, tid);
        }
        b.build()
    }

    fn select_with(f: &Filter, group: bool) -> Bufs {
        select(&sample().audit, f, &synthetic::symbolizer(), group, false)
    }

    #[test]
    fn class_filters_keep_the_buffers_of_one_size_class() {
        let by_class = |c| {
            sizes(&select_with(
                &Filter {
                    class: Some(c),
                    ..Filter::default()
                },
                false,
            ))
        };
        assert_eq!(by_class(16), [9, 16]);
        assert_eq!(by_class(8), [8]);
        assert_eq!(by_class(4096), [4096]);
        assert_eq!(by_class(8192), [4097]);
        assert_eq!(by_class(1 << 17), [100_000]);
        assert_eq!(by_class(24), Vec::<u64>::new(), "not a class boundary");
    }

    #[test]
    fn size_ranges_are_inclusive_and_combine_with_threads() {
        let f = Filter {
            size: Some((9, 4096)),
            ..Filter::default()
        };
        let b = select_with(&f, false);
        assert_eq!(sizes(&b), [9, 16, 17, 4096]);
        assert_eq!(b.bytes, 9 + 16 + 17 + 4096);
        let f = Filter {
            size: Some((9, 4096)),
            thread: Some(2),
            ..Filter::default()
        };
        assert_eq!(sizes(&select_with(&f, false)), [16, 17]);
    }

    #[test]
    fn grouping_by_stack_merges_stacks_with_the_same_frames_by_bytes() {
        let b = select_with(&Filter::default(), true);
        let groups: Vec<(u32, u64, u64)> = b
            .groups
            .iter()
            .map(|g| (g.stack_id.0, g.count, g.bytes))
            .collect();
        assert_eq!(
            groups,
            [
                (2, 4, 9 + 16 + 4097 + 100_000),
                (3, 2, 17 + 4096),
                (1, 1, 8)
            ]
        );
        assert_eq!(b.groups[0].stack.len(), 1);
        assert!(b.stacks.is_empty(), "not asked for");
        let oldest = b.buffers.iter().find(|x| x.size == 9).unwrap().addr;
        assert_eq!(b.groups[0].example_address, oldest);
    }

    #[test]
    fn age_filters_count_back_from_the_newest_buffer() {
        // Blocks are 1000 ns apart: the newest is at 7000.
        let f = Filter {
            older_than_ns: Some(5000),
            ..Filter::default()
        };
        assert_eq!(sizes(&select_with(&f, false)), [8, 9]);
        let f = Filter {
            newer_than_ns: Some(1000),
            ..Filter::default()
        };
        assert_eq!(sizes(&select_with(&f, false)), [4097, 100_000]);
        let with = select(
            &sample().audit,
            &Filter::default(),
            &synthetic::symbolizer(),
            false,
            true,
        );
        assert_eq!(with.stacks.len(), 3);
    }
}
