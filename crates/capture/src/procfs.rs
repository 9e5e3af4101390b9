//! What `/proc/PID/…` says, parsed: `stat`, `smaps`, `smaps_rollup`, the
//! threads' stack pointers, the memory limit; and the classification of
//! mappings into [`Region`]s.
//!
//! The parsers are pure functions over text so that they can be tested with
//! the ugly inputs the kernel really produces (a `comm` with spaces and
//! parentheses, `(deleted)` paths, records cut short because the process
//! exited while we read). The readers around them turn `errno`s into the
//! crate's [`Error`] with the pid named.
//!
//! # Regions
//!
//! Every mapping belongs to exactly one [`Region`]; the rules, in order:
//!
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
//! use leaktrail_capture::procfs::{classify, parse_smaps, Region, RegionBytes};
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
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

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
}

impl Region {
    /// Every region, in display order.
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
        }
    }

    /// The region with that name.
    pub fn from_name(name: &str) -> Option<Region> {
        Region::ALL.into_iter().find(|r| r.name() == name)
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
}

impl Mapping {
    /// Size of the address range.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// No file and no pseudo-name: plain anonymous memory.
    pub fn is_anonymous(&self) -> bool {
        self.path.is_empty() && self.inode == 0
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

    /// A human name: the path, or `[anon]` for anonymous memory.
    pub fn display_name(&self) -> String {
        match (self.path.is_empty(), self.deleted) {
            (true, _) => "[anon]".to_string(),
            (false, true) => format!("{} (deleted)", self.path),
            (false, false) => self.path.clone(),
        }
    }
}

/// The totals of `/proc/PID/smaps_rollup`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    /// `Rss`.
    pub rss: u64,
    /// `Pss`.
    pub pss: u64,
    /// `Pss_Anon` (0 on kernels before 5.7).
    pub pss_anon: u64,
    /// `Pss_File` (0 on kernels before 5.7).
    pub pss_file: u64,
    /// `Pss_Shmem` (0 on kernels before 5.7).
    pub pss_shmem: u64,
    /// `Anonymous`.
    pub anonymous: u64,
    /// `Swap`.
    pub swap: u64,
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The pid.
    pub pid: i32,
    /// The command name (`comm`), which may hold spaces and parentheses.
    pub comm: String,
    /// The state letter (`R`, `S`, `Z`, …).
    pub state: char,
    /// Start time after boot, in clock ticks: with the pid, it names a
    /// process uniquely (pids are reused).
    pub start_time: u64,
}

/// A parse failure; the caller adds the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Parses `/proc/PID/stat`. `comm` is found between the first `(` and the
/// *last* `)`, since the name itself may contain both.
pub fn parse_stat(text: &str) -> Result<Stat, ParseError> {
    let open = text
        .find('(')
        .ok_or_else(|| ParseError(format!("expected `pid (comm) …`, found {text:?}")))?;
    let close = text
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or_else(|| ParseError(format!("no closing `)` after comm in {text:?}")))?;
    let pid = text[..open].trim().parse().map_err(|_| {
        ParseError(format!(
            "expected a pid before `(`, found {:?}",
            &text[..open]
        ))
    })?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After comm: state is field 3, starttime field 22 (1-based).
    let state = rest
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| ParseError("stat is cut short after comm".into()))?;
    let start_time = rest
        .get(22 - 3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ParseError("stat is cut short before starttime".into()))?;
    Ok(Stat {
        pid,
        comm,
        state,
        start_time,
    })
}

