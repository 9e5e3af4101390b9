//! Live memory of one snapshot by allocation site: buffers and bytes per
//! symbolized stack and size class, the shape flame graphs, pprof and
//! growth ranking all start from.
//!
//! A [`Profile`] is built once per snapshot ([`Profile::open`] or, with the
//! buffers already chosen, [`Profile::from_blocks`]) and is small: one
//! [`Entry`] per (site, class) rather than one per buffer, so comparing many
//! snapshots costs memory in proportion to the number of allocation sites,
//! not buffers.
//!
//! Sites are keyed by [`SiteKey`], the stack as (module, file offset) pairs
//! rather than stack ids or runtime addresses: ids are private to one
//! process's stack table and addresses move with ASLR, but file offsets
//! are the same in every run of the same binaries, so snapshots of
//! different processes of one program still line up.
//!
//! ```no_run
//! use leaktrail_analysis::profile::Profile;
//! let p = Profile::open("rec/snapshots/0001.core".as_ref())?;
//! for e in p.by_site().iter().take(3) {
//!     println!("{} bytes in {} buffers from {:?}", e.bytes, e.count, e.frames.first());
//! }
//! # Ok::<(), leaktrail_analysis::Error>(())
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use leaktrail_format::{class_of, class_size, SizeClass, StackId};
use leaktrail_recording::snapshot::metadata::Module;

use crate::heap::leaks::Tally;
use crate::heap::model::Heap;
use crate::heap::types::Label;
use crate::symbolize::{Frame, Symbolizer};
use crate::Error;
use leaktrail_recording::audit::{self, Audit, Block, HeapPeak, SiteStats};
use leaktrail_recording::Snapshot;

/// What every view of walked blocks says about them, once.
pub const STACKLESS: &str = "no stacks: the process was not traced, so its blocks come from a \
walk of glibc's heap, grouped by type ([type] CLASS) and size class ([size N])";

/// What every view of an attached process's snapshot says, once, about
/// the blocks from before the attach ([`Profile::before_attach`]).
pub fn before_attach_note(t: Tally) -> String {
    format!(
        "{} blocks ({} bytes) from before leaktrail attach have no stacks: they predate it, so \
         they come from a walk of glibc's heap, grouped by type ([type] CLASS) and size class ([size N])",
        t.blocks, t.bytes
    )
}

/// One frame of a site's identity: the module's path and the offset in its
/// file, or (no module) an empty path and the runtime address, or a type
/// frame's name and 0 ([`Frame::site_frame`]).
pub type SiteFrame = (String, u64);

/// The identity of an allocation site across snapshots and processes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteKey(pub Vec<SiteFrame>);

impl SiteKey {
    /// The key of a symbolized stack.
    pub fn of(frames: &[Frame]) -> SiteKey {
        SiteKey(frames.iter().map(Frame::site_frame).collect())
    }

    /// The key of a stack without its inlined-call frames: the same for a
    /// stack symbolized one frame per address and one with inlined calls
    /// expanded.
    pub fn physical(frames: &[Frame]) -> SiteKey {
        let outer: Vec<Frame> = frames.iter().filter(|f| !f.inlined).cloned().collect();
        SiteKey::of(&outer)
    }
}

/// Live buffers of one site in one size class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The site's identity.
    pub key: SiteKey,
    /// The stack, innermost first, inlined calls expanded into frames of
    /// their own (empty when none was recorded).
    pub frames: Vec<Frame>,
    /// The size class, by its largest size (0 when entries of several
    /// classes were merged by [`Profile::by_site`]).
    pub class: u64,
    /// Live buffers (estimated when the profile is sampled).
    pub count: u64,
    /// Their requested bytes (estimated when the profile is sampled).
    pub bytes: u64,
}

