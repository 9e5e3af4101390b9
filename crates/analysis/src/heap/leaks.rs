//! Conservative reachability over one snapshot: mdb's `::findleaks` with
//! valgrind's classes.
//!
//! Every pointer-aligned word of the roots ([`Roots`]: registers, thread
//! stacks from SP, module data and bss, TLS, anonymous memory that is not a
//! malloc arena) and of every block found reachable is tested against the
//! live blocks of the audit. A word equal to a block's start is a *start
//! pointer*; one inside it is an *interior pointer*. Then:
//!
//! * **reachable**: a chain of start pointers leads to it from a root;
//! * **possibly lost**: reached, but only through chains with at least one
//!   interior pointer;
//! * **indirectly lost**: unreached, but pointed to (start or interior)
//!   by another unreached block;
//! * **definitely lost**: unreached and pointed to by no other unreached
//!   block — or, for a cycle nobody points into, the cycle's lowest block
//!   (the others are indirect), as valgrind does.
//!
//! Speed: the blocks are indexed once ([`crate::heap::model::BlockIndex`]); marks
//! live in atomic bitsets; memory is scanned in place from the core's
//! mapping; two threads share roots in chunks and blocks through a work
//! list. Nothing is copied, so memory use is a few bytes per block.

use leaktrail_format::StackId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::heap::libc_residue::{is_libc_residue, is_runtime_module};
use crate::heap::model::{canonical_stacks, Heap, RootRange, Roots};
use crate::heap::suppressions::{Suppressions, Used};
use crate::heap::types;
use crate::symbolize::{Frame, Symbolizer};

/// The four classes (defined, with their spellings, in `leaktrail_format`).
pub use leaktrail_format::LeakKind;

/// Bytes and blocks of one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requested bytes.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
}

/// Blocks of one class allocated by one stack.
#[derive(Clone, Debug)]
pub struct Group {
    /// Their class.
    pub kind: LeakKind,
    /// Their bytes.
    pub bytes: u64,
    /// How many.
    pub blocks: u64,
    /// The oldest of them.
    pub example_address: u64,
    /// Its size.
    pub example_size: u64,
    /// When it was allocated (ns after the tracer started).
    pub example_time_ns: u64,
    /// The stack id in the audit.
    pub stack_id: StackId,
    /// The allocation stack, innermost first, symbolized.
    pub stack: Vec<Frame>,
    /// Definitely lost groups: bytes of the indirectly lost blocks their
    /// blocks own (valgrind's "4,096,000 (96,000 direct, 4,000,000
    /// indirect)"); `None` for the other classes.
    pub indirect_bytes: Option<u64>,
    /// Definitely lost groups: how many indirectly lost blocks they own.
    pub indirect_blocks: Option<u64>,
    /// What its blocks hold, when their bytes say ([`crate::types`]): a
    /// C++ class, or a hint. Stackless groups (a heap walk's) are one type
    /// each; groups by stack show their oldest block's.
    pub type_name: Option<String>,
    /// Stackless groups that are no C++ class: their size class (largest
    /// size), which groups them with the type hint.
    pub size_class: Option<u64>,
    /// Its blocks were allocated before `leaktrail attach` loaded the
    /// tracer: no stack (they predate it), grouped by type.
    pub before_attach: bool,
    /// Its blocks are in a sampled audit's heap but not in the sample:
    /// found by the heap walk, no stack, grouped by type.
    pub unsampled: bool,
}

/// What a group of [`summarize`] gathers: blocks of one (canonical) stack,
/// or blocks known from a heap walk alone, of one type label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum GroupKey {
    Stack(u32),
    Label(u32),
}

impl Group {
    /// Its loss record's total: its own bytes and, for a definitely lost
    /// group, the indirectly lost bytes its blocks own.
    pub fn total_bytes(&self) -> u64 {
        self.bytes + self.indirect_bytes.unwrap_or(0)
    }
}

/// What [`find`] found.
#[derive(Clone, Debug, Default)]
pub struct Leaks {
    /// Definitely lost.
    pub definite: Tally,
    /// Indirectly lost.
    pub indirect: Tally,
    /// Possibly lost.
    pub possible: Tally,
    /// Still reachable.
    pub reachable: Tally,
    /// Groups by (class, stack), lost ones first, each class by bytes.
    pub groups: Vec<Group>,
    /// libc's own residue (see [`crate::heap::libc_residue`]): blocks of
    /// the kinds valgrind frees at exit through `__libc_freeres`, counted
    /// apart and in none of the four classes above.
    pub libc: Tally,
    /// Their groups, each with the class it would have had, by bytes.
    pub libc_groups: Vec<Group>,
    /// Blocks the suppressions took out of the classes above (lost and
    /// possibly lost ones, and reachable ones a valgrind entry asks for).
    pub suppressed: Tally,
    /// Each suppression that matched, with what it suppressed, in file
    /// order.
    pub suppressions_used: Vec<Used>,
    /// Bytes of memory scanned (roots and blocks).
    pub scanned_bytes: u64,
    /// Bytes of root memory among them.
    pub root_bytes: u64,
    /// Seconds the reachability scan took (without symbolization).
    pub scan_seconds: f64,
    /// CPU seconds the scanning threads used: bytes over this is the rate
    /// per core, whatever else the machine was doing.
    pub scan_cpu_seconds: f64,
    /// Things the reader should know (e.g. dropped allocations).
    pub warnings: Vec<String>,
    /// The audit's sampling rate (`run --sample`), 0 for a full audit.
    pub sample_rate: u64,
    /// In a sampled audit: the blocks the sample lacks that the heap walk
    /// found (counted in the classes above, grouped without stacks).
    pub unsampled: Tally,
    /// Some of the program's blocks could not be seen (they bypassed the
    /// tracer, or a sample's others could not be walked; the warnings say
    /// which): finding no leak here is not finding none.
    pub incomplete: bool,
}

