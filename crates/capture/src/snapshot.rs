//! Stop-the-world snapshots, written as ELF core files that gdb opens.
//!
//! [`take`] stops every thread of a process (with ptrace), reads their
//! registers, `/proc/PID/maps` and the memory [`MemoryMode`] asks for, lets
//! the threads go, and writes one core file: the standard Linux notes
//! (`leaktrail_recording::snapshot::note`) for gdb, one PT_LOAD per
//! captured mapping (`…::elf`), and leaktrail's own note (`…::metadata`)
//! with what a later analysis needs
//! that a core does not otherwise hold (modules and build ids, the JIT
//! symbol map, the smaps summary, the pause).
//!
//! The target is stopped only for the copy: names, build ids and notes are
//! gathered before the stop or after the release. If anything fails, or we
//! panic, the `World` guard (private module `ptrace`) detaches every thread and the
//! temporary file is removed; a file exists under its final name only when
//! it is complete.
//!
//! ```no_run
//! use leaktrail_capture::snapshot::{take, MemoryMode, Options};
//! let mut options = Options::default();
//! options.memory = MemoryMode::Full;
//! let outcome = take(1234, &options)?;
//! println!("{} ({:?})", outcome.path.display(), outcome.pause);
//! # Ok::<(), leaktrail_capture::Error>(())
//! ```

pub(crate) mod interrupt;
mod memory;
mod module;
mod pagemap;
mod ptrace;
mod xstate;

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use leaktrail_format::MemoryMode;
use leaktrail_format::{HEADER_MAPPING_BYTES, NOTE_NAME, NOTE_TYPE};
use leaktrail_recording::audit;
use leaktrail_recording::dir::snapshots::Snapshots;
use leaktrail_recording::maps::{self, Mapping};
use leaktrail_recording::output::{self, OutputFile};
use leaktrail_recording::snapshot::metadata::{
    self, CapturedMapping, Metadata, RegionKind, SmapsSummary,
};
use leaktrail_recording::snapshot::{default_file_name, elf, note};
use memory::{Copier, Piece, Staging};

use crate::Error;
pub use interrupt::catch as catch_interrupts;

/// How to take a snapshot.
#[non_exhaustive]
pub struct Options {
    /// Which memory to keep.
    pub memory: MemoryMode,
    /// Where to write; `None` for [`default_file_name`] in the current
    /// directory.
    pub output: Option<PathBuf>,
    /// Most bytes to stage in memory during the stop; above it the copy
    /// streams to the file while the target waits. `None`: half of
    /// `MemAvailable`.
    pub staging_budget: Option<u64>,
    /// How long every thread has to reach its stop before the snapshot is
    /// abandoned (a thread in uninterruptible I/O stops only when it ends).
    pub stop_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memory: MemoryMode::Full,
            output: None,
            staging_budget: None,
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// What [`take`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The core file written.
    pub path: PathBuf,
    /// How long the target was stopped.
    pub pause: Duration,
    /// Threads captured.
    pub threads: usize,
    /// Bytes of memory written into the core.
    pub captured_bytes: u64,
    /// Bytes that could not be read (written as zeros).
    pub unreadable_bytes: u64,
    /// Audit-region headers found.
    pub audit_headers: usize,
    /// Where the pause went.
    pub phases: Phases,
}

/// Where the pause went, each measured from the first seize.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Phases {
    /// Every thread stopped and its registers read.
    pub stopped: Duration,
    /// `/proc/PID/maps` read (smaps is read before the stop).
    pub maps: Duration,
    /// Memory copied (to the staging area, or streamed to the file).
    pub copied: Duration,
    /// Whether the copy went to the staging area (the file was written
    /// after the release) rather than straight to the file.
    pub staged: bool,
}

