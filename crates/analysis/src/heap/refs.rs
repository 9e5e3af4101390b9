//! `::ugrep` and beyond: every pointer-aligned word of a snapshot that
//! refers to an address (under a mask, for tagged pointers, or within a
//! distance), and `--chain`: the shortest paths of references from a root
//! (a global, a thread's stack, a register) down to the buffer.
//!
//! A plain search scans all captured memory except the audit region (whose
//! tables point at every buffer). A chain follows only live memory — roots
//! and live buffers — one breadth-first level per scan, stopping at the
//! first level where a root refers to the previous one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::heap::model::{Heap, Roots};
use crate::symbolize::Symbolizer;
use crate::whatis::{self, BufferHit, Whatis};
use crate::Error;

/// How a word must relate to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Equal.
    Exact,
    /// Equal where the mask has ones (`--mask M`): `w & M == addr & M`.
    Mask(u64),
    /// Within `[addr, addr + d)` (`--range D`).
    Range(u64),
}

impl Matcher {
    /// The mask for `--invmask M`: ignore the bits set in M.
    pub fn invmask(m: u64) -> Matcher {
        Matcher::Mask(!m)
    }

    #[inline]
    fn hits(self, w: u64, target: u64) -> bool {
        match self {
            Matcher::Exact => w == target,
            Matcher::Mask(m) => w & m == target & m,
            Matcher::Range(d) => w.wrapping_sub(target) < d.max(1),
        }
    }

    /// The word as the pointer it stands for (tag bits cleared).
    #[inline]
    fn untag(self, w: u64) -> u64 {
        match self {
            Matcher::Mask(m) => w & m,
            _ => w,
        }
    }
}

/// One referring word.
#[derive(Clone, Debug)]
pub struct Ref {
    /// Where the word is.
    pub at: u64,
    /// Its value.
    pub value: u64,
    /// What its location is.
    pub whatis: Whatis,
}

/// What [`find`] found.
#[derive(Clone, Debug)]
pub struct Refs {
    /// The address searched for.
    pub target: u64,
    /// What it is.
    pub target_whatis: Option<Whatis>,
    /// Referring words, by address.
    pub refs: Vec<Ref>,
    /// Bytes scanned.
    pub scanned_bytes: u64,
}

/// Finds every aligned word in captured memory that refers to `target`.
pub fn find(
    heap: &Heap<'_>,
    symbolizer: &Symbolizer,
    target: u64,
    matcher: Matcher,
    threads: usize,
) -> Refs {
    let segs: Vec<(u64, u64)> = heap
        .present()
        .iter()
        .flat_map(|&(start, end)| {
            let mut pieces = Vec::new();
            let mut a = start;
            while a < end {
                let b = (a + (8 << 20)).min(end);
                pieces.push((a, b));
                a = b;
            }
            pieces
        })
        .collect();
    let next = AtomicUsize::new(0);
    let scanned = AtomicU64::new(0);
    let found = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(a, b)) = segs.get(i) else { break };
                    heap.for_each_slice(a, b, |base, bytes| {
                        scanned.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        for (k, w) in bytes.chunks_exact(8).enumerate() {
                            let v = u64::from_le_bytes([
                                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
                            ]);
                            if matcher.hits(v, target) {
                                mine.push((base + 8 * k as u64, v));
                            }
                        }
                    });
                }
                found.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    let mut hits = found.into_inner().unwrap_or_else(|p| p.into_inner());
    hits.retain(|&(at, _)| !heap.in_audit(at));
    hits.sort_unstable();
    let refs = hits
        .into_iter()
        .filter_map(|(at, value)| {
            Some(Ref {
                at,
                value,
                whatis: whatis::whatis_mapped(heap, symbolizer, at)?,
            })
        })
        .collect();
    Refs {
        target,
        target_whatis: whatis::whatis_mapped(heap, symbolizer, target),
        refs,
        scanned_bytes: scanned.load(Ordering::Relaxed),
    }
}

/// One step of a chain: a word at `at` holding `value`, which refers into
/// the next hop.
#[derive(Clone, Debug)]
pub struct Hop {
    /// Where the referring word is.
    pub at: u64,
    /// Its value.
    pub value: u64,
    /// What holds it: `register`, `stack`, `global`, `tls`, `anon`, or
    /// `buffer`.
    pub holder: String,
    /// The location described.
    pub whatis: Option<Whatis>,
    /// For a register: the thread and the register's index.
    pub register: Option<(i32, usize)>,
}

/// A path from a root to the target: `hops[0]` is in the root, each next
/// hop in the buffer the previous one points into; the last points into
/// the target.
#[derive(Clone, Debug)]
pub struct Chain {
    /// The hops, root first.
    pub hops: Vec<Hop>,
    /// The target buffer.
    pub target: BufferHit,
}

