//! Mappings: the one [`Mapping`] type, the one `/proc/PID/maps`/`smaps`
//! parser ([`parse_smaps`]) and the one classifier ([`classify`]) of
//! mappings into [`Region`]s. `watch` and `trend`, snapshots and `info`, and
//! the heap model all see memory through these, so they agree about it.
//!
//! The parser is a pure function over text so that it can be tested with
//! the ugly inputs the kernel really produces (paths with spaces and
//! parentheses, `(deleted)` paths, records cut short because the process
//! exited while we read). Reading the files of a live process is
//! `leaktrail-capture`'s business.
//!
//! # Regions
//!
//! Every mapping belongs to exactly one [`Region`]; the rules, in order:
//!
//! 0. The tracer's own memory (its audit region, the guard page below its
//!    header, its tables) is [`Region::Tracer`], never the program's: the
//!    tracer names every mapping it makes `[anon:leaktrail]`, and on kernels
//!    without anonymous-mapping names (before 5.17, or without
//!    `CONFIG_ANON_VMA_NAME`) [`mark_tracer`] takes the header's address,
//!    which `leaktrail run` learns from the start hand-over (issue 13).
//! 1. `[heap]` is the brk heap. `[stack]` (and `[stack:TID]` on old
//!    kernels) is the main thread's stack. Names set with
//!    `PR_SET_VMA_ANON_NAME` by glibc's `glibc.mem.decorate_maps` tunable
//!    (`[anon: glibc: malloc arena]`, `[anon: glibc: malloc]`,
//!    `[anon: glibc: pthread stack: …]`) are taken at their word.
//! 2. Shared memory: `/dev/shm/…`, `/SYSV…`, `/memfd:…`, `/dev/zero`, and
//!    any shared (`s`) mapping without a file.
//! 3. Any other path (including `(deleted)` files and the kernel's
//!    `[vdso]`/`[vvar]`/`[vsyscall]`) is `file`.
//! 4. A private anonymous mapping is `heap` when it is a glibc arena heap.
//!    glibc's non-main arenas live in "heaps" of `HEAP_MAX_SIZE` (64 MiB on
//!    64-bit) that `new_heap()` reserves `PROT_NONE` at a 64 MiB-aligned
//!    address and opens read-write from the bottom as the arena grows. So
//!    an arena heap is a read-write anonymous mapping that starts on a
//!    64 MiB boundary and is either exactly 64 MiB long, or directly
//!    followed by a `---p` anonymous mapping that ends exactly 64 MiB after
//!    that boundary. Requiring both ends to sit on the boundaries keeps
//!    runtimes that reserve and commit (a GC heap) from matching by chance.
//! 5. A private anonymous mapping is `stack` when a thread's stack pointer
//!    (from `/proc/PID/task/TID/syscall`, available for every thread that is
//!    not on a CPU at that instant) lies inside it, or when it sits directly
//!    above a small (at most 64 KiB) `---p` anonymous guard mapping that is
//!    not an arena tail — the layout glibc's `allocate_stack()` produces.
//!    The stack-pointer evidence is what we trust; the guard shape (for
//!    `rw-p` mappings only: V8 also puts guard pages around its executable
//!    code pages) catches threads that were running while we looked.
//! 6. Every other private anonymous mapping is `anon` (a GC heap, a custom
//!    allocator, and also glibc's own `mmap`ed chunks above
//!    `M_MMAP_THRESHOLD`, which from outside look like any other mmap).
//!
//! Guard and tail mappings (`---p`) go with the region they guard; they
//! hold no resident memory either way.
//!
//! ```
//! use leaktrail_recording::maps::{classify, parse_smaps, Region, RegionBytes};
//!
//! let text = "\
//! 5555000000-5555100000 rw-p 00000000 00:00 0          [heap]
//! Rss:                 512 kB
//! 7f0000000000-7f0000021000 rw-p 00000000 00:00 0
//! Rss:                 132 kB
//! 7f0000021000-7f0004000000 ---p 00000000 00:00 0
//! ";
//! let mut maps = parse_smaps(text).unwrap();
//! classify(&mut maps, &[]);
//! // The second mapping is a glibc arena heap: 64 MiB-aligned, with its
//! // PROT_NONE tail ending on the next 64 MiB boundary.
//! assert_eq!(maps[1].region, Region::Heap);
//! assert_eq!(RegionBytes::of(&maps).heap, (512 + 132) * 1024);
//! ```

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// glibc's `HEAP_MAX_SIZE` on 64-bit targets (`2 * DEFAULT_MMAP_THRESHOLD_MAX`).
pub const ARENA_HEAP_SIZE: u64 = 64 << 20;
/// The largest `---p` mapping we accept as a thread stack's guard.
pub const MAX_STACK_GUARD: u64 = 64 << 10;