/// Parses a `Key:   123 kB` line into the key and a byte count.
fn parse_field(line: &str) -> Option<(&str, u64)> {
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

/// Parses `/proc/PID/smaps_rollup`. Unknown and truncated lines are skipped;
/// a file without an `Rss` line is an error (a kernel thread, or a process
/// that has already released its memory).
pub fn parse_rollup(text: &str) -> Result<Rollup, ParseError> {
    let mut r = Rollup::default();
    let mut saw_rss = false;
    for line in text.lines() {
        let Some((key, v)) = parse_field(line) else {
            continue;
        };
        match key {
            "Rss" => {
                r.rss = v;
                saw_rss = true;
            }
            "Pss" => r.pss = v,
            "Pss_Anon" => r.pss_anon = v,
            "Pss_File" => r.pss_file = v,
            "Pss_Shmem" => r.pss_shmem = v,
            "Anonymous" => r.anonymous = v,
            "Swap" => r.swap = v,
            _ => {}
        }
    }
    if saw_rss {
        Ok(r)
    } else {
        Err(ParseError("no `Rss:` line (no user memory)".into()))
    }
}

/// A parsed mapping header line, before counters and classification.
fn parse_header(line: &str) -> Option<Mapping> {
    // `start-end perms offset dev inode [path]`; the path may contain
    // spaces, so we split off exactly five fields and keep the rest.
    let mut rest = line;
    let mut fields = [""; 5];
    for f in fields.iter_mut() {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        *f = &rest[..end];
        rest = &rest[end..];
    }
    let (start, end) = fields[0].split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let perms = fields[1];
    if perms.len() != 4 || !fields[3].contains(':') {
        return None;
    }
    let offset = u64::from_str_radix(fields[2], 16).ok()?;
    let inode = fields[4].parse().ok()?;
    let mut path = rest.trim_start_matches(' ').to_string();
    let deleted = path.ends_with(" (deleted)");
    if deleted {
        path.truncate(path.len() - " (deleted)".len());
    }
    Some(Mapping {
        start,
        end,
        perms: perms.to_string(),
        offset,
        inode,
        path,
        deleted,
        region: Region::Anon,
        rss: 0,
        pss: 0,
        private_dirty: 0,
        anonymous: 0,
        swap: 0,
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
        if let Some((key, v)) = parse_field(line) {
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
    if !m.is_anonymous() || m.is_shared() || !m.is_read_write() {
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
            && tail.is_anonymous()
            && tail.is_inaccessible()
            && !tail.is_shared()
            && tail.end == m.start + ARENA_HEAP_SIZE
    })
}

/// Classifies every mapping (in address order, as [`parse_smaps`] returns
/// them) into its [`Region`]. `stack_pointers` are the threads' stack
/// pointers where known ([`thread_stack_pointers`]); they are the strongest
/// evidence of a thread stack.
pub fn classify(mappings: &mut [Mapping], stack_pointers: &[u64]) {
    let mut arena_tail: HashSet<usize> = HashSet::new();
    let mut regions = Vec::with_capacity(mappings.len());
    for i in 0..mappings.len() {
        let m = &mappings[i];
        let path = m.path.as_str();
        let region = if path == "[heap]"
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
            && mappings[i].is_anonymous()
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
        && guard.is_anonymous()
        && guard.is_inaccessible()
        && !guard.is_shared()
        && guard.size() <= MAX_STACK_GUARD
        && !arena_tail.contains(&gi)
}

/// Parses `/proc/PID/task/TID/syscall`: the stack pointer is the
/// second-to-last field when the thread is blocked, and there is none when
/// it is `running`.
pub fn parse_syscall_sp(text: &str) -> Option<u64> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 3 {
        return None;
    }
    let sp = fields[fields.len() - 2];
    u64::from_str_radix(sp.strip_prefix("0x")?, 16).ok()
}

/// The stack pointers of the threads of `pid` that are not running right
/// now. Best effort: threads come and go, and each file needs ptrace-read
/// access; what we cannot read we skip.
pub fn thread_stack_pointers(pid: i32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("syscall")).ok())
        .filter_map(|t| parse_syscall_sp(&t))
        .collect()
}

/// Maps an I/O error on a `/proc/PID/…` file to the crate's error.
fn proc_error(pid: i32, path: &Path, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::NoSuchProcess { pid },
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
            pid,
            what: format!("reading {}", path.display()),
        },
        _ => Error::io(path, e),
    }
}

fn read_proc(pid: i32, file: &str) -> Result<String, Error> {
    let path = Path::new("/proc").join(pid.to_string()).join(file);
    std::fs::read_to_string(&path).map_err(|e| proc_error(pid, &path, e))
}

/// Reads and parses `/proc/PID/stat`.
pub fn read_stat(pid: i32) -> Result<Stat, Error> {
    let text = read_proc(pid, "stat")?;
    parse_stat(&text).map_err(|ParseError(why)| Error::Malformed {
        path: format!("/proc/{pid}/stat").into(),
        why,
    })
}

