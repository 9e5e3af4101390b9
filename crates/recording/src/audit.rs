//! Decoding the tracer's audit region from any [`Memory`]: a stopped live
//! process, a core file, or our own memory in tests.
//!
//! The region is found by its page-aligned magic ([`find_headers`]); the
//! header says where every table and stack chunk is. A shard whose sequence
//! counter is odd was being changed when the writer stopped: its table is
//! still consistent (every change is published by one store) but a count
//! may be off by one; [`Audit::busy_shards`] says how many there were, and
//! a live reader can resume the target and decode again.
//!
//! Version 2 regions also hold what the tracer counted per allocation site
//! ([`Audit::sites`]) and the process's peak of live bytes; version 1
//! regions are read as well, without them.

use std::collections::BTreeMap;
use std::mem::{size_of, MaybeUninit};
use std::sync::atomic::Ordering;

use leaktrail_format::{
    self as format, class_size, Header, Lifecycle, ShardDesc, SiteCounters, SizeClass, StackId,
    UnwindMode, EMPTY, HEADER_MAPPING_BYTES, LIVE_ENTRY_BYTES, MAGIC, OLDEST_VERSION, PAGE_SIZE,
    SITE_COUNTERS_WORDS, SITE_SIZE_BUCKETS, STACK_CHUNK_WORDS, STACK_INDEX_ENTRY_BYTES, TOMBSTONE,
};

use crate::memory::Memory;
use crate::snapshot::metadata::MAX_SPAN;
use crate::Error;

/// One live buffer (or one anonymous mapping, in [`Audit::maps`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Address.
    pub addr: u64,
    /// Requested bytes.
    pub size: u64,
    /// ns after the tracer started.
    pub time_ns: u64,
    /// Allocation stack (0: none recorded).
    pub stack: StackId,
    /// Allocating thread.
    pub tid: u32,
}

/// The counters of one size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// The class.
    pub class: SizeClass,
    /// Largest size in the class.
    pub size: u64,
    /// Live buffers (counted from the live table; when sampling, from the
    /// tracer's counters, which count every block).
    pub live_count: u64,
    /// Their bytes (from the live table).
    pub live_bytes: u64,
    /// Allocations ever made.
    pub allocs: u64,
    /// Frees ever made.
    pub frees: u64,
}

/// What the tracer counted at one allocation site (one interned stack)
/// since it started: [`format::SiteCounters`], decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// The site.
    pub stack: StackId,
    /// Allocations made there.
    pub allocs: u64,
    /// Of those, freed (or reallocated away).
    pub frees: u64,
    /// Bytes allocated there in total.
    pub bytes: u64,
    /// Temporary allocations (heaptrack's: freed by their thread with no
    /// allocation or free of that thread in between).
    pub temporary: u64,
    /// Bytes of the site's buffers alive at the snapshot.
    pub live_bytes: u64,
    /// The most the site held at once.
    pub peak_bytes: u64,
    /// When it first held that much, ns after the tracer started.
    pub peak_time_ns: u64,
    /// Allocations per size bucket ([`format::size_bucket`]).
    pub sizes: [u64; SITE_SIZE_BUCKETS],
}

impl SiteStats {
    /// Allocations not freed yet.
    pub fn live_count(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }
}

/// The process's heap peak, as the tracer counted it (version 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapPeak {
    /// The most bytes of live buffers the process ever held.
    pub bytes: u64,
    /// When, ns after the tracer started.
    pub time_ns: u64,
}

/// What the tracer could not record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditCounters {
    /// Allocations not entered.
    pub dropped_allocs: u64,
    /// Frees of unknown addresses.
    pub unknown_frees: u64,
    /// Stacks not interned.
    pub dropped_stacks: u64,
    /// Stacks cut at the depth limit.
    pub truncated_stacks: u64,
    /// Bytes the region occupies.
    pub region_bytes: u64,
    /// Live-table resizes.
    pub resizes: u64,
    /// Mappings not entered.
    pub dropped_maps: u64,
    /// Stacks not captured: too little stack left to unwind safely.
    pub shallow_stacks: u64,
}

