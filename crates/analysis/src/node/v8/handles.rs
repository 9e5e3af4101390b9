//! V8's handles in a snapshot: global handles (what `v8::Global`,
//! `v8::Persistent` and N-API references hold) and the blocks of local
//! handles that open handle scopes use.
//!
//! The postmortem metadata does not describe V8's `Isolate`, its
//! `GlobalHandles` or its `HandleScopeImplementer`, so we find them by
//! walking from what we know, the `Heap` the pages name (it lives inside
//! the isolate), and accept only structures that check out against
//! themselves; anything else is "not available", never a guess.
//!
//! **Global handles** (V8 11's `global-handles.cc`). `GlobalHandles`
//! starts with its isolate; a few words on, its `NodeSpace` points back to
//! it (`global_handles_`, then `first_used_block_`, `first_block_`, ...).
//! A space's nodes live in `NodeBlock`s of 256 nodes (each the handle's
//! object word, a class id, its index in the block, flags whose low three
//! bits are the state, and more), followed by `next_`, `global_handles_`,
//! `space_`, `next_used_`, `prev_used_` and `used_nodes_`. A block is
//! accepted when its trailer names the same `GlobalHandles` and space and
//! every node's index is its position; the count is accepted when the
//! nodes in use (state not free) are as many as the blocks' own
//! `used_nodes_` say.
//!
//! **Handle scopes** (`HandleScopeImplementer`, in `api.h`): it starts with
//! its isolate, then `blocks_` (data, capacity, size) of blocks of 1022
//! handle slots; the current scope's `next` and `limit` (V8's
//! `HandleScopeData`) must point into the last block and to its end.

use super::heap::JsHeap;

/// How far around the `Heap` we look for the isolate's pointers (V8 11's
/// isolate is under 128 KiB, its `Heap` inside it).
const WINDOW: u64 = 256 * 1024;
/// Nodes per `NodeBlock` (`kBlockSize`).
const NODES_PER_BLOCK: u64 = 256;
/// A global handle node's size: 32 bytes in V8 11; the others are tried
/// too, each checked by the nodes' indexes.
const NODE_SIZES: [u64; 3] = [32, 24, 40];
/// Offsets in a node of its index and its flags (after the object word
/// and the 16-bit class id).
const NODE_INDEX: u64 = 10;
const NODE_FLAGS: u64 = 11;
/// Handle slots per handle-scope block (`kHandleBlockSize`, 1 KiB words
/// less two, to fit a page with malloc's header).
const HANDLE_BLOCK_WORDS: u64 = 1022;
/// More blocks than this is not a structure we believe.
const MOST_BLOCKS: usize = 1 << 20;

/// V8's global handles, as its node blocks say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalHandleCount {
    /// Handles in use.
    pub in_use: u64,
    /// Of them, strong ones (state `NORMAL`).
    pub strong: u64,
    /// Weak ones (weak, pending or near death).
    pub weak: u64,
    /// Node blocks (256 handles each).
    pub blocks: u64,
}

/// The blocks of local handles behind the open handle scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleScopeCount {
    /// Blocks in use (1022 handles each).
    pub blocks: u64,
    /// Local handles in use.
    pub handles: u64,
}

/// V8's handle numbers of one snapshot; `None` where the structure was not
/// found or did not check out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V8Handles {
    /// Global handles.
    pub global: Option<GlobalHandleCount>,
    /// Handle-scope blocks.
    pub scopes: Option<HandleScopeCount>,
}