/// What the tracer counted at one site since it started, up to the
/// snapshot: heaptrack's numbers per allocation site, read through
/// [`SiteStats`]' fields (`allocs`, `temporary`, `peak_bytes`, ...).
/// Stack ids that symbolize to one site are merged (their peaks summed: an
/// upper bound of the site's peak, as their peaks may have been at
/// different times; `stats.stack` is the first id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteCounts {
    /// The site's identity.
    pub key: SiteKey,
    /// The stack, innermost first, inlined calls expanded.
    pub frames: Vec<Frame>,
    /// The counts.
    pub stats: SiteStats,
}

impl std::ops::Deref for SiteCounts {
    type Target = SiteStats;
    fn deref(&self) -> &SiteStats {
        &self.stats
    }
}

impl SiteCounts {
    fn add(&mut self, s: &SiteStats) {
        let t = &mut self.stats;
        t.allocs += s.allocs;
        t.frees += s.frees;
        t.bytes = t.bytes.saturating_add(s.bytes);
        t.temporary += s.temporary;
        t.live_bytes = t.live_bytes.saturating_add(s.live_bytes);
        if s.peak_bytes > 0 && (t.peak_bytes == 0 || s.peak_time_ns > t.peak_time_ns) {
            t.peak_time_ns = s.peak_time_ns;
        }
        t.peak_bytes = t.peak_bytes.saturating_add(s.peak_bytes);
        for (a, b) in t.sizes.iter_mut().zip(s.sizes) {
            *a += b;
        }
    }
}

/// What the tracer counted as it ran (audit format 2 and later): per
/// site, and the process's heap peak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    /// One entry per site, by allocations, most first.
    pub sites: Vec<SiteCounts>,
    /// The process's heap peak.
    pub peak: HeapPeak,
    /// When the tracer started, ns since the epoch (site and peak times
    /// count from it).
    pub start_unix_ns: u64,
}

impl Counted {
    /// The site with key `key`.
    pub fn site(&self, key: &SiteKey) -> Option<&SiteCounts> {
        self.sites.iter().find(|s| &s.key == key)
    }
}

/// What one snapshot holds, by site.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The snapshot file.
    pub path: PathBuf,
    /// When it was taken, ns since the epoch (see [`capture_time`]).
    pub time_unix_ns: u64,
    /// The process.
    pub pid: Option<i32>,
    /// One entry per (site, class), by bytes, largest first.
    pub entries: Vec<Entry>,
    /// Per size class (by its largest size): allocations and frees ever
    /// made, from the tracer's counters. Classes with neither are left out.
    pub class_totals: BTreeMap<u64, (u64, u64)>,
    /// Modules loaded, with build ids when leaktrail wrote the snapshot.
    pub modules: Vec<Module>,
    /// Buffers the tracer could not enter (they are in no entry).
    pub dropped_allocs: u64,
    /// The blocks come from a walk of glibc's heap (the process was not
    /// traced): no stacks, each entry's one frame names its type or size
    /// class ([`FrameKind::Type`](crate::FrameKind::Type)).
    pub stackless: bool,
    /// With a tracer `leaktrail attach` loaded late: the blocks from before
    /// the attach among the entries (from a walk of glibc's heap, each
    /// entry's one frame its type or size class, as for `stackless`).
    pub before_attach: Option<Tally>,
    /// What the tracer counted per site; `None` for a tracer that did not
    /// count (audit format 1) or blocks walked from glibc's heap.
    pub counted: Option<Counted>,
    /// Mean bytes between sampled blocks, 0 for a full audit: when not 0,
    /// every count and byte total of the entries is an estimate, each
    /// sampled block weighted by the inverse of its chance to be sampled
    /// ([`Audit::weight`]).
    pub sample_rate: u64,
}