/// Takes one snapshot of `pid`. See the module documentation.
///
/// Errors: [`Error::NoSuchProcess`], [`Error::Zombie`],
/// [`Error::KernelThread`], [`Error::AlreadyTraced`] (checked before
/// anything is written), [`Error::PermissionDenied`] (ptrace or `/proc`
/// refused), [`Error::Exited`] (the process died during the capture; no
/// file is left), [`Error::Interrupted`] (after [`catch_interrupts`]; the
/// target is let go and no file is left), I/O errors on the output.
pub fn take(pid: i32, options: &Options) -> Result<Outcome, Error> {
    if pid <= 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    // Before the stop: everything that does not change while it runs.
    let process = ProcessFacts::read(pid)?;
    // smaps walks every page table entry (tens of ms per GiB), so it is read
    // here, before the stop; while stopped we read the cheap maps and take
    // each mapping's counters and VmFlags from this reading. Nothing that
    // decides which bytes are zeros depends on them: pagemap, read while
    // stopped, does.
    let before = parse_maps(pid, "smaps", &read_proc(pid, "smaps", false)?)?;
    let estimate = {
        let maps = &before;
        plan(maps, options.memory, &[], &HashSet::new())
            .iter()
            .map(|l| {
                // Mappings `split_sparse` will cut keep about their
                // resident bytes (plus the short holes folded into them).
                let m = &maps[l.mapping];
                if is_sparse_candidate(l, m) {
                    ((m.rss + m.swap) / 4 * 5 + (256 << 10)).min(l.filesz)
                } else {
                    l.filesz
                }
            })
            .sum::<u64>()
    };
    let budget = options
        .staging_budget
        .unwrap_or_else(|| memory::mem_available() / 2);
    let mut staging = if estimate + (8 << 20) <= budget {
        Staging::new(estimate + estimate / 16 + (8 << 20)).ok()
    } else {
        None
    };
    let time = SystemTime::now();
    let unix_secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = match &options.output {
        Some(p) => p.clone(),
        None => PathBuf::from(default_file_name(&process.comm, pid, unix_secs)),
    };
    let out = OutputFile::create(
        &path,
        output::suffixed_temporary(&path),
        output::Kind::Seekable,
    )?;
    interrupt::check(pid)?;

    // While the target is stopped, its CPU time is ours to spend: ask for
    // a better share so other work on the machine does not stretch the
    // pause. Best effort (needs CAP_SYS_NICE); undone when `boost` drops.
    let boost = Boost::new();
    let stop_started = Instant::now();
    let time_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let world = ptrace::World::stop(pid, options.stop_timeout)?;
    let fault = std::env::var_os("LEAKTRAIL_TEST_FAULT");
    if fault.as_ref().is_some_and(|v| v == "exit-during-capture") {
        // Test seam: the target dies while we hold it (see the integration
        // test `snapshot_of_a_target_that_exits_midway_leaves_nothing`).
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if fault.as_ref().is_some_and(|v| v == "pause-after-stop") {
        // Test seam: hold the world stopped until a signal comes, so the
        // test interrupts us exactly here (see
        // `snapshot_interrupted_by_a_signal_resumes_the_target_and_leaves_nothing`).
        eprintln!("leaktrail: test fault: every thread of {pid} stopped, waiting for a signal");
        interrupt::wait();
    }
    interrupt::check(pid)?;
    let t_stopped = stop_started.elapsed();
    let maps = maps::with_details(
        parse_maps(pid, "maps", &read_proc(pid, "maps", true)?)?,
        &before,
    );
    drop(before);
    interrupt::check(pid)?;
    let t_maps = stop_started.elapsed();
    let stacks: Vec<u64> = world
        .threads()
        .iter()
        .map(|t| reg(&t.regs, note::REG_RSP))
        .collect();
    let mut maps = maps;
    maps::classify(&mut maps, &stacks);
    let mut copier = Copier::new(pid);

    // Audit headers: a page-aligned magic at the start of an anonymous
    // read-write mapping.
    let mut audit_headers = Vec::new();
    for m in maps
        .iter()
        .filter(|m| m.is_read_write() && m.is_anonymous() && m.size() >= HEADER_MAPPING_BYTES)
    {
        let mut magic = [0u8; 8];
        if copier.probe(m.start, &mut magic) && audit::is_header(&magic) {
            audit_headers.push(m.start);
        }
    }
    let mut audit_ranges = Vec::new();
    if options.memory != MemoryMode::None {
        let live =
            crate::memory::ProcessMemory::new(pid, maps.iter().map(|m| (m.start, m.end)).collect());
        for &h in &audit_headers {
            audit_ranges.extend(audit::locate(&live, h));
        }
    }
    let mut elf_heads = HashSet::new();
    if options.memory != MemoryMode::None {
        for m in maps
            .iter()
            .filter(|m| m.is_file() && m.offset == 0 && m.is_readable())
        {
            let mut magic = [0u8; 4];
            if copier.probe(m.start, &mut magic) && magic == *b"\x7fELF" {
                elf_heads.insert(m.start);
            }
        }
    }
    interrupt::check(pid)?;
    let loads = plan(&maps, options.memory, &audit_ranges, &elf_heads);
    let loads = split_sparse(pid, &maps, loads);
    let layout = elf::Layout::new(loads.len());
    let pieces: Vec<Piece> = loads
        .iter()
        .filter(|l| l.filesz > 0)
        .map(|l| Piece {
            addr: l.start,
            len: l.filesz,
        })
        .collect();
    let total: u64 = pieces.iter().map(|p| p.len).sum();
    if staging.as_ref().is_some_and(|s| s.capacity() < total) {
        staging = None;
    }
    if staging.is_none() && total <= budget {
        staging = Staging::new(total).ok();
    }
    let staged = match &mut staging {
        Some(s) => {
            copier.unreadable += memory::read_parallel(pid, &pieces, s.slice(total))?;
            true
        }
        None => {
            stream(&mut copier, &pieces, &out, layout.data_offset)?;
            false
        }
    };
    let t_copied = stop_started.elapsed();
    let perf_map = read_perf_map(pid);
    if !memory::alive(pid) {
        return Err(Error::Exited { pid });
    }
    interrupt::check(pid)?;
    let threads: Vec<ptrace::Thread> = world.threads().to_vec();
    world.release()?;
    let pause = stop_started.elapsed();
    drop(boost);

    // After the release: write out, describe, name.
    if staged {
        if let Some(s) = &mut staging {
            out.file()
                .write_all_at(s.slice(total), layout.data_offset)
                .map_err(|e| Error::io(out.writing(), e))?;
        }
    }
    drop(staging);
    let mut phdrs = Vec::with_capacity(loads.len() + 1);
    let mut offset = layout.data_offset;
    phdrs.push(elf::ProgramHeader::default()); // PT_NOTE, filled below
    for l in &loads {
        phdrs.push(elf::ProgramHeader {
            kind: elf::PT_LOAD,
            flags: l.flags,
            offset,
            vaddr: l.start,
            filesz: l.filesz,
            memsz: l.memsz,
            align: elf::PAGE,
        });
        offset += l.filesz;
    }
    let modules = module::modules(pid, &maps);
    let metadata = Metadata {
        version: metadata::METADATA_VERSION,
        time_unix_ns,
        pid,
        comm: process.comm.clone(),
        cmdline: process.cmdline.clone(),
        exe: process.exe.clone(),
        threads: threads.iter().map(|t| t.tid).collect(),
        modules,
        perf_map,
        smaps: summarise(&maps, &audit_ranges),
        regions: regions(&maps, &loads, &audit_ranges),
        options: metadata::CaptureOptions {
            memory: options.memory,
            writer: format!("leaktrail {}", env!("CARGO_PKG_VERSION")),
        },
        pause_ns: pause.as_nanos() as u64,
        audit_headers: audit_headers.clone(),
        unreadable_bytes: copier.unreadable,
    };
    let notes = notes(&process, &threads, &maps, &metadata);
    phdrs[0] = elf::ProgramHeader {
        kind: elf::PT_NOTE,
        flags: elf::PF_R,
        offset,
        vaddr: 0,
        filesz: notes.len() as u64,
        memsz: 0,
        align: 4,
    };
    out.file()
        .write_all_at(&notes, offset)
        .and_then(|_| out.file().write_all_at(&layout.headers(&phdrs), 0))
        .map_err(|e| Error::io(out.writing(), e))?;
    // The last moment an interruption can still leave nothing behind.
    interrupt::check(pid)?;
    let path = out.commit()?;
    Ok(Outcome {
        path,
        pause,
        threads: threads.len(),
        captured_bytes: total,
        unreadable_bytes: copier.unreadable,
        audit_headers: audit_headers.len(),
        phases: Phases {
            stopped: t_stopped,
            maps: t_maps,
            copied: t_copied,
            staged,
        },
    })
}

/// Takes a snapshot of `pid` as the next one of a recording's `snapshots`
/// (`at_exit` marks the final one), holding the recording's snapshot lock
/// for the whole capture.
pub fn take_into(
    snapshots: &Snapshots,
    pid: i32,
    memory: MemoryMode,
    at_exit: bool,
) -> Result<Outcome, Error> {
    let next = snapshots.reserve(at_exit)?;
    let options = Options {
        memory,
        output: Some(next.path.clone()),
        ..Default::default()
    };
    take(pid, &options)
}

/// Copies `pieces` to `file` at `offset` in batches, while the target waits.
fn stream(
    copier: &mut Copier,
    pieces: &[Piece],
    out: &OutputFile,
    mut offset: u64,
) -> Result<(), Error> {
    let mut buf = vec![0u8; memory::STREAM_BATCH as usize];
    let mut batch: Vec<Piece> = Vec::new();
    let mut fill = 0u64;
    let mut flush =
        |batch: &mut Vec<Piece>, fill: &mut u64, offset: &mut u64| -> Result<(), Error> {
            let b = &mut buf[..*fill as usize];
            copier.read(batch, b)?;
            out.file()
                .write_all_at(b, *offset)
                .map_err(|e| Error::io(out.writing(), e))?;
            *offset += *fill;
            *fill = 0;
            batch.clear();
            Ok(())
        };
    for p in pieces {
        let mut p = *p;
        while p.len > 0 {
            let n = p.len.min(memory::STREAM_BATCH - fill);
            batch.push(p.take_front(n));
            fill += n;
            if fill == memory::STREAM_BATCH {
                flush(&mut batch, &mut fill, &mut offset)?;
            }
        }
    }
    if fill > 0 {
        flush(&mut batch, &mut fill, &mut offset)?;
    }
    Ok(())
}

/// One PT_LOAD to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Load {
    start: u64,
    memsz: u64,
    filesz: u64,
    flags: u32,
    /// Index of the mapping in the maps list.
    mapping: usize,
}