impl JsHeap<'_> {
    /// The global handles and handle-scope blocks of this heap's isolate.
    pub fn handles(&self) -> V8Handles {
        let h = self.heap_addr();
        if h == 0 {
            return V8Handles::default();
        }
        let (lo, hi) = (h.saturating_sub(WINDOW), h + WINDOW);
        let Some((isolate, global)) = self.find_global_handles(lo, h, hi) else {
            return V8Handles::default();
        };
        V8Handles {
            global: Some(global),
            scopes: self.find_handle_scopes(isolate, hi),
        }
    }

    /// Words of `[lo, hi)` that are 8-aligned non-null pointers.
    fn pointers_in(&self, lo: u64, hi: u64) -> impl Iterator<Item = u64> + '_ {
        (lo..hi)
            .step_by(8)
            .filter_map(move |a| self.read_word(a))
            .filter(|&p| p != 0 && p & 7 == 0)
    }

    /// The isolate and its global handles: a pointer near the heap to an
    /// object that starts with an isolate before the heap, and whose
    /// node space's blocks check out.
    fn find_global_handles(&self, lo: u64, h: u64, hi: u64) -> Option<(u64, GlobalHandleCount)> {
        self.pointers_in(lo, hi).find_map(|g| {
            let isolate = self.read_word(g)?;
            if !(lo..h).contains(&isolate) {
                return None;
            }
            (1..=4).find_map(|k| {
                let space = self.read_word(g + 8 * k)?;
                if space == 0 || self.read_word(space)? != g {
                    return None;
                }
                self.count_global_handles(g, space)
                    .map(|count| (isolate, count))
            })
        })
    }

    /// Walks the node blocks of the space at `space` of `GlobalHandles`
    /// `g`, from its block lists (the words after its first).
    fn count_global_handles(&self, g: u64, space: u64) -> Option<GlobalHandleCount> {
        NODE_SIZES.iter().find_map(|&node| {
            let trailer = NODES_PER_BLOCK * node;
            let is_block = |b: u64| {
                self.read_word(b + trailer + 8) == Some(g)
                    && self.read_word(b + trailer + 16) == Some(space)
                    && (0..NODES_PER_BLOCK)
                        .all(|i| self.u8_at(b + i * node + NODE_INDEX) == Some(i as u8))
            };
            let mut seen = std::collections::HashSet::new();
            let mut todo: Vec<u64> = (1..=2)
                .filter_map(|k| self.read_word(space + 8 * k))
                .collect();
            while let Some(b) = todo.pop() {
                if b == 0 || seen.contains(&b) || seen.len() >= MOST_BLOCKS || !is_block(b) {
                    continue;
                }
                seen.insert(b);
                // next_ and next_used_.
                todo.extend(self.read_word(b + trailer));
                todo.extend(self.read_word(b + trailer + 24));
            }
            if seen.is_empty() {
                return None;
            }
            let mut count = GlobalHandleCount {
                blocks: seen.len() as u64,
                ..GlobalHandleCount::default()
            };
            let mut used = 0u64;
            for &b in &seen {
                used += self.u32_at(b + trailer + 40)? as u64;
                for i in 0..NODES_PER_BLOCK {
                    match self.u8_at(b + i * node + NODE_FLAGS)? & 7 {
                        0 => {}
                        1 => count.strong += 1,
                        _ => count.weak += 1,
                    }
                }
            }
            count.in_use = count.strong + count.weak;
            (count.in_use == used).then_some(count)
        })
    }

    /// The handle-scope blocks of `isolate`: a `HandleScopeImplementer`
    /// (a pointer near the isolate to an object that starts with it)
    /// whose last block the current `next` and `limit` point into.
    fn find_handle_scopes(&self, isolate: u64, hi: u64) -> Option<HandleScopeCount> {
        self.pointers_in(isolate, hi).find_map(|p| {
            if self.read_word(p)? != isolate {
                return None;
            }
            let (data, capacity, size) = (
                self.read_word(p + 8)?,
                self.read_word(p + 16)?,
                self.read_word(p + 24)?,
            );
            if size == 0 || size > capacity || capacity > MOST_BLOCKS as u64 {
                return None;
            }
            let last = self.read_word(data + 8 * (size - 1))?;
            let block_words = (0..size).all(|i| {
                self.read_word(data + 8 * i).is_some_and(|b| {
                    b != 0 && self.read_word(b + 8 * (HANDLE_BLOCK_WORDS - 1)).is_some()
                })
            });
            if last == 0 || !block_words {
                return None;
            }
            let limit = last + 8 * HANDLE_BLOCK_WORDS;
            // HandleScopeData: next, then limit; in the isolate, or kept in
            // the implementer itself.
            let next = [(isolate, hi), (p, p + 1024)].iter().find_map(|&(a, b)| {
                (a + 8..b).step_by(8).find_map(|x| {
                    let next = self.read_word(x - 8)?;
                    (self.read_word(x)? == limit && (last..=limit).contains(&next)).then_some(next)
                })
            })?;
            Some(HandleScopeCount {
                blocks: size,
                handles: (size - 1) * HANDLE_BLOCK_WORDS + (next - last) / 8,
            })
        })
    }
}