/// What [`chain`] found.
#[derive(Clone, Debug)]
pub struct Chains {
    /// The address asked about.
    pub target: u64,
    /// The shortest paths found (at most `limit`), globals first.
    pub chains: Vec<Chain>,
    /// Hops from a root to the target on the shortest path (0 if none).
    pub levels: usize,
    /// Whether no root leads to the target: it is leaked.
    pub unreached: bool,
}

const UNSEEN: u32 = u32::MAX;
const FROM_ROOT: u32 = u32::MAX - 1;

/// Finds the shortest paths of references from the roots to the buffer
/// holding `target` (at most `limit` of them): a breadth-first walk forward
/// from the roots over live buffers, one scan of reachable memory at most,
/// remembering for each buffer the word that first reached it. A word
/// refers to a buffer when it points anywhere inside it once `matcher`'s
/// tag bits are cleared. Paths differ in their first hop (every root word
/// that refers to the first buffer) and their last (every buffer of the
/// same level that refers to the target).
pub fn chain(
    heap: &Heap<'_>,
    symbolizer: &Symbolizer,
    target: u64,
    matcher: Matcher,
    limit: usize,
) -> Result<Chains, Error> {
    let ix = &heap.index;
    let goal = ix.find(target).ok_or_else(|| {
        Error::Insufficient(format!(
            "{target:#x} is not in a live buffer; --chain starts from a buffer (try `leaktrail whatis`)"
        ))
    })?;
    let n = ix.len();
    let mut parent = vec![UNSEEN; n];
    let mut via = vec![0u64; n];
    let (ranges, regs) = heap.root_ranges(&Roots::default());
    let to_block = |v: u64| ix.find(matcher.untag(v));

    let mut frontier = Vec::new();
    for (k, &(_, v)) in regs.iter().enumerate() {
        if let Some(b) = to_block(v).filter(|&b| parent[b] == UNSEEN) {
            parent[b] = FROM_ROOT;
            via[b] = k as u64;
            frontier.push(b);
        }
    }
    for r in &ranges {
        scan_words(heap, r.start, r.end, |at, v| {
            if let Some(b) = to_block(v).filter(|&b| parent[b] == UNSEEN) {
                parent[b] = FROM_ROOT;
                via[b] = at;
                frontier.push(b);
            }
        });
    }
    let mut levels = 1;
    // (buffer on the level before, word in it) for every referrer of goal
    // on the level that first reaches it.
    let mut last_hops: Vec<(usize, u64)> = Vec::new();
    while parent[goal] == UNSEEN && !frontier.is_empty() {
        levels += 1;
        let mut next = Vec::new();
        for &b in &frontier {
            let blk = &heap.audit.live[b];
            scan_words(heap, blk.addr, blk.addr + blk.size, |at, v| {
                let Some(c) = to_block(v) else { return };
                if c == goal && c != b {
                    last_hops.push((b, at));
                }
                if parent[c] == UNSEEN {
                    parent[c] = b as u32;
                    via[c] = at;
                    next.push(c);
                }
            });
        }
        frontier = next;
    }
    if parent[goal] == UNSEEN {
        return Ok(Chains {
            target,
            chains: Vec::new(),
            levels: 0,
            unreached: true,
        });
    }
    if parent[goal] == FROM_ROOT {
        levels = 1;
        last_hops.clear();
    }

    // The buffers of each path, root side first, ending before goal.
    let mut bodies: Vec<Vec<(usize, u64)>> = Vec::new();
    if last_hops.is_empty() {
        bodies.push(Vec::new());
    }
    for &(b, at) in &last_hops {
        let mut body = vec![(b, at)];
        let mut c = b;
        while parent[c] != FROM_ROOT {
            let p = parent[c] as usize;
            body.push((p, via[c]));
            c = p;
        }
        body.reverse();
        bodies.push(body);
    }
    bodies.sort();
    bodies.dedup();
    let target_hit = whatis::buffer_hit(heap, symbolizer, &heap.audit.live[goal], target);
    let mut chains = Vec::new();
    for body in bodies {
        // The buffer the roots point at, and the words of the path.
        let first = body.first().map_or(goal, |&(b, _)| b);
        for root in root_hops(heap, symbolizer, &ranges, &regs, first, &to_block) {
            if chains.len() >= limit {
                break;
            }
            // Each buffer of the body holds the word that leads to the
            // next (the last one's leads to the target).
            let mut hops = vec![root];
            hops.extend(body.iter().map(|&(_, at)| buffer_hop(heap, symbolizer, at)));
            chains.push(Chain {
                hops,
                target: target_hit.clone(),
            });
        }
    }
    Ok(Chains {
        target,
        unreached: chains.is_empty(),
        chains,
        levels,
    })
}