impl Leaks {
    /// The tally of `kind`.
    pub fn tally(&self, kind: LeakKind) -> Tally {
        match kind {
            LeakKind::Definite => self.definite,
            LeakKind::Indirect => self.indirect,
            LeakKind::Possible => self.possible,
            LeakKind::Reachable => self.reachable,
        }
    }

    /// The tally of `kind` over the groups kept: all of them, or those
    /// whose stack passes through [`LeaksOptions::function`]. The class
    /// totals above count every block whatever the filter; this is what
    /// `--fail-on` asks, so that `--function` limits it too.
    pub fn kept(&self, kind: LeakKind) -> Tally {
        self.groups
            .iter()
            .filter(|g| g.kind == kind)
            .fold(Tally::default(), |t, g| Tally {
                bytes: t.bytes + g.bytes,
                blocks: t.blocks + g.blocks,
            })
    }

    /// Every definitely lost site (group) with its loss record, ranked by
    /// [`Group::total_bytes`], largest first; ties by direct bytes, then by
    /// the oldest block's address, so the order is stable.
    pub fn lost_sites(&self) -> Vec<&Group> {
        let mut sites: Vec<&Group> = self
            .groups
            .iter()
            .filter(|g| g.kind == LeakKind::Definite)
            .collect();
        sites.sort_by(|a, b| {
            b.total_bytes()
                .cmp(&a.total_bytes())
                .then(b.bytes.cmp(&a.bytes))
                .then(a.example_address.cmp(&b.example_address))
        });
        sites
    }
}

/// How to look for leaks.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LeaksOptions {
    /// What counts as a root.
    pub roots: Roots,
    /// Keep only groups whose stack has a frame whose function contains
    /// this.
    pub function: Option<String>,
    /// Scanning threads (at least 1).
    pub threads: usize,
    /// Symbolize the still-reachable groups too (a text report that does
    /// not show them can skip the cost: a Node.js process has thousands).
    pub symbolize_reachable: bool,
    /// Groups these match are counted as suppressed, not in their class.
    pub suppressions: Suppressions,
}

impl Default for LeaksOptions {
    fn default() -> Self {
        LeaksOptions {
            roots: Roots::default(),
            function: None,
            threads: 2,
            symbolize_reachable: true,
            suppressions: Suppressions::new(),
        }
    }
}

/// Per-block classes, indexed like `heap.audit.live`.
///
/// Also returns the bytes scanned, the bytes of root memory, and the CPU
/// seconds the scanning threads used (the scan's cost on a loaded machine,
/// where wall time also counts waiting for a core).
pub fn classify(heap: &Heap<'_>, opts: &LeaksOptions) -> (Vec<LeakKind>, u64, u64, f64) {
    let c = classify_owned(heap, opts);
    (c.kinds, c.scanned, c.root_bytes, c.cpu_seconds)
}

/// What [`classify`] finds, with the owner of each indirectly lost block.
struct Classes {
    kinds: Vec<LeakKind>,
    /// For an indirectly lost block, the definitely lost block whose
    /// clique it is in (indexed like `kinds`); [`NO_OWNER`] for the others.
    owners: Vec<u32>,
    scanned: u64,
    root_bytes: u64,
    cpu_seconds: f64,
}

const NO_OWNER: u32 = u32::MAX;