/// Where a mapping's memory comes from, as far as `/proc` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// The brk heap and glibc's arena heaps.
    Heap,
    /// Other private anonymous memory: a GC heap, big `malloc`s, custom pools.
    Anon,
    /// The main thread's stack and thread stacks.
    Stack,
    /// File-backed mappings: code, data, mapped files.
    File,
    /// Shared memory: tmpfs, SysV, memfd, shared anonymous mappings.
    Shmem,
    /// leaktrail's own memory in the target: the tracer's audit region.
    /// Not one of the program's regions ([`Region::ALL`]): `trend` judges
    /// the program without it and reports show it on a line of its own.
    #[serde(rename = "leaktrail")]
    Tracer,
}

impl Region {
    /// The program's regions, in display order ([`Region::Tracer`] is
    /// not among them).
    pub const ALL: [Region; 5] = [
        Region::Heap,
        Region::Anon,
        Region::Stack,
        Region::File,
        Region::Shmem,
    ];

    /// The region's name as written in recordings and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Region::Heap => "heap",
            Region::Anon => "anon",
            Region::Stack => "stack",
            Region::File => "file",
            Region::Shmem => "shmem",
            Region::Tracer => "leaktrail",
        }
    }

    /// The region with that name.
    pub fn from_name(name: &str) -> Option<Region> {
        Region::ALL
            .into_iter()
            .chain([Region::Tracer])
            .find(|r| r.name() == name)
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Resident bytes per region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionBytes {
    /// `heap` bytes.
    pub heap: u64,
    /// `anon` bytes.
    pub anon: u64,
    /// `stack` bytes.
    pub stack: u64,
    /// `file` bytes.
    pub file: u64,
    /// `shmem` bytes.
    pub shmem: u64,
    /// The tracer's own bytes ([`Region::Tracer`]), not the program's.
    /// Absent from recordings made before issue 13 (and written only when
    /// there are any), which read as 0.
    #[serde(default, rename = "leaktrail", skip_serializing_if = "is_zero")]
    pub tracer: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RegionBytes {
    /// The bytes of one region.
    pub fn get(&self, region: Region) -> u64 {
        match region {
            Region::Heap => self.heap,
            Region::Anon => self.anon,
            Region::Stack => self.stack,
            Region::File => self.file,
            Region::Shmem => self.shmem,
            Region::Tracer => self.tracer,
        }
    }

    /// Mutable access to the bytes of one region.
    pub fn get_mut(&mut self, region: Region) -> &mut u64 {
        match region {
            Region::Heap => &mut self.heap,
            Region::Anon => &mut self.anon,
            Region::Stack => &mut self.stack,
            Region::File => &mut self.file,
            Region::Shmem => &mut self.shmem,
            Region::Tracer => &mut self.tracer,
        }
    }

    /// Sums the resident bytes of classified mappings.
    pub fn of(mappings: &[Mapping]) -> RegionBytes {
        let mut out = RegionBytes::default();
        for m in mappings {
            *out.get_mut(m.region) += m.rss;
        }
        out
    }

    /// The program's resident bytes: every region but the tracer's.
    pub fn program(&self) -> u64 {
        Region::ALL.iter().map(|&r| self.get(r)).sum()
    }
}

/// One mapping of `/proc/PID/smaps`, with its counters in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Permissions as the kernel prints them, e.g. `rw-p`.
    pub perms: String,
    /// File offset.
    pub offset: u64,
    /// Inode of the file, 0 for anonymous memory.
    pub inode: u64,
    /// The path or pseudo-name (`[heap]`), without the ` (deleted)` suffix;
    /// empty for anonymous memory.
    #[serde(default)]
    pub path: String,
    /// The file was deleted after it was mapped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The region we classified it into.
    pub region: Region,
    /// `Rss`.
    pub rss: u64,
    /// `Pss`.
    #[serde(default)]
    pub pss: u64,
    /// `Private_Dirty`.
    #[serde(default)]
    pub private_dirty: u64,
    /// `Anonymous`.
    #[serde(default)]
    pub anonymous: u64,
    /// `Swap`.
    #[serde(default)]
    pub swap: u64,
    /// The two-letter `VmFlags` codes (`smaps` only). Not written into
    /// recordings: only a snapshot's choice of what to capture reads them.
    #[serde(skip)]
    pub vm_flags: Vec<String>,
}

impl Mapping {
    /// Size of the address range.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// No file and no pseudo-name: plain anonymous memory as `mmap` made
    /// it (what the arena and stack rules look at).
    pub fn is_unnamed(&self) -> bool {
        self.path.is_empty() && self.inode == 0
    }

    /// Anonymous memory, named or not (`[heap]`, `[stack]`, `[anon:…]`,
    /// none): neither a file nor one of the kernel's special mappings.
    pub fn is_anonymous(&self) -> bool {
        !self.is_file() && !self.is_special()
    }

    /// Shared (`s`) rather than private (`p`).
    pub fn is_shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }

    /// No access at all: a guard page or an uncommitted reservation.
    pub fn is_inaccessible(&self) -> bool {
        self.perms.starts_with("---")
    }

    /// Readable and writable.
    pub fn is_read_write(&self) -> bool {
        self.perms.starts_with("rw")
    }

    /// Backed by a file: not anonymous memory and not a kernel pseudo-path.
    pub fn is_file(&self) -> bool {
        self.inode != 0 && !self.path.is_empty() && !self.path.starts_with('[')
    }

    /// `[vvar]`, `[vsyscall]`, `[vdso]` and friends: set up by the kernel.
    pub fn is_special(&self) -> bool {
        matches!(
            self.path.as_str(),
            "[vvar]" | "[vvar_vclock]" | "[vsyscall]" | "[vdso]" | "[uprobes]"
        )
    }

    /// Readable.
    pub fn is_readable(&self) -> bool {
        self.perms.as_bytes().first() == Some(&b'r')
    }

    /// Writable.
    pub fn is_writable(&self) -> bool {
        self.perms.as_bytes().get(1) == Some(&b'w')
    }

    /// Executable.
    pub fn is_executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }

    /// Whether `smaps` listed `flag` (e.g. `gd`, `dd`) in `VmFlags`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }

    /// The path column as the kernel prints it, ` (deleted)` included.
    pub fn maps_path(&self) -> String {
        if self.deleted {
            format!("{} (deleted)", self.path)
        } else {
            self.path.clone()
        }
    }

    /// A human name: the path, or `[anon]` for anonymous memory.
    pub fn display_name(&self) -> String {
        match (self.path.is_empty(), self.deleted) {
            (true, _) => "[anon]".to_string(),
            (false, true) => format!("{} (deleted)", self.path),
            (false, false) => self.path.clone(),
        }
    }
}