fn buffer_hop(heap: &Heap<'_>, symbolizer: &Symbolizer, at: u64) -> Hop {
    Hop {
        at,
        value: heap.memory.read_u64(at).unwrap_or(0),
        holder: "buffer".into(),
        whatis: whatis::whatis_mapped(heap, symbolizer, at),
        register: None,
    }
}

/// Every root word that refers to buffer `first`, globals first, then
/// TLS, stacks, anonymous memory and registers.
fn root_hops(
    heap: &Heap<'_>,
    symbolizer: &Symbolizer,
    ranges: &[crate::heap::model::RootRange],
    regs: &[(i32, u64)],
    first: usize,
    to_block: &impl Fn(u64) -> Option<usize>,
) -> Vec<Hop> {
    let mut out = Vec::new();
    for r in ranges {
        scan_words(heap, r.start, r.end, |at, v| {
            if to_block(v) == Some(first) {
                out.push(Hop {
                    at,
                    value: v,
                    holder: r.kind.to_string(),
                    whatis: whatis::whatis_mapped(heap, symbolizer, at),
                    register: None,
                });
            }
        });
    }
    for (k, &(tid, v)) in regs.iter().enumerate() {
        if to_block(v) == Some(first) {
            out.push(Hop {
                at: 0,
                value: v,
                holder: "register".into(),
                whatis: None,
                register: Some((tid, k % REGS_PER_THREAD)),
            });
        }
    }
    let rank = |h: &Hop| match h.holder.as_str() {
        "global" => 0,
        "tls" => 1,
        "stack" => 2,
        "anon" => 3,
        _ => 4,
    };
    out.sort_by_key(|h| (rank(h), h.at));
    out
}

/// Words per thread in the register list of [`Heap::root_ranges`]
/// (`user_regs_struct`).
const REGS_PER_THREAD: usize = 27;