fn classify_owned(heap: &Heap<'_>, opts: &LeaksOptions) -> Classes {
    let n = heap.index.len();
    let reach = Bits::new(n);
    let possible = Bits::new(n);
    let (ranges, regs) = heap.root_ranges(&opts.roots);
    let chunks = root_chunks(&ranges);
    let mut root_bytes = 0;
    for r in &ranges {
        heap.for_each_slice(r.start, r.end, |_, b| root_bytes += b.len() as u64);
    }
    let scanned = AtomicU64::new(0);
    let cpu_ns = AtomicU64::new(0);
    let threads = opts.threads.max(1);

    // Phase 1: start pointers from the roots, then from reached blocks.
    // Interior hits on still-unreached blocks are remembered for phase 2.
    let mut first: Vec<u32> = Vec::new();
    let mut interior: Vec<u32> = Vec::new();
    for &(_, v) in &regs {
        if let Some(i) = heap.index.find(v) {
            if heap.index.start(i) == v {
                if reach.set(i) {
                    first.push(i as u32);
                }
            } else {
                interior.push(i as u32);
            }
        }
    }
    let next_chunk = AtomicUsize::new(0);
    let pool = Pool::new(threads, first);
    let found_interior: Vec<Vec<u32>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let cpu0 = thread_cpu_ns();
                    let mut local = Vec::new();
                    let mut inner = Vec::new();
                    let mut bytes = 0u64;
                    let mut visit = |i: usize, start: bool, out: &mut Vec<u32>| {
                        if start {
                            if reach.set(i) {
                                out.push(i as u32);
                            }
                        } else if !reach.get(i) && possible.set(i) {
                            // `possible` doubles as "already remembered"
                            // here; phase 2 re-derives it.
                            inner.push(i as u32);
                        }
                    };
                    loop {
                        let c = next_chunk.fetch_add(1, Ordering::Relaxed);
                        let Some(&(a, b)) = chunks.get(c) else { break };
                        scan_range(heap, a, b, &mut bytes, |i, st| visit(i, st, &mut local));
                    }
                    pool.work(local, |i, out| {
                        scan_block(heap, i, &mut bytes, |j, st| visit(j, st, out));
                    });
                    scanned.fetch_add(bytes, Ordering::Relaxed);
                    cpu_ns.fetch_add(thread_cpu_ns() - cpu0, Ordering::Relaxed);
                    inner
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });

    // Phase 2: blocks reached only through interior pointers, and all they
    // lead to, are possibly lost.
    let mut seeds = Vec::new();
    possible.clear();
    for i in interior
        .into_iter()
        .chain(found_interior.into_iter().flatten())
    {
        let i = i as usize;
        if !reach.get(i) && possible.set(i) {
            seeds.push(i as u32);
        }
    }
    let pool = Pool::new(threads, seeds);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let cpu0 = thread_cpu_ns();
                let mut bytes = 0u64;
                pool.work(Vec::new(), |i, out| {
                    scan_block(heap, i, &mut bytes, |j, _| {
                        if !reach.get(j) && possible.set(j) {
                            out.push(j as u32);
                        }
                    });
                });
                scanned.fetch_add(bytes, Ordering::Relaxed);
                cpu_ns.fetch_add(thread_cpu_ns() - cpu0, Ordering::Relaxed);
            });
        }
    });

    // Phase 3: cliques of unreached blocks, in address order (valgrind's
    // order): the first of each is definitely lost, all it leads to
    // indirectly, absorbing earlier leaders it reaches.
    let mut kinds: Vec<LeakKind> = (0..n)
        .map(|i| {
            if reach.get(i) {
                LeakKind::Reachable
            } else if possible.get(i) {
                LeakKind::Possible
            } else {
                LeakKind::Definite
            }
        })
        .collect();
    let mut done = vec![false; n];
    let mut owners = vec![NO_OWNER; n];
    let mut stack = Vec::new();
    let mut leaked_bytes = 0u64;
    let cpu0 = thread_cpu_ns();
    for leader in 0..n {
        if kinds[leader] != LeakKind::Definite || done[leader] {
            continue;
        }
        done[leader] = true;
        stack.push(leader);
        while let Some(i) = stack.pop() {
            scan_block(heap, i, &mut leaked_bytes, |j, _| {
                if j == leader || kinds[j] != LeakKind::Definite {
                    return;
                }
                kinds[j] = LeakKind::Indirect;
                // An earlier leader absorbed: it and what it owned (through
                // it, below) are now this leader's.
                owners[j] = leader as u32;
                if !done[j] {
                    done[j] = true;
                    stack.push(j);
                }
            });
        }
    }
    // Owners point at their leader, or at an earlier leader that a later
    // one absorbed: follow to the definite one. Leaders only absorb earlier
    // leaders, so the chains are short and end.
    for i in 0..n {
        if kinds[i] != LeakKind::Indirect {
            continue;
        }
        let mut o = owners[i];
        for _ in 0..n {
            if o == NO_OWNER || kinds[o as usize] == LeakKind::Definite {
                break;
            }
            o = owners[o as usize];
        }
        owners[i] = o;
    }
    let scanned = scanned.load(Ordering::Relaxed) + leaked_bytes + (regs.len() as u64) * 8;
    let cpu = cpu_ns.load(Ordering::Relaxed) + (thread_cpu_ns() - cpu0);
    Classes {
        kinds,
        owners,
        scanned,
        root_bytes,
        cpu_seconds: cpu as f64 / 1e9,
    }
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID
    // is always available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Finds leaks and groups them by allocation stack, symbolized.
pub fn find(heap: &Heap<'_>, opts: &LeaksOptions, symbolizer: &Symbolizer) -> Leaks {
    let started = std::time::Instant::now();
    let c = classify_owned(heap, opts);
    let scan_seconds = started.elapsed().as_secs_f64();
    let (kinds, scanned_bytes, root_bytes, scan_cpu_seconds) =
        (c.kinds, c.scanned, c.root_bytes, c.cpu_seconds);
    let mut l = summarize(
        heap,
        &kinds,
        &c.owners,
        symbolizer,
        opts.function.as_deref(),
        opts.symbolize_reachable,
        &opts.suppressions,
        scanned_bytes,
        root_bytes,
    );
    l.scan_seconds = scan_seconds;
    l.scan_cpu_seconds = scan_cpu_seconds;
    l
}

/// No label: the block groups by its stack.
const UNLABELLED: u32 = u32::MAX;