/// A parse failure; the caller adds the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Parses a `Key:   123 kB` line into the key and a byte count.
pub fn parse_field(line: &str) -> Option<(&str, u64)> {
    let (key, value) = line.split_once(':')?;
    let mut parts = value.split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    let scale = match parts.next() {
        Some("kB") => 1024,
        Some(_) => return None,
        None => 1,
    };
    Some((key.trim(), n.saturating_mul(scale)))
}

/// A parsed mapping header line, before counters and classification.
fn parse_header(line: &str) -> Option<Mapping> {
    let l = leaktrail_format::maps_line::parse(line.as_bytes())?;
    let mut path = String::from_utf8_lossy(l.path).into_owned();
    let deleted = path.ends_with(" (deleted)");
    if deleted {
        path.truncate(path.len() - " (deleted)".len());
    }
    Some(Mapping {
        start: l.start,
        end: l.end,
        perms: String::from_utf8_lossy(&l.perms).into_owned(),
        offset: l.offset,
        inode: l.inode,
        path,
        deleted,
        region: Region::Anon,
        rss: 0,
        pss: 0,
        private_dirty: 0,
        anonymous: 0,
        swap: 0,
        vm_flags: Vec::new(),
    })
}

/// Parses `/proc/PID/smaps` (or `/proc/PID/maps`, whose mappings then have
/// no counters). Mappings come back in address order and unclassified (all
/// `anon`); see [`classify`]. A record cut short (the process exited or
/// unmapped while we read) keeps whatever counters it had. Lines that are
/// neither a header nor a counter are ignored, so new kernel fields do not
/// break us.
pub fn parse_smaps(text: &str) -> Result<Vec<Mapping>, ParseError> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(m) = out.last_mut() {
                m.vm_flags = flags.split_ascii_whitespace().map(str::to_string).collect();
            }
        } else if let Some((key, v)) = parse_field(line) {
            let Some(m) = out.last_mut() else {
                return Err(ParseError(format!(
                    "expected a mapping header first, found {line:?}"
                )));
            };
            match key {
                "Rss" => m.rss = v,
                "Pss" => m.pss = v,
                "Private_Dirty" => m.private_dirty = v,
                "Anonymous" => m.anonymous = v,
                "Swap" => m.swap = v,
                _ => {}
            }
        } else if let Some(m) = parse_header(line) {
            out.push(m);
        }
    }
    Ok(out)
}