/// Chooses what to capture of each mapping.
fn plan(
    maps: &[Mapping],
    mode: MemoryMode,
    audit: &[(u64, u64)],
    elf_heads: &HashSet<u64>,
) -> Vec<Load> {
    let mut out = Vec::new();
    if mode == MemoryMode::None {
        return out;
    }
    for (i, m) in maps.iter().enumerate() {
        let flags = (if m.is_readable() { elf::PF_R } else { 0 })
            | (if m.is_writable() { elf::PF_W } else { 0 })
            | (if m.is_executable() { elf::PF_X } else { 0 });
        let whole = |filesz: u64| Load {
            start: m.start,
            memsz: m.size(),
            filesz,
            flags,
            mapping: i,
        };
        // Unreadable (PROT_NONE guards and reservations), excluded from
        // dumps by the program (MADV_DONTDUMP) or device memory (VM_IO):
        // the kernel's own core writer skips these too.
        if !m.is_readable() || m.has_flag("dd") || m.has_flag("io") {
            continue;
        }
        if m.path == "[vdso]" {
            // gdb loads the vDSO's symbols from the core; without it, it
            // warns and cannot unwind through signal frames.
            out.push(whole(m.size()));
            continue;
        }
        if m.is_special() {
            continue;
        }
        let in_audit = audit.iter().any(|&(s, e)| s < m.end && m.start < e);
        let wanted = match mode {
            MemoryMode::Full => {
                in_audit
                    || m.is_writable()
                    || m.is_anonymous()
                    || (m.anonymous > 0 && !m.is_shared())
            }
            MemoryMode::Tables => in_audit,
            MemoryMode::None => false,
        };
        if wanted {
            out.push(whole(m.size()));
        } else if elf_heads.contains(&m.start) {
            // The ELF header page: its notes carry the build id, which lets
            // gdb and symbolizers match the right file.
            out.push(Load {
                start: m.start,
                memsz: elf::PAGE,
                filesz: elf::PAGE,
                flags,
                mapping: i,
            });
        }
    }
    out
}