/// A label per block known from a heap walk alone ([`types::Label`];
/// [`UNLABELLED`] for blocks with a stack), and the labels.
fn type_labels(heap: &Heap<'_>, symbolizer: &Symbolizer) -> (Vec<u32>, Vec<types::Label>) {
    let mut names: Vec<types::Label> = Vec::new();
    let mut ids: HashMap<types::Label, u32> = HashMap::new();
    let of = heap
        .audit
        .live
        .iter()
        .map(|b| {
            if !heap.typed_by_label(b.addr) {
                return UNLABELLED;
            }
            let label = types::Label::of(heap, symbolizer, b.addr, b.size);
            *ids.entry(label.clone()).or_insert_with(|| {
                names.push(label);
                (names.len() - 1) as u32
            })
        })
        .collect();
    (of, names)
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    heap: &Heap<'_>,
    kinds: &[LeakKind],
    owners: &[u32],
    symbolizer: &Symbolizer,
    function: Option<&str>,
    symbolize_reachable: bool,
    suppressions: &Suppressions,
    scanned_bytes: u64,
    root_bytes: u64,
) -> Leaks {
    let mut tallies = [Tally::default(); 4];
    let mut index: HashMap<(LeakKind, GroupKey), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let canon = canonical_stacks(&heap.audit, symbolizer);
    // Blocks with stacks group by stack; those known from a heap walk
    // alone (an untraced process's, or from before an attach) by type,
    // else size class and hint.
    let labels = (heap.walked() || heap.has_stackless()).then(|| type_labels(heap, symbolizer));
    let unsampled = !heap.unsampled.is_empty();
    let key_of = |i: usize, b: &leaktrail_recording::audit::Block| -> GroupKey {
        match &labels {
            Some((of, _)) if of[i] != UNLABELLED => GroupKey::Label(of[i]),
            _ => GroupKey::Stack(canon.get(&b.stack).copied().unwrap_or(b.stack).0),
        }
    };
    // Neighbouring blocks mostly share a stack and a class: remember the
    // last group instead of hashing 10 M times.
    let mut last: Option<(LeakKind, StackId, usize)> = None;
    for (i, (b, &k)) in heap.audit.live.iter().zip(kinds).enumerate() {
        let t = &mut tallies[k as usize];
        t.bytes += b.size;
        t.blocks += 1;
        let gi = match last {
            Some((lk, ls, gi))
                if lk == k
                    && ls == b.stack
                    && labels.as_ref().is_none_or(|(of, _)| of[i] == UNLABELLED) =>
            {
                gi
            }
            _ => {
                let key = key_of(i, b);
                let gi = *index.entry((k, key)).or_insert_with(|| {
                    let (type_name, size_class) = match (&labels, key) {
                        (Some((_, names)), GroupKey::Label(l)) => {
                            let l = names[l as usize].clone();
                            (l.type_name, l.size_class)
                        }
                        _ => (None, None),
                    };
                    groups.push(Group {
                        kind: k,
                        bytes: 0,
                        blocks: 0,
                        example_address: b.addr,
                        example_size: b.size,
                        example_time_ns: b.time_ns,
                        stack_id: match key {
                            GroupKey::Stack(id) => StackId(id),
                            GroupKey::Label(_) => StackId::NONE,
                        },
                        stack: Vec::new(),
                        indirect_bytes: (k == LeakKind::Definite).then_some(0),
                        indirect_blocks: (k == LeakKind::Definite).then_some(0),
                        type_name,
                        size_class,
                        before_attach: !heap.walked()
                            && !unsampled
                            && matches!(key, GroupKey::Label(_)),
                        unsampled: unsampled && matches!(key, GroupKey::Label(_)),
                    });
                    groups.len() - 1
                });
                // Only a stack's group: a label's is not its stack's.
                last = matches!(key, GroupKey::Stack(_)).then_some((k, b.stack, gi));
                gi
            }
        };
        let g = &mut groups[gi];
        g.bytes += b.size;
        g.blocks += 1;
        if b.time_ns < g.example_time_ns {
            g.example_address = b.addr;
            g.example_size = b.size;
            g.example_time_ns = b.time_ns;
        }
    }
    // Each indirectly lost block under the definite group of its owner.
    for ((b, &k), &o) in heap.audit.live.iter().zip(kinds).zip(owners) {
        if k != LeakKind::Indirect || o == NO_OWNER {
            continue;
        }
        let owner = &heap.audit.live[o as usize];
        if let Some(&gi) = index.get(&(LeakKind::Definite, key_of(o as usize, owner))) {
            let g = &mut groups[gi];
            *g.indirect_bytes.get_or_insert(0) += b.size;
            *g.indirect_blocks.get_or_insert(0) += 1;
        }
    }
    if !heap.walked() {
        for g in groups
            .iter_mut()
            .filter(|g| g.kind != LeakKind::Reachable && !g.before_attach && !g.unsampled)
        {
            g.type_name =
                types::of(heap, symbolizer, g.example_address, g.example_size).map(|t| t.name());
        }
    }
    let mut libc = Tally::default();
    let mut libc_groups = Vec::new();
    let mut kept = Vec::with_capacity(groups.len());
    for mut g in groups {
        let frames = heap.audit.frames(g.stack_id);
        // Only a block allocated inside the runtime can be its residue.
        let in_runtime = frames.first().is_some_and(|&a| {
            symbolizer
                .word_frames(a)
                .first()
                .and_then(|f| f.module.as_deref())
                .is_some_and(is_runtime_module)
        });
        // --function needs every stack to filter on.
        if g.kind != LeakKind::Reachable || symbolize_reachable || function.is_some() || in_runtime
        {
            g.stack = symbolizer.stack_inlined(frames);
        }
        // Without stacks (a heap walk), threads' DTVs are libc's residue
        // that can still be told by where they hang.
        let dtv = g.stack_id == StackId::NONE && g.type_name.as_deref() == Some(types::THREAD_DTV);
        if (in_runtime && is_libc_residue(&g.stack)) || dtv {
            let t = &mut tallies[g.kind as usize];
            t.bytes -= g.bytes;
            t.blocks -= g.blocks;
            libc.bytes += g.bytes;
            libc.blocks += g.blocks;
            libc_groups.push(g);
        } else {
            kept.push(g);
        }
    }
    let mut groups = kept;
    let mut suppressed = Tally::default();
    let mut used: Vec<Used> = suppressions
        .entries()
        .iter()
        .map(|e| Used {
            name: e.name.clone(),
            origin: e.origin.clone(),
            ..Used::default()
        })
        .collect();
    if !suppressions.is_empty() {
        groups.retain(|g| {
            let hit = (!g.stack.is_empty())
                .then(|| suppressions.matching(g.kind, &g.stack))
                .flatten();
            let Some(i) = hit else { return true };
            let t = &mut tallies[g.kind as usize];
            t.bytes -= g.bytes;
            t.blocks -= g.blocks;
            suppressed.bytes += g.bytes;
            suppressed.blocks += g.blocks;
            used[i].bytes += g.bytes;
            used[i].blocks += g.blocks;
            false
        });
    }
    used.retain(|u| u.blocks > 0);
    libc_groups.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(a.example_address.cmp(&b.example_address))
    });
    if let Some(f) = function {
        groups.retain(|g| {
            g.stack
                .iter()
                .any(|fr| fr.function.as_deref().is_some_and(|n| n.contains(f)))
        });
    }
    groups.sort_by(|a, b| {
        a.kind
            .cmp(&b.kind)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.example_address.cmp(&b.example_address))
    });
    let mut warnings = Vec::new();
    let c = &heap.audit.counters;
    if c.dropped_allocs > 0 {
        warnings.push(format!(
            "the tracer could not record {} allocations; they are not in these numbers",
            c.dropped_allocs
        ));
    }
    if heap.audit.busy_shards > 0 {
        warnings.push(format!(
            "{} audit shards were mid-update at the stop",
            heap.audit.busy_shards
        ));
    }
    if heap.audit.corrupt > 0 {
        warnings.push(format!(
            "{} audit entries were corrupt (the program may have written over the tracer's region) and were skipped",
            heap.audit.corrupt
        ));
    }
    if let Some(w) = &heap.walk {
        warnings.push(format!(
            "no audit region: these are glibc's chunks in use, from its own state (found by {}), without allocation stacks",
            w.allocator.source.name()
        ));
        warnings.extend(w.problems.iter().map(|p| format!("glibc's heap: {p}")));
    }
    let bypass = heap.audit.bypass_note();
    warnings.extend(bypass.map(str::to_string));
    let sample_rate = heap.audit.sample_rate;
    let unseen_unsampled = sample_rate != 0 && !unsampled;
    if unseen_unsampled {
        warnings.push(
            "the audit is sampled and the heap was not walked for the blocks the sample lacks \
             (not glibc's heap, or no memory in the snapshot): only sampled blocks are counted, \
             an unsampled leak is not seen"
                .to_string(),
        );
    }
    let unsampled = heap
        .audit
        .live
        .iter()
        .filter(|b| heap.is_unsampled(b.addr))
        .fold(Tally::default(), |t, b| Tally {
            bytes: t.bytes + b.size,
            blocks: t.blocks + 1,
        });
    let get = |k: LeakKind| tallies[k as usize];
    Leaks {
        definite: get(LeakKind::Definite),
        indirect: get(LeakKind::Indirect),
        possible: get(LeakKind::Possible),
        reachable: get(LeakKind::Reachable),
        groups,
        libc,
        libc_groups,
        suppressed,
        suppressions_used: used,
        scanned_bytes,
        root_bytes,
        scan_seconds: 0.0,
        scan_cpu_seconds: 0.0,
        warnings,
        sample_rate,
        unsampled,
        incomplete: bypass.is_some() || unseen_unsampled,
    }
}