/// `now` (from `maps`, read while the process is stopped) with the smaps
/// counters and VmFlags of the same mapping in `before` (read just before
/// the stop). A mapping that is new, or changed its range, permissions or
/// file since, keeps no counters and no flags: callers treat that as
/// "unknown".
pub fn with_details(mut now: Vec<Mapping>, before: &[Mapping]) -> Vec<Mapping> {
    let by_start: std::collections::HashMap<u64, &Mapping> =
        before.iter().map(|b| (b.start, b)).collect();
    for m in &mut now {
        if let Some(b) = by_start.get(&m.start) {
            let same =
                b.end == m.end && b.perms == m.perms && b.offset == m.offset && b.inode == m.inode;
            if same {
                m.rss = b.rss;
                m.pss = b.pss;
                m.private_dirty = b.private_dirty;
                m.anonymous = b.anonymous;
                m.swap = b.swap;
                m.vm_flags = b.vm_flags.clone();
            }
        }
    }
    now
}

fn is_shmem_path(path: &str) -> bool {
    path.starts_with("/dev/shm/")
        || path.starts_with("/SYSV")
        || path.starts_with("/memfd:")
        || path.starts_with("memfd:")
        || path == "/dev/zero"
}

/// Whether `mappings[i]` is the read-write part of a glibc arena heap (rule 4
/// of the module documentation).
fn is_arena_heap(mappings: &[Mapping], i: usize) -> bool {
    let m = &mappings[i];
    if !m.is_unnamed() || m.is_shared() || !m.is_read_write() {
        return false;
    }
    if m.start % ARENA_HEAP_SIZE != 0 {
        return false;
    }
    if m.size() == ARENA_HEAP_SIZE {
        return true;
    }
    mappings.get(i + 1).is_some_and(|tail| {
        tail.start == m.end
            && tail.is_unnamed()
            && tail.is_inaccessible()
            && !tail.is_shared()
            && tail.end == m.start + ARENA_HEAP_SIZE
    })
}

