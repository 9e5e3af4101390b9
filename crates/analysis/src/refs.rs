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

use serde::Serialize;

use crate::heap::{for_each_slice, Heap, Roots};
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
#[derive(Clone, Debug, Serialize)]
pub struct Ref {
    /// Where the word is.
    pub at: u64,
    /// Its value.
    pub value: u64,
    /// What its location is.
    pub whatis: Whatis,
}

/// What [`find`] found.
#[derive(Clone, Debug, Serialize)]
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
        .snap
        .segments()
        .iter()
        .flat_map(|s| {
            let mut pieces = Vec::new();
            let mut a = s.vaddr;
            let end = s.vaddr + s.filesz;
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
                    for_each_slice(heap.snap, a, b, |base, bytes| {
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
#[derive(Clone, Debug, Serialize)]
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
#[derive(Clone, Debug, Serialize)]
pub struct Chain {
    /// The hops, root first.
    pub hops: Vec<Hop>,
    /// The target buffer.
    pub target: BufferHit,
}

/// What [`chain`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Chains {
    /// The address asked about.
    pub target: u64,
    /// The shortest paths found (at most `limit`).
    pub chains: Vec<Chain>,
    /// Levels searched.
    pub levels: usize,
    /// Whether the search stopped without reaching a root.
    pub unreached: bool,
}

/// How far back [`chain`] looks.
pub const MAX_LEVELS: usize = 64;

#[derive(Clone, Copy)]
struct Edge {
    /// Where the word is.
    at: u64,
    value: u64,
    /// The block it points into.
    to: u32,
}

/// Follows references from the buffer holding `target` back to the roots
/// and returns the shortest paths (at most `limit` of them).
pub fn chain(
    heap: &Heap<'_>,
    symbolizer: &Symbolizer,
    target: u64,
    matcher: Matcher,
    limit: usize,
) -> Result<Chains, Error> {
    let ix = &heap.index;
    let start = ix.find(target).ok_or_else(|| {
        Error::Insufficient(format!(
            "{target:#x} is not in a live buffer; --chain starts from a buffer (try `leaktrail whatis`)"
        ))
    })?;
    let n = ix.len();
    // For each block reached backwards: the edge that reached it (from it
    // into the block nearer the target).
    let mut via: Vec<Option<Edge>> = vec![None; n];
    let mut seen = vec![false; n];
    seen[start] = true;
    let mut frontier = vec![start];
    let (ranges, regs) = heap.root_ranges(&Roots::default());
    let to_block = |v: u64| ix.find(matcher.untag(v));
    let mut levels = 0;
    let mut roots: Vec<Hop> = Vec::new();
    let mut root_edges: Vec<Edge> = Vec::new();
    while !frontier.is_empty() && levels < MAX_LEVELS {
        levels += 1;
        let mut in_frontier = vec![false; n];
        for &f in &frontier {
            in_frontier[f] = true;
        }
        // Roots first: any hit ends the search at this level.
        for (k, &(tid, v)) in regs.iter().enumerate() {
            if let Some(b) = to_block(v).filter(|&b| in_frontier[b]) {
                roots.push(Hop {
                    at: 0,
                    value: v,
                    holder: "register".into(),
                    whatis: None,
                    register: Some((tid, k % 27)),
                });
                root_edges.push(Edge {
                    at: 0,
                    value: v,
                    to: b as u32,
                });
            }
        }
        for r in &ranges {
            let start = (r.start + 7) & !7;
            for_each_slice(heap.snap, start, r.end & !7, |base, bytes| {
                for (k, w) in bytes.chunks_exact(8).enumerate() {
                    let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                    if let Some(b) = to_block(v).filter(|&b| in_frontier[b]) {
                        let at = base + 8 * k as u64;
                        roots.push(Hop {
                            at,
                            value: v,
                            holder: if r.kind == "anon" {
                                "anon".into()
                            } else {
                                r.kind.into()
                            },
                            whatis: whatis::whatis_mapped(heap, symbolizer, at),
                            register: None,
                        });
                        root_edges.push(Edge {
                            at,
                            value: v,
                            to: b as u32,
                        });
                    }
                }
            });
        }
        if !roots.is_empty() {
            break;
        }
        // Then every live buffer not yet on a path.
        let mut next = Vec::new();
        for i in 0..n {
            if seen[i] {
                continue;
            }
            let (a, e) = (
                ix.start(i),
                heap.audit.live[i].addr + heap.audit.live[i].size,
            );
            let mut hit = None;
            for_each_slice(heap.snap, (a + 7) & !7, e & !7, |base, bytes| {
                if hit.is_some() {
                    return;
                }
                for (k, w) in bytes.chunks_exact(8).enumerate() {
                    let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
                    if let Some(b) = to_block(v).filter(|&b| in_frontier[b] && b != i) {
                        hit = Some(Edge {
                            at: base + 8 * k as u64,
                            value: v,
                            to: b as u32,
                        });
                        break;
                    }
                }
            });
            if let Some(edge) = hit {
                seen[i] = true;
                via[i] = Some(edge);
                next.push(i);
            }
        }
        frontier = next;
    }
    let mut chains = Vec::new();
    for (root, edge) in roots.into_iter().zip(root_edges).take(limit) {
        let mut hops = vec![root];
        let mut b = edge.to as usize;
        while b != start {
            let Some(e) = via[b] else { break };
            hops.push(Hop {
                at: e.at,
                value: e.value,
                holder: "buffer".into(),
                whatis: whatis::whatis_mapped(heap, symbolizer, e.at),
                register: None,
            });
            b = e.to as usize;
        }
        chains.push(Chain {
            hops,
            target: whatis::buffer_hit(heap, symbolizer, &heap.audit.live[start], target),
        });
    }
    Ok(Chains {
        target,
        unreached: chains.is_empty(),
        chains,
        levels,
    })
}
