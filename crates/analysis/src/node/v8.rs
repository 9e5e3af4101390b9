//! The JS heap of a snapshot, decoded with V8's postmortem metadata.
//!
//! A node binary exports `v8dbg_*` symbols for debuggers: instance type
//! numbers, field offsets, bit fields ([`Metadata`], read from the binary
//! on disk). With them and a `--memory full` snapshot, [`JsHeap::open`]
//! finds V8's pages (and its own committed and used bytes per space),
//! then every object on them; [`census`] counts JS objects by constructor
//! (mdb_v8's `findjsobjects`), and [`JsHeap::value`] decodes one object
//! with its properties and elements (`::jsprint`).
//!
//! ```no_run
//! use leaktrail_analysis::v8;
//! use leaktrail_recording::Snapshot;
//! let snap = Snapshot::open("app.core".as_ref())?;
//! let md = v8::metadata_for(&snap)?;
//! let heap = v8::JsHeap::open(&snap, &md)?;
//! for c in v8::census(&heap).constructors.iter().take(5) {
//!     println!("{} {} objects, {} bytes", c.constructor, c.count, c.bytes);
//! }
//! # Ok::<(), leaktrail_analysis::Error>(())
//! ```

mod code;
mod handles;
mod heap;
mod layout;
mod metadata;
mod value;

use std::collections::HashMap;

pub use code::{BaselineCode, CodeInlining, InlinedCall, InterpretedCode, LineEnds};
pub use handles::{GlobalHandleCount, HandleScopeCount, V8Handles};
pub use heap::{HeapObject, JsHeap, SpaceUse};
pub use metadata::Metadata;
pub use value::JsValue;

use leaktrail_recording::Snapshot;

use crate::Error;

/// The postmortem metadata of the node binary `snap` ran: the executable
/// first, then any module named like node that has `v8dbg_` symbols.
pub fn metadata_for(snap: &Snapshot) -> Result<Metadata, Error> {
    let mut paths: Vec<String> = Vec::new();
    if let Some(exe) = snap.metadata().and_then(|m| m.exe.clone()) {
        paths.push(exe);
    }
    for m in snap.modules() {
        let name = m.path.rsplit('/').next().unwrap_or("");
        if name.starts_with("node") || name.starts_with("libnode") {
            paths.push(m.path.clone());
        }
    }
    paths.dedup();
    let mut first_error = None;
    for p in &paths {
        match Metadata::from_binary(p) {
            Ok(md) => return Ok(md),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        Error::Insufficient(format!(
            "{} is not a snapshot of node: no module with V8's postmortem metadata (v8dbg_* symbols)",
            snap.path().display()
        ))
    }))
}

/// JS objects of one constructor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstructorCount {
    /// The constructor's name (`Object`, `Array`, a class's name); for
    /// functions, `Function NAME` (closures by the function they run).
    pub constructor: String,
    /// Objects found.
    pub count: u64,
    /// Their shallow bytes.
    pub bytes: u64,
    /// Their addresses, in address order.
    pub addrs: Vec<u64>,
}

/// The JS objects of a heap by constructor, largest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// One entry per constructor, by bytes then count, descending.
    pub constructors: Vec<ConstructorCount>,
    /// JS objects found reachable (see [`JsHeap::reachable`]).
    pub objects: u64,
    /// Their shallow bytes.
    pub bytes: u64,
    /// JS objects found that are not reachable: garbage V8 has not yet
    /// collected, in no count by constructor.
    pub unreachable_objects: u64,
    /// Their shallow bytes.
    pub unreachable_bytes: u64,
    /// When the snapshot was taken (0 when not known).
    pub time_unix_ns: u64,
    /// Every heap object found (JS or not, reachable or not).
    pub heap_objects: u64,
    /// Their bytes.
    pub heap_object_bytes: u64,
    /// V8's spaces with committed and used bytes.
    pub spaces: Vec<SpaceUse>,
    /// V8's global handles and handle-scope blocks.
    pub handles: V8Handles,
    /// External strings (their characters live off the JS heap, in
    /// memory the embedder allocated).
    pub external_strings: u64,
    /// Their characters' bytes.
    pub external_string_bytes: u64,
}