/// A decoded audit region.
#[derive(Clone, Debug)]
pub struct Audit {
    /// Where the header is.
    pub header_addr: u64,
    /// Writer's pid.
    pub pid: u32,
    /// Tracer state.
    pub state: String,
    /// Unwind mode.
    pub unwind: String,
    /// Depth limit.
    pub max_depth: u32,
    /// Mean bytes between sampled blocks (`run --sample`); 0 for a full
    /// audit. When sampling, [`Audit::live`] holds the sampled blocks only:
    /// weigh each by [`Audit::weight`] for estimates of the whole heap.
    pub sample_rate: u64,
    /// The thread that was handing over at exit, if one was (0: none).
    pub exit_tid: u32,
    /// The program's allocator, as the tracer found it
    /// ([`format::Allocator::Unknown`] from an older tracer).
    pub allocator: format::Allocator,
    /// The tracer was loaded into the running process (`leaktrail
    /// attach`): blocks from before it are not in `live`.
    pub attached: bool,
    /// What of the program's allocations bypassed the tracer
    /// ([`format::BYPASS_MALLOC`], [`format::BYPASS_OPERATORS`] bits; 0 from
    /// an older tracer): see [`Audit::bypass_note`].
    pub bypassed: u8,
    /// When the tracer started (ns since the epoch).
    pub start_realtime_ns: u64,
    /// Drop counters.
    pub counters: AuditCounters,
    /// Per-class counters, one per class.
    pub classes: Vec<ClassStats>,
    /// Live buffers, by address.
    pub live: Vec<Block>,
    /// Anonymous mappings the program made, by address.
    pub maps: Vec<Block>,
    /// Every stack a live buffer, a mapping or a site refers to:
    /// innermost first, frame words (a return address and the tracer's
    /// note: `leaktrail_format::frame_address`, `frame_note`).
    pub stacks: BTreeMap<StackId, Vec<u64>>,
    /// What the tracer counted per allocation site, by stack id; `None`
    /// for a region that does not count them (version 1, or blocks from
    /// glibc's heap).
    pub sites: Option<Vec<SiteStats>>,
    /// The process's heap peak (`None` where `sites` is).
    pub peak: Option<HeapPeak>,
    /// Shards caught mid-update.
    pub busy_shards: u32,
    /// Live entries and site records the decoder skipped as corrupt (a
    /// block past the address space, a site record that does not fit its
    /// chunk): the program can scribble on the region, and what is left
    /// is still read.
    pub corrupt: u64,
    /// The address ranges the region occupies.
    pub ranges: Vec<(u64, u64)>,
}

impl Audit {
    /// Live bytes in total (of the recorded blocks: when sampling, see
    /// [`Audit::estimate`]).
    pub fn live_bytes(&self) -> u64 {
        self.live.iter().map(|b| b.size).sum()
    }

    /// What the tracer could not see, in one sentence, when the program's
    /// own definitions of the allocation functions came before ours in the
    /// loader's search order ([`Audit::bypassed`]); `None` when every call
    /// reached the tracer.
    pub fn bypass_note(&self) -> Option<&'static str> {
        let malloc = self.bypassed & format::BYPASS_MALLOC != 0;
        let operators = self.bypassed & format::BYPASS_OPERATORS != 0;
        match (malloc, operators) {
            (true, _) => Some(
                "the program's executable defines malloc itself (an allocator linked into it): \
                 every allocation went to it without passing through the tracer, so no block of \
                 the program is in the audit and none can be reported lost",
            ),
            (false, true) => Some(
                "the program's executable defines C++'s operator new and delete itself \
                 (mimalloc-new-delete.h, or an allocator's operators linked in): blocks from new \
                 went to them without passing through the tracer and are not in the audit; \
                 malloc's blocks are",
            ),
            (false, false) => None,
        }
    }

    /// Whether the live table holds a sample of the blocks, not all.
    pub fn sampled(&self) -> bool {
        self.sample_rate != 0
    }

    /// How many blocks a recorded block of `size` bytes stands for: 1 in a
    /// full audit; when sampling at rate R, `1 / (1 - exp(-size / R))`, the
    /// inverse of its chance to be sampled, which makes every sum of
    /// weights (and of weighted sizes) an unbiased estimate of the sum
    /// over all blocks.
    pub fn weight(&self, size: u64) -> f64 {
        weight(size, self.sample_rate)
    }

    /// Estimated (blocks, bytes) of `blocks`, weighted as [`Audit::weight`]
    /// says, rounded.
    pub fn estimate<'a>(&self, blocks: impl IntoIterator<Item = &'a Block>) -> (u64, u64) {
        let (n, bytes) = blocks.into_iter().fold((0.0, 0.0), |(n, bytes), b| {
            let w = self.weight(b.size);
            (n + w, bytes + w * b.size as f64)
        });
        (n.round() as u64, bytes.round() as u64)
    }

    /// The live buffer containing `addr`, if any.
    pub fn block_containing(&self, addr: u64) -> Option<&Block> {
        let i = self.live.partition_point(|b| b.addr <= addr);
        let b = self.live.get(i.checked_sub(1)?)?;
        (addr < b.addr + b.size.max(1)).then_some(b)
    }

    /// The frames of `stack` (empty for 0 or unknown ids).
    pub fn frames(&self, stack: StackId) -> &[u64] {
        self.stacks.get(&stack).map_or(&[], |v| v.as_slice())
    }
}