/// Splits the loads of mostly untouched anonymous mappings at their long
/// runs of never-written pages, which become segments without file bytes.
/// Falls back to the whole mapping if pagemap cannot be read.
fn split_sparse(pid: i32, maps: &[Mapping], loads: Vec<Load>) -> Vec<Load> {
    let mut pagemap: Option<Option<File>> = None;
    let mut out = Vec::with_capacity(loads.len());
    for l in loads {
        let m = &maps[l.mapping];
        let f = if is_sparse_candidate(&l, m) {
            pagemap
                .get_or_insert_with(|| File::open(format!("/proc/{pid}/pagemap")).ok())
                .as_ref()
        } else {
            None
        };
        let Some(entries) = f.and_then(|f| pagemap::entries(f, m.start, m.end).ok()) else {
            out.push(l);
            continue;
        };
        for r in pagemap::runs(m.start, &entries, pagemap::MIN_HOLE_PAGES) {
            out.push(Load {
                start: r.start,
                memsz: r.len,
                filesz: if r.data { r.len } else { 0 },
                ..l
            });
        }
    }
    out
}

/// Whether `split_sparse` reads the pagemap of `l`'s mapping: a whole,
/// private anonymous mapping that was less than three quarters resident
/// before the stop, or that is new since.
fn is_sparse_candidate(l: &Load, m: &Mapping) -> bool {
    l.start == m.start
        && l.filesz == m.size()
        && m.is_anonymous()
        && !m.is_shared()
        && (m.vm_flags.is_empty() || (m.rss + m.swap) < m.size() / 4 * 3)
}