impl Census {
    /// The entry for `constructor`.
    pub fn get(&self, constructor: &str) -> Option<&ConstructorCount> {
        self.constructors
            .iter()
            .find(|c| c.constructor == constructor)
    }
}

/// Counts the JS objects of `heap` by constructor.
pub fn census(heap: &JsHeap<'_>) -> Census {
    let mut by_map: HashMap<u64, String> = HashMap::new();
    let mut by_shared: HashMap<u64, String> = HashMap::new();
    let mut groups: HashMap<String, ConstructorCount> = HashMap::new();
    let mut census = Census {
        spaces: heap.spaces().to_vec(),
        handles: heap.handles(),
        ..Census::default()
    };
    let live = heap.reachable();
    for (o, &live) in heap.objects().iter().zip(&live) {
        census.heap_objects += 1;
        census.heap_object_bytes += o.size;
        let Some(info) = heap.map_info(o.map) else {
            continue;
        };
        if let Some(b) = heap.external_bytes(o, info.instance_type) {
            census.external_strings += 1;
            census.external_string_bytes += b;
        }
        // A constructor's prototype object has its instances' constructor
        // too; it is one per class, not an instance.
        if !heap.is_js_object(info.instance_type) || heap.is_prototype_map(o.map) {
            continue;
        }
        if !live {
            census.unreachable_objects += 1;
            census.unreachable_bytes += o.size;
            continue;
        }
        let name = if heap.is_function(info.instance_type) {
            // Named once per function in the source (its closures share
            // one SharedFunctionInfo); an anonymous one by its script, so
            // that `() => …` of one file is not counted with every other.
            let name_of = || {
                let f = heap.function_name(o.addr);
                if !f.is_empty() {
                    format!("Function {f}")
                } else if let Some(script) = heap.function_script(o.addr) {
                    format!("Function (anonymous) {script}")
                } else {
                    "Function (anonymous)".to_string()
                }
            };
            match heap.function_shared(o.addr) {
                Some(shared) => by_shared.entry(shared).or_insert_with(name_of).clone(),
                None => name_of(),
            }
        } else {
            by_map
                .entry(o.map)
                .or_insert_with(|| heap.constructor_name(o.map))
                .clone()
        };
        census.objects += 1;
        census.bytes += o.size;
        let g = groups
            .entry(name.clone())
            .or_insert_with(|| ConstructorCount {
                constructor: name,
                count: 0,
                bytes: 0,
                addrs: Vec::new(),
            });
        g.count += 1;
        g.bytes += o.size;
        g.addrs.push(o.addr);
    }
    let mut constructors: Vec<ConstructorCount> = groups.into_values().collect();
    for c in &mut constructors {
        c.addrs.sort_unstable();
    }
    constructors.sort_by(|a, b| {
        (b.bytes, b.count, &a.constructor).cmp(&(a.bytes, a.count, &b.constructor))
    });
    census.constructors = constructors;
    census
}

/// The census of the JS heap of the snapshot at `snap`.
pub fn census_of(snap: &Snapshot) -> Result<Census, Error> {
    let md = metadata_for(snap)?;
    let mut heap = JsHeap::open(snap, &md)?;
    heap.set_dead(dead_ranges(snap));
    let mut c = census(&heap);
    c.time_unix_ns = snap.metadata().map_or(0, |m| m.time_unix_ns);
    Ok(c)
}

/// Captured memory that holds no roots for [`JsHeap::reachable`]: each
/// thread's stack below its stack pointer and glibc's free heap memory.
/// Both hold stale words, and a stale word pointing at a dropped array
/// keeps all its elements counted.
pub fn dead_ranges(snap: &Snapshot) -> Vec<(u64, u64)> {
    let mut dead = dead_stacks(snap);
    dead.extend(free_malloc_memory(snap));
    dead
}

