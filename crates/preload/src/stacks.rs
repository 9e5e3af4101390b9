//! Interning stacks: each distinct stack is stored once in the arena and
//! named by its [`StackId`].
//!
//! Lookups of stacks already seen (nearly all of them once a program warms
//! up) take no lock: index slots are published by a release store of their
//! hash, after the arena words they point at. Index tables are never
//! unmapped, so a lock-free reader holding an old table stays safe; each
//! table's capacity is stored in the word before its first slot, so a
//! reader pairs the table and its capacity correctly.
//!
//! Each record ends with the site's [`SiteCounters`] (zero when appended:
//! chunks are fresh anonymous memory), which [`count_alloc`] and
//! [`count_free`] update with relaxed atomics. They are found from the id
//! alone (chunk, then the record's length word), so a free needs nothing
//! but the block's live entry. Two threads allocating at one site share
//! those counters' cache lines; we accept that for exact per-site counts.

use core::sync::atomic::{AtomicU64, Ordering};

use leaktrail_format::{
    self as format, Header, ShardDesc, SiteCounters, StackId, StackIndexEntry, MAX_DEPTH,
    SITE_COUNTERS_WORDS, STACK_CHUNKS, STACK_CHUNK_WORDS, STACK_INDEX_ENTRY_BYTES, STACK_SHARDS,
};

use crate::region::{spin_lock, spin_unlock, ShardGuard};

const INITIAL_INDEX_SLOTS: u64 = 1024;