/// The kind a snapshot records for a mapping: its region by the one
/// classifier, except that the tracer's own memory is `audit`.
fn kind_of(m: &Mapping, audit: &[(u64, u64)]) -> RegionKind {
    if audit.iter().any(|&(s, e)| s < m.end && m.start < e) {
        RegionKind::Audit
    } else {
        RegionKind::from(m.region)
    }
}

fn regions(maps: &[Mapping], loads: &[Load], audit: &[(u64, u64)]) -> Vec<CapturedMapping> {
    let mut captured = vec![0u64; maps.len()];
    for l in loads {
        captured[l.mapping] += l.filesz;
    }
    maps.iter()
        .zip(captured)
        .map(|(m, captured)| CapturedMapping {
            start: m.start,
            end: m.end,
            perms: m.perms.clone(),
            path: m.maps_path(),
            kind: kind_of(m, audit),
            rss: m.rss,
            captured,
        })
        .collect()
}

fn summarise(maps: &[Mapping], audit: &[(u64, u64)]) -> SmapsSummary {
    let mut s = SmapsSummary::default();
    for m in maps {
        for t in [
            &mut s.total,
            s.by_kind
                .entry(kind_of(m, audit).name().to_string())
                .or_default(),
        ] {
            t.mappings += 1;
            t.size += m.size();
            t.rss += m.rss;
            t.pss += m.pss;
            t.anonymous += m.anonymous;
            t.swap += m.swap;
        }
    }
    s
}

/// All notes, in the kernel's order: the first thread's status, the
/// process notes, its FP state; then each other thread; ours last.
fn notes(
    p: &ProcessFacts,
    threads: &[ptrace::Thread],
    maps: &[Mapping],
    meta: &Metadata,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 * 1024);
    let files: Vec<note::FileRange> = maps
        .iter()
        .filter(|m| m.is_file())
        .map(|m| note::FileRange {
            start: m.start,
            end: m.end,
            offset: m.offset,
            path: m.maps_path(),
        })
        .collect();
    for (i, t) in threads.iter().enumerate() {
        let status = note::ThreadStatus {
            tid: t.tid,
            ppid: p.ppid,
            pgrp: p.pgrp,
            sid: p.sid,
            signal: t.pending_signal,
            regs: t.regs.clone(),
            fpvalid: t.fpregs.is_some(),
        };
        note::push(&mut b, "CORE", note::NT_PRSTATUS, &note::prstatus(&status));
        if i == 0 {
            note::push(&mut b, "CORE", note::NT_PRPSINFO, &note::prpsinfo(&p.info));
            note::push(&mut b, "CORE", note::NT_AUXV, &p.auxv);
            note::push(&mut b, "CORE", note::NT_FILE, &note::file(&files));
        }
        if let Some(fp) = &t.fpregs {
            note::push(&mut b, "CORE", note::NT_FPREGSET, fp);
        }
        if let Some(x) = &t.xstate {
            let x = xstate::to_gdb_layout(x, &xstate::cpu_offset);
            note::push(&mut b, "LINUX", note::NT_X86_XSTATE, &x);
        }
    }
    note::push(&mut b, NOTE_NAME, NOTE_TYPE, &meta.to_json());
    b
}