/// Between glibc's chunks in use, in the mappings that hold them: free
/// chunks, tcaches, top. Empty unless the walk of glibc's heap checked out
/// in full: a chunk in use it missed would lose its roots, and then live
/// objects.
fn free_malloc_memory(snap: &Snapshot) -> Vec<(u64, u64)> {
    let Ok(walk) = crate::heap_walk::walk(snap, &[]) else {
        return Vec::new();
    };
    if !walk.problems.is_empty() {
        return Vec::new();
    }
    let mut chunks: Vec<(u64, u64)> = walk
        .chunks
        .iter()
        .filter(|c| !c.mmapped)
        .map(|c| (c.addr, c.addr + c.size))
        .collect();
    chunks.sort_unstable();
    let mut free = Vec::new();
    for m in snap.mappings() {
        let first = chunks.partition_point(|c| c.0 < m.start);
        let inside = chunks[first..].iter().take_while(|c| c.1 <= m.end);
        let mut at = m.start;
        let mut any = false;
        for &(s, e) in inside {
            any = true;
            if s > at {
                free.push((at, s));
            }
            at = at.max(e);
        }
        if any && at < m.end {
            free.push((at, m.end));
        }
    }
    free
}

/// The part of each thread's stack below its stack pointer (less the
/// 128-byte red zone a leaf function may use): dead frames, no roots.
pub fn dead_stacks(snap: &Snapshot) -> Vec<(u64, u64)> {
    let mappings = snap.mappings();
    snap.threads()
        .iter()
        .filter_map(|t| {
            let sp = t.sp();
            let m = mappings.iter().find(|m| m.start <= sp && sp < m.end)?;
            let end = sp.saturating_sub(128).max(m.start);
            (end > m.start).then_some((m.start, end))
        })
        .collect()
}

/// V8's handles in the snapshot at `snap`, without reading its objects;
/// `None` when it is not a full snapshot of node.
pub fn handles_of(snap: &Snapshot) -> Option<V8Handles> {
    let md = metadata_for(snap).ok()?;
    Some(JsHeap::open_pages(snap, &md).ok()?.handles())
}

/// The JS objects of one constructor across snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstructorSeries {
    /// The constructor, as [`census`] names it.
    pub constructor: String,
    /// Objects in each snapshot.
    pub counts: Vec<u64>,
    /// Their bytes in each snapshot.
    pub bytes: Vec<u64>,
    /// Whether they grow steadily and above noise (see
    /// [`ConstructorSeries::grows_steadily`]).
    pub grows: bool,
}

impl ConstructorSeries {
    /// Objects gained from the first snapshot to the last.
    pub fn count_delta(&self) -> i64 {
        delta(&self.counts)
    }

    /// Bytes gained from the first snapshot to the last.
    pub fn bytes_delta(&self) -> i64 {
        delta(&self.bytes)
    }

    /// Whether its objects grow steadily ([`rises_steadily`]) and their
    /// bytes rise above the noise of the whole JS heap by the test a
    /// malloc site must pass ([`crate::growth::Stats::grows_above`]): a
    /// handful of objects in flight that happen to rise four times in a
    /// row are not a leak.
    pub fn grows_steadily(&self) -> bool {
        self.grows
    }
}

/// Whether counts grow steadily: never fewer than before, and more in at
/// least half of the steps (a leak kept per request rises at every
/// snapshot; a cache warming up rises once and stays).
pub fn rises_steadily(counts: &[u64]) -> bool {
    let steps = counts.len().saturating_sub(1);
    let rises = counts.windows(2).filter(|w| w[1] > w[0]).count();
    steps > 0 && counts.windows(2).all(|w| w[1] >= w[0]) && 2 * rises >= steps && delta(counts) > 0
}

fn delta(v: &[u64]) -> i64 {
    match (v.first(), v.last()) {
        (Some(&a), Some(&b)) => b as i64 - a as i64,
        _ => 0,
    }
}