/// Reads `/proc/PID/cmdline` as its arguments (empty for kernel threads and
/// zombies).
pub fn read_cmdline(pid: i32) -> Result<Vec<String>, Error> {
    let path = Path::new("/proc").join(pid.to_string()).join("cmdline");
    let bytes = std::fs::read(&path).map_err(|e| proc_error(pid, &path, e))?;
    Ok(bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// What one sample of a process's memory could find.
#[derive(Debug)]
pub enum Reading<T> {
    /// The process is there and we read it.
    Present(T),
    /// The process has exited (it is gone, or a zombie without memory).
    Gone,
}

/// Turns "the process is gone" into `None`.
fn gone_or(r: Result<String, Error>) -> Result<Option<String>, Error> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(Error::NoSuchProcess { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `/proc/PID/smaps_rollup`. A process that exited (or is a zombie,
/// whose rollup is empty) reads as [`Reading::Gone`].
///
/// Kernels before 4.14 have no `smaps_rollup`; there we sum `smaps` (the
/// same numbers, at the full read's cost).
pub fn read_rollup(pid: i32) -> Result<Reading<Rollup>, Error> {
    let text = match read_proc(pid, "smaps_rollup") {
        Err(Error::NoSuchProcess { .. })
            if Path::new("/proc")
                .join(pid.to_string())
                .join("smaps")
                .exists() =>
        {
            return Ok(match read_smaps(pid)? {
                Reading::Present(maps) => Reading::Present(rollup_of(&maps)),
                Reading::Gone => Reading::Gone,
            });
        }
        r => r,
    };
    let Some(text) = gone_or(text)? else {
        return Ok(Reading::Gone);
    };
    match parse_rollup(&text) {
        Ok(r) => Ok(Reading::Present(r)),
        Err(_) if text.trim().is_empty() => Ok(Reading::Gone),
        Err(ParseError(why)) => Err(Error::Malformed {
            path: format!("/proc/{pid}/smaps_rollup").into(),
            why,
        }),
    }
}

/// The totals of a list of mappings, as `smaps_rollup` would give them
/// (without the `Pss_*` split).
pub fn rollup_of(mappings: &[Mapping]) -> Rollup {
    let mut r = Rollup::default();
    for m in mappings {
        r.rss += m.rss;
        r.pss += m.pss;
        r.anonymous += m.anonymous;
        r.swap += m.swap;
    }
    r
}

/// Reads, parses and classifies `/proc/PID/smaps`. This is O(mappings) work
/// in the kernel under the target's mmap lock: call it less often than
/// [`read_rollup`].
pub fn read_smaps(pid: i32) -> Result<Reading<Vec<Mapping>>, Error> {
    let Some(text) = gone_or(read_proc(pid, "smaps"))? else {
        return Ok(Reading::Gone);
    };
    if text.is_empty() {
        return Ok(Reading::Gone);
    }
    let mut maps = parse_smaps(&text).map_err(|ParseError(why)| Error::Malformed {
        path: format!("/proc/{pid}/smaps").into(),
        why,
    })?;
    classify(&mut maps, &thread_stack_pointers(pid));
    Ok(Reading::Present(maps))
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

/// Parses `MemTotal` out of `/proc/meminfo`.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(parse_field)
        .find(|(k, _)| *k == "MemTotal")
        .map(|(_, v)| v)
}

/// Parses a cgroup limit file: a number, or `max` (none).
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The memory limit of `pid`: its cgroup's limit when one is set and below
/// physical memory, else physical memory. A cgroup limit covers every
/// process of the cgroup and its page cache, so the time to reach it is an
/// upper bound.
pub fn memory_limit(pid: i32) -> Option<MemoryLimit> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo_total(&t));
    let mut best = physical.map(|bytes| MemoryLimit {
        bytes,
        source: LimitSource::Physical,
    });
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let candidates: Vec<(String, LimitSource)> = if controllers.is_empty() {
            ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .iter()
                .map(|root| (format!("{root}/{path}/memory.max"), LimitSource::CgroupV2))
                .collect()
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![(
                format!("/sys/fs/cgroup/memory/{path}/memory.limit_in_bytes"),
                LimitSource::CgroupV1,
            )]
        } else {
            continue;
        };
        for (file, source) in candidates {
            let Some(bytes) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| parse_cgroup_limit(&t))
            else {
                continue;
            };
            if best.map_or(true, |b| bytes < b.bytes) {
                best = Some(MemoryLimit { bytes, source });
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_ugly_comm() {
        let tail = " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
        for comm in ["cat", "a b", "(sd-pam)", "x) S 1 (y", ")", "", "tab\there"] {
            let text = format!("1234 ({comm}){tail}\n");
            let s = parse_stat(&text).unwrap();
            assert_eq!(s.pid, 1234);
            assert_eq!(s.comm, comm, "{text}");
            assert_eq!(s.state, 'S');
            assert_eq!(s.start_time, 424242);
        }
    }

    #[test]
    fn stat_errors() {
        for text in [
            "",
            "1234",
            "1234 (cat",
            "x (cat) S",
            "1234 (cat) S 1 2",
            "1234 (cat) ",
        ] {
            assert!(parse_stat(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn rollup() {
        let text =
            "56520dac9000-7ffef6e33000 ---p 00000000 00:00 0                          [rollup]
Rss:                1776 kB
Pss:                 534 kB
Pss_Anon:            112 kB
Pss_File:            422 kB
Pss_Shmem:             0 kB
Anonymous:           112 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";
        let r = parse_rollup(text).unwrap();
        assert_eq!(r.rss, 1776 * 1024);
        assert_eq!(r.pss_anon, 112 * 1024);
        assert_eq!(r.anonymous, 112 * 1024);
        // Cut short mid-line and mid-file.
        let r = parse_rollup("x-y ---p 0 0:0 0 [rollup]\nRss:  10 kB\nPss: 4").unwrap();
        assert_eq!((r.rss, r.pss), (10240, 4));
        assert!(parse_rollup("").is_err());
        assert!(parse_rollup("Rss: lots kB\n").is_err());
    }

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
        let r = rollup_of(&maps);
        assert_eq!(r.rss, maps.iter().map(|m| m.rss).sum::<u64>());
        assert_eq!(r.anonymous, (12 + 132) * 1024);
        assert_eq!(by.stack, (16 + 20) * 1024);
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

    /// Our own threads, blocked on a barrier: each one's stack must be
    /// `stack` (by its stack pointer, and by the guard shape alone), and a
    /// small allocation made on it must be `heap` (its glibc arena).
    #[test]
    fn classifies_real_thread_stacks_and_arenas() {
        use std::sync::{mpsc, Arc, Barrier};
        let barrier = Arc::new(Barrier::new(4));
        let (tx, rx) = mpsc::channel();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (barrier, tx) = (barrier.clone(), tx.clone());
                std::thread::spawn(move || {
                    let local = 0u8;
                    let boxed = Box::new([7u8; 64]);
                    let addrs = (
                        std::hint::black_box(&local) as *const u8 as u64,
                        boxed.as_ptr() as u64,
                    );
                    tx.send(addrs).unwrap();
                    barrier.wait();
                    drop(boxed);
                })
            })
            .collect();
        let addrs: Vec<(u64, u64)> = (0..3).map(|_| rx.recv().unwrap()).collect();
        let pid = std::process::id() as i32;
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
        let sps = thread_stack_pointers(pid);
        let mut by_sp = parse_smaps(&text).unwrap();
        classify(&mut by_sp, &sps);
        let mut by_shape = parse_smaps(&text).unwrap();
        classify(&mut by_shape, &[]);
        barrier.wait();
        for t in threads {
            t.join().unwrap();
        }
        let region_of = |maps: &[Mapping], addr: u64| {
            maps.iter()
                .find(|m| m.start <= addr && addr < m.end)
                .map(|m| m.region)
        };
        for (stack, heap) in addrs {
            assert_eq!(region_of(&by_sp, stack), Some(Region::Stack), "{text}");
            assert_eq!(region_of(&by_shape, stack), Some(Region::Stack), "{text}");
            assert_eq!(
                region_of(&by_sp, heap),
                Some(Region::Heap),
                "{heap:#x}\n{text}"
            );
        }
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

    #[test]
    fn syscall_sp() {
        assert_eq!(
            parse_syscall_sp(
                "270 0xfb 0x7ffd2cf5d2b0 0x0 0x0 0x7ffd 0x7ffd 0x7ffd2cf5d190 0x7f526d4baaec\n"
            ),
            Some(0x7ffd2cf5d190)
        );
        assert_eq!(
            parse_syscall_sp("-1 0x7ffd2cf5d190 0x7f526d4baaec\n"),
            Some(0x7ffd2cf5d190)
        );
        assert_eq!(parse_syscall_sp("running\n"), None);
        assert_eq!(parse_syscall_sp(""), None);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(
            parse_meminfo_total("MemTotal:       24684088 kB\nMemFree: 1 kB\n"),
            Some(24684088 * 1024)
        );
    }
}