/// How many blocks one sampled block of `size` bytes stands for at `rate`
/// (see [`Audit::weight`]); 1 when `rate` is 0 (a full audit).
pub fn weight(size: u64, rate: u64) -> f64 {
    format::sample_weight(size, rate)
}

/// Page-aligned addresses in `mem` that start with the region's magic.
pub fn find_headers(mem: &(impl Memory + ?Sized)) -> Vec<u64> {
    let mut found = Vec::new();
    for (start, end) in mem.ranges() {
        if start % PAGE_SIZE != 0 || end - start < HEADER_MAPPING_BYTES {
            continue;
        }
        let mut magic = [0u8; 8];
        if mem.read(start, &mut magic).is_ok() && magic == MAGIC {
            found.push(start);
        }
    }
    found
}

/// Finds and decodes the region; `Ok(None)` if `mem` holds none. With
/// several (a forked child's copy can sit beside its own), the one whose
/// pid matches `pid` wins, else the first.
pub fn find(mem: &(impl Memory + ?Sized), pid: Option<u32>) -> Result<Option<Audit>, Error> {
    let mut best = None;
    for addr in find_headers(mem) {
        let audit = decode(mem, addr)?;
        if pid.is_some_and(|p| p == audit.pid) {
            return Ok(Some(audit));
        }
        best.get_or_insert(audit);
    }
    Ok(best)
}

fn read_header(mem: &(impl Memory + ?Sized), addr: u64) -> Result<Box<Header>, Error> {
    let mut raw = vec![0u8; size_of::<Header>()];
    mem.read(addr, &mut raw)?;
    if raw[..8] != MAGIC {
        return Err(malformed(addr, "no LEAKTRL1 magic"));
    }
    let version = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
    let header_size = u32::from_le_bytes(raw[12..16].try_into().unwrap_or_default());
    // Version 2 changed the stack records, not the header.
    if !(OLDEST_VERSION..=format::VERSION).contains(&version)
        || header_size as usize != size_of::<Header>()
    {
        return Err(malformed(
            addr,
            &format!(
                "audit region version {version} (header {header_size} bytes); this leaktrail reads versions {OLDEST_VERSION} to {} ({} bytes)",
                format::VERSION,
                size_of::<Header>()
            ),
        ));
    }
    let mut header = Box::new(MaybeUninit::<Header>::uninit());
    // SAFETY: `raw` holds exactly size_of::<Header>() bytes and every field
    // of Header (integers, atomics of integers, byte arrays) is valid for
    // any bit pattern.
    let header = unsafe {
        std::ptr::copy_nonoverlapping(raw.as_ptr(), header.as_mut_ptr().cast::<u8>(), raw.len());
        Box::from_raw(Box::into_raw(header).cast::<Header>())
    };
    Ok(header)
}

fn malformed(addr: u64, why: &str) -> Error {
    Error::Malformed {
        what: format!("audit region at {addr:#x}"),
        why: why.to_string(),
    }
}

/// Whether `bytes` (a mapping's first bytes) start an audit header.
pub fn is_header(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] == MAGIC
}

/// The address ranges `[start, end)` of the region whose header is at
/// `header`, header included, without decoding the tables: what a snapshot
/// must capture for `--memory tables`. A header of another version (or an
/// unreadable one) yields the header mapping alone.
pub fn locate(mem: &(impl Memory + ?Sized), header: u64) -> Vec<(u64, u64)> {
    match read_header(mem, header) {
        Ok(h) if h.self_addr == header => region_ranges(&h, header),
        _ => vec![(header, header + HEADER_MAPPING_BYTES)],
    }
}