/// What the JS heap's numbers say across snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsVerdict {
    /// JS objects of some constructor grow steadily: a JS-heap leak.
    Leak,
    /// V8's global handles grow steadily and no constructor's objects
    /// do: handles (an addon's references, `v8::Global`s) are kept, not
    /// objects made.
    HandleLeak,
    /// V8 committed more memory, but no constructor's objects grow
    /// steadily: the heap sizing itself (warm-up), not a leak.
    WarmUp,
    /// Neither objects nor V8's committed memory grow.
    Steady,
}

impl JsVerdict {
    /// The word the text uses.
    pub fn name(self) -> &'static str {
        match self {
            JsVerdict::Leak => "leak",
            JsVerdict::HandleLeak => "handle leak",
            JsVerdict::WarmUp => "warm-up",
            JsVerdict::Steady => "steady",
        }
    }
}

/// The JS heap across the snapshots of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct JsHeapGrowth {
    /// The snapshots, in order.
    pub snapshots: Vec<std::path::PathBuf>,
    /// When each was taken, seconds after the first.
    pub t_seconds: Vec<f64>,
    /// The noise of the JS objects' bytes
    /// ([`crate::growth::heap_noise`]): the rise a constructor's bytes
    /// must exceed.
    pub noise_bytes: f64,
    /// JS objects in each.
    pub objects: Vec<u64>,
    /// Their bytes in each.
    pub bytes: Vec<u64>,
    /// V8's used bytes (all spaces) in each.
    pub used: Vec<u64>,
    /// V8's committed bytes (all spaces) in each.
    pub committed: Vec<u64>,
    /// V8's handles in each.
    pub handles: Vec<V8Handles>,
    /// External strings' bytes (off the JS heap) in each.
    pub external_string_bytes: Vec<u64>,
    /// Every constructor, those that grow steadily first, then by bytes
    /// gained.
    pub constructors: Vec<ConstructorSeries>,
    /// What the numbers say.
    pub verdict: JsVerdict,
}

impl JsHeapGrowth {
    /// The constructors whose objects grow steadily.
    pub fn growing(&self) -> impl Iterator<Item = &ConstructorSeries> {
        self.constructors.iter().filter(|c| c.grows_steadily())
    }

    /// Global handles in use in each snapshot, when every snapshot's were
    /// found.
    pub fn global_handles(&self) -> Option<Vec<u64>> {
        self.handles
            .iter()
            .map(|h| h.global.map(|g| g.in_use))
            .collect()
    }

    /// Handle-scope blocks in each snapshot, when every snapshot's were
    /// found.
    pub fn handle_scope_blocks(&self) -> Option<Vec<u64>> {
        self.handles
            .iter()
            .map(|h| h.scopes.map(|s| s.blocks))
            .collect()
    }

    /// JS objects' bytes gained from the first snapshot to the last.
    pub fn bytes_delta(&self) -> i64 {
        delta(&self.bytes)
    }

    /// Global handles gained from the first snapshot to the last.
    pub fn global_handles_delta(&self) -> Option<i64> {
        self.global_handles().map(|v| delta(&v))
    }
}

/// The JS heap of each snapshot in `paths` (oldest first) and how it
/// changes; `None` when the first is not a full snapshot of node (no V8
/// metadata, or no V8 page captured), so other programs' series are
/// left alone, or when fewer than two hold V8's pages. Reads each
/// snapshot's whole V8 heap once.
pub fn growth_of(paths: &[std::path::PathBuf]) -> Result<Option<JsHeapGrowth>, Error> {
    let mut censuses = Vec::new();
    let mut read = Vec::new();
    let mut md: Option<Metadata> = None;
    for p in paths {
        let snap = Snapshot::open(p)?;
        let m = match &md {
            Some(m) => m.clone(),
            None => match metadata_for(&snap) {
                Ok(m) => m,
                Err(_) => return Ok(None),
            },
        };
        // A later snapshot without V8's pages (one taken while node tore
        // its isolate down, or with less memory) is left out of the
        // series: the JS heap is told over those that hold it.
        let Ok(mut heap) = JsHeap::open(&snap, &m) else {
            if censuses.is_empty() {
                return Ok(None);
            }
            continue;
        };
        heap.set_dead(dead_ranges(&snap));
        let mut c = census(&heap);
        c.time_unix_ns = snap.metadata().map_or(0, |m| m.time_unix_ns);
        for k in &mut c.constructors {
            k.addrs = Vec::new();
        }
        censuses.push(c);
        read.push(p.clone());
        md = Some(m);
    }
    if censuses.len() < 2 {
        return Ok(None);
    }
    Ok(Some(compare(read, &censuses)))
}

