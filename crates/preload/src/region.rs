//! The audit region in our own memory: creating it, and keeping the live
//! table and the mapped-memory table up to date.
//!
//! Layout and consistency rules are `leaktrail_format`'s; this module only
//! writes. Every change happens under the shard's lock word, with the
//! shard's sequence counter odd for its duration, and is published by one
//! release store.

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

use leaktrail_format::{
    self as format, Header, LiveEntry, ShardDesc, StackId, EMPTY, HEADER_MAPPING_BYTES,
    LIVE_ENTRY_BYTES, MAGIC, STACK_SHARDS, TOMBSTONE,
};

use crate::stacks::{self, raise_peak};
use crate::sys;

/// Most bytes the region may occupy (`LEAKTRAIL_REGION_LIMIT`; tests use it
/// to exercise the full-region path).
pub static LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Set when [`LIMIT`] refused a mapping: tells a region that could not be
/// created because of the limit from one the kernel refused.
pub static LIMIT_REACHED: AtomicBool = AtomicBool::new(false);

/// Maps `len` more bytes for the region, within [`LIMIT`].
pub fn map(hdr: &Header, len: u64) -> Option<u64> {
    let used = hdr.counters.region_bytes.load(Ordering::Relaxed);
    if used.saturating_add(len) > LIMIT.load(Ordering::Relaxed) {
        LIMIT_REACHED.store(true, Ordering::Relaxed);
        return None;
    }
    sys::map_anonymous(len)
}

/// Slots each live shard starts with.
const INITIAL_LIVE_SLOTS: u64 = 256;
/// Slots the mapped-memory table starts with.
const INITIAL_MAP_SLOTS: u64 = 64;

/// The region, once created.
#[inline]
pub fn header() -> Option<&'static Header> {
    let p = crate::hot::HOT.header.load(Ordering::Acquire);
    // SAFETY: the header word is only ever set to a header mapping that is never
    // unmapped and was fully initialised before publication.
    unsafe { p.as_ref() }
}

/// What one allocation record says besides its address.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Requested bytes.
    pub size: u64,
    /// ns since the region's start.
    pub time_ns: u64,
    /// Interned stack.
    pub stack: u32,
    /// Allocating thread.
    pub tid: u32,
}

/// The calling thread, as the count of temporary allocations needs it: a
/// free is temporary when it frees the last block this thread allocated,
/// with nothing allocated or freed by the thread in between (heaptrack's
/// definition, per thread).
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    /// The thread's id.
    pub tid: u32,
    /// The address of its last allocation XORed with [`HIDE`] (it lives in
    /// the thread's TLS, which a leak check scans as a root: a plain copy
    /// kept the block "reachable"); 0 once it freed anything.
    pub last_alloc: &'a Cell<u64>,
    /// The thread's change of the process's live bytes not yet added to
    /// `Counters::live_bytes` (see [`PENDING_LIMIT`]).
    pub pending: &'a Cell<i64>,
}

/// How far a thread's own count of the process's live bytes may run ahead
/// of (or behind) the shared `Counters::live_bytes` before it adds its
/// change there. One shared counter updated by every allocation and free
/// cost 13 ns of a 48 ns pair without unwinding (two threads bouncing its
/// cache line; 10 ns with one thread). A thread raises the peak from the
/// shared count plus its own change: exact in a program with one thread,
/// and with several off by at most this much per other thread that
/// allocated (their changes not yet added, either way).
pub const PENDING_LIMIT: i64 = 32 * 1024;

/// Masks a block address the tracer keeps in TLS into a non-canonical
/// value, never a pointer into anything (as the unwind memo's `rbp`).
const HIDE: u64 = 0xa5a5_0000_0000_0000;

/// Creates the region. Called once, at init.
pub fn create(unwind_mode: format::UnwindMode, max_depth: u32) -> Option<&'static Header> {
    // One inaccessible page below the header keeps the kernel from merging
    // the header's mapping with the one before it, so the header always
    // starts a mapping: readers look for the magic only there.
    let guarded = sys::map_anonymous(HEADER_MAPPING_BYTES + format::PAGE_SIZE)?;
    sys::protect_none(guarded, format::PAGE_SIZE);
    let base = guarded + format::PAGE_SIZE;
    let h = base as *mut Header;
    // SAFETY: `base` is a fresh, zeroed, writable mapping large enough for a
    // Header; all-zero bytes are a valid Header (integers and atomics), so
    // writing fields through the raw pointer is sound.
    unsafe {
        (*h).magic = MAGIC;
        (*h).version = format::VERSION;
        (*h).header_size = core::mem::size_of::<Header>() as u32;
        (*h).pointer_width = 8;
        (*h).endianness = if cfg!(target_endian = "little") { 1 } else { 2 };
        (*h).unwind_mode = unwind_mode as u32;
        (*h).max_depth = max_depth;
        (*h).self_addr = base;
        (*h).start_realtime_ns = sys::clock_ns(libc::CLOCK_REALTIME);
    }
    // SAFETY: as above; from here on we only use shared references and
    // atomics.
    let hdr: &'static Header = unsafe { &*h };
    hdr.pid.store(sys::getpid(), Ordering::Relaxed);
    hdr.start_monotonic_ns.store(
        sys::clock_ns(libc::CLOCK_MONOTONIC_COARSE),
        Ordering::Relaxed,
    );
    hdr.counters
        .region_bytes
        .store(HEADER_MAPPING_BYTES, Ordering::Relaxed);
    for shard in &hdr.live {
        if !new_table(hdr, shard, INITIAL_LIVE_SLOTS, LIVE_ENTRY_BYTES) {
            return None;
        }
    }
    if !new_table(hdr, &hdr.maps, INITIAL_MAP_SLOTS, LIVE_ENTRY_BYTES) {
        return None;
    }
    for shard in &hdr.stack_index {
        if !crate::stacks::new_index(hdr, shard) {
            return None;
        }
    }
    hdr.arena_cursor.store(1, Ordering::Relaxed);
    crate::hot::HOT.header.store(h, Ordering::Release);
    Some(hdr)
}