/// Classifies every mapping (in address order, as [`parse_smaps`] returns
/// them) into its [`Region`]. `stack_pointers` are the threads' stack
/// pointers where known (from `/proc/PID/task/TID/syscall`, or a snapshot's
/// registers); they are the strongest
/// evidence of a thread stack.
pub fn classify(mappings: &mut [Mapping], stack_pointers: &[u64]) {
    let mut arena_tail: HashSet<usize> = HashSet::new();
    let mut regions = Vec::with_capacity(mappings.len());
    for i in 0..mappings.len() {
        let m = &mappings[i];
        let path = m.path.as_str();
        let region = if path.starts_with(TRACER_NAME) {
            Region::Tracer
        } else if path == "[heap]"
            || path.starts_with("[anon: glibc: malloc")
            || path.starts_with("[anon:glibc: malloc")
        {
            Region::Heap
        } else if path == "[stack]"
            || path.starts_with("[stack:")
            || path.starts_with("[anon: glibc: pthread stack")
            || path.starts_with("[anon:glibc: pthread stack")
        {
            Region::Stack
        } else if is_shmem_path(path) || (m.is_shared() && (path.is_empty() || m.inode == 0)) {
            Region::Shmem
        } else if path.starts_with("[anon:") {
            Region::Anon
        } else if !path.is_empty() {
            Region::File
        } else if arena_tail.contains(&i) || is_arena_heap(mappings, i) {
            if !arena_tail.contains(&i) && i + 1 < mappings.len() {
                arena_tail.insert(i + 1);
            }
            Region::Heap
        } else if m.is_read_write()
            && (holds_stack_pointer(m, stack_pointers)
                || (i > 0 && is_stack_guard(&mappings[i - 1], m, &arena_tail, i - 1)))
        {
            Region::Stack
        } else {
            Region::Anon
        };
        regions.push(region);
    }
    // Guards take the region of the stack they protect.
    for i in 0..mappings.len() {
        if regions[i] == Region::Anon
            && mappings[i].is_inaccessible()
            && mappings[i].is_unnamed()
            && i + 1 < mappings.len()
            && regions[i + 1] == Region::Stack
            && mappings[i].end == mappings[i + 1].start
        {
            regions[i] = Region::Stack;
        }
    }
    for (m, r) in mappings.iter_mut().zip(regions) {
        m.region = r;
    }
}

/// The name the tracer gives its mappings (`PR_SET_VMA_ANON_NAME`), as
/// `/proc/PID/maps` shows it.
pub const TRACER_NAME: &str = "[anon:leaktrail]";

/// Marks the tracer's audit region by its header's address, for kernels
/// that do not show anonymous-mapping names: the mapping that starts at
/// `header` (the tracer maps a `PROT_NONE` page below its header so that
/// the header always starts a mapping), that guard page, and every
/// anonymous mapping lying wholly inside `ranges` (the tables, from the
/// header's descriptors: [`crate::audit::locate`]). Without names the
/// kernel merges neighbouring anonymous mappings, so a table merged with
/// the program's memory stays where the rules put it. Call after
/// [`classify`].
pub fn mark_tracer(mappings: &mut [Mapping], header: u64, ranges: &[(u64, u64)]) {
    if header == 0 {
        return;
    }
    let page = |a: u64| a & !(leaktrail_format::PAGE_SIZE - 1);
    let mut spans: Vec<(u64, u64)> = ranges
        .iter()
        .map(|&(a, b)| (page(a), page(b + leaktrail_format::PAGE_SIZE - 1)))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    for m in mappings.iter_mut() {
        let inside = merged.iter().any(|&(a, b)| a <= m.start && m.end <= b);
        if inside && m.is_anonymous() && !m.is_shared() && m.path.is_empty() {
            m.region = Region::Tracer;
        }
    }
    if let Some(i) = mappings
        .iter()
        .position(|m| m.start == header && m.is_anonymous() && !m.is_shared())
    {
        mappings[i].region = Region::Tracer;
        if let Some(g) = i.checked_sub(1).map(|g| &mut mappings[g]) {
            if g.end == header && g.is_inaccessible() && g.is_anonymous() {
                g.region = Region::Tracer;
            }
        }
    }
}

fn holds_stack_pointer(m: &Mapping, stack_pointers: &[u64]) -> bool {
    stack_pointers.iter().any(|&sp| sp >= m.start && sp < m.end)
}

fn is_stack_guard(
    guard: &Mapping,
    stack: &Mapping,
    arena_tail: &HashSet<usize>,
    gi: usize,
) -> bool {
    // Stacks are `rw-p`: an executable mapping between guards is JIT code
    // (V8 puts guard pages around its code pages), not a stack.
    stack.perms == "rw-p"
        && guard.end == stack.start
        && guard.is_unnamed()
        && guard.is_inaccessible()
        && !guard.is_shared()
        && guard.size() <= MAX_STACK_GUARD
        && !arena_tail.contains(&gi)
}