/// The growth of a series of censuses (oldest first).
pub fn compare(snapshots: Vec<std::path::PathBuf>, censuses: &[Census]) -> JsHeapGrowth {
    let mut names: Vec<&str> = censuses
        .iter()
        .flat_map(|c| c.constructors.iter().map(|k| k.constructor.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    // Times from the snapshots; unknown ones (a census built by hand)
    // one second apart.
    let t0 = censuses.first().map_or(0, |c| c.time_unix_ns);
    let t_seconds: Vec<f64> = if censuses.iter().all(|c| c.time_unix_ns != 0) {
        censuses
            .iter()
            .map(|c| c.time_unix_ns.saturating_sub(t0) as f64 / 1e9)
            .collect()
    } else {
        (0..censuses.len()).map(|k| k as f64).collect()
    };
    let totals: Vec<f64> = censuses.iter().map(|c| c.bytes as f64).collect();
    let noise_bytes = crate::growth::heap_noise(&t_seconds, &totals);
    // Growth that follows the work (a leak per request or batch) is a line
    // in snapshot order even when the snapshots came at uneven times (a
    // loaded machine): against time, such a heap looks noisy, and a
    // constructor's steady rise fell below that noise. So a constructor
    // also grows when it stands out of the heap's noise in snapshot order.
    let order: Vec<f64> = (0..censuses.len()).map(|k| k as f64).collect();
    let noise_in_order = crate::growth::heap_noise(&order, &totals);
    let mut constructors: Vec<ConstructorSeries> = names
        .into_iter()
        .map(|name| {
            let of = |c: &Census| c.get(name).map_or((0, 0), |k| (k.count, k.bytes));
            let counts: Vec<u64> = censuses.iter().map(|c| of(c).0).collect();
            let bytes: Vec<u64> = censuses.iter().map(|c| of(c).1).collect();
            let as_f64: Vec<f64> = bytes.iter().map(|&b| b as f64).collect();
            let grows = rises_steadily(&counts)
                && (crate::growth::Stats::of(&t_seconds, &as_f64).grows_above(noise_bytes)
                    || crate::growth::Stats::of(&order, &as_f64).grows_above(noise_in_order));
            ConstructorSeries {
                constructor: name.to_string(),
                counts,
                bytes,
                grows,
            }
        })
        .collect();
    constructors.sort_by(|a, b| {
        (b.grows_steadily(), b.bytes_delta(), &a.constructor).cmp(&(
            a.grows_steadily(),
            a.bytes_delta(),
            &b.constructor,
        ))
    });
    let sum = |c: &Census, f: fn(&SpaceUse) -> u64| c.spaces.iter().map(f).sum::<u64>();
    let committed: Vec<u64> = censuses.iter().map(|c| sum(c, |s| s.committed)).collect();
    let handles: Vec<V8Handles> = censuses.iter().map(|c| c.handles).collect();
    let global: Option<Vec<u64>> = handles.iter().map(|h| h.global.map(|g| g.in_use)).collect();
    let verdict = if constructors.iter().any(ConstructorSeries::grows_steadily) {
        JsVerdict::Leak
    } else if global.as_deref().is_some_and(rises_steadily) {
        JsVerdict::HandleLeak
    } else if delta(&committed) > 0 {
        JsVerdict::WarmUp
    } else {
        JsVerdict::Steady
    };
    JsHeapGrowth {
        snapshots,
        t_seconds,
        noise_bytes,
        objects: censuses.iter().map(|c| c.objects).collect(),
        bytes: censuses.iter().map(|c| c.bytes).collect(),
        used: censuses.iter().map(|c| sum(c, |s| s.used)).collect(),
        committed,
        handles,
        external_string_bytes: censuses.iter().map(|c| c.external_string_bytes).collect(),
        constructors,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(listeners: u64, committed: u64) -> Census {
        Census {
            constructors: vec![ConstructorCount {
                constructor: "Listener".into(),
                count: listeners,
                bytes: 40 * listeners,
                addrs: vec![],
            }],
            objects: listeners,
            bytes: 40 * listeners,
            spaces: vec![SpaceUse {
                name: "old_space",
                pages: 1,
                committed,
                used: 40 * listeners,
            }],
            ..Census::default()
        }
    }

    fn verdict(series: &[(u64, u64)]) -> JsVerdict {
        let c: Vec<Census> = series.iter().map(|&(n, c)| census(n, c)).collect();
        compare(vec![], &c).verdict
    }

    /// A JS-heap leak, a warm-up and a steady heap are told apart by the
    /// objects and V8's committed bytes together.
    #[test]
    fn a_leak_a_warm_up_and_a_steady_heap_are_told_apart() {
        let mb = 1 << 20;
        // Objects rise at every snapshot: a leak, whatever V8 committed.
        assert_eq!(
            verdict(&[(10, mb), (20, mb), (30, mb), (40, mb)]),
            JsVerdict::Leak
        );
        // V8 grows its heap, the objects rise once and stay: warm-up.
        assert_eq!(
            verdict(&[(10, mb), (40, 4 * mb), (40, 8 * mb), (40, 8 * mb)]),
            JsVerdict::WarmUp
        );
        // Handles rise at every snapshot, objects do not: a handle leak.
        let mut c: Vec<Census> = [10, 10, 10, 10].iter().map(|&n| census(n, mb)).collect();
        for (k, c) in c.iter_mut().enumerate() {
            c.handles.global = Some(GlobalHandleCount {
                in_use: 1000 * (k as u64 + 1),
                strong: 1000 * (k as u64 + 1),
                ..GlobalHandleCount::default()
            });
        }
        let j = compare(vec![], &c);
        assert_eq!(j.verdict, JsVerdict::HandleLeak);
        assert_eq!(j.global_handles_delta(), Some(3000));
        // The same handles beside growing objects: the objects' leak.
        for (k, c) in c.iter_mut().enumerate() {
            c.constructors[0].count = 10 * (k as u64 + 1);
            c.constructors[0].bytes = 400 * (k as u64 + 1);
            c.bytes = c.constructors[0].bytes;
        }
        assert_eq!(compare(vec![], &c).verdict, JsVerdict::Leak);
        // Up and down, nothing committed: steady.
        assert_eq!(
            verdict(&[(10, mb), (20, mb), (10, mb), (20, mb)]),
            JsVerdict::Steady
        );
    }

    /// A few objects more at every snapshot, while the heap's own bytes
    /// swing by far more (requests in flight, arrays made and dropped), is
    /// not a leak: the rise must stand out of the JS heap's noise.
    #[test]
    fn a_steady_rise_within_the_heaps_noise_is_not_a_leak() {
        let mb = 1 << 20;
        let c: Vec<Census> = [0u64, 1, 2, 3, 4, 5]
            .iter()
            .map(|&k| {
                let mut c = census(1000 + k, mb);
                let swing = if k % 2 == 0 { 0 } else { 200_000 };
                c.constructors.push(ConstructorCount {
                    constructor: "Array".into(),
                    count: swing / 32,
                    bytes: swing,
                    addrs: vec![],
                });
                c.bytes += swing;
                c
            })
            .collect();
        let j = compare(vec![], &c);
        assert!(j.noise_bytes > 40.0 * 5.0, "{}", j.noise_bytes);
        assert!(j.growing().next().is_none());
        assert_eq!(j.verdict, JsVerdict::Steady);
        // The same rise in a quiet heap is one.
        let quiet: Vec<Census> = (0..6).map(|k| census(1000 + k, mb)).collect();
        assert_eq!(compare(vec![], &quiet).verdict, JsVerdict::Leak);
    }
}
