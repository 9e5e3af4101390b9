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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use leaktrail_format::{class_of, class_size, SizeClass, StackId};
use leaktrail_recording::snapshot::metadata::Module;

use crate::symbolize::{Frame, Symbolizer};
use crate::Error;
use leaktrail_recording::audit::{self, Audit, Block};
use leaktrail_recording::Snapshot;

/// One frame of a site's identity: the module's path and the offset in its
/// file, or (no module) an empty path and the runtime address.
pub type SiteFrame = (String, u64);

/// The identity of an allocation site across snapshots and processes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteKey(pub Vec<SiteFrame>);

impl SiteKey {
    /// The key of a symbolized stack.
    pub fn of(frames: &[Frame]) -> SiteKey {
        SiteKey(
            frames
                .iter()
                .map(|f| match &f.module {
                    Some(m) => (m.clone(), f.module_offset),
                    None => (String::new(), f.address),
                })
                .collect(),
        )
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
    /// Opens a snapshot and profiles every live buffer in it.
    pub fn open(path: &Path) -> Result<Profile, Error> {
        let snap = Snapshot::open(path)?;
        let audit = audit_of(&snap)?;
        let symbolizer = Symbolizer::for_snapshot(&snap);
        Ok(Profile::from_blocks(
            &snap,
            &audit,
            &symbolizer,
            audit.live.iter().map(|b| (b.size, b.stack)),
        ))
    }

    /// Opens a snapshot and profiles the buffers `choose` picks from its
    /// audit, as (size, stack) pairs (a `bufs` filter, say).
    pub fn open_with(
        path: &Path,
        choose: impl FnOnce(&Audit, &Symbolizer) -> Vec<(u64, StackId)>,
    ) -> Result<Profile, Error> {
        let snap = Snapshot::open(path)?;
        let audit = audit_of(&snap)?;
        let symbolizer = Symbolizer::for_snapshot(&snap);
        let blocks = choose(&audit, &symbolizer);
        Ok(Profile::from_blocks(&snap, &audit, &symbolizer, blocks))
    }

    /// Profiles the buffers `blocks` ((size, stack) of each) of `audit`,
    /// read from `snap`: the caller chooses which (a `bufs` filter, say).
    pub fn from_blocks(
        snap: &Snapshot,
        audit: &Audit,
        symbolizer: &Symbolizer,
        blocks: impl IntoIterator<Item = (u64, StackId)>,
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
            sample_rate: audit.sample_rate,
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

/// Buffers as (size, stack) pairs, for [`Profile::from_blocks`].
pub fn pairs(blocks: &[Block]) -> impl Iterator<Item = (u64, StackId)> + '_ {
    blocks.iter().map(|b| (b.size, b.stack))
}