/// Where a memory limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// cgroup v2 `memory.max` of the process's cgroup.
    CgroupV2,
    /// cgroup v1 `memory.limit_in_bytes`.
    CgroupV1,
    /// `MemTotal` of `/proc/meminfo`.
    Physical,
}

/// A memory limit the process would run into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLimit {
    /// The limit in bytes.
    pub bytes: u64,
    /// Where it came from.
    pub source: LimitSource,
}

/// The first two of `spans` (`[start, end)`) that overlap, in address
/// order: the check every reader of a recorded address space makes, so
/// that sums over it fit in a `u64`.
pub(crate) fn first_overlap(mut spans: Vec<(u64, u64)>) -> Option<((u64, u64), (u64, u64))> {
    spans.sort_unstable();
    spans
        .windows(2)
        .find(|w| w[0].1 > w[1].0)
        .map(|w| (w[0], w[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Rss:                  12 kB
Pss:                  12 kB
Private_Dirty:        12 kB
Anonymous:            12 kB
VmFlags: rd wr mr mw me ac
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
Rss:                 132 kB
Anonymous:           132 kB
7f0000021000-7f0004000000 ---p 00000000 00:00 0 
Rss:                   0 kB
7f1000000000-7f1000001000 ---p 00000000 00:00 0 
7f1000001000-7f1000801000 rw-p 00000000 00:00 0 
Rss:                  16 kB
7f2000000000-7f2000100000 rw-p 00000000 00:00 0 
Rss:                 512 kB
7f3000000000-7f3000010000 r-xp 00001000 fd:01 12345                      /usr/lib/my lib (v2).so
Rss:                  64 kB
7f3000010000-7f3000020000 rw-p 00000000 fd:01 999                        /tmp/data (deleted)
Rss:                   8 kB
7f3000020000-7f3000030000 rw-s 00000000 00:01 77                         /dev/shm/ring
Rss:                  32 kB
7f3000030000-7f3000040000 rw-s 00000000 00:01 78                         /memfd:pool (deleted)
Rss:                   4 kB
7f3000040000-7f3000050000 rw-s 00000000 00:00 0 
Rss:                   4 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  20 kB
7ffc00100000-7ffc00102000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
7ffc00200000-7ffc00300000 rw-p 00000000 00:00 0                          [anon:v8 heap]
Rss:                   4 kB
7ffc00300000-7ffc00400000 rw-p 00000000 00:00 0                          [anon: glibc: malloc arena]
Rss:                   4 kB
7ffc00400000-7ffc00500000 rw-p 00000000 00:00 0 
Rss:                  ";

    #[test]
    fn smaps_parse_and_classify() {
        let mut maps = parse_smaps(SMAPS).unwrap();
        classify(&mut maps, &[]);
        let got: Vec<(&str, Region, u64)> = maps
            .iter()
            .map(|m| (m.path.as_str(), m.region, m.rss / 1024))
            .collect();
        assert_eq!(
            got,
            vec![
                ("[heap]", Region::Heap, 12),
                ("", Region::Heap, 132),
                ("", Region::Heap, 0),
                ("", Region::Stack, 0),
                ("", Region::Stack, 16),
                ("", Region::Anon, 512),
                ("/usr/lib/my lib (v2).so", Region::File, 64),
                ("/tmp/data", Region::File, 8),
                ("/dev/shm/ring", Region::Shmem, 32),
                ("/memfd:pool", Region::Shmem, 4),
                ("", Region::Shmem, 4),
                ("[stack]", Region::Stack, 20),
                ("[vdso]", Region::File, 4),
                ("[anon:v8 heap]", Region::Anon, 4),
                ("[anon: glibc: malloc arena]", Region::Heap, 4),
                ("", Region::Anon, 0),
            ]
        );
        assert!(maps[7].deleted);
        assert!(maps[9].deleted);
        assert_eq!(maps[6].offset, 0x1000);
        assert_eq!(maps[6].inode, 12345);
        assert_eq!(maps[0].private_dirty, 12 * 1024);
        let by = RegionBytes::of(&maps);
        assert_eq!(by.heap, (12 + 132 + 4) * 1024);
        assert_eq!(by.stack, (16 + 20) * 1024);
    }

    /// Issue 13: the tracer's mappings are its own, by name or by header.
    #[test]
    fn tracer_memory_is_not_the_programs() {
        let text = "\
7f0000000000-7f0000010000 rw-p 00000000 00:00 0                          [anon:leaktrail]
Rss:                  64 kB
7f1000000000-7f1000001000 ---p 00000000 00:00 0 
7f1000001000-7f1000031000 rw-p 00000000 00:00 0 
Rss:                  20 kB
7f2000000000-7f2000100000 rw-p 00000000 00:00 0 
Rss:                 512 kB
";
        let mut maps = parse_smaps(text).unwrap();
        classify(&mut maps, &[]);
        assert_eq!(maps[0].region, Region::Tracer);
        // Without names the header looks like a thread stack above its guard.
        assert_eq!(maps[2].region, Region::Stack);
        mark_tracer(&mut maps, 0x7f1000001000, &[]);
        let got: Vec<Region> = maps.iter().map(|m| m.region).collect();
        assert_eq!(
            got,
            vec![Region::Tracer, Region::Tracer, Region::Tracer, Region::Anon]
        );
        let by = RegionBytes::of(&maps);
        assert_eq!((by.tracer, by.anon, by.stack), (84 << 10, 512 << 10, 0));
        assert_eq!(by.program(), 512 << 10);
        // A table the header points to, wholly inside its range, is the
        // tracer's too; a range that covers only part of a mapping (merged
        // with the program's memory) claims nothing.
        let last_with_table = |end: u64| {
            let mut maps = parse_smaps(text).unwrap();
            classify(&mut maps, &[]);
            mark_tracer(&mut maps, 0x7f1000001000, &[(0x7f2000000000, end)]);
            maps[3].region
        };
        assert_eq!(last_with_table(0x7f2000100000), Region::Tracer);
        assert_eq!(last_with_table(0x7f2000080000), Region::Anon);
        // Written as `leaktrail`, and old recordings without it read as 0.
        let json = serde_json::to_string(&by).unwrap();
        assert!(json.contains("\"leaktrail\":86016"), "{json}");
        let old: RegionBytes =
            serde_json::from_str(r#"{"heap":1,"anon":2,"stack":3,"file":4,"shmem":5}"#).unwrap();
        assert_eq!((old.tracer, old.program()), (0, 15));
        assert_eq!(
            serde_json::to_string(&Region::Tracer).unwrap(),
            "\"leaktrail\""
        );
    }

    #[test]
    fn arena_needs_both_boundaries() {
        // Aligned start but the tail ends past the 64 MiB block: a GC
        // reservation, not an arena.
        let text = "\
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7f0000021000-7f0008000000 ---p 00000000 00:00 0 
7f0100001000-7f0100021000 rw-p 00000000 00:00 0 
7f0100021000-7f0104000000 ---p 00000000 00:00 0 
7f0200000000-7f0204000000 rw-p 00000000 00:00 0 
";
        let mut maps = parse_smaps(text).unwrap();
        classify(&mut maps, &[]);
        let got: Vec<Region> = maps.iter().map(|m| m.region).collect();
        assert_eq!(
            got,
            vec![
                Region::Anon,
                Region::Anon,
                Region::Anon,
                Region::Anon,
                Region::Heap
            ]
        );
    }

    #[test]
    fn stack_pointer_evidence_wins() {
        // A thread stack created with no guard page: only the stack pointer
        // tells.
        let text = "\
7f2000000000-7f2000100000 rw-p 00000000 00:00 0 
7f2000100000-7f2000200000 rw-p 00000000 00:00 0 
";
        let mut maps = parse_smaps(text).unwrap();
        classify(&mut maps, &[0x7f20001ff000]);
        assert_eq!(maps[0].region, Region::Anon);
        assert_eq!(maps[1].region, Region::Stack);
        // JIT code between guard pages is not a stack.
        let text = "\
7f1000000000-7f1000001000 ---p 00000000 00:00 0 
7f1000001000-7f100003d000 rwxp 00000000 00:00 0 
7f100003d000-7f100003e000 ---p 00000000 00:00 0 
";
        let mut maps = parse_smaps(text).unwrap();
        classify(&mut maps, &[]);
        assert_eq!(maps[1].region, Region::Anon);
        // A large reservation below is not a guard.
        let text = "\
7f1000000000-7f1000100000 ---p 00000000 00:00 0 
7f1000100000-7f1000200000 rw-p 00000000 00:00 0 
";
        let mut maps = parse_smaps(text).unwrap();
        classify(&mut maps, &[]);
        assert_eq!(maps[1].region, Region::Anon);
    }

    #[test]
    fn smaps_ugly() {
        // Header only (maps format), a counter before any header, garbage.
        let maps = parse_smaps("00400000-00401000 r-xp 00000000 08:01 1 /bin/x\n").unwrap();
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].rss, 0);
        assert!(parse_smaps("Rss: 4 kB\n").is_err());
        assert!(parse_smaps("").unwrap().is_empty());
        let maps =
            parse_smaps("not a header\n0-1000 rw-p 0 00:00 0\nRss: 4 kB\nVmFlags: rd\n").unwrap();
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].rss, 4096);
        // Truncated header line: dropped, not misparsed.
        assert!(parse_smaps("7f0000000000-7f00").unwrap().is_empty());
        // A path with multiple spaces is kept verbatim.
        let maps = parse_smaps("0-1000 r--p 0 08:01 5    /a  b (deleted)\n").unwrap();
        assert_eq!(maps[0].path, "/a  b");
        assert!(maps[0].deleted);
    }

    const SNAPSHOT_SMAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234                       /usr/bin/my prog (deleted)
Size:                  4 kB
Rss:                   4 kB
Pss:                   2 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me dw sd
7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]
Rss:                   8 kB
Anonymous:             8 kB
VmFlags: rd wr mr mw me gd ac
7f0000000000-7f0000001000 ---p 00000000 00:00 0 
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_paths_with_spaces_fields_and_empty_paths() {
        let maps = parse_smaps(SNAPSHOT_SMAPS).unwrap();
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].maps_path(), "/usr/bin/my prog (deleted)");
        assert_eq!(maps[0].path, "/usr/bin/my prog");
        assert!(maps[0].is_file() && !maps[0].is_writable() && maps[0].is_readable());
        assert_eq!(maps[0].pss, 2048);
        assert_eq!(maps[1].path, "[stack]");
        assert!(maps[1].is_anonymous());
        assert_eq!(maps[1].anonymous, 8192);
        assert!(maps[1].has_flag("gd"));
        assert_eq!(maps[2].path, "");
        assert!(maps[2].is_anonymous() && !maps[2].is_readable());
        assert!(maps[3].is_special());
        assert_eq!(maps[1].perms, "rw-p");
    }

    #[test]
    fn details_carry_over_only_to_unchanged_mappings() {
        let before = parse_smaps(SNAPSHOT_SMAPS).unwrap();
        let now = parse_smaps(
            "55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /usr/bin/my prog (deleted)\n\
             7ffd1000-7ffd4000 rw-p 00000000 00:00 0 [stack]\n\
             7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n",
        )
        .unwrap();
        let merged = with_details(now, &before);
        assert_eq!(merged[0].pss, 2048);
        assert_eq!(merged[0].vm_flags.len(), 6);
        // The stack grew and the guard became writable: both unknown now.
        assert!(merged[1].vm_flags.is_empty() && merged[1].rss == 0);
        assert!(merged[2].vm_flags.is_empty());
    }

    #[test]
    fn skips_garbage_and_rejects_orphan_fields() {
        // A field before any mapping is an error; a line that is no header
        // (a record cut short while the process exited) is skipped, never
        // misparsed, and an inverted range is no mapping.
        assert!(parse_smaps("Rss: 4 kB\n").is_err());
        assert!(parse_smaps("zzzz-0000 rw-p 0 0 0\n").unwrap().is_empty());
        assert!(parse_smaps("1000-2000 rw\n").unwrap().is_empty());
        assert!(parse_smaps("2000-1000 rw-p 0 00:00 0\n")
            .unwrap()
            .is_empty());
        assert_eq!(parse_smaps("").unwrap(), vec![]);
    }
}