/// Maps an empty table of `slots` records for `shard` (not yet shared).
fn new_table(hdr: &Header, shard: &ShardDesc, slots: u64, record_bytes: u64) -> bool {
    match map(hdr, slots * record_bytes) {
        Some(t) => {
            shard.table.store(t, Ordering::Release);
            shard.capacity.store(slots, Ordering::Relaxed);
            hdr.counters
                .region_bytes
                .fetch_add(slots * record_bytes, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Empties the live and mapped-memory tables and zeroes the live counts;
/// interned stacks and the running totals stay. For `leaktrail attach`
/// after a detach: frees went by unseen meanwhile, so no record from
/// before can be trusted. Nothing calls the hooks while it runs.
pub fn forget_live(hdr: &Header) {
    for (index, shard) in hdr.live.iter().enumerate() {
        let _guard = ShardGuard::lock(shard);
        empty_table(shard);
        for c in &hdr.classes[index] {
            c.live_count.store(0, Ordering::Relaxed);
            c.live_bytes.store(0, Ordering::Relaxed);
        }
    }
    let _guard = ShardGuard::lock(&hdr.maps);
    empty_table(&hdr.maps);
}

/// Marks every slot of `shard`'s table empty (under its lock).
fn empty_table(shard: &ShardDesc) {
    let table = shard.table.load(Ordering::Relaxed);
    for i in 0..shard.capacity.load(Ordering::Relaxed) {
        // SAFETY: `i` is below the table's capacity; we hold the lock.
        unsafe { (*slot(table, i)).addr.store(EMPTY, Ordering::Release) };
    }
    shard.len.store(0, Ordering::Relaxed);
    shard.tombstones.store(0, Ordering::Relaxed);
}

/// A held shard lock; bumps the sequence counter to odd on entry and back
/// to even on drop.
pub struct ShardGuard<'a> {
    shard: &'a ShardDesc,
}

impl<'a> ShardGuard<'a> {
    /// Takes `shard`'s lock.
    #[inline]
    pub fn lock(shard: &'a ShardDesc) -> Self {
        spin_lock(&shard.lock);
        locked_add(&shard.seq, 1);
        fence(Ordering::Release);
        ShardGuard { shard }
    }
}

impl Drop for ShardGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        fence(Ordering::Release);
        locked_add(&self.shard.seq, 1);
        spin_unlock(&self.shard.lock);
    }
}

/// Adds `delta` (wrapping) to a word that only the holder of its shard's
/// lock writes: a plain load and store, not a locked read-modify-write.
/// The shard's `seq`, `len` and `tombstones` are such words; with five
/// locked adds per insert or remove (the lock, `seq` twice, `len`,
/// `tombstones`) a pair cost about 80 ns without unwinding.
#[inline]
fn locked_add(word: &AtomicU64, delta: u64) {
    word.store(
        word.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

/// Takes a lock word. Spins briefly, then yields: the holder may have been
/// preempted, and we must not burn its CPU.
#[inline]
pub fn spin_lock(word: &AtomicU32) {
    let mut spins = 0u32;
    while word
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            sys::yield_now();
        }
    }
}

/// Releases a lock word.
#[inline]
pub fn spin_unlock(word: &AtomicU32) {
    word.store(0, Ordering::Release);
}

/// Every lock word of the region, in a fixed order (for fork).
pub fn for_each_lock(hdr: &Header, mut f: impl FnMut(&AtomicU32)) {
    for s in &hdr.live {
        f(&s.lock);
    }
    f(&hdr.maps.lock);
    for s in &hdr.stack_index {
        f(&s.lock);
    }
    f(&hdr.arena_lock);
}

/// Every sequence counter of the region.
pub fn for_each_seq(hdr: &Header, mut f: impl FnMut(&AtomicU64)) {
    for s in &hdr.live {
        f(&s.seq);
    }
    f(&hdr.maps.seq);
    for s in hdr.stack_index.iter().take(STACK_SHARDS) {
        f(&s.seq);
    }
}

#[inline]
fn slot(table: u64, i: u64) -> *mut LiveEntry {
    (table + i * LIVE_ENTRY_BYTES) as *mut LiveEntry
}

/// Counts an allocation in its class, in the process's live bytes and at
/// its site. Called under the shard's lock, which serialises every writer
/// of the per-shard class counters (plain loads and stores, no
/// read-modify-write) and orders a block's allocation before its free in
/// the shared counters (relaxed atomics: other shards' blocks update them
/// too), so live bytes never dip below zero. While sampling, the live bytes
/// and the site count the block's weight ([`crate::sample::weighed`]), its
/// class the block itself.
#[inline]
fn count_alloc(hdr: &Header, shard: usize, rec: &Record, caller: Option<&Caller<'_>>) {
    count_class_alloc(hdr, shard, rec.size);
    let weighed = crate::sample::weighed(rec.size);
    let size = weighed.1;
    let g = &hdr.counters;
    let live = match caller {
        Some(c) => {
            let pending = c.pending.get().wrapping_add(size as i64);
            let live = (g.live_bytes.load(Ordering::Relaxed) as i64).wrapping_add(pending);
            settle_pending(g, c, pending);
            // Negative when another thread's frees were added before the
            // allocations they freed: an underestimate, no peak.
            u64::try_from(live).unwrap_or(0)
        }
        None => g
            .live_bytes
            .fetch_add(size, Ordering::Relaxed)
            .wrapping_add(size),
    };
    raise_peak(&g.peak_bytes, &g.peak_time_ns, live, rec.time_ns);
    stacks::count_alloc(hdr, StackId(rec.stack), rec.size, weighed, rec.time_ns);
}

/// Keeps `pending` as the thread's change not yet shared, or adds it to
/// the shared count once it is [`PENDING_LIMIT`] or more either way.
#[inline]
fn settle_pending(g: &format::Counters, c: &Caller<'_>, pending: i64) {
    if pending.unsigned_abs() >= PENDING_LIMIT as u64 {
        g.live_bytes.fetch_add(pending as u64, Ordering::Relaxed);
        c.pending.set(0);
    } else {
        c.pending.set(pending);
    }
}

/// Counts a free in its class, the process's live bytes and at its site
/// (under the shard's lock, as above).
#[inline(always)]
fn count_free(
    hdr: &Header,
    shard: usize,
    rec: &Record,
    caller: Option<&Caller<'_>>,
    temporary: bool,
) {
    count_class_free(hdr, shard, rec.size);
    let weighed = crate::sample::weighed(rec.size);
    let size = weighed.1;
    let g = &hdr.counters;
    match caller {
        Some(c) => settle_pending(g, c, c.pending.get().wrapping_sub(size as i64)),
        None => {
            g.live_bytes.fetch_sub(size, Ordering::Relaxed);
        }
    }
    stacks::count_free(hdr, StackId(rec.stack), weighed, temporary);
}

/// Set at init when sampling (`crate::sample`): unsampled blocks are then
/// counted without the shard's lock ([`count_unsampled`]), so every
/// counter update becomes an atomic add.
pub static ATOMIC_COUNTS: AtomicBool = AtomicBool::new(false);

#[inline]
fn bump(counter: &AtomicU64, delta: u64) {
    if ATOMIC_COUNTS.load(Ordering::Relaxed) {
        counter.fetch_add(delta, Ordering::Relaxed);
        return;
    }
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

/// Counts the allocation (or, `alloc` false, the free) of a block the
/// sampler passed over, by `usable` bytes (the allocator's usable size,
/// the one size known again at its free), without the shard's lock: only
/// with [`ATOMIC_COUNTS`] set.
#[inline]
pub fn count_unsampled(hdr: &Header, addr: u64, usable: u64, alloc: bool) {
    let shard = format::shard_of(addr);
    if alloc {
        count_class_alloc(hdr, shard, usable);
    } else {
        count_class_free(hdr, shard, usable);
    }
}

/// Counts an allocation in its class only (a sampled-out block has no
/// site: per-site counts and the process's peak cover sampled blocks).
#[inline]
fn count_class_alloc(hdr: &Header, shard: usize, size: u64) {
    let c = &hdr.classes[shard][format::class_of(size).index()];
    bump(&c.live_count, 1);
    bump(&c.live_bytes, size);
    bump(&c.allocs, 1);
}

/// Counts a free in its class only.
#[inline]
fn count_class_free(hdr: &Header, shard: usize, size: u64) {
    let c = &hdr.classes[shard][format::class_of(size).index()];
    bump(&c.live_count, u64::MAX);
    bump(&c.live_bytes, size.wrapping_neg());
    bump(&c.frees, 1);
}

/// The region could not map more memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionFull;

/// Enters a live buffer. If the table already held that address (its free
/// passed us by, from inside the tracer), the old record is replaced and
/// counted as freed. `caller` is the allocating thread (`None` for
/// records replayed or put back, which are not new allocations of it).
/// Inlined into the hooks: returned through memory, its result cost a
/// store-forwarding stall per free.
#[inline]
pub fn insert_live(
    hdr: &Header,
    addr: u64,
    rec: Record,
    caller: Option<Caller<'_>>,
) -> Result<(), RegionFull> {
    if let Some(caller) = &caller {
        caller.last_alloc.set(addr ^ HIDE);
    }
    let index = format::shard_of(addr);
    let shard = &hdr.live[index];
    let _guard = ShardGuard::lock(shard);
    let cap = shard.capacity.load(Ordering::Relaxed);
    let used = shard.len.load(Ordering::Relaxed) + shard.tombstones.load(Ordering::Relaxed);
    if (used + 1) * 4 > cap * 3 && !grow(hdr, shard) {
        return Err(RegionFull);
    }
    let table = shard.table.load(Ordering::Relaxed);
    let mask = shard.capacity.load(Ordering::Relaxed) - 1;
    let mut i = format::hash_addr(addr) & mask;
    let mut reuse: Option<u64> = None;
    loop {
        let e = slot(table, i);
        // SAFETY: `i` is masked to the table's capacity; the table is ours
        // and stays mapped while we hold the shard lock.
        let key = unsafe { (*e).addr.load(Ordering::Relaxed) };
        if key == addr {
            replace_record(hdr, index, e, rec, caller.as_ref());
            return Ok(());
        }
        if key == TOMBSTONE && reuse.is_none() {
            reuse = Some(i);
        }
        if key == EMPTY {
            let target = reuse.unwrap_or(i);
            let e = slot(table, target);
            // SAFETY: as above. Fields first, key last with release, so no
            // reader sees a key with stale fields.
            unsafe {
                write_record(e, rec);
                (*e).addr.store(addr, Ordering::Release);
            }
            if reuse.is_some() {
                locked_add(&shard.tombstones, u64::MAX);
            }
            locked_add(&shard.len, 1);
            count_alloc(hdr, index, &rec, caller.as_ref());
            return Ok(());
        }
        i = (i + 1) & mask;
    }
}

/// Replaces the record in slot `e` of shard `index`, whose address was
/// entered again (its free passed us by): counts the old one freed. Rare,
/// so out of the hooks' path. Called under the shard's lock.
#[cold]
fn replace_record(
    hdr: &Header,
    index: usize,
    e: *mut LiveEntry,
    rec: Record,
    caller: Option<&Caller<'_>>,
) {
    // SAFETY: `e` is a slot of the shard's table, under its lock.
    let old = unsafe { read_record(e) };
    // SAFETY: as above; the slot keeps its key, so a reader sees either
    // the old or the new record's fields with the same key.
    unsafe { write_record(e, rec) };
    count_free(hdr, index, &old, caller, false);
    count_alloc(hdr, index, &rec, caller);
}

/// Removes a live buffer, returning its record if the table held it.
/// `caller` is the freeing thread (`None`: count no temporary). Always
/// inlined, though the full audit's and the sampler's frees both call it:
/// called, its record came back through memory and the caller's reading
/// it stalled on store forwarding (perf: a third of `free`'s hook, 4 ns
/// of a pair without unwinding).
#[inline(always)]
pub fn remove_live(hdr: &Header, addr: u64, caller: Option<Caller<'_>>) -> Option<Record> {
    let last = caller.as_ref().map(|c| (c.tid, c.last_alloc.replace(0)));
    let index = format::shard_of(addr);
    let shard = &hdr.live[index];
    let _guard = ShardGuard::lock(shard);
    let table = shard.table.load(Ordering::Relaxed);
    let mask = shard.capacity.load(Ordering::Relaxed) - 1;
    let mut i = format::hash_addr(addr) & mask;
    loop {
        let e = slot(table, i);
        // SAFETY: masked index into our table, under the shard lock.
        let key = unsafe { (*e).addr.load(Ordering::Relaxed) };
        if key == addr {
            // SAFETY: as above.
            let rec = unsafe { read_record(e) };
            // SAFETY: as above.
            unsafe { (*e).addr.store(TOMBSTONE, Ordering::Release) };
            locked_add(&shard.len, u64::MAX);
            locked_add(&shard.tombstones, 1);
            let temporary = last == Some((rec.tid, addr ^ HIDE));
            count_free(hdr, index, &rec, caller.as_ref(), temporary);
            return Some(rec);
        }
        if key == EMPTY {
            return None;
        }
        i = (i + 1) & mask;
    }
}

/// # Safety
/// `e` points at a slot of a table we hold the lock of.
unsafe fn read_record(e: *const LiveEntry) -> Record {
    // SAFETY: the caller's contract.
    unsafe {
        Record {
            size: ptr::addr_of!((*e).size).read(),
            time_ns: ptr::addr_of!((*e).time_ns).read(),
            stack: ptr::addr_of!((*e).stack).read(),
            tid: ptr::addr_of!((*e).tid).read(),
        }
    }
}

/// # Safety
/// `e` points at a slot of a table we hold the lock of.
unsafe fn write_record(e: *mut LiveEntry, rec: Record) {
    // SAFETY: the caller's contract.
    unsafe {
        ptr::addr_of_mut!((*e).size).write(rec.size);
        ptr::addr_of_mut!((*e).time_ns).write(rec.time_ns);
        ptr::addr_of_mut!((*e).stack).write(rec.stack);
        ptr::addr_of_mut!((*e).tid).write(rec.tid);
    }
}

/// Replaces a live shard's table by one twice as big (or as big, if it is
/// mostly tombstones), then publishes it with one store. Called with the
/// shard lock held.
#[cold]
fn grow(hdr: &Header, shard: &ShardDesc) -> bool {
    let old = shard.table.load(Ordering::Relaxed);
    let old_cap = shard.capacity.load(Ordering::Relaxed);
    let len = shard.len.load(Ordering::Relaxed);
    let new_cap = if (len + 1) * 2 > old_cap {
        old_cap * 2
    } else {
        old_cap
    };
    let Some(new) = map(hdr, new_cap * LIVE_ENTRY_BYTES) else {
        return false;
    };
    let mask = new_cap - 1;
    for i in 0..old_cap {
        let e = slot(old, i);
        // SAFETY: index below the old capacity, under the shard lock.
        let key = unsafe { (*e).addr.load(Ordering::Relaxed) };
        if key == EMPTY || key == TOMBSTONE {
            continue;
        }
        let mut j = format::hash_addr(key) & mask;
        loop {
            let d = slot(new, j);
            // SAFETY: masked index into the new, still private, table.
            unsafe {
                if (*d).addr.load(Ordering::Relaxed) == EMPTY {
                    write_record(d, read_record(e));
                    (*d).addr.store(key, Ordering::Relaxed);
                    break;
                }
            }
            j = (j + 1) & mask;
        }
    }
    // Publish: readers see the old table or the new, both complete; the
    // capacity they pair with it comes from the same shard while its
    // sequence counter is odd, which tells them to re-read.
    shard.table.store(new, Ordering::Release);
    shard.capacity.store(new_cap, Ordering::Release);
    shard.tombstones.store(0, Ordering::Relaxed);
    sys::unmap(old, old_cap * LIVE_ENTRY_BYTES);
    hdr.counters
        .region_bytes
        .fetch_add((new_cap - old_cap) * LIVE_ENTRY_BYTES, Ordering::Relaxed);
    hdr.counters.resizes.fetch_add(1, Ordering::Relaxed);
    true
}

/// Enters an anonymous mapping `[addr, addr+rec.size)`.
pub fn insert_map(hdr: &Header, addr: u64, rec: Record) -> bool {
    let shard = &hdr.maps;
    let _guard = ShardGuard::lock(shard);
    insert_map_locked(hdr, shard, addr, rec)
}

fn insert_map_locked(hdr: &Header, shard: &ShardDesc, addr: u64, rec: Record) -> bool {
    // The mapped-memory table is a plain array scanned linearly: programs
    // hold hundreds of mappings, not millions, and unmaps can cut any part
    // of one, which a hash by start address cannot find.
    loop {
        let table = shard.table.load(Ordering::Relaxed);
        let cap = shard.capacity.load(Ordering::Relaxed);
        for i in 0..cap {
            let e = slot(table, i);
            // SAFETY: index below capacity, under the lock.
            let key = unsafe { (*e).addr.load(Ordering::Relaxed) };
            if key == EMPTY || key == TOMBSTONE {
                // SAFETY: as above.
                unsafe {
                    write_record(e, rec);
                    (*e).addr.store(addr, Ordering::Release);
                }
                if key == TOMBSTONE {
                    shard.tombstones.fetch_sub(1, Ordering::Relaxed);
                }
                shard.len.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        // Full: copy into a table twice as big.
        let Some(new) = map(hdr, cap * 2 * LIVE_ENTRY_BYTES) else {
            hdr.counters.dropped_maps.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        // SAFETY: both tables are ours; the new one is private until the
        // store below; `cap` records fit in each.
        unsafe {
            ptr::copy_nonoverlapping(
                table as *const u8,
                new as *mut u8,
                (cap * LIVE_ENTRY_BYTES) as usize,
            );
        }
        shard.table.store(new, Ordering::Release);
        shard.capacity.store(cap * 2, Ordering::Release);
        sys::unmap(table, cap * LIVE_ENTRY_BYTES);
        hdr.counters
            .region_bytes
            .fetch_add(cap * LIVE_ENTRY_BYTES, Ordering::Relaxed);
    }
}

/// Removes `[addr, addr+len)` from every recorded mapping it overlaps,
/// keeping the parts that stay mapped. Returns whether any overlapped.
pub fn remove_map_range(hdr: &Header, addr: u64, len: u64) -> bool {
    let mut removed = false;
    let end = addr.saturating_add(len);
    let shard = &hdr.maps;
    let _guard = ShardGuard::lock(shard);
    let table = shard.table.load(Ordering::Relaxed);
    let cap = shard.capacity.load(Ordering::Relaxed);
    // Recorded mappings do not overlap, so at most one keeps a head (the
    // one holding `addr`) and one a tail (the one holding `end`). They are
    // entered after the scan, which may move the table.
    let mut keep: [Option<(u64, Record)>; 2] = [None, None];
    for i in 0..cap {
        let e = slot(table, i);
        // SAFETY: index below capacity, under the lock.
        let key = unsafe { (*e).addr.load(Ordering::Relaxed) };
        if key == EMPTY || key == TOMBSTONE {
            continue;
        }
        // SAFETY: as above.
        let rec = unsafe { read_record(e) };
        let (start, stop) = (key, key.saturating_add(rec.size));
        if stop <= addr || end <= start {
            continue;
        }
        // SAFETY: as above.
        unsafe { (*e).addr.store(TOMBSTONE, Ordering::Release) };
        shard.len.fetch_sub(1, Ordering::Relaxed);
        shard.tombstones.fetch_add(1, Ordering::Relaxed);
        removed = true;
        let part = |from: u64, size: u64| Some((from, Record { size, ..rec }));
        if start < addr {
            keep[0] = part(start, addr - start);
        }
        if end < stop {
            keep[1] = part(end, stop - end);
        }
    }
    for (start, rec) in keep.into_iter().flatten() {
        insert_map_locked(hdr, shard, start, rec);
    }
    removed
}

#[cfg(test)]
mod tests {
    //! The tables in a region of our own, created fresh per test (regions
    //! are never unmapped; each is a few hundred KiB).

    use super::*;
    use format::UnwindMode;

    fn region() -> &'static Header {
        create(UnwindMode::FramePointer, 64).expect("a region")
    }

    fn rec(size: u64, tag: u32) -> Record {
        Record {
            size,
            time_ns: 1000 + u64::from(tag),
            stack: tag,
            tid: 7,
        }
    }

    fn live_len(hdr: &Header) -> u64 {
        hdr.live.iter().map(|s| s.len.load(Ordering::Relaxed)).sum()
    }

    fn class_sum(hdr: &Header, f: impl Fn(&format::ClassCounters) -> u64) -> u64 {
        hdr.classes.iter().flatten().map(f).sum()
    }

    /// `n` malloc-like addresses (16-byte aligned) that fall in `shard`.
    fn addrs_in_shard(shard: usize, n: usize) -> Vec<u64> {
        (0u64..)
            .map(|i| 0x5555_0000_0000 + i * 16)
            .filter(|&a| format::shard_of(a) == shard)
            .take(n)
            .collect()
    }

    #[test]
    fn an_inserted_buffer_is_removed_once_with_its_record_and_counted() {
        let hdr = region();
        insert_live(hdr, 0x5555_0000_1010, rec(100, 3), None).unwrap();
        assert_eq!(live_len(hdr), 1);
        assert_eq!(
            class_sum(hdr, |c| c.live_bytes.load(Ordering::Relaxed)),
            100
        );
        let r = remove_live(hdr, 0x5555_0000_1010, None).unwrap();
        assert_eq!((r.size, r.stack, r.tid, r.time_ns), (100, 3, 7, 1003));
        assert!(remove_live(hdr, 0x5555_0000_1010, None).is_none());
        assert!(
            remove_live(hdr, 0x5555_0000_2020, None).is_none(),
            "never there"
        );
        assert_eq!(live_len(hdr), 0);
        let tomb: u64 = hdr
            .live
            .iter()
            .map(|s| s.tombstones.load(Ordering::Relaxed))
            .sum();
        assert_eq!(tomb, 1);
        assert_eq!(class_sum(hdr, |c| c.live_count.load(Ordering::Relaxed)), 0);
        assert_eq!(class_sum(hdr, |c| c.allocs.load(Ordering::Relaxed)), 1);
        assert_eq!(class_sum(hdr, |c| c.frees.load(Ordering::Relaxed)), 1);
        // Every change left the sequence counters even.
        for s in &hdr.live {
            assert_eq!(s.seq.load(Ordering::Relaxed) % 2, 0);
        }
    }

    #[test]
    fn a_site_counts_allocations_frees_temporaries_its_peak_and_sizes() {
        let hdr = region();
        let id = crate::stacks::intern(hdr, &[0x40_1000, 0x40_2000]);
        let other = crate::stacks::intern(hdr, &[0x40_3000]);
        let (last, pending) = (Cell::new(0), Cell::new(0));
        let me = Some(Caller {
            tid: 7,
            last_alloc: &last,
            pending: &pending,
        });
        let at = |i: u64| 0x5555_0000_0000 + i * 0x40;
        let r = |size, stack: StackId, t| Record {
            size,
            time_ns: t,
            stack: stack.0,
            tid: 7,
        };
        // Five blocks of 100 bytes live at once: the peak, at t=5.
        for i in 0..5 {
            insert_live(hdr, at(i), r(100, id, 1 + i), me).unwrap();
        }
        // Freed newest first: only the first free follows its allocation.
        for i in (0..5).rev() {
            remove_live(hdr, at(i), me).unwrap();
        }
        // Two temporaries of 3000 bytes, then one freed after another
        // site's allocation (not temporary), one freed by another thread.
        for k in 0..2 {
            insert_live(hdr, at(10), r(3000, id, 10 + k), me).unwrap();
            remove_live(hdr, at(10), me).unwrap();
        }
        insert_live(hdr, at(11), r(20, id, 20), me).unwrap();
        insert_live(hdr, at(12), r(8, other, 21), me).unwrap();
        remove_live(hdr, at(11), me).unwrap();
        insert_live(hdr, at(13), r(20, id, 22), me).unwrap();
        let (them, their_pending) = (Cell::new(at(13)), Cell::new(0));
        let someone_else = Caller {
            tid: 8,
            last_alloc: &them,
            pending: &their_pending,
        };
        remove_live(hdr, at(13), Some(someone_else)).unwrap();
        let s = crate::stacks::site(hdr, id).expect("counters");
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let allocs: u64 = s.sizes.iter().map(load).sum();
        assert_eq!(allocs, 9);
        assert_eq!(load(&s.frees), 9);
        assert_eq!(load(&s.temporary), 3);
        assert_eq!(load(&s.bytes), 500 + 6000 + 40);
        assert_eq!(load(&s.live_bytes), 0);
        assert_eq!((load(&s.peak_bytes), load(&s.peak_time_ns)), (3000, 10));
        assert_eq!(load(&s.sizes[format::size_bucket(100)]), 5);
        assert_eq!(load(&s.sizes[format::size_bucket(3000)]), 2);
        assert_eq!(load(&s.sizes[format::size_bucket(20)]), 2);
        let o = crate::stacks::site(hdr, other).expect("counters");
        assert_eq!((load(&o.live_bytes), load(&o.frees)), (8, 0));
        // The process: 3000 bytes at once was its peak, at t=10.
        let g = &hdr.counters;
        let unshared = pending.get() + their_pending.get();
        assert_eq!(load(&g.live_bytes) as i64 + unshared, 8);
        assert_eq!((load(&g.peak_bytes), load(&g.peak_time_ns)), (3000, 10));
    }

    #[test]
    fn inserting_an_address_again_replaces_its_record() {
        let hdr = region();
        insert_live(hdr, 0x5555_0000_1010, rec(10, 1), None).unwrap();
        insert_live(hdr, 0x5555_0000_1010, rec(20, 2), None).unwrap();
        assert_eq!(live_len(hdr), 1);
        assert_eq!(class_sum(hdr, |c| c.live_bytes.load(Ordering::Relaxed)), 20);
        assert_eq!(class_sum(hdr, |c| c.frees.load(Ordering::Relaxed)), 1);
        assert_eq!(remove_live(hdr, 0x5555_0000_1010, None).unwrap().stack, 2);
    }

    #[test]
    fn a_full_shard_grows_and_keeps_every_record() {
        let hdr = region();
        let shard = 5;
        let addrs = addrs_in_shard(shard, 1000);
        for (i, &a) in addrs.iter().enumerate() {
            insert_live(hdr, a, rec(i as u64 + 1, i as u32), None).unwrap();
        }
        let s = &hdr.live[shard];
        assert_eq!(s.len.load(Ordering::Relaxed), 1000);
        // 256 -> 512 -> 1024 -> 2048 slots, never fuller than 3/4.
        assert_eq!(s.capacity.load(Ordering::Relaxed), 2048);
        assert_eq!(hdr.counters.resizes.load(Ordering::Relaxed), 3);
        for (i, &a) in addrs.iter().enumerate() {
            let r = remove_live(hdr, a, None).expect("still there after growing");
            assert_eq!((r.size, r.stack), (i as u64 + 1, i as u32));
        }
        assert_eq!(s.len.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn tombstones_are_reused_and_a_table_of_tombstones_is_rehashed_in_place() {
        let hdr = region();
        let shard = 9;
        let addrs = addrs_in_shard(shard, 4000);
        let s = &hdr.live[shard];
        // Churn: at most 8 alive at once, 4000 different addresses.
        for (i, &a) in addrs.iter().enumerate() {
            insert_live(hdr, a, rec(8, i as u32), None).unwrap();
            if i >= 8 {
                assert!(remove_live(hdr, addrs[i - 8], None).is_some());
            }
            let used = s.len.load(Ordering::Relaxed) + s.tombstones.load(Ordering::Relaxed);
            assert!(used * 4 <= s.capacity.load(Ordering::Relaxed) * 3);
        }
        // Rehashes dropped the tombstones without doubling the table.
        assert_eq!(s.capacity.load(Ordering::Relaxed), 256);
        assert!(hdr.counters.resizes.load(Ordering::Relaxed) >= 1);
        assert_eq!(s.len.load(Ordering::Relaxed), 8);
        for &a in &addrs[4000 - 8..] {
            assert!(remove_live(hdr, a, None).is_some());
        }
        for &a in &addrs[..4000 - 8] {
            assert!(remove_live(hdr, a, None).is_none());
        }
    }

    #[test]
    fn threads_inserting_and_removing_at_once_lose_nothing() {
        for threads in [1u64, 4] {
            let hdr = region();
            let per = 3000u64;
            std::thread::scope(|sc| {
                for t in 0..threads {
                    sc.spawn(move || {
                        // Each thread its own 64 MiB block, as glibc's
                        // per-thread arenas give.
                        let base = 0x7f00_0000_0000 + (t << 26);
                        for i in 0..per {
                            insert_live(hdr, base + i * 16, rec(i, t as u32), None).unwrap();
                        }
                        for i in (0..per).step_by(2) {
                            let r = remove_live(hdr, base + i * 16, None).unwrap();
                            assert_eq!((r.size, r.stack), (i, t as u32));
                        }
                    });
                }
            });
            assert_eq!(live_len(hdr), threads * per / 2, "{threads} threads");
            for t in 0..threads {
                let base = 0x7f00_0000_0000 + (t << 26);
                for i in 0..per {
                    assert_eq!(remove_live(hdr, base + i * 16, None).is_some(), i % 2 == 1);
                }
            }
            assert_eq!(class_sum(hdr, |c| c.live_count.load(Ordering::Relaxed)), 0);
        }
    }

    #[test]
    fn threads_sharing_a_site_lose_no_count() {
        for threads in [1u64, 4] {
            let hdr = region();
            let id = crate::stacks::intern(hdr, &[0x40_1000]);
            let per = 2000u64;
            let unshared: i64 = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..threads)
                    .map(|t| {
                        sc.spawn(move || {
                            let (last, pending) = (Cell::new(0), Cell::new(0));
                            let me = Some(Caller {
                                tid: t as u32,
                                last_alloc: &last,
                                pending: &pending,
                            });
                            let base = 0x7f00_0000_0000 + (t << 26);
                            for i in 0..per {
                                let rec = Record {
                                    size: 16 + i % 3,
                                    time_ns: i,
                                    stack: id.0,
                                    tid: t as u32,
                                };
                                insert_live(hdr, base + i * 16, rec, me).unwrap();
                                // Every other block freed at once: a temporary.
                                if i % 2 == 0 {
                                    remove_live(hdr, base + i * 16, me).unwrap();
                                }
                            }
                            pending.get()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            let s = crate::stacks::site(hdr, id).expect("counters");
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let bytes_per: u64 = (0..per).map(|i| 16 + i % 3).sum();
            let live_per: u64 = (0..per).filter(|i| i % 2 == 1).map(|i| 16 + i % 3).sum();
            assert_eq!(s.sizes.iter().map(load).sum::<u64>(), threads * per);
            assert_eq!(load(&s.frees), threads * per / 2, "{threads} threads");
            assert_eq!(load(&s.temporary), threads * per / 2);
            assert_eq!(load(&s.bytes), threads * bytes_per);
            assert_eq!(load(&s.live_bytes), threads * live_per);
            assert_eq!(load(&s.peak_bytes), threads * live_per);
            assert_eq!(
                load(&hdr.counters.live_bytes) as i64 + unshared,
                (threads * live_per) as i64
            );
        }
    }

    #[test]
    fn one_threads_peak_is_exact_while_its_count_is_shared_in_steps() {
        let hdr = region();
        let (last, pending) = (Cell::new(0), Cell::new(0));
        let me = Some(Caller {
            tid: 7,
            last_alloc: &last,
            pending: &pending,
        });
        let at = |i: u64| 0x5555_0000_0000 + i * 0x1000;
        let g = &hdr.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // 100 blocks of 1000 bytes (the thread shares its count three
        // times on the way), all freed, then 50 of them again.
        for i in 0..100 {
            insert_live(hdr, at(i), rec(1000, 0), me).unwrap();
            let live = load(&g.live_bytes) as i64 + pending.get();
            assert_eq!(live, 1000 * (i as i64 + 1));
            assert!(pending.get().abs() < PENDING_LIMIT);
        }
        assert!(load(&g.live_bytes) >= 96_000, "shared in steps");
        for i in 0..100 {
            remove_live(hdr, at(i), me).unwrap();
        }
        for i in 0..50 {
            insert_live(hdr, at(i), rec(1000, 0), me).unwrap();
        }
        assert_eq!(load(&g.live_bytes) as i64 + pending.get(), 50_000);
        assert_eq!(load(&g.peak_bytes), 100_000);
        // A record put back (no caller) goes to the shared count at once.
        insert_live(hdr, at(200), rec(24, 0), None).unwrap();
        assert_eq!(load(&g.live_bytes) as i64 + pending.get(), 50_024);
    }

    #[test]
    fn unmapping_part_of_a_mapping_keeps_its_head_and_tail() {
        let hdr = region();
        assert!(insert_map(hdr, 0x10_0000, rec(0x10_0000, 1)));
        assert!(insert_map(hdr, 0x30_0000, rec(0x1000, 2)));
        assert!(remove_map_range(hdr, 0x14_0000, 0x1_0000));
        assert!(!remove_map_range(hdr, 0x40_0000, 0x1000));
        let mut kept = Vec::new();
        let table = hdr.maps.table.load(Ordering::Relaxed);
        for i in 0..hdr.maps.capacity.load(Ordering::Relaxed) {
            let e = slot(table, i);
            // SAFETY: index below capacity; no other thread uses this region.
            let (key, r) = unsafe { ((*e).addr.load(Ordering::Relaxed), read_record(e)) };
            if key != EMPTY && key != TOMBSTONE {
                kept.push((key, r.size, r.stack));
            }
        }
        kept.sort_unstable();
        assert_eq!(
            kept,
            [
                (0x10_0000, 0x4_0000, 1),
                (0x15_0000, 0xb_0000, 1),
                (0x30_0000, 0x1000, 2)
            ]
        );
    }
}