/// Root ranges cut into pieces of at most this many bytes, so that two
/// threads share one big anonymous mapping.
const CHUNK: u64 = 4 << 20;

fn root_chunks(ranges: &[RootRange]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for r in ranges {
        let mut a = r.start;
        while a < r.end {
            let b = (a + CHUNK).min(r.end);
            out.push((a, b));
            a = b;
        }
    }
    out
}

/// Tests every aligned word of `[start, end)` against the blocks and calls
/// `hit(block, is_start_pointer)`.
#[inline]
fn scan_range(
    heap: &Heap<'_>,
    start: u64,
    end: u64,
    scanned: &mut u64,
    mut hit: impl FnMut(usize, bool),
) {
    let start = (start + 7) & !7;
    let end = end & !7;
    if start >= end {
        return;
    }
    let ix = &heap.index;
    heap.for_each_slice(start, end, |_, bytes| {
        *scanned += bytes.len() as u64;
        for w in bytes.chunks_exact(8) {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if let Some(i) = ix.find(v) {
                hit(i, ix.start(i) == v);
            }
        }
    });
}

#[inline]
fn scan_block(heap: &Heap<'_>, i: usize, scanned: &mut u64, hit: impl FnMut(usize, bool)) {
    let b = &heap.audit.live[i];
    scan_range(heap, b.addr, b.addr + b.size, scanned, hit);
}