/// Calls `f(address, word)` for every aligned word of `[start, end)`
/// present in the snapshot.
fn scan_words(heap: &Heap<'_>, start: u64, end: u64, mut f: impl FnMut(u64, u64)) {
    let start = (start + 7) & !7;
    let end = end & !7;
    if start >= end {
        return;
    }
    heap.for_each_slice(start, end, |base, bytes| {
        for (k, w) in bytes.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            f(base + 8 * k as u64, v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, HeapBuilder, Synthetic, DATA, SP, TID};

    fn refs_to(s: &Synthetic, target: u64, m: Matcher) -> Vec<(u64, u64)> {
        let heap = s.heap();
        let one = find(&heap, &synthetic::symbolizer(), target, m, 1);
        let two = find(&heap, &synthetic::symbolizer(), target, m, 3);
        let got: Vec<(u64, u64)> = one.refs.iter().map(|r| (r.at, r.value)).collect();
        let again: Vec<(u64, u64)> = two.refs.iter().map(|r| (r.at, r.value)).collect();
        assert_eq!(got, again, "1 and 3 threads disagree");
        got
    }

    #[test]
    fn exact_refs_are_found_in_any_memory_but_the_audit_region() {
        let mut b = HeapBuilder::new();
        let t = b.block(64);
        let a = b.block(32);
        let g = b.global(t);
        b.write(a + 16, t);
        let dead = b.dead_stack_word(t);
        b.audit_word(t);
        b.stack_word(t + 8); // interior: not an exact match
        let s = b.build();
        assert_eq!(
            refs_to(&s, t, Matcher::Exact),
            [(g, t), (a + 16, t), (dead, t)]
        );
        let heap = s.heap();
        let r = find(&heap, &synthetic::symbolizer(), t, Matcher::Exact, 2);
        assert_eq!(r.refs[1].whatis.buffer.as_ref().map(|b| b.addr), Some(a));
        assert_eq!(r.target_whatis.unwrap().buffer.unwrap().offset, 0);
        assert!(r.scanned_bytes > 0);
    }

    #[test]
    fn invmask_ignores_tag_bits_and_mask_compares_only_its_bits() {
        let mut b = HeapBuilder::new();
        let t = b.block(64);
        let tagged = b.global(t | 1);
        let high = b.global(t | 0xff00_0000_0000_0000);
        let s = b.build();
        assert_eq!(refs_to(&s, t, Matcher::Exact), []);
        // --invmask 0x7: the low three bits do not matter.
        assert_eq!(refs_to(&s, t, Matcher::invmask(0x7)), [(tagged, t | 1)]);
        // --mask 0x00ff_ffff_ffff_fff8: neither the top byte nor the tag.
        assert_eq!(
            refs_to(&s, t, Matcher::Mask(0x00ff_ffff_ffff_fff8)),
            [(tagged, t | 1), (high, t | 0xff00_0000_0000_0000)]
        );
        assert_eq!(refs_to(&s, t, Matcher::Mask(!0)), []);
    }

    #[test]
    fn range_finds_words_within_the_distance_and_not_at_it() {
        let mut b = HeapBuilder::new();
        let t = b.block(64);
        let w0 = b.stack_word(t);
        let w8 = b.stack_word(t + 8);
        let w15 = b.stack_word(t + 15);
        b.stack_word(t + 16);
        b.stack_word(t - 1);
        let s = b.build();
        assert_eq!(
            refs_to(&s, t, Matcher::Range(16)),
            [(w0, t), (w8, t + 8), (w15, t + 15)]
        );
        // A zero distance means the address itself.
        assert_eq!(refs_to(&s, t, Matcher::Range(0)), [(w0, t)]);
    }

    #[test]
    fn unaligned_words_are_not_refs() {
        let mut b = HeapBuilder::new();
        let t = b.block(64);
        b.write(DATA + 0x203, t);
        assert_eq!(refs_to(&b.build(), t, Matcher::Exact), []);
    }

    #[test]
    fn a_chain_leads_from_a_global_through_buffers_to_the_target() {
        let mut b = HeapBuilder::new();
        let a = b.block(32);
        let m = b.block(32);
        let t = b.block(48);
        let g = b.global(a);
        b.write(a + 8, m + 16); // interior pointers count for chains
        b.write(m + 24, t);
        let s = b.build();
        let heap = s.heap();
        let c = chain(&heap, &synthetic::symbolizer(), t + 4, Matcher::Exact, 8).unwrap();
        assert!(!c.unreached);
        assert_eq!(c.levels, 3);
        assert_eq!(c.chains.len(), 1);
        let hops: Vec<(u64, &str)> = c.chains[0]
            .hops
            .iter()
            .map(|h| (h.at, h.holder.as_str()))
            .collect();
        assert_eq!(hops, [(g, "global"), (a + 8, "buffer"), (m + 24, "buffer")]);
        assert_eq!(c.chains[0].hops[1].value, m + 16);
        assert_eq!((c.chains[0].target.addr, c.chains[0].target.offset), (t, 4));
    }

    #[test]
    fn chains_prefer_the_shortest_path_and_list_every_root_word() {
        let mut b = HeapBuilder::new();
        let t = b.block(16);
        let far = b.block(16);
        b.global(far);
        b.write(far, t);
        let g = b.global(t);
        let st = b.stack_word(t);
        let r = b.register(t);
        let s = b.build();
        let heap = s.heap();
        let c = chain(&heap, &synthetic::symbolizer(), t, Matcher::Exact, 8).unwrap();
        assert_eq!(c.levels, 1);
        let roots: Vec<(&str, u64)> = c
            .chains
            .iter()
            .map(|ch| (ch.hops[0].holder.as_str(), ch.hops[0].at))
            .collect();
        assert_eq!(roots, [("global", g), ("stack", st), ("register", 0)]);
        assert_eq!(c.chains[2].hops[0].register, Some((TID, r)));
        assert!(c.chains.iter().all(|ch| ch.hops.len() == 1));
        let limited = chain(&heap, &synthetic::symbolizer(), t, Matcher::Exact, 2).unwrap();
        assert_eq!(limited.chains.len(), 2);
    }

    #[test]
    fn a_chain_to_a_lost_buffer_is_unreached_and_dead_stack_does_not_lead_there() {
        let mut b = HeapBuilder::new();
        let t = b.block(16);
        b.dead_stack_word(t);
        b.audit_word(t);
        let s = b.build();
        let heap = s.heap();
        let c = chain(&heap, &synthetic::symbolizer(), t, Matcher::Exact, 8).unwrap();
        assert!(c.unreached && c.chains.is_empty());
        assert_eq!(c.levels, 0);
        assert!(matches!(
            chain(&heap, &synthetic::symbolizer(), SP, Matcher::Exact, 8),
            Err(Error::Insufficient(_))
        ));
    }

    #[test]
    fn a_chain_follows_tagged_pointers_under_a_mask() {
        // Top-byte tags (ARM TBI, pointer packing) take a word out of the
        // block; a low tag keeps it inside, which chains accept anyway.
        const TAG: u64 = 0x5a00_0000_0000_0000;
        let mut b = HeapBuilder::new();
        let a = b.block(16);
        let t = b.block(16);
        b.global(a | TAG);
        b.write(a, t | 1);
        let s = b.build();
        let heap = s.heap();
        let sym = synthetic::symbolizer();
        assert!(chain(&heap, &sym, t, Matcher::Exact, 8).unwrap().unreached);
        let c = chain(&heap, &sym, t, Matcher::invmask(0xff00_0000_0000_0000), 8).unwrap();
        assert_eq!(c.levels, 2);
        assert_eq!(c.chains[0].hops[0].value, a | TAG);
        assert_eq!(c.chains[0].hops[1].value, t | 1);
    }
}