/// Every range the region occupies, from its header's descriptors: the
/// header mapping, the live and mapped-memory tables, the stack index tables
/// (each with the capacity word before it) and the stack chunks.
fn region_ranges(h: &Header, addr: u64) -> Vec<(u64, u64)> {
    // A table bigger than this is a corrupt descriptor, not a table.
    const MAX_TABLE: u64 = 1 << 40;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = vec![(addr, addr + HEADER_MAPPING_BYTES)];
    let mut table = |shard: &ShardDesc, entry: u64, before: u64| {
        let (t, cap) = (load(&shard.table), load(&shard.capacity));
        if t != 0 && cap != 0 && cap.saturating_mul(entry) <= MAX_TABLE {
            out.push((t - before, t + cap * entry));
        }
    };
    for shard in &h.live {
        table(shard, LIVE_ENTRY_BYTES, 0);
    }
    table(&h.maps, LIVE_ENTRY_BYTES, 0);
    for shard in &h.stack_index {
        table(shard, STACK_INDEX_ENTRY_BYTES, STACK_INDEX_ENTRY_BYTES);
    }
    for chunk in &h.chunks {
        let a = load(&chunk.addr);
        if a != 0 {
            out.push((a, a + STACK_CHUNK_WORDS * 8));
        }
    }
    let threads = load(&h.counters.thread_classes);
    if threads != 0 {
        out.push((
            threads,
            threads + format::THREAD_CLASS_SLOTS * format::THREAD_CLASS_BYTES,
        ));
    }
    out
}

/// The per-thread class counters of a sampling region, as (live_count,
/// live_bytes, allocs, frees) per class, summed over the threads' slots.
fn thread_classes(mem: &(impl Memory + ?Sized), h: &Header) -> Result<Vec<[u64; 4]>, Error> {
    let mut sums = vec![[0u64; 4]; format::NUM_CLASSES];
    let table = h.counters.thread_classes.load(Ordering::Relaxed);
    if table == 0 {
        return Ok(sums);
    }
    let slots = h
        .counters
        .thread_slots
        .load(Ordering::Relaxed)
        .min(format::THREAD_CLASS_SLOTS);
    let mut raw = vec![0u8; format::THREAD_CLASS_BYTES as usize];
    for i in 0..slots {
        mem.read(table + i * format::THREAD_CLASS_BYTES, &mut raw)?;
        for (class, counters) in raw.chunks_exact(32).enumerate() {
            for (k, word) in counters.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(word.try_into().unwrap_or_default());
                sums[class][k] = sums[class][k].wrapping_add(v);
            }
        }
    }
    Ok(sums)
}

/// `CLOCK_MONOTONIC` when the tracer of the audit at `addr` started, ns:
/// its blocks' times are relative to it, and V8's jitdump stamps code with
/// the same clock.
pub fn start_monotonic_ns(mem: &(impl Memory + ?Sized), addr: u64) -> Result<u64, Error> {
    let h = read_header(mem, addr)?;
    Ok(h.start_monotonic_ns.load(Ordering::Relaxed))
}