/// The snapshot's capture time: our note's, else the tracer's start plus
/// its newest buffer's age, else the file's modification time.
pub fn capture_time(snap: &Snapshot, audit: Option<&Audit>) -> u64 {
    if let Some(m) = snap.metadata() {
        return m.time_unix_ns;
    }
    if let Some(a) = audit {
        if let Some(newest) = a.live.iter().map(|b| b.time_ns).max() {
            return a.start_realtime_ns + newest;
        }
    }
    std::fs::metadata(snap.path())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Decodes the audit of `snap` (the error names the file when it has none).
pub fn audit_of(snap: &Snapshot) -> Result<Audit, Error> {
    let pid = snap.pid().map(|p| p as u32);
    audit::find(snap, pid)?.ok_or_else(|| {
        Error::Insufficient(format!(
            "{} holds no leaktrail audit: the process was not started with `leaktrail run`",
            snap.path().display()
        ))
    })
}

impl Profile {
    /// Opens a snapshot and profiles every live buffer in it: the audit's,
    /// else (an untraced process) a heap walk's, by type.
    pub fn open(path: &Path) -> Result<Profile, Error> {
        Profile::open_with(path, every_block)
    }

    /// Opens a snapshot and profiles the buffers `choose` picks from its
    /// audit (a `bufs` filter, say), or from the audit a heap walk makes
    /// of an untraced process's snapshot.
    pub fn open_with(
        path: &Path,
        choose: impl for<'a> FnOnce(&'a Audit, &Symbolizer) -> Cow<'a, [Block]>,
    ) -> Result<Profile, Error> {
        let snap = Snapshot::open(path)?;
        let symbolizer = Symbolizer::for_snapshot(&snap);
        // Through V8's jitdump when the recording has one, as growth does:
        // JS frames named as of each buffer's allocation, so every view
        // names a JS function alike.
        let (profile, _) = profile_chosen(&snap, &symbolizer, choose, |snap, audit, sym, b| {
            crate::node::jitdump::profile(snap, audit, sym, b)
        })?;
        Ok(profile)
    }

    /// Profiles the buffers `blocks` ((size, stack) of each) of `audit`,
    /// read from `snap`: the caller chooses which (a `bufs` filter, say).
    pub fn from_blocks(
        snap: &Snapshot,
        audit: &Audit,
        symbolizer: &Symbolizer,
        blocks: impl IntoIterator<Item = (u64, StackId)>,
    ) -> Profile {
        Profile::build(snap, audit, symbolizer, blocks, true)
    }

    /// [`Profile::from_blocks`] without [`Profile::counted`], which
    /// symbolizes every site: for profiles merged into one that has it.
    pub(crate) fn from_blocks_uncounted(
        snap: &Snapshot,
        audit: &Audit,
        symbolizer: &Symbolizer,
        blocks: impl IntoIterator<Item = (u64, StackId)>,
    ) -> Profile {
        Profile::build(snap, audit, symbolizer, blocks, false)
    }

    fn build(
        snap: &Snapshot,
        audit: &Audit,
        symbolizer: &Symbolizer,
        blocks: impl IntoIterator<Item = (u64, StackId)>,
        count: bool,
    ) -> Profile {
        // Weighted sums: each block counts as the blocks it stands for (1
        // in a full audit, more when sampled), rounded once per entry.
        let mut by_stack: HashMap<(StackId, SizeClass), (f64, f64)> = HashMap::new();
        for (size, stack) in blocks {
            let w = audit.weight(size);
            let e = by_stack.entry((stack, class_of(size))).or_default();
            e.0 += w;
            e.1 += w * size as f64;
        }
        let mut symbolized: HashMap<StackId, (SiteKey, Vec<Frame>)> = HashMap::new();
        let mut merged: HashMap<(SiteKey, SizeClass), Entry> = HashMap::new();
        for ((stack, class), (count, bytes)) in by_stack {
            let (count, bytes) = (count.round() as u64, bytes.round() as u64);
            let (key, frames) = symbolized
                .entry(stack)
                .or_insert_with(|| {
                    // Inlined calls expanded, as every view shows them;
                    // the key stays the physical frames', so a site is the
                    // same whatever DWARF says is inlined at it.
                    let frames = symbolizer.stack_inlined(audit.frames(stack));
                    (SiteKey::physical(&frames), frames)
                })
                .clone();
            // Two stack ids can symbolize to one site (the same code
            // reached through a different JIT address, say): merge them.
            let e = merged.entry((key.clone(), class)).or_insert(Entry {
                key,
                frames,
                class: class_size(class),
                count: 0,
                bytes: 0,
            });
            e.count += count;
            e.bytes += bytes;
        }
        let mut entries: Vec<Entry> = merged.into_values().collect();
        sort_entries(&mut entries);
        let counted =
            audit
                .sites
                .as_ref()
                .zip(audit.peak)
                .filter(|_| count)
                .map(|(sites, peak)| Counted {
                    sites: count_sites(audit, symbolizer, sites, &mut symbolized),
                    peak,
                    start_unix_ns: audit.start_realtime_ns,
                });
        let class_totals = audit
            .classes
            .iter()
            .filter(|c| c.allocs != 0 || c.frees != 0)
            .map(|c| (c.size, (c.allocs, c.frees)))
            .collect();
        Profile {
            path: snap.path().to_path_buf(),
            time_unix_ns: capture_time(snap, Some(audit)),
            pid: snap.pid(),
            entries,
            class_totals,
            modules: snap.modules(),
            dropped_allocs: audit.counters.dropped_allocs,
            stackless: false,
            before_attach: None,
            counted,
            sample_rate: audit.sample_rate,
        }
    }

    /// Profiles the blocks `blocks` of a heap walk (`heap.walked()`), which
    /// have no stacks: each site is one [`Label`] (a C++ class, else a
    /// size class and hint), one frame named by [`Label::frame_name`]. The
    /// same labels group `leaks` and `bufs`, so every view of a walked heap
    /// adds up to the same totals. Reads 64 bytes of each block.
    pub fn from_walk<'b>(
        snap: &Snapshot,
        heap: &Heap<'_>,
        symbolizer: &Symbolizer,
        blocks: impl IntoIterator<Item = &'b Block>,
    ) -> Profile {
        let mut by_label: HashMap<(Label, SizeClass), (u64, u64)> = HashMap::new();
        for b in blocks {
            let label = Label::of(heap, symbolizer, b.addr, b.size);
            let e = by_label.entry((label, class_of(b.size))).or_default();
            e.0 += 1;
            e.1 += b.size;
        }
        let mut entries: Vec<Entry> = by_label
            .into_iter()
            .map(|((label, class), (count, bytes))| {
                let frames = vec![Frame::of_type(label.frame_name())];
                Entry {
                    key: SiteKey::of(&frames),
                    frames,
                    class: class_size(class),
                    count,
                    bytes,
                }
            })
            .collect();
        sort_entries(&mut entries);
        Profile {
            path: snap.path().to_path_buf(),
            time_unix_ns: capture_time(snap, None),
            pid: snap.pid(),
            entries,
            class_totals: BTreeMap::new(),
            modules: snap.modules(),
            dropped_allocs: 0,
            stackless: true,
            before_attach: None,
            counted: None,
            sample_rate: 0,
        }
    }

    /// Live bytes in total.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    /// Live buffers in total.
    pub fn count(&self) -> u64 {
        self.entries.iter().map(|e| e.count).sum()
    }

    /// One entry per site, the classes merged (`class` 0 unless all its
    /// buffers are of one class), by bytes.
    pub fn by_site(&self) -> Vec<Entry> {
        let mut merged: HashMap<&SiteKey, Entry> = HashMap::new();
        for e in &self.entries {
            match merged.get_mut(&e.key) {
                Some(m) => {
                    m.count += e.count;
                    m.bytes += e.bytes;
                    if m.class != e.class {
                        m.class = 0;
                    }
                }
                None => {
                    merged.insert(&e.key, e.clone());
                }
            }
        }
        let mut out: Vec<Entry> = merged.into_values().collect();
        sort_entries(&mut out);
        out
    }
}