/// Maps an empty index table for `shard`.
pub fn new_index(hdr: &Header, shard: &ShardDesc) -> bool {
    match map_index(hdr, INITIAL_INDEX_SLOTS) {
        Some(t) => {
            shard.table.store(t, Ordering::Release);
            shard.capacity.store(INITIAL_INDEX_SLOTS, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Maps an index table of `slots` slots, preceded by its capacity word.
fn map_index(hdr: &Header, slots: u64) -> Option<u64> {
    let bytes = (slots + 1) * STACK_INDEX_ENTRY_BYTES;
    let base = crate::region::map(hdr, bytes)?;
    // SAFETY: fresh mapping of at least 16 bytes.
    unsafe { (base as *mut u64).write(slots) };
    hdr.counters
        .region_bytes
        .fetch_add(bytes, Ordering::Relaxed);
    Some(base + STACK_INDEX_ENTRY_BYTES)
}

/// Slot `i` of an index table. Callers pass an index below the table's
/// capacity; tables are never unmapped.
#[inline]
fn entry(table: u64, i: u64) -> *mut StackIndexEntry {
    (table + i * STACK_INDEX_ENTRY_BYTES) as *mut StackIndexEntry
}

/// The hash word of slot `e`.
#[inline]
fn hash_of(e: *mut StackIndexEntry) -> &'static AtomicU64 {
    // SAFETY: `e` comes from `entry`, inside a table that is never unmapped.
    unsafe { &(*e).hash }
}

/// The id of `frames`, interning them if new; 0 if the arena is full.
pub fn intern(hdr: &Header, frames: &[u64]) -> StackId {
    let hash = format::hash_frames(frames);
    let shard = &hdr.stack_index[(hash >> 60) as usize & (STACK_SHARDS - 1)];
    if let Some(id) = lookup(hdr, shard, hash, frames) {
        return id;
    }
    let _guard = ShardGuard::lock(shard);
    if let Some(id) = lookup(hdr, shard, hash, frames) {
        return id;
    }
    let cap = shard.capacity.load(Ordering::Relaxed);
    if (shard.len.load(Ordering::Relaxed) + 1) * 4 > cap * 3 && !grow_index(hdr, shard) {
        hdr.counters.dropped_stacks.fetch_add(1, Ordering::Relaxed);
        return StackId::NONE;
    }
    let Some(id) = append(hdr, frames) else {
        hdr.counters.dropped_stacks.fetch_add(1, Ordering::Relaxed);
        return StackId::NONE;
    };
    let table = shard.table.load(Ordering::Relaxed);
    let mask = shard.capacity.load(Ordering::Relaxed) - 1;
    let mut i = hash & mask;
    loop {
        let e = entry(table, i);
        if hash_of(e).load(Ordering::Relaxed) == 0 {
            // SAFETY: we hold the shard lock; `id` is written before the
            // hash that publishes it.
            unsafe { core::ptr::addr_of_mut!((*e).id).write(id.0 as u64) };
            hash_of(e).store(hash, Ordering::Release);
            break;
        }
        i = (i + 1) & mask;
    }
    shard.len.fetch_add(1, Ordering::Relaxed);
    hdr.stack_count.fetch_add(1, Ordering::Relaxed);
    id
}

fn lookup(hdr: &Header, shard: &ShardDesc, hash: u64, frames: &[u64]) -> Option<StackId> {
    let table = shard.table.load(Ordering::Acquire);
    // SAFETY: every index table is preceded by its capacity word.
    let cap = unsafe { ((table - STACK_INDEX_ENTRY_BYTES) as *const u64).read() };
    let mask = cap - 1;
    let mut i = hash & mask;
    loop {
        let e = entry(table, i);
        let h = hash_of(e).load(Ordering::Acquire);
        if h == 0 {
            return None;
        }
        if h == hash {
            // SAFETY: the acquire load of the hash orders this read after
            // the id's write.
            let id = StackId(unsafe { core::ptr::addr_of!((*e).id).read() } as u32);
            if same_frames(hdr, id, frames) {
                return Some(id);
            }
        }
        i = (i + 1) & mask;
    }
}

/// Whether the interned stack `id` holds exactly `frames`.
fn same_frames(hdr: &Header, id: StackId, frames: &[u64]) -> bool {
    let Some(words) = stack_words(hdr, id) else {
        return false;
    };
    // SAFETY: `stack_words` returns a pointer to a complete record.
    let len = unsafe { words.read() } & 0xffff;
    if len as usize != frames.len() {
        return false;
    }
    frames
        .iter()
        .enumerate()
        // SAFETY: `i < len`, inside the record.
        .all(|(i, &f)| unsafe { words.add(1 + i).read() } == f)
}

/// Address of the record of stack `id`.
fn stack_words(hdr: &Header, id: StackId) -> Option<*const u64> {
    let (chunk, off) = format::stack_location(id);
    let base = hdr.chunks.get(chunk)?.addr.load(Ordering::Acquire);
    (base != 0).then(|| (base + off * 8) as *const u64)
}

/// The counters of the site `id`, if `id` names an interned stack.
#[inline]
pub fn site(hdr: &Header, id: StackId) -> Option<&'static SiteCounters> {
    if id.is_none() || u64::from(id.0) >= hdr.arena_cursor.load(Ordering::Acquire) {
        return None;
    }
    let words = stack_words(hdr, id)?;
    // SAFETY: `id` is below the arena cursor, so it starts a complete
    // record (ids are only ever handed out by `intern`).
    let len = unsafe { words.read() } & 0xffff;
    let (_, off) = format::stack_location(id);
    if len as usize > MAX_DEPTH || off + 1 + len + SITE_COUNTERS_WORDS > STACK_CHUNK_WORDS {
        return None;
    }
    // SAFETY: the counters follow the frames inside the same chunk (checked
    // above); chunks are never unmapped, and all-zero words are valid
    // atomics, written only through them.
    Some(unsafe { &*(words.add(1 + len as usize) as *const SiteCounters) })
}

/// Raises `peak` to `value` (and stamps `time` with `now`) if it is higher.
#[inline]
pub fn raise_peak(peak: &AtomicU64, time: &AtomicU64, value: u64, now: u64) {
    // A plain load first: once a program is past its peak, most
    // allocations do not raise it, and a load costs no locked instruction.
    if value > peak.load(Ordering::Relaxed) && peak.fetch_max(value, Ordering::Relaxed) < value {
        time.store(now, Ordering::Relaxed);
    }
}

/// Counts an allocation of `size` bytes at `now` at the site `id`, as
/// `count` allocations of `bytes` in all ([`crate::sample::weighed`]).
#[inline]
pub fn count_alloc(hdr: &Header, id: StackId, size: u64, (count, bytes): (u64, u64), now: u64) {
    let Some(site) = site(hdr, id) else { return };
    site.sizes[format::size_bucket(size)].fetch_add(count, Ordering::Relaxed);
    site.bytes.fetch_add(bytes, Ordering::Relaxed);
    let live = site
        .live_bytes
        .fetch_add(bytes, Ordering::Relaxed)
        .wrapping_add(bytes);
    raise_peak(&site.peak_bytes, &site.peak_time_ns, live, now);
}

/// Counts the free of a block of the site `id` that was counted as
/// `count` allocations of `bytes`.
#[inline]
pub fn count_free(hdr: &Header, id: StackId, (count, bytes): (u64, u64), temporary: bool) {
    let Some(site) = site(hdr, id) else { return };
    site.frees.fetch_add(count, Ordering::Relaxed);
    site.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
    if temporary {
        site.temporary.fetch_add(count, Ordering::Relaxed);
    }
}

/// Appends a record (its frames, then room for its counters) to the arena;
/// its id, or `None` when the arena is full.
fn append(hdr: &Header, frames: &[u64]) -> Option<StackId> {
    let need = frames.len() as u64 + 1 + SITE_COUNTERS_WORDS;
    spin_lock(&hdr.arena_lock);
    let result = (|| {
        let mut cursor = hdr.arena_cursor.load(Ordering::Relaxed);
        let (mut chunk, off) = format::stack_location(StackId(cursor as u32));
        if off + need > STACK_CHUNK_WORDS {
            chunk += 1;
            cursor = chunk as u64 * STACK_CHUNK_WORDS;
        }
        if chunk >= STACK_CHUNKS {
            return None;
        }
        let desc = &hdr.chunks[chunk];
        let mut base = desc.addr.load(Ordering::Relaxed);
        if base == 0 {
            base = crate::region::map(hdr, STACK_CHUNK_WORDS * 8)?;
            hdr.counters
                .region_bytes
                .fetch_add(STACK_CHUNK_WORDS * 8, Ordering::Relaxed);
            desc.addr.store(base, Ordering::Release);
        }
        let at = (base + (cursor % STACK_CHUNK_WORDS) * 8) as *mut u64;
        // SAFETY: `need` words from `at` lie inside the chunk (checked
        // above), which only this lock holder writes; the counters' words
        // after the frames stay zero.
        unsafe {
            at.write(frames.len() as u64);
            for (i, &f) in frames.iter().enumerate() {
                at.add(1 + i).write(f);
            }
        }
        hdr.arena_cursor.store(cursor + need, Ordering::Release);
        Some(StackId(cursor as u32))
    })();
    spin_unlock(&hdr.arena_lock);
    result
}

/// Doubles a stack-index table. The old one stays mapped for lock-free
/// readers still probing it.
fn grow_index(hdr: &Header, shard: &ShardDesc) -> bool {
    let old = shard.table.load(Ordering::Relaxed);
    let old_cap = shard.capacity.load(Ordering::Relaxed);
    let new_cap = old_cap * 2;
    let Some(new) = map_index(hdr, new_cap) else {
        return false;
    };
    for i in 0..old_cap {
        let e = entry(old, i);
        let h = hash_of(e).load(Ordering::Relaxed);
        if h == 0 {
            continue;
        }
        let mut j = h & (new_cap - 1);
        loop {
            let d = entry(new, j);
            if hash_of(d).load(Ordering::Relaxed) == 0 {
                // SAFETY: the new table is private until published; `e` is
                // a published slot of the old one.
                unsafe {
                    core::ptr::addr_of_mut!((*d).id).write(core::ptr::addr_of!((*e).id).read())
                };
                hash_of(d).store(h, Ordering::Relaxed);
                break;
            }
            j = (j + 1) & (new_cap - 1);
        }
    }
    shard.table.store(new, Ordering::Release);
    shard.capacity.store(new_cap, Ordering::Release);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use format::UnwindMode;

    fn region() -> &'static Header {
        crate::region::create(UnwindMode::FramePointer, 64).expect("a region")
    }

    /// The frames stored for `id`, read back from the arena.
    fn frames_of(hdr: &Header, id: StackId) -> Vec<u64> {
        let words = stack_words(hdr, id).expect("a stored stack");
        // SAFETY: `words` is a complete record: its length, then frames.
        unsafe {
            let len = words.read() & 0xffff;
            (0..len as usize).map(|i| words.add(1 + i).read()).collect()
        }
    }

    fn stack(i: u64) -> Vec<u64> {
        (0..1 + i % 7).map(|k| 0x40_0000 + i * 0x100 + k).collect()
    }

    #[test]
    fn the_same_frames_get_the_same_id_and_different_ones_another() {
        let hdr = region();
        let a = intern(hdr, &[1, 2, 3]);
        let b = intern(hdr, &[1, 2, 4]);
        let c = intern(hdr, &[1, 2]);
        assert!(!a.is_none() && !b.is_none() && !c.is_none());
        assert_eq!(intern(hdr, &[1, 2, 3]), a);
        assert!(a != b && b != c && a != c);
        assert_eq!(frames_of(hdr, a), [1, 2, 3]);
        assert_eq!(frames_of(hdr, c), [1, 2]);
        assert_eq!(hdr.stack_count.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_index_grows_and_keeps_every_id() {
        let hdr = region();
        let n = 20_000;
        let ids: Vec<StackId> = (0..n).map(|i| intern(hdr, &stack(i))).collect();
        assert!(hdr
            .stack_index
            .iter()
            .any(|s| s.capacity.load(Ordering::Relaxed) > INITIAL_INDEX_SLOTS));
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(intern(hdr, &stack(i as u64)), id);
            assert_eq!(frames_of(hdr, id), stack(i as u64));
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), n as usize);
        assert_eq!(hdr.counters.dropped_stacks.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn threads_interning_the_same_stacks_agree_on_their_ids() {
        for threads in [1usize, 4] {
            let hdr = region();
            let n = 3001u64; // prime: every stride below visits all
            let seen: Vec<Vec<StackId>> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..threads)
                    .map(|t| {
                        sc.spawn(move || {
                            // Each thread in its own order, so they race on
                            // first insertions.
                            let mut ids = vec![StackId::NONE; n as usize];
                            for k in 0..n {
                                let i = (k * (2 * t as u64 + 1) + t as u64 * 977) % n;
                                ids[i as usize] = intern(hdr, &stack(i));
                            }
                            ids
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for ids in &seen[1..] {
                assert_eq!(ids, &seen[0], "{threads} threads");
            }
            let mut distinct = seen[0].clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), n as usize);
            assert_eq!(hdr.stack_count.load(Ordering::Relaxed), n);
        }
    }
}