/// Decodes the region whose header is at `addr`.
pub fn decode(mem: &(impl Memory + ?Sized), addr: u64) -> Result<Audit, Error> {
    let h = read_header(mem, addr)?;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let ranges = region_ranges(&h, addr);
    let mut busy_shards = 0;
    let mut corrupt = 0u64;
    let mut live = Vec::new();
    for shard in &h.live {
        busy_shards += (load(&shard.seq) & 1) as u32;
        read_entries(mem, shard, &mut live, &mut corrupt)?;
    }
    let mut maps = Vec::new();
    busy_shards += (load(&h.maps.seq) & 1) as u32;
    read_entries(mem, &h.maps, &mut maps, &mut corrupt)?;
    live.sort_unstable_by_key(|b| b.addr);
    maps.sort_unstable_by_key(|b| b.addr);

    let counted = h.version >= 2;
    let mut stacks = BTreeMap::new();
    let mut sites = counted.then(Vec::new);
    if let Some(sites) = &mut sites {
        // Best effort: a corrupt index slot or record loses that site's
        // counts, not the snapshot's blocks.
        for shard in &h.stack_index {
            for id in index_ids(mem, shard).unwrap_or_default() {
                match read_site(mem, &h, id) {
                    Ok((frames, site)) => {
                        stacks.insert(id, frames);
                        sites.push(site);
                    }
                    Err(_) => corrupt += 1,
                }
            }
        }
        sites.sort_unstable_by_key(|s| s.stack);
    }
    for b in live.iter().chain(maps.iter()) {
        if !b.stack.is_none() && !stacks.contains_key(&b.stack) {
            stacks.insert(b.stack, read_stack(mem, &h, b.stack)?);
        }
    }

    // Per-thread counters of unsampled blocks (a sampling region's only).
    let threads = thread_classes(mem, &h)?;
    let total =
        |c: SizeClass, k: usize, f: fn(&format::ClassCounters) -> &std::sync::atomic::AtomicU64| {
            h.classes.iter().fold(threads[c.index()][k], |acc, s| {
                acc.wrapping_add(load(f(&s[c.index()])))
            })
        };
    let mut classes: Vec<ClassStats> = SizeClass::all()
        .map(|c| ClassStats {
            class: c,
            size: class_size(c),
            live_count: 0,
            live_bytes: 0,
            allocs: total(c, 2, |s| &s.allocs),
            frees: total(c, 3, |s| &s.frees),
        })
        .collect();
    let c = &h.counters;
    let sample_rate = load(&c.sample_rate);
    if sample_rate == 0 {
        for b in &live {
            let c = &mut classes[format::class_of(b.size).index()];
            c.live_count += 1;
            c.live_bytes = c.live_bytes.saturating_add(b.size);
        }
    } else {
        // The table holds a sample; the counters count every block (the
        // unsampled ones by their usable size).
        for class in &mut classes {
            // A block allocated before the tracer counted anything and
            // freed after can take a class below zero: read that as empty.
            let positive = |v: u64| if v > i64::MAX as u64 { 0 } else { v };
            class.live_count = positive(total(class.class, 0, |c| &c.live_count));
            class.live_bytes = positive(total(class.class, 1, |c| &c.live_bytes));
        }
    }
    Ok(Audit {
        header_addr: addr,
        pid: h.pid.load(Ordering::Relaxed),
        state: match Lifecycle::from_u32(h.state.load(Ordering::Relaxed)) {
            Some(Lifecycle::Uninitialised) => "uninitialised",
            Some(Lifecycle::Running) => "running",
            Some(Lifecycle::Full) => "full",
            Some(Lifecycle::Disabled) => "disabled",
            None => "unknown",
        }
        .to_string(),
        unwind: UnwindMode::from_u32(h.unwind_mode)
            .map_or("unknown", UnwindMode::name)
            .to_string(),
        max_depth: h.max_depth,
        sample_rate,
        exit_tid: h.exit_tid.load(Ordering::Relaxed),
        allocator: format::Allocator::from_u32(h.allocator.load(Ordering::Relaxed)),
        attached: h.attached.load(Ordering::Relaxed) == 1,
        bypassed: h.bypassed.load(Ordering::Relaxed)
            & (format::BYPASS_MALLOC | format::BYPASS_OPERATORS),
        start_realtime_ns: h.start_realtime_ns,
        counters: AuditCounters {
            dropped_allocs: load(&c.dropped_allocs),
            unknown_frees: load(&c.unknown_frees),
            dropped_stacks: load(&c.dropped_stacks),
            truncated_stacks: load(&c.truncated_stacks),
            region_bytes: load(&c.region_bytes),
            resizes: load(&c.resizes),
            dropped_maps: load(&c.dropped_maps),
            shallow_stacks: load(&c.shallow_stacks),
        },
        classes,
        live,
        maps,
        stacks,
        sites,
        peak: counted.then(|| HeapPeak {
            bytes: load(&c.peak_bytes),
            time_ns: load(&c.peak_time_ns),
        }),
        busy_shards,
        corrupt,
        ranges,
    })
}

/// The stack ids of one stack-index table (its used slots).
fn index_ids(mem: &(impl Memory + ?Sized), shard: &ShardDesc) -> Result<Vec<StackId>, Error> {
    let mut ids = Vec::new();
    read_table(mem, shard, STACK_INDEX_ENTRY_BYTES, |raw| {
        for e in raw.chunks_exact(STACK_INDEX_ENTRY_BYTES as usize) {
            let word = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap_or_default());
            if word(0) != 0 {
                ids.push(StackId(word(8) as u32));
            }
        }
    })?;
    Ok(ids)
}