/// The tracer's per-site counts, symbolized and merged by site, by
/// allocations (most first), then site.
fn count_sites(
    audit: &Audit,
    symbolizer: &Symbolizer,
    sites: &[SiteStats],
    symbolized: &mut HashMap<StackId, (SiteKey, Vec<Frame>)>,
) -> Vec<SiteCounts> {
    let mut merged: HashMap<SiteKey, SiteCounts> = HashMap::new();
    for s in sites.iter().filter(|s| s.allocs != 0) {
        let (key, frames) = symbolized
            .entry(s.stack)
            .or_insert_with(|| {
                let frames = symbolizer.stack_inlined(audit.frames(s.stack));
                (SiteKey::physical(&frames), frames)
            })
            .clone();
        merged
            .entry(key.clone())
            .or_insert_with(|| SiteCounts {
                key,
                frames,
                stats: SiteStats {
                    stack: s.stack,
                    ..SiteStats::default()
                },
            })
            .add(s);
    }
    let mut out: Vec<SiteCounts> = merged.into_values().collect();
    out.sort_by(|a, b| b.allocs.cmp(&a.allocs).then(a.key.cmp(&b.key)));
    out
}

/// By bytes, then count, then site: a stable order for output and tests.
fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.count.cmp(&a.count))
            .then(a.class.cmp(&b.class))
            .then(a.key.cmp(&b.key))
    });
}