fn reg(regs: &[u8], index: usize) -> u64 {
    regs.get(index * 8..index * 8 + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// What we learn about the process before stopping it.
struct ProcessFacts {
    comm: String,
    cmdline: Vec<String>,
    exe: Option<String>,
    auxv: Vec<u8>,
    ppid: i32,
    pgrp: i32,
    sid: i32,
    info: note::ProcessInfo,
}

impl ProcessFacts {
    fn read(pid: i32) -> Result<ProcessFacts, Error> {
        let status = String::from_utf8_lossy(&read_proc(pid, "status", false)?).into_owned();
        let field = |key: &str| -> Option<&str> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim_start_matches(':').trim())
        };
        // /proc/TID exists for every thread id too; a snapshot is of a
        // whole process.
        if let Some(tgid) = field("Tgid").and_then(|v| v.parse::<i32>().ok()) {
            if tgid != pid {
                return Err(Error::Malformed {
                    path: format!("/proc/{pid}").into(),
                    why: format!("{pid} is a thread of process {tgid}; snapshot the process"),
                });
            }
        }
        let id = |key: &str| {
            field(key)
                .and_then(|v| v.split_ascii_whitespace().next())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let (uid, gid) = (id("Uid"), id("Gid"));
        let stat = String::from_utf8_lossy(&read_proc(pid, "stat", false)?).into_owned();
        let comm = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_ascii_whitespace().collect())
            .unwrap_or_default();
        let num = |i: usize| rest.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let state = rest.first().and_then(|s| s.bytes().next()).unwrap_or(b'R');
        // What would otherwise surface later as "exited during the capture"
        // or a permission error, named for what it is.
        if num(6) as u64 & PF_KTHREAD != 0 {
            return Err(Error::KernelThread { pid });
        }
        // A main thread that called pthread_exit is a zombie too, while
        // the others run on; only a process with no live thread is one.
        if state == b'Z' && !has_live_thread(pid) {
            return Err(Error::Zombie { pid });
        }
        let tracer = field("TracerPid")
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0);
        if tracer != 0 && tracer as u32 != std::process::id() {
            return Err(Error::AlreadyTraced { pid, tracer });
        }
        let cmdline: Vec<String> = read_proc(pid, "cmdline", false)?
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let auxv = read_proc(pid, "auxv", false)?;
        let (ppid, pgrp, sid) = (num(1) as i32, num(2) as i32, num(3) as i32);
        let info = note::ProcessInfo {
            state,
            pid,
            ppid,
            pgrp,
            sid,
            uid,
            gid,
            nice: num(16) as i8,
            flag: num(6) as u64,
            fname: comm.clone(),
            psargs: cmdline.join(" "),
        };
        Ok(ProcessFacts {
            comm,
            cmdline,
            exe,
            auxv,
            ppid,
            pgrp,
            sid,
            info,
        })
    }
}

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`
/// (include/linux/sched.h): a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Whether any thread of `pid` is neither a zombie nor dead.
fn has_live_thread(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        !matches!(state, None | Some('Z') | Some('X'))
    })
}

/// Reads `/proc/PID/<name>`. `stopped` says whether we hold the process
/// (then a missing file means it died under us).
fn read_proc(pid: i32, name: &str, stopped: bool) -> Result<Vec<u8>, Error> {
    let path = format!("/proc/{pid}/{name}");
    std::fs::read(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound if stopped => Error::Exited { pid },
        io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            pid,
            what: format!(
                "reading {path} needs ptrace access: CAP_SYS_PTRACE for another user's process"
            ),
        },
        // A process that exits while we read gives ESRCH on some files.
        _ if e.raw_os_error() == Some(libc::ESRCH) => Error::Exited { pid },
        _ => Error::io(path, e),
    })
}

fn parse_maps(pid: i32, name: &str, bytes: &[u8]) -> Result<Vec<Mapping>, Error> {
    maps::parse_smaps(&String::from_utf8_lossy(bytes)).map_err(|maps::ParseError(why)| {
        Error::Malformed {
            path: format!("/proc/{pid}/{name}").into(),
            why,
        }
    })
}

/// `/tmp/perf-PID.map`, as JIT compilers write it (V8 `--perf-basic-prof`,
/// the JVM's perf-map-agent), capped so a runaway map cannot balloon the
/// note.
fn read_perf_map(pid: i32) -> Option<String> {
    const CAP: u64 = 256 << 20;
    let f = File::open(format!("/tmp/perf-{pid}.map")).ok()?;
    let mut s = String::new();
    io::Read::read_to_string(&mut io::Read::take(f, CAP), &mut s).ok()?;
    Some(s)
}

/// Raises this thread's scheduling priority (nice -10) for its lifetime;
/// threads spawned meanwhile (the copy threads) inherit it.
struct Boost {
    old: Option<i32>,
}

impl Boost {
    fn new() -> Boost {
        // SAFETY: getpriority/setpriority take no pointers; `who` 0 is the
        // calling thread on Linux (nice values are per thread).
        unsafe {
            *libc::__errno_location() = 0;
            let old = libc::getpriority(libc::PRIO_PROCESS, 0);
            if *libc::__errno_location() != 0 || old <= -10 {
                return Boost { old: None };
            }
            let ok = libc::setpriority(libc::PRIO_PROCESS, 0, -10) == 0;
            Boost {
                old: ok.then_some(old),
            }
        }
    }
}

impl Drop for Boost {
    fn drop(&mut self) {
        if let Some(old) = self.old {
            // SAFETY: as in `new`.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, old) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_utc_and_safe() {
        assert_eq!(
            default_file_name("my prog/x", 42, 0),
            "leaktrail-my_prog_x-42-19700101T000000Z.core"
        );
        // 2024-02-29 12:34:56 UTC
        assert_eq!(
            default_file_name("a", 1, 1_709_210_096),
            "leaktrail-a-1-20240229T123456Z.core"
        );
    }

    fn mapping(line: &str, rss: u64) -> Mapping {
        let mut m = maps::parse_smaps(line).unwrap().remove(0);
        m.rss = rss;
        m.vm_flags = vec!["rd".into()];
        m
    }

    #[test]
    fn full_plan_keeps_writable_and_anonymous_and_skips_guards() {
        let maps = vec![
            mapping("1000-2000 r-xp 00000000 08:01 7 /bin/x", 4096),
            mapping("2000-3000 rw-p 00001000 08:01 7 /bin/x", 4096),
            mapping("3000-5000 rw-p 00000000 00:00 0 [heap]", 8192),
            mapping("5000-6000 ---p 00000000 00:00 0", 0),
            mapping("6000-8000 rw-p 00000000 00:00 0", 0),
            mapping("8000-9000 r--p 00000000 00:00 0 [vvar]", 4096),
            mapping("9000-a000 r-xp 00000000 00:00 0 [vdso]", 4096),
        ];
        let heads: HashSet<u64> = [0x1000].into();
        let loads = plan(&maps, MemoryMode::Full, &[], &heads);
        let got: Vec<(u64, u64, u64)> =
            loads.iter().map(|l| (l.start, l.memsz, l.filesz)).collect();
        assert_eq!(
            got,
            vec![
                (0x1000, 0x1000, 0x1000),
                (0x2000, 0x1000, 0x1000),
                (0x3000, 0x2000, 0x2000),
                (0x6000, 0x2000, 0x2000),
                (0x9000, 0x1000, 0x1000),
            ]
        );
        let tables = plan(&maps, MemoryMode::Tables, &[(0x3100, 0x3200)], &heads);
        assert_eq!(
            tables.iter().map(|l| l.start).collect::<Vec<_>>(),
            vec![0x1000, 0x3000, 0x9000]
        );
        assert!(plan(&maps, MemoryMode::None, &[], &heads).is_empty());
    }

    /// The bytes of every PT_LOAD of a core written by [`take`].
    fn load_bytes(path: &std::path::Path) -> Vec<u8> {
        let b = std::fs::read(path).unwrap();
        let word = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let phnum = u16::from_le_bytes([b[56], b[57]]) as usize;
        let mut out = Vec::new();
        for i in 0..phnum {
            let ph = 64 + i * 56;
            if u32::from_le_bytes(b[ph..ph + 4].try_into().unwrap()) == elf::PT_LOAD {
                let (off, len) = (word(ph + 8) as usize, word(ph + 32) as usize);
                out.extend_from_slice(&b[off..off + len]);
            }
        }
        out
    }

    #[test]
    fn streaming_and_staging_write_the_same_memory() {
        // A child that sits still, blocked reading an empty pipe: its
        // memory does not change between the two snapshots. (`sleep` would
        // not do: an interrupted nanosleep writes the time left.)
        let mut child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Wait, without sleeping, until it is blocked in read(2).
        while !std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .is_ok_and(|s| s.starts_with("0 "))
        {
            std::thread::yield_now();
        }
        let dir = std::env::temp_dir().join(format!("leaktrail-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let staged = Options {
            output: Some(dir.join("staged.core")),
            ..Options::default()
        };
        let a = take(pid, &staged).unwrap();
        let streamed = Options {
            output: Some(dir.join("streamed.core")),
            staging_budget: Some(0),
            ..Options::default()
        };
        let b = take(pid, &streamed).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(a.phases.staged && !b.phases.staged);
        assert_eq!(a.captured_bytes, b.captured_bytes);
        assert!(a.captured_bytes > 0);
        let (x, y) = (load_bytes(&a.path), load_bytes(&b.path));
        if let Some(i) = x.iter().zip(&y).position(|(p, q)| p != q) {
            let n = x.iter().zip(&y).filter(|(p, q)| p != q).count();
            panic!(
                "first difference at data byte {i:#x} of {:#x}; {n} bytes differ",
                x.len()
            );
        }
        assert_eq!(x.len(), y.len());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    // libc deprecates vfork because Rust code cannot use it safely; the
    // child here only makes raw syscalls and _exits, which is what vfork
    // allows, and a vfork parent is the one unstoppable wait we can make
    // on demand.
    #[allow(deprecated)]
    fn a_thread_that_never_stops_times_out_instead_of_hanging() {
        // A vfork parent waits for its child in uninterruptible sleep until
        // the child execs or exits: no ptrace interrupt stops it meanwhile.
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes async-signal-safe calls (we are a
        // multi-threaded test process) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above; the vfork child only reads and exits.
            unsafe {
                libc::close(fds[1]);
                if libc::vfork() == 0 {
                    let mut b = 0u8;
                    libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
                    libc::_exit(0);
                }
                libc::_exit(0);
            }
        }
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(fds[0]) };
        let state = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, r)| r.trim_start().chars().next())
                })
        };
        while state() != Some('D') {
            std::thread::yield_now();
        }
        let dir = std::env::temp_dir().join(format!("leaktrail-dstate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = Options {
            memory: MemoryMode::None,
            output: Some(dir.join("never.core")),
            stop_timeout: Duration::from_millis(200),
            ..Options::default()
        };
        let started = Instant::now();
        let err = take(pid, &options).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.to_string().contains("did not stop within 0.2 s"),
            "{err}"
        );
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_none(),
            "left a file"
        );
        // Let it go; it is still ours (the kernel would free it when this
        // process exits), so end it here.
        // SAFETY: writing one byte from a local; kill and waitpid take no
        // pointers but `status`.
        unsafe {
            libc::write(fds[1], b"x".as_ptr().cast(), 1);
            libc::kill(pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(pid, &mut status, libc::__WALL);
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