/// The frames and the counters of the site `id` (a version 2 record, or
/// later). A sampled region's counts (version 3 on) are estimates in units
/// of [`format::SAMPLED_COUNT_UNIT`]: read back as whole allocations.
fn read_site(
    mem: &(impl Memory + ?Sized),
    h: &Header,
    id: StackId,
) -> Result<(Vec<u64>, SiteStats), Error> {
    let (at, len) = stack_record(mem, h, id, SITE_COUNTERS_WORDS)?;
    let mut raw = vec![0u8; (len + SITE_COUNTERS_WORDS) as usize * 8];
    mem.read(at + 8, &mut raw)?;
    let words: Vec<u64> = raw
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .collect();
    let (frames, c) = words.split_at(len as usize);
    macro_rules! field {
        ($f:ident) => {
            c[std::mem::offset_of!(SiteCounters, $f) / 8]
        };
    }
    let weighted = h.version >= 3 && h.counters.sample_rate.load(Ordering::Relaxed) != 0;
    let unit = if weighted {
        format::SAMPLED_COUNT_UNIT
    } else {
        1
    };
    let count = |n: u64| (n + unit / 2) / unit;
    let first = std::mem::offset_of!(SiteCounters, sizes) / 8;
    let raw_sizes = &c[first..first + SITE_SIZE_BUCKETS];
    let mut sizes = [0u64; SITE_SIZE_BUCKETS];
    for (out, &n) in sizes.iter_mut().zip(raw_sizes) {
        *out = count(n);
    }
    let site = SiteStats {
        stack: id,
        allocs: count(raw_sizes.iter().fold(0u64, |a, &n| a.saturating_add(n))),
        frees: count(field!(frees)),
        bytes: field!(bytes),
        temporary: count(field!(temporary)),
        live_bytes: field!(live_bytes),
        peak_bytes: field!(peak_bytes),
        peak_time_ns: field!(peak_time_ns),
        sizes,
    };
    Ok((frames.to_vec(), site))
}

fn read_entries(
    mem: &(impl Memory + ?Sized),
    shard: &ShardDesc,
    out: &mut Vec<Block>,
    corrupt: &mut u64,
) -> Result<(), Error> {
    read_table(mem, shard, LIVE_ENTRY_BYTES, |raw| {
        *corrupt += push_entries(raw, out)
    })
}