/// Profiles the blocks of `snap` that `choose` picks: from its audit with
/// `traced`, else (no audit: an untraced process) from a walk of its heap
/// by type ([`Profile::from_walk`]). Returns the audit too (the walk's, for
/// an untraced process), for its per-class counters.
pub fn profile_chosen(
    snap: &Snapshot,
    symbolizer: &Symbolizer,
    choose: impl for<'a> FnOnce(&'a Audit, &Symbolizer) -> Cow<'a, [Block]>,
    traced: impl FnOnce(&Snapshot, &Audit, &Symbolizer, &[Block]) -> Profile,
) -> Result<(Profile, Audit), Error> {
    let pid = snap.pid().map(|p| p as u32);
    if let Some(audit) = audit::find(snap, pid)? {
        if !audit.attached {
            let profile = {
                let blocks = choose(&audit, symbolizer);
                traced(snap, &audit, symbolizer, &blocks)
            };
            return Ok((profile, audit));
        }
        // Attached late: the blocks from before come from the walk, by
        // type, beside the later ones by stack.
        let heap = Heap::with_audit(snap, audit);
        let profile = {
            let blocks = choose(&heap.audit, symbolizer);
            let (early, later): (Vec<Block>, Vec<Block>) =
                blocks.iter().partition(|b| heap.is_before_attach(b.addr));
            let mut profile = traced(snap, &heap.audit, symbolizer, &later);
            if !heap.before_attach.is_empty() {
                let walked = Profile::from_walk(snap, &heap, symbolizer, early.iter());
                profile.before_attach = Some(Tally {
                    bytes: walked.bytes(),
                    blocks: walked.count(),
                });
                profile.entries.extend(walked.entries);
                sort_entries(&mut profile.entries);
            }
            profile
        };
        return Ok((profile, heap.audit));
    }
    let heap = Heap::open_walked(snap)?;
    let profile = {
        let blocks = choose(&heap.audit, symbolizer);
        Profile::from_walk(snap, &heap, symbolizer, blocks.iter())
    };
    Ok((profile, heap.audit))
}

/// Every live block of `snap` by site, as growth and the report compare
/// them: JIT frames named as of each buffer's allocation when the recording
/// has V8's jitdump ([`crate::jitdump::profile`]); a walk's blocks by type.
pub fn profile_all(snap: &Snapshot, symbolizer: &Symbolizer) -> Result<(Profile, Audit), Error> {
    profile_chosen(snap, symbolizer, every_block, crate::jitdump::profile)
}

/// Every live block of `audit`, as a chooser for [`Profile::open_with`].
pub fn every_block<'a>(audit: &'a Audit, _: &Symbolizer) -> Cow<'a, [Block]> {
    Cow::Borrowed(&audit.live)
}

/// Buffers as (size, stack) pairs, for [`Profile::from_blocks`].
pub fn pairs(blocks: &[Block]) -> impl Iterator<Item = (u64, StackId)> + '_ {
    blocks.iter().map(|b| (b.size, b.stack))
}