/// A bitset that threads set concurrently.
struct Bits(Vec<AtomicU64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits((0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }

    /// Sets bit `i`; true if it was clear.
    #[inline]
    fn set(&self, i: usize) -> bool {
        let m = 1u64 << (i % 64);
        let w = &self.0[i / 64];
        // Most hits are on blocks already marked: a load avoids the
        // cache-line ping-pong of a locked RMW.
        w.load(Ordering::Relaxed) & m == 0 && w.fetch_or(m, Ordering::Relaxed) & m == 0
    }

    #[inline]
    fn get(&self, i: usize) -> bool {
        self.0[i / 64].load(Ordering::Relaxed) & (1u64 << (i % 64)) != 0
    }

    fn clear(&self) {
        for w in &self.0 {
            w.store(0, Ordering::Relaxed);
        }
    }
}

/// A shared work list for a fixed set of threads: each works from its own
/// stack, gives half away when another is idle, and all stop when every
/// one is idle and nothing is queued.
struct Pool {
    threads: usize,
    state: Mutex<PoolState>,
    wake: Condvar,
    hungry: AtomicBool,
}

struct PoolState {
    queue: Vec<u32>,
    idle: usize,
}

const BATCH: usize = 256;

impl Pool {
    fn new(threads: usize, queue: Vec<u32>) -> Pool {
        Pool {
            threads,
            state: Mutex::new(PoolState { queue, idle: 0 }),
            wake: Condvar::new(),
            hungry: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `step(item, &mut more)` until no work is left anywhere.
    fn work(&self, mut local: Vec<u32>, mut step: impl FnMut(usize, &mut Vec<u32>)) {
        loop {
            while let Some(i) = local.pop() {
                step(i as usize, &mut local);
                if local.len() > 2 * BATCH && self.hungry.load(Ordering::Relaxed) {
                    let give = local.split_off(local.len() / 2);
                    let mut st = self.lock();
                    st.queue.extend(give);
                    self.hungry.store(false, Ordering::Relaxed);
                    self.wake.notify_all();
                }
            }
            let mut st = self.lock();
            loop {
                if !st.queue.is_empty() {
                    let take = st.queue.len().saturating_sub(BATCH);
                    local.extend(st.queue.drain(take..));
                    break;
                }
                st.idle += 1;
                if st.idle == self.threads {
                    self.wake.notify_all();
                    return;
                }
                self.hungry.store(true, Ordering::Relaxed);
                st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                if st.idle == self.threads {
                    return;
                }
                st.idle -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, HeapBuilder, Synthetic, SP};

    fn opts(threads: usize) -> LeaksOptions {
        LeaksOptions {
            threads,
            ..LeaksOptions::default()
        }
    }

    /// The class of the block at `addr`, scanning with 1 and 4 threads
    /// (they must agree).
    fn kind(s: &Synthetic, addr: u64) -> LeakKind {
        kind_with(s, addr, &Roots::default())
    }

    fn kind_with(s: &Synthetic, addr: u64, roots: &Roots) -> LeakKind {
        let heap = s.heap();
        let i = heap.index.find(addr).expect("a block");
        let mut o = opts(1);
        o.roots = roots.clone();
        let one = classify(&heap, &o).0;
        o.threads = 4;
        let four = classify(&heap, &o).0;
        assert_eq!(one, four, "1 and 4 threads disagree");
        one[i]
    }

    fn kinds(s: &Synthetic, addrs: &[u64]) -> Vec<LeakKind> {
        let heap = s.heap();
        let k = classify(&heap, &opts(2)).0;
        addrs
            .iter()
            .map(|&a| k[heap.index.find(a).unwrap()])
            .collect()
    }

    use LeakKind::{Definite, Indirect, Possible, Reachable};

    #[test]
    fn a_register_holding_a_start_pointer_makes_a_block_reachable() {
        let mut b = HeapBuilder::new();
        let a = b.block(32);
        b.register(a);
        assert_eq!(kind(&b.build(), a), Reachable);
    }

    #[test]
    fn a_stack_word_above_sp_is_a_root() {
        let mut b = HeapBuilder::new();
        let a = b.block(32);
        let at = b.stack_word(a);
        assert_eq!(at, SP);
        let c = b.block(8);
        b.stack_word(0);
        b.stack_word(c);
        let s = b.build();
        assert_eq!(kinds(&s, &[a, c]), [Reachable, Reachable]);
    }

    #[test]
    fn a_stack_word_below_sp_is_dead_and_not_a_root() {
        let mut b = HeapBuilder::new();
        let a = b.block(32);
        assert_eq!(b.dead_stack_word(a), SP - 8);
        assert_eq!(kind(&b.build(), a), Definite);
    }

    #[test]
    fn module_data_is_a_root() {
        let mut b = HeapBuilder::new();
        let a = b.block(100);
        b.global(a);
        assert_eq!(kind(&b.build(), a), Reachable);
    }

    #[test]
    fn static_tls_below_the_thread_pointer_is_a_root() {
        let mut b = HeapBuilder::new();
        let a = b.block(24);
        assert!(b.tls_word(a) < synthetic::FS_BASE);
        assert_eq!(kind(&b.build(), a), Reachable);
    }

    #[test]
    fn anonymous_memory_is_a_root() {
        let mut b = HeapBuilder::new();
        let a = b.block(24);
        b.anon_word(a);
        assert_eq!(kind(&b.build(), a), Reachable);
    }

    #[test]
    fn an_arena_is_not_a_root_but_its_blocks_are_blocks() {
        let mut b = HeapBuilder::new();
        let lone = b.block(24);
        b.arena_word(lone);
        let inner = b.arena_block(48);
        let child = b.block(16);
        b.write(inner, child);
        b.global(inner);
        let s = b.build();
        assert_eq!(
            kinds(&s, &[lone, inner, child]),
            [Definite, Reachable, Reachable]
        );
    }

    #[test]
    fn a_pointer_in_the_audit_region_does_not_count() {
        let mut b = HeapBuilder::new();
        let a = b.block(24);
        b.audit_word(a);
        assert_eq!(kind(&b.build(), a), Definite);
    }

    #[test]
    fn blocks_nobody_points_at_are_definitely_lost_and_tallied() {
        let mut b = HeapBuilder::new();
        let kept = b.block(10);
        b.global(kept);
        let lost = [b.block(100), b.block(200), b.block(0)];
        let s = b.build();
        let heap = s.heap();
        let l = find(&heap, &opts(2), &synthetic::symbolizer());
        assert_eq!(
            l.definite,
            Tally {
                bytes: 300,
                blocks: 3
            }
        );
        assert_eq!(
            l.reachable,
            Tally {
                bytes: 10,
                blocks: 1
            }
        );
        assert_eq!(l.indirect, Tally::default());
        assert_eq!(l.possible, Tally::default());
        assert_eq!(kinds(&s, &lost), [Definite; 3]);
    }

    #[test]
    fn a_lost_tree_has_one_definite_root_and_the_rest_indirect() {
        // A binary tree of 7 nodes of 16 bytes: left and right children.
        let mut b = HeapBuilder::new();
        let nodes: Vec<u64> = (0..7).map(|_| b.block(16)).collect();
        // Root in the middle of the address order, so "definite" is not
        // just "lowest address".
        let order = [3, 1, 5, 0, 2, 4, 6];
        for (k, &n) in order.iter().enumerate() {
            for (slot, c) in [2 * k + 1, 2 * k + 2].into_iter().enumerate() {
                if c < 7 {
                    b.write(nodes[n] + 8 * slot as u64, nodes[order[c]]);
                }
            }
        }
        let s = b.build();
        let got = kinds(&s, &nodes);
        assert_eq!(got[3], Definite);
        assert_eq!(got.iter().filter(|&&k| k == Indirect).count(), 6);
        let l = find(&s.heap(), &opts(1), &synthetic::symbolizer());
        assert_eq!(
            l.definite,
            Tally {
                bytes: 16,
                blocks: 1
            }
        );
        assert_eq!(
            l.indirect,
            Tally {
                bytes: 96,
                blocks: 6
            }
        );
    }

    /// Issue 11 (item 4): valgrind's loss record, "N (D direct, I
    /// indirect)": the definite root's group carries the bytes and blocks
    /// it owns, the lost tree under it and the earlier leader it absorbed.
    #[test]
    fn issue_11_a_definite_group_carries_the_indirect_blocks_it_owns() {
        let mut b = HeapBuilder::new();
        b.stack(1, &[0x10]).stack(2, &[0x20]).stack(3, &[0x30]);
        // An earlier lost block (stack 3) that the root below points at:
        // it leads its own clique first, then the root absorbs it.
        let early = b.block_with(40, 3, 1);
        let root = b.block_with(100, 1, 1);
        let children: Vec<u64> = (0..10).map(|_| b.block_with(1000, 2, 1)).collect();
        // The root points at every child, and at the early block.
        for (k, &c) in children.iter().enumerate() {
            b.write(root + 8 * k as u64, c);
        }
        b.write(root + 80, early);
        // A second, lone definite block of the root's stack, owning nothing.
        let lone = b.block_with(100, 1, 1);
        let s = b.build();
        assert_eq!(
            kinds(&s, &[early, root, lone]),
            [Indirect, Definite, Definite]
        );
        let l = find(&s.heap(), &opts(1), &synthetic::symbolizer());
        let definite: Vec<&Group> = l.groups.iter().filter(|g| g.kind == Definite).collect();
        assert_eq!(definite.len(), 1, "{:?}", l.groups);
        let g = definite[0];
        assert_eq!((g.bytes, g.blocks), (200, 2));
        assert_eq!(g.indirect_bytes, Some(10 * 1000 + 40));
        assert_eq!(g.indirect_blocks, Some(11));
        // The indirect groups are still listed, with no loss record.
        let indirect: u64 = l
            .groups
            .iter()
            .filter(|g| g.kind == Indirect)
            .inspect(|g| assert_eq!(g.indirect_bytes, None))
            .map(|g| g.bytes)
            .sum();
        assert_eq!(indirect, 10 * 1000 + 40);
        assert_eq!(l.indirect.bytes, indirect);
    }

    #[test]
    fn an_unreachable_cycle_has_exactly_one_definite_block() {
        let mut b = HeapBuilder::new();
        let ring: Vec<u64> = (0..5).map(|_| b.block(16)).collect();
        for k in 0..5 {
            b.write(ring[k], ring[(k + 1) % 5]);
        }
        let s = b.build();
        // Valgrind's rule: the first in address order leads the clique.
        assert_eq!(
            kinds(&s, &ring),
            [Definite, Indirect, Indirect, Indirect, Indirect]
        );
    }

    #[test]
    fn a_lost_block_pointing_into_a_cycle_leads_it_when_it_comes_first() {
        let mut b = HeapBuilder::new();
        let head = b.block(16);
        let ring: Vec<u64> = (0..3).map(|_| b.block(16)).collect();
        for k in 0..3 {
            b.write(ring[k], ring[(k + 1) % 3]);
        }
        b.write(head, ring[1]);
        let s = b.build();
        assert_eq!(
            kinds(&s, &[head, ring[0], ring[1], ring[2]]),
            [Definite, Indirect, Indirect, Indirect]
        );
    }

    #[test]
    fn a_lost_block_after_a_cycle_it_points_into_is_a_second_definite_one() {
        // Valgrind's clique walk goes in address order and does not walk
        // through blocks already made indirect, so the ring's lowest block
        // leads its own clique before the head is seen. We keep that rule
        // (the numbers match valgrind's on the same heap).
        let mut b = HeapBuilder::new();
        let ring: Vec<u64> = (0..3).map(|_| b.block(16)).collect();
        for k in 0..3 {
            b.write(ring[k], ring[(k + 1) % 3]);
        }
        let head = b.block(16);
        b.write(head, ring[1]);
        let s = b.build();
        assert_eq!(
            kinds(&s, &[ring[0], ring[1], ring[2], head]),
            [Definite, Indirect, Indirect, Definite]
        );
    }

    #[test]
    fn a_later_lost_block_pointing_at_an_earlier_leader_absorbs_it() {
        let mut b = HeapBuilder::new();
        let first = b.block(16);
        let second = b.block(16);
        b.write(second, first);
        let s = b.build();
        assert_eq!(kinds(&s, &[first, second]), [Indirect, Definite]);
    }

    #[test]
    fn an_interior_pointer_only_makes_a_block_and_what_it_leads_to_possibly_lost() {
        let mut b = HeapBuilder::new();
        let a = b.block(64);
        let child = b.block(16);
        let grandchild = b.block(16);
        b.write(a + 8, child);
        b.write(child, grandchild);
        b.global(a + 24);
        let s = b.build();
        assert_eq!(kinds(&s, &[a, child, grandchild]), [Possible; 3]);
    }

    #[test]
    fn an_interior_pointer_from_a_reachable_block_makes_possibly_lost() {
        let mut b = HeapBuilder::new();
        let a = b.block(32);
        let c = b.block(32);
        b.global(a);
        b.write(a, c + 16);
        let s = b.build();
        assert_eq!(kinds(&s, &[a, c]), [Reachable, Possible]);
    }

    #[test]
    fn a_start_pointer_beats_an_interior_pointer() {
        let mut b = HeapBuilder::new();
        let a = b.block(64);
        let c = b.block(16);
        b.global(a + 8);
        b.stack_word(a);
        b.write(a + 8, c);
        let s = b.build();
        assert_eq!(kinds(&s, &[a, c]), [Reachable, Reachable]);
    }

    #[test]
    fn a_pointer_one_past_the_end_is_not_inside_the_block() {
        let mut b = HeapBuilder::new();
        let a = b.block(32);
        b.global(a + 32);
        assert_eq!(kind(&b.build(), a), Definite);
    }

    #[test]
    fn a_pointer_one_past_the_end_of_adjacent_blocks_is_the_next_ones_start() {
        let mut b = HeapBuilder::new();
        let a = b.place(synthetic::BRK + 0x8000, 32, 1, 1);
        let next = b.place(a + 32, 32, 1, 1);
        b.global(a + 32);
        let s = b.build();
        assert_eq!(kinds(&s, &[a, next]), [Definite, Reachable]);
    }

    #[test]
    fn a_zero_sized_block_is_reached_by_its_start_only() {
        let mut b = HeapBuilder::new();
        let z = b.block(0);
        let z2 = b.block(0);
        b.global(z);
        b.global(z2 + 1);
        let s = b.build();
        assert_eq!(kinds(&s, &[z, z2]), [Reachable, Definite]);
        let l = find(&s.heap(), &opts(1), &synthetic::symbolizer());
        assert_eq!(
            l.reachable,
            Tally {
                bytes: 0,
                blocks: 1
            }
        );
    }

    #[test]
    fn pointers_at_unaligned_positions_do_not_count() {
        let mut b = HeapBuilder::new();
        let a = b.block(32);
        let c = b.block(32);
        let d = b.block(32);
        b.write(synthetic::DATA + 0x104, a);
        b.global(c);
        b.write(c + 3, d);
        let s = b.build();
        assert_eq!(kinds(&s, &[a, c, d]), [Definite, Reachable, Definite]);
    }

    #[test]
    fn each_root_kind_can_be_switched_off() {
        let mut b = HeapBuilder::new();
        let by_reg = b.block(8);
        b.register(by_reg);
        let by_stack = b.block(8);
        b.stack_word(by_stack);
        let by_global = b.block(8);
        b.global(by_global);
        let by_tls = b.block(8);
        b.tls_word(by_tls);
        let by_anon = b.block(8);
        b.anon_word(by_anon);
        let s = b.build();
        let all = [by_reg, by_stack, by_global, by_tls, by_anon];
        for (k, name) in Roots::NAMES.iter().enumerate() {
            let others: Vec<&str> = Roots::NAMES.iter().copied().filter(|n| n != name).collect();
            let roots = Roots::parse(&others.join(",")).unwrap();
            for (j, &a) in all.iter().enumerate() {
                let want = if j == k { Definite } else { Reachable };
                assert_eq!(kind_with(&s, a, &roots), want, "without {name}");
            }
        }
        let none = Roots::parse("").unwrap();
        assert!(all.iter().all(|&a| kind_with(&s, a, &none) == Definite));
    }

    #[test]
    fn a_long_chain_of_start_pointers_is_reachable_and_its_lost_twin_is_not() {
        let mut b = HeapBuilder::new();
        let kept: Vec<u64> = (0..200).map(|_| b.block(16)).collect();
        let lost: Vec<u64> = (0..200).map(|_| b.block(16)).collect();
        for w in kept.windows(2).chain(lost.windows(2)) {
            b.write(w[0] + 8, w[1]);
        }
        b.global(kept[0]);
        let s = b.build();
        let l = find(&s.heap(), &opts(2), &synthetic::symbolizer());
        assert_eq!(l.reachable.blocks, 200);
        assert_eq!(l.definite.blocks, 1);
        assert_eq!(l.indirect.blocks, 199);
        assert_eq!(kind(&s, lost[0]), Definite);
    }

    #[test]
    fn a_lost_block_pointing_at_a_reachable_one_changes_nothing() {
        let mut b = HeapBuilder::new();
        let kept = b.block(16);
        let lost = b.block(16);
        b.global(kept);
        b.write(lost, kept);
        let s = b.build();
        assert_eq!(kinds(&s, &[kept, lost]), [Reachable, Definite]);
    }

    #[test]
    fn one_and_four_threads_agree_on_a_big_random_heap() {
        let mut b = HeapBuilder::new();
        let blocks: Vec<u64> = (0..3000).map(|i| b.block(16 + (i % 5) * 8)).collect();
        // A fixed pseudo-random graph: a few roots, start and interior
        // pointers, cycles.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for &a in &blocks {
            if rnd() % 3 == 0 {
                let t = blocks[(rnd() % 3000) as usize];
                let off = if rnd() % 4 == 0 { 8 } else { 0 };
                b.write(a, t + off);
            }
        }
        for _ in 0..20 {
            let t = blocks[(rnd() % 3000) as usize];
            b.global(t);
        }
        let s = b.build();
        let heap = s.heap();
        let one = classify(&heap, &opts(1)).0;
        let four = classify(&heap, &opts(4)).0;
        assert_eq!(one, four);
        for k in [Reachable, Possible, Indirect, Definite] {
            assert!(one.contains(&k), "a graph this size has {k:?} blocks");
        }
    }

    #[test]
    fn groups_are_keyed_by_stack_frames_and_lost_ones_come_first() {
        let mut b = HeapBuilder::new();
        b.stack(2, &[0x10, 0x20]);
        b.stack(3, &[0x10, 0x20]); // the same frames, interned twice
        b.stack(4, &[0x30]);
        let x = b.block_with(10, 2, 1);
        let y = b.block_with(20, 3, 1);
        let r = b.block_with(1000, 4, 1);
        b.global(r);
        let s = b.build();
        let l = find(&s.heap(), &opts(1), &synthetic::symbolizer());
        assert_eq!(l.groups.len(), 2);
        let g = &l.groups[0];
        assert_eq!(
            (g.kind, g.blocks, g.bytes, g.stack_id.0),
            (Definite, 2, 30, 2)
        );
        assert_eq!(g.example_address, x, "the oldest");
        assert_ne!(g.example_address, y);
        assert_eq!(l.groups[1].kind, Reachable);
        assert_eq!(l.groups[1].stack.len(), 1);
    }

    #[test]
    fn pool_visits_every_item_once_with_one_and_several_threads() {
        for threads in [1, 2, 4] {
            // A binary tree of 2^16 nodes, discovered from the root.
            let n = 1usize << 16;
            let seen = Bits::new(n);
            let count = AtomicUsize::new(0);
            seen.set(1);
            let pool = Pool::new(threads, vec![1]);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        pool.work(Vec::new(), |i, out| {
                            count.fetch_add(1, Ordering::Relaxed);
                            for c in [2 * i, 2 * i + 1] {
                                if c < n && seen.set(c) {
                                    out.push(c as u32);
                                }
                            }
                        })
                    });
                }
            });
            assert_eq!(count.load(Ordering::Relaxed), n - 1, "{threads} threads");
        }
    }
}