/// Hands `each` the bytes of `shard`'s table, `entry`-byte records, in
/// pieces of whole records.
fn read_table(
    mem: &(impl Memory + ?Sized),
    shard: &ShardDesc,
    entry: u64,
    mut each: impl FnMut(&[u8]),
) -> Result<(), Error> {
    let table = shard.table.load(Ordering::Relaxed);
    let cap = shard.capacity.load(Ordering::Relaxed);
    if table == 0 || cap == 0 {
        return Ok(());
    }
    let bytes = cap
        .checked_mul(entry)
        .ok_or_else(|| malformed(table, "table capacity overflows"))?;
    if let Some(raw) = mem.borrow(table, bytes) {
        each(raw);
        return Ok(());
    }
    // Copied a slice at a time: the capacity is the target's word (or a
    // corrupt file's), so what we allocate must not follow it. A table
    // that is not all there fails at its first missing slice.
    let slice = entry * 32 * 1024;
    let mut buf = vec![0u8; bytes.min(slice) as usize];
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(slice) as usize;
        let addr = table
            .checked_add(at)
            .ok_or_else(|| malformed(table, "table runs past the end of the address space"))?;
        mem.read(addr, &mut buf[..n])?;
        each(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

/// Appends the used entries of a piece of a live table. An entry whose
/// block does not fit in the (57-bit) address space is a corrupt word, not
/// a block: every analysis computes `addr + size`. Returns how many such
/// entries it skipped.
fn push_entries(raw: &[u8], out: &mut Vec<Block>) -> u64 {
    let mut corrupt = 0;
    for rec in raw.chunks_exact(LIVE_ENTRY_BYTES as usize) {
        let word = |i: usize| u64::from_le_bytes(rec[i..i + 8].try_into().unwrap_or_default());
        let (addr, size) = (word(0), word(8));
        if addr == EMPTY || addr == TOMBSTONE {
            continue;
        }
        if addr.checked_add(size).is_none_or(|end| end > MAX_SPAN) {
            corrupt += 1;
            continue;
        }
        let tail = word(24);
        out.push(Block {
            addr,
            size,
            time_ns: word(16),
            stack: StackId(tail as u32),
            tid: (tail >> 32) as u32,
        });
    }
    corrupt
}

fn read_stack(mem: &(impl Memory + ?Sized), h: &Header, id: StackId) -> Result<Vec<u64>, Error> {
    let (at, len) = stack_record(mem, h, id, 0)?;
    let mut raw = vec![0u8; len as usize * 8];
    mem.read(at + 8, &mut raw)?;
    Ok(raw
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .collect())
}

/// Where the record of stack `id` is and how many frames it has, checked
/// to fit in its chunk with `after` more words.
fn stack_record(
    mem: &(impl Memory + ?Sized),
    h: &Header,
    id: StackId,
    after: u64,
) -> Result<(u64, u64), Error> {
    let (chunk, off) = format::stack_location(id);
    let base = h
        .chunks
        .get(chunk)
        .map(|c| c.addr.load(Ordering::Relaxed))
        .unwrap_or(0);
    if base == 0 {
        return Err(malformed(
            h.self_addr,
            &format!("stack {id} lies in an unmapped chunk"),
        ));
    }
    let at = base + off * 8;
    let len = mem.read_u64(at)? & 0xffff;
    if off + 1 + len + after > STACK_CHUNK_WORDS || len as usize > format::MAX_DEPTH {
        return Err(malformed(
            h.self_addr,
            &format!("stack {id} claims {len} frames"),
        ));
    }
    Ok((at, len))
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use super::*;
    use leaktrail_format::VERSION;

    /// One readable range at a made-up address.
    struct Bytes {
        at: u64,
        bytes: Vec<u8>,
    }

    impl Memory for Bytes {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
            let off = addr.checked_sub(self.at).ok_or(Error::Unmapped { addr })? as usize;
            let src = self
                .bytes
                .get(off..off + buf.len())
                .ok_or(Error::Unmapped { addr })?;
            buf.copy_from_slice(src);
            Ok(())
        }

        fn ranges(&self) -> Vec<(u64, u64)> {
            vec![(self.at, self.at + self.bytes.len() as u64)]
        }
    }

    fn header_at(at: u64) -> Vec<u8> {
        let mut h = vec![0u8; size_of::<Header>()];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(size_of::<Header>() as u32).to_le_bytes());
        h[offset_of!(Header, self_addr)..][..8].copy_from_slice(&at.to_le_bytes());
        h
    }

    #[test]
    fn locate_follows_descriptors_of_a_current_header() {
        let at = 0x7000_0000_0000u64;
        let mut h = header_at(at);
        let put =
            |h: &mut Vec<u8>, off: usize, v: u64| h[off..][..8].copy_from_slice(&v.to_le_bytes());
        let live3 = offset_of!(Header, live) + 3 * size_of::<ShardDesc>();
        put(&mut h, live3 + offset_of!(ShardDesc, table), 0x5000);
        put(&mut h, live3 + offset_of!(ShardDesc, capacity), 16);
        put(&mut h, offset_of!(Header, chunks), 0x9000);
        let r = locate(&Bytes { at, bytes: h }, at);
        assert_eq!(r[0], (at, at + HEADER_MAPPING_BYTES));
        assert!(r.contains(&(0x5000, 0x5000 + 16 * LIVE_ENTRY_BYTES)));
        assert!(r.contains(&(0x9000, 0x9000 + STACK_CHUNK_WORDS * 8)));
        assert_eq!(r.len(), 3);
    }

    /// A region at `at` with one interned stack (id 1, frames 0x401000
    /// and 0x402000) whose site counted 5 allocations of 100 bytes
    /// (3 freed, 1 temporary, peak 400 bytes at t=7), written as `version`.
    fn region_with_one_site(at: u64, version: u32) -> Bytes {
        let put =
            |b: &mut Vec<u8>, off: usize, v: u64| b[off..][..8].copy_from_slice(&v.to_le_bytes());
        let mut b = header_at(at);
        b[8..12].copy_from_slice(&version.to_le_bytes());
        b.resize(HEADER_MAPPING_BYTES as usize + 4096, 0);
        let index = HEADER_MAPPING_BYTES as usize;
        let chunk = index + 1024;
        let shard = offset_of!(Header, stack_index) + 3 * size_of::<ShardDesc>();
        put(
            &mut b,
            shard + offset_of!(ShardDesc, table),
            at + index as u64,
        );
        put(&mut b, shard + offset_of!(ShardDesc, capacity), 4);
        put(&mut b, index + 2 * 16, 0x1234); // slot 2: hash, then id
        put(&mut b, index + 2 * 16 + 8, 1);
        put(&mut b, offset_of!(Header, chunks), at + chunk as u64);
        let counters = offset_of!(Header, counters);
        put(
            &mut b,
            counters + offset_of!(format::Counters, peak_bytes),
            900,
        );
        put(
            &mut b,
            counters + offset_of!(format::Counters, peak_time_ns),
            8,
        );
        let rec = chunk + 8; // word 1 of the arena
        put(&mut b, rec, 2);
        put(&mut b, rec + 8, 0x40_1000);
        put(&mut b, rec + 16, 0x40_2000);
        let site = rec + 24;
        let field = |f: usize| site + f;
        put(&mut b, field(offset_of!(SiteCounters, live_bytes)), 200);
        put(&mut b, field(offset_of!(SiteCounters, peak_bytes)), 400);
        put(&mut b, field(offset_of!(SiteCounters, peak_time_ns)), 7);
        put(&mut b, field(offset_of!(SiteCounters, bytes)), 500);
        put(&mut b, field(offset_of!(SiteCounters, frees)), 3);
        put(&mut b, field(offset_of!(SiteCounters, temporary)), 1);
        let bucket = offset_of!(SiteCounters, sizes) + 8 * format::size_bucket(100);
        put(&mut b, field(bucket), 5);
        Bytes { at, bytes: b }
    }

    #[test]
    fn entries_past_the_address_space_are_skipped_and_counted() {
        let entry = |addr: u64, size: u64| {
            let mut e = [0u8; LIVE_ENTRY_BYTES as usize];
            e[0..8].copy_from_slice(&addr.to_le_bytes());
            e[8..16].copy_from_slice(&size.to_le_bytes());
            e
        };
        let mut raw = Vec::new();
        raw.extend_from_slice(&entry(0x5000, 64));
        raw.extend_from_slice(&entry(0x6000, 1 << 62));
        raw.extend_from_slice(&entry(EMPTY, 0));
        raw.extend_from_slice(&entry(u64::MAX - 8, 16));
        let mut out = Vec::new();
        assert_eq!(push_entries(&raw, &mut out), 2);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].addr, out[0].size), (0x5000, 64));
    }

    #[test]
    fn a_version_2_region_has_its_sites_and_peak() {
        let at = 0x7000_0000_0000u64;
        let audit = decode(&region_with_one_site(at, 2), at).unwrap();
        let sites = audit.sites.clone().expect("version 2 counts sites");
        assert_eq!(sites.len(), 1);
        let s = sites[0];
        assert_eq!(s.stack, StackId(1));
        assert_eq!(
            (s.allocs, s.frees, s.live_count(), s.temporary),
            (5, 3, 2, 1)
        );
        assert_eq!(
            (s.bytes, s.live_bytes, s.peak_bytes, s.peak_time_ns),
            (500, 200, 400, 7)
        );
        assert_eq!(s.sizes[format::size_bucket(100)], 5);
        assert_eq!(audit.frames(StackId(1)), [0x40_1000, 0x40_2000]);
        assert_eq!(
            audit.peak,
            Some(HeapPeak {
                bytes: 900,
                time_ns: 8
            })
        );
    }

    #[test]
    fn a_version_1_region_is_read_without_sites() {
        let at = 0x7000_0000_0000u64;
        let audit = decode(&region_with_one_site(at, 1), at).unwrap();
        assert_eq!((audit.sites, audit.peak), (None, None));
        assert!(audit.stacks.is_empty(), "no live block refers to a stack");
        let mut newer = region_with_one_site(at, VERSION + 1);
        assert!(decode(&newer, at).is_err());
        newer.bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode(&newer, at).is_err());
    }

    #[test]
    fn locate_of_a_foreign_or_moved_header_yields_only_itself() {
        let mut old = header_at(0x1000);
        old[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        assert_eq!(
            locate(
                &Bytes {
                    at: 0x1000,
                    bytes: old
                },
                0x1000
            )
            .len(),
            1
        );
        // A copy of a header (a forked child's) whose self address is elsewhere.
        let copy = header_at(0x8000);
        assert_eq!(
            locate(
                &Bytes {
                    at: 0x1000,
                    bytes: copy
                },
                0x1000
            )
            .len(),
            1
        );
        assert!(is_header(&header_at(0)) && !is_header(b"LEAKTRL"));
    }
}
