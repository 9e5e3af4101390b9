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

mod cow;
mod incremental;
pub(crate) mod interrupt;
mod memory;
mod module;
mod pagemap;
pub(crate) mod ptrace;
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
use leaktrail_recording::Snapshot;
use memory::{Copier, Piece, Pinning, Staging};

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
    /// How to take the memory.
    pub method: Method,
    /// An earlier snapshot of the same process: store only the pages that
    /// differ from it, and a reference to it.
    pub since: Option<PathBuf>,
    /// Start a soft-dirty epoch (where the kernel keeps the bits): the
    /// next snapshot incremental to this one reads only the pages written
    /// since. Only a recording's snapshots do, so that no one else's
    /// snapshot starts an epoch under them.
    pub track_changes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memory: MemoryMode::Full,
            output: None,
            staging_budget: None,
            stop_timeout: Duration::from_secs(10),
            method: Method::Auto,
            since: None,
            track_changes: false,
        }
    }
}

/// How a snapshot takes the target's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// Copy-on-write where it can be used, else stop-and-copy (saying why).
    #[default]
    Auto,
    /// Copy-on-write: fork a still image of the process inside it while
    /// its threads are stopped, let them go, copy from the image. Fails
    /// where it cannot be used.
    Cow,
    /// Stop-and-copy: every thread waits while the memory is copied.
    Stop,
}

impl Method {
    /// Every method, in `--help` order.
    pub const ALL: &'static [Method] = &[Method::Auto, Method::Cow, Method::Stop];

    /// The name on the command line and in the snapshot's note.
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Cow => "cow",
            Method::Stop => "stop",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Method, String> {
        Method::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown method {s:?}: choose auto, cow or stop"))
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
    /// How the memory was taken: [`Method::Cow`] or [`Method::Stop`].
    pub method: Method,
    /// Why copy-on-write was not used, when it was the default.
    pub fallback: Option<String>,
    /// Anything else the user should know about this snapshot, one line.
    pub note: Option<String>,
    /// CPU time the snapshot cost us (all our threads).
    pub cpu: Duration,
    /// Size of the file written.
    pub file_bytes: u64,
    /// Bytes of memory left to the base snapshot (incremental only).
    pub inherited_bytes: u64,
    /// Whether the snapshot is incremental to an earlier one.
    pub incremental: bool,
    /// Copy-on-write: bytes of `MADV_DONTFORK` memory (V8's heap) the
    /// image held because the target marked it `MADV_DOFORK` for the fork
    /// (copied after the release, not while stopped).
    pub dontfork_in_image: u64,
}

/// Where the pause went, phase by phase, in order; they add up to the
/// pause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Phases {
    /// Seizing and interrupting every thread, collecting the stops, and
    /// reading their registers.
    pub stop: Duration,
    /// Reading `/proc/PID/maps` (smaps is read before the stop) and
    /// classifying the mappings.
    pub maps: Duration,
    /// Audit headers and their ranges, ELF headers, the plan, and the
    /// thread to fork in.
    pub probes: Duration,
    /// Copy-on-write: what a fork would not carry (`MADV_DONTFORK` memory
    /// marked for the fork, or copied; `MADV_WIPEONFORK` memory copied)
    /// and the soft-dirty bits.
    pub not_in_fork: Duration,
    /// Copy-on-write: the injected fork, from setting up the call to the
    /// kernel's clone event (`fork` and our ptrace round trips).
    pub fork_call: Duration,
    /// Copy-on-write: the kernel's part of `fork_call`, from the clone's
    /// syscall-entry stop to its clone event (mostly copying the page
    /// tables: one entry per 4 KiB page).
    pub fork: Duration,
    /// Copy-on-write with `MADV_DONTFORK` memory in the image: ending the
    /// clone and giving the advice back.
    pub advice_back: Duration,
    /// Stop-and-copy: the copy (to the staging area, or streamed to the
    /// file).
    pub copy: Duration,
    /// Letting the threads go.
    pub release: Duration,
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
/// target is let go and no file is left), [`Error::Malformed`] for a
/// `since` that is not an earlier snapshot of `pid`, and for
/// [`Method::Cow`] where it cannot be used; I/O errors on the output.
pub fn take(pid: i32, options: &Options) -> Result<Outcome, Error> {
    if pid <= 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    let cpu_started = cpu_time();
    // Before the stop: everything that does not change while it runs.
    let process = ProcessFacts::read(pid)?;
    // Every file that shows the address space is read through a live
    // thread (the main one, unless it called pthread_exit).
    let mm = process.mm;
    let base = match &options.since {
        Some(p) => Some(open_base(p, pid)?),
        None => None,
    };
    let mut fallback = None;
    let mut cow = options.memory != MemoryMode::None && options.method != Method::Stop;
    if cow {
        if let Some(why) = cow::unavailable(pid) {
            refuse_cow(pid, options.method, &why)?;
            fallback = Some(why);
            cow = false;
        }
    }
    // smaps walks every page table entry (tens of ms per GiB), so it is read
    // here, before the stop; while stopped we read the cheap maps and take
    // each mapping's counters and VmFlags from this reading. Nothing that
    // decides which bytes are zeros depends on them: pagemap does.
    let before = parse_maps(mm, "smaps", &read_proc(mm, "smaps", false)?)?;
    let budget = options
        .staging_budget
        .unwrap_or_else(|| memory::mem_available() / 2);
    // The copy-on-write image needs staging only for what it will lack
    // (copied while stopped): pre-faulted here, as for stop-and-copy.
    let mut staging = if cow {
        let lacking: u64 = plan(&before, options.memory, &[], &HashSet::new())
            .iter()
            .filter(|l| {
                let m = &before[l.mapping];
                m.has_flag("wf") || (m.has_flag("dc") && !cow::keep_on_fork_supported())
            })
            .map(|l| l.filesz)
            .sum();
        (lacking > 0 && lacking + (8 << 20) <= budget)
            .then(|| Staging::new(lacking + lacking / 16).ok())
            .flatten()
    } else {
        let estimate = staging_estimate(&before, options.memory);
        (estimate + (8 << 20) <= budget)
            .then(|| Staging::new(estimate + estimate / 16 + (8 << 20)).ok())
            .flatten()
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
    // Soft-dirty bits (see below): whether the kernel has them, and which
    // snapshot's epoch the process is in, found out before the stop. The
    // epoch's owner is named beside the output before the bits are
    // cleared: a snapshot that cleared them and then failed leaves a name
    // no base has, and the next one trusts no bit. Only a snapshot holding
    // the recording's lock writes that file.
    let mut epoch = options.track_changes
        && options.memory == MemoryMode::Full
        && pagemap::soft_dirty_supported();
    let id = metadata::new_id();
    let epoch_file = path
        .parent()
        .map_or_else(|| PathBuf::from(EPOCH_FILE), |d| d.join(EPOCH_FILE));
    let owner = std::fs::read_to_string(&epoch_file).unwrap_or_default();
    if cow {
        // Tried once per process: before the stop, not inside it.
        cow::keep_on_fork_supported();
    }
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
    // Declared before the world so that, on every path, the world lets
    // the threads go before the image is ended (ending it stops one thread
    // again to reap it).
    let mut image: Option<cow::Image> = None;
    // A child a failed fork made all the same: ended once the world has
    // let the threads go (reaping it stops one of them again).
    let mut failed_image: Option<Box<cow::Image>> = None;
    let mut world = ptrace::World::stop(pid, options.stop_timeout)?;
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
    let mut maps = maps::with_details(
        parse_maps(mm, "maps", &read_proc(mm, "maps", true)?)?,
        &before,
    );
    interrupt::check(pid)?;
    let stacks: Vec<u64> = world
        .threads()
        .iter()
        .map(|t| reg(&t.regs, note::REG_RSP))
        .collect();
    maps::classify(&mut maps, &stacks);
    let t_maps = stop_started.elapsed();
    // The target's own pages shared with a fork of its own (a preforking
    // server's) are read without pinning, which would copy them.
    let pinning = Pinning::for_maps(&before);
    let mut copier = Copier::new(mm, pinning.clone());

    // What to capture is planned first from the maps alone. With
    // copy-on-write, the probes (audit headers, ELF headers) then read the
    // image after the release, when it lacks nothing they could read or
    // add to the plan: no readable mapping that is MADV_WIPEONFORK, or
    // MADV_DONTFORK and not given to the image. Otherwise they read the
    // stopped target here, and what they add that the image lacks is
    // copied before the fork with the rest.
    let mut loads = plan(&maps, options.memory, &[], &HashSet::new());
    let mut forker = None;
    if cow && loads.iter().any(|l| l.filesz > 0) {
        match cow::Forker::choose(pid, &world) {
            Ok(f) => forker = Some(f),
            Err(why) => {
                refuse_cow(pid, options.method, &why)?;
                fallback = Some(why.to_string());
            }
        }
    }
    let cow = forker.is_some();
    // V8 advises every page of its heap MADV_DONTFORK: for Node.js that
    // is most of the heap, in hundreds of mappings. The image takes them
    // too when the target marks them MADV_DOFORK for the fork (and back
    // right after it): then they are copied from the image after the
    // release, like the rest.
    let mut in_image = HashSet::new();
    let mut t_keep = Duration::ZERO;
    if let Some(f) = forker.as_mut().filter(|_| cow::keep_on_fork_supported()) {
        let with_data: HashSet<usize> = loads
            .iter()
            .filter(|l| l.filesz > 0)
            .map(|l| l.mapping)
            .collect();
        let ranges: Vec<(u64, u64)> = maps
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                m.has_flag("dc") && !m.has_flag("wf") && !m.has_flag("io") && with_data.contains(i)
            })
            .map(|(_, m)| (m.start, m.end))
            .collect();
        let at = Instant::now();
        let kept = f.keep_on_fork(&ranges);
        t_keep = at.elapsed();
        in_image.extend(ranges[..kept].iter().map(|r| r.0));
    }
    let probes_after = cow
        && maps.iter().all(|m| {
            !lacks_in_image(m)
                || in_image.contains(&m.start)
                || !m.is_readable()
                || m.has_flag("io")
        });
    let mut probed = Probes::default();
    if !probes_after {
        (probed, loads) = Probes::planned(mm, &pinning, &maps, options.memory);
    }
    interrupt::check(pid)?;
    let t_probed = stop_started.elapsed();
    // What the image will still lack (MADV_DONTFORK not taken in,
    // MADV_WIPEONFORK) is copied now, before the fork: the fork is the last
    // thing the pause holds. In one parallel copy.
    let mut early_pieces: Vec<Piece> = if cow {
        loads
            .iter()
            .filter(|l| {
                let m = &maps[l.mapping];
                l.filesz > 0 && lacks_in_image(m) && !in_image.contains(&m.start)
            })
            .map(|l| Piece {
                addr: l.start,
                len: l.filesz,
            })
            .collect()
    } else {
        Vec::new()
    };
    let early_total: u64 = early_pieces.iter().map(|p| p.len).sum();
    let mut early_vec = Vec::new();
    let early_bytes: &mut [u8] = match &mut staging {
        Some(s) if cow && s.capacity() >= early_total => s.slice(early_total),
        _ => {
            early_vec.resize(early_total as usize, 0u8);
            &mut early_vec
        }
    };
    copier.unreadable += memory::read_parallel(mm, &pinning, &early_pieces, early_bytes)?;
    // Soft-dirty bits: read those of the pages the base may still hold,
    // then start a new epoch for the next snapshot; both while stopped.
    let mut clean = Vec::new();
    if epoch
        && base.as_ref().is_some_and(|b| {
            b.metadata()
                .is_some_and(|m| m.capture.soft_dirty_epoch && m.id == owner.trim())
        })
    {
        if let Ok(f) = File::open(format!("/proc/{mm}/pagemap")) {
            for l in loads.iter().filter(|l| l.filesz > 0) {
                let m = &maps[l.mapping];
                if m.is_anonymous() && !m.is_shared() && !lacks_in_image(m) {
                    clean.extend(
                        pagemap::clean_ranges(&f, l.start, l.start + l.filesz).unwrap_or_default(),
                    );
                }
            }
        }
    }
    if epoch {
        epoch = std::fs::write(&epoch_file, &id).is_ok() && pagemap::clear_soft_dirty(mm).is_ok();
    }
    let mut base = base;
    let mut note_line = None;
    let mut streamed = None;
    // The registers as they were at the stop (the thread that forks is
    // handed over to the image, its own registers saved).
    let threads: Vec<ptrace::Thread> = world.threads().to_vec();
    let t_carried = stop_started.elapsed();
    if let Some(f) = forker {
        match f.fork(&mut world) {
            Ok(i) => image = Some(i),
            Err(f) => {
                failed_image = f.image;
                refuse_cow(pid, options.method, &f.why)?;
                fallback = Some(f.why);
                // The stop-and-copy below takes these too.
                early_pieces.clear();
                if probes_after {
                    (probed, loads) = Probes::planned(mm, &pinning, &maps, options.memory);
                }
            }
        }
    }
    if image.is_none() {
        loads = split_sparse(mm, &maps, loads);
        let pieces = data_pieces(&loads);
        let total: u64 = pieces.iter().map(|p| p.len).sum();
        if staging.as_ref().is_some_and(|s| s.capacity() < total) {
            staging = None;
        }
        if staging.is_none() && total <= budget {
            staging = Staging::new(total).ok();
        }
        match &mut staging {
            Some(s) => {
                copier.unreadable += memory::read_parallel(mm, &pinning, &pieces, s.slice(total))?;
            }
            None => {
                if base.take().is_some() {
                    note_line = Some(
                        "not enough free memory to stage the copy: this snapshot is full, not incremental"
                            .to_string(),
                    );
                }
                let layout = elf::Layout::new(loads.len());
                let mut source = Source::Live(Copier::new(mm, pinning.clone()), Vec::new());
                stream(&mut source, &pieces, &out, layout.data_offset)?;
                copier.unreadable += source.unreadable();
                streamed = Some(pieces);
            }
        }
    }
    let t_copied = stop_started.elapsed();
    if !memory::alive(mm) {
        return Err(Error::Exited { pid });
    }
    interrupt::check(pid)?;
    world.release()?;
    let pause = stop_started.elapsed();
    drop(boost);
    drop(before);
    if let Some(failed) = failed_image.take() {
        failed.end();
    }
    if let Some(image) = &mut image {
        // The thread that forked, held inside its clone until now, goes
        // back to what it was doing.
        image.settle()?;
    }
    // A JIT appends to its map as it goes: a later reading only adds names.
    let perf_map = read_perf_map(pid);

    // After the release: copy from the image, cut out what the base
    // already holds, write out, describe, name.
    let mut early = Vec::new();
    if image.is_some() {
        let bytes: &[u8] = match &mut staging {
            Some(s) if early_vec.is_empty() => s.slice(early_total),
            _ => &early_vec,
        };
        let mut at = 0usize;
        for p in &early_pieces {
            early.push((p.addr, bytes[at..at + p.len as usize].to_vec()));
            at += p.len as usize;
        }
    }
    drop(early_vec);
    if let Some(image) = &image {
        if probes_after {
            (probed, loads) =
                Probes::planned(image.pid(), &Pinning::Nowhere, &maps, options.memory);
        }
        loads = split_sparse(image.pid(), &maps, loads);
    }
    let Probes {
        audit_headers,
        audit_ranges,
        ..
    } = probed;
    let staged_pieces = data_pieces(&loads);
    let staged_total: u64 = staged_pieces.iter().map(|p| p.len).sum();
    let mut source = match (&image, &mut staging) {
        // Every page of the image is shared with the target: never pinned.
        (Some(image), _) => Some(Source::Live(
            Copier::new(image.pid(), Pinning::Nowhere),
            early,
        )),
        (None, Some(s)) if streamed.is_none() => Some(Source::Staged(
            StagedView::new(&staged_pieces),
            s.slice(staged_total),
        )),
        _ => None,
    };
    if fault.as_ref().is_some_and(|v| v == "pause-before-copy") {
        // Test seam: the target runs on, and writes, before we copy from
        // the image; a byte on our stdin lets the copy go on.
        eprintln!("leaktrail: test fault: process {pid} released, copy not started");
        let mut b = [0u8; 1];
        let _ = io::Read::read(&mut io::stdin(), &mut b);
    }
    let mut inherited = Vec::new();
    if let (Some(b), Some(src)) = (&base, &mut source) {
        (loads, inherited) = incremental::diff(loads, src, b, &clean)?;
    }
    let layout = elf::Layout::new(loads.len());
    let pieces = data_pieces(&loads);
    let total: u64 = pieces.iter().map(|p| p.len).sum();
    match &mut source {
        Some(Source::Staged(_, buf)) if inherited.is_empty() => {
            out.file()
                .write_all_at(buf, layout.data_offset)
                .map_err(|e| Error::io(out.writing(), e))?;
        }
        Some(src) => {
            stream(src, &pieces, &out, layout.data_offset)?;
            copier.unreadable += src.unreadable();
        }
        None => {}
    }
    drop(source);
    let dontfork_in_image = if image.is_some() {
        loads
            .iter()
            .filter(|l| in_image.contains(&maps[l.mapping].start))
            .map(|l| l.memsz)
            .sum()
    } else {
        0
    };
    let method = if image.is_some() {
        Method::Cow
    } else {
        Method::Stop
    };
    let cow_phases = image
        .as_ref()
        .map(|i| (i.call_time(), i.fork_time(), i.advice_back()));
    if let Some(image) = image {
        image.end();
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
    let modules = module::modules(mm, &maps);
    let inherited_bytes: u64 = inherited.iter().map(|r: &[u64; 2]| r[1] - r[0]).sum();
    let mut metadata = Metadata {
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
        capture: metadata::Capture {
            method: method.name().to_string(),
            fallback: fallback.clone(),
            cpu_ns: 0,
            total_ns: 0,
            written_bytes: total,
            inherited_bytes,
            soft_dirty_epoch: epoch,
        },
        id,
        base: base.as_ref().map(|b| base_ref(b, &path)),
        inherited,
    };
    // The cost, as late as it can be measured: the notes are all that is
    // left to write.
    metadata.capture.cpu_ns = cpu_time().saturating_sub(cpu_started).as_nanos() as u64;
    metadata.capture.total_ns = stop_started.elapsed().as_nanos() as u64;
    let notes = notes(&process, &threads, &maps, &metadata);
    phdrs[0] = elf::ProgramHeader::notes(offset, notes.len() as u64);
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
            stop: t_stopped,
            maps: t_maps - t_stopped,
            probes: t_probed - t_maps - t_keep,
            not_in_fork: if cow_phases.is_some() {
                t_carried - t_probed + t_keep
            } else {
                Duration::ZERO
            },
            fork_call: cow_phases.map_or(Duration::ZERO, |c| c.0),
            fork: cow_phases.map_or(Duration::ZERO, |c| c.1),
            advice_back: cow_phases.map_or(Duration::ZERO, |c| c.2),
            copy: if cow_phases.is_some() {
                Duration::ZERO
            } else {
                t_copied - t_probed
            },
            release: pause - t_copied,
            staged: method == Method::Stop && streamed.is_none(),
        },
        method,
        fallback,
        note: note_line.or_else(|| {
            (mm != pid).then(|| {
                format!(
                    "the main thread of process {pid} has exited (pthread_exit): its memory was read through thread {mm}"
                )
            })
        }),
        cpu: Duration::from_nanos(metadata.capture.cpu_ns),
        file_bytes: offset + notes.len() as u64,
        inherited_bytes,
        incremental: metadata.base.is_some(),
        dontfork_in_image,
    })
}

/// How the snapshots of a recording are taken ([`take_into`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Periodic {
    /// Which memory the snapshots keep.
    pub memory: MemoryMode,
    /// How the memory is taken.
    pub method: Method,
    /// Each snapshot stores only what changed since the previous one of
    /// the recording.
    pub incremental: bool,
    /// Every Nth periodic snapshot is a standalone one with full memory
    /// (the first one always is); 0 for never. Between them: incremental
    /// ones, or `memory`'s.
    pub full_every: usize,
    /// Print one line per snapshot (method, pause, CPU, bytes written) on
    /// standard error.
    pub verbose: bool,
}

impl Periodic {
    /// The memory mode of the `n`-th snapshot (from 1) of a recording, and
    /// whether it is incremental: the first and every `full_every`-th after
    /// it are standalone with full memory (`tables` ones too, when
    /// `full_every` is set); the others are `memory`'s, incremental if asked
    /// and full.
    pub fn turn(&self, n: usize) -> (MemoryMode, bool) {
        let full_turn = n == 1 || (self.full_every > 0 && (n - 1) % self.full_every == 0);
        let memory = if self.memory == MemoryMode::Tables && self.full_every > 0 && full_turn {
            MemoryMode::Full
        } else {
            self.memory
        };
        (
            memory,
            self.incremental && memory == MemoryMode::Full && !full_turn,
        )
    }

    /// Snapshots of `memory`, taken by the default method, standalone.
    pub fn new(memory: MemoryMode) -> Periodic {
        Periodic {
            memory,
            method: Method::Auto,
            incremental: false,
            full_every: 0,
            verbose: false,
        }
    }
}

/// Takes a snapshot of `pid` as the next one of a recording's `snapshots`
/// (`at_exit` marks the final one), holding the recording's snapshot lock
/// for the whole capture. With `how.incremental` it is incremental to the
/// newest one before it (unless it is the first, or a `full_every`-th).
pub fn take_into(
    snapshots: &Snapshots,
    pid: i32,
    how: &Periodic,
    at_exit: bool,
) -> Result<Outcome, Error> {
    let next = snapshots.reserve(at_exit)?;
    let before = snapshots.list()?;
    let (memory, incremental) = how.turn(before.len() + 1);
    let since = incremental
        .then(|| {
            before.iter().rev().find(|p| {
                leaktrail_recording::Snapshot::open(p).is_ok_and(|s| {
                    s.metadata()
                        .is_some_and(|m| m.options.memory == MemoryMode::Full)
                })
            })
        })
        .flatten()
        .cloned();
    let options = Options {
        memory,
        output: Some(next.path.clone()),
        method: how.method,
        since,
        track_changes: how.incremental,
        ..Default::default()
    };
    let outcome = take(pid, &options)?;
    if how.verbose {
        eprintln!("leaktrail: {}", outcome.summary());
    }
    Ok(outcome)
}

impl Outcome {
    /// Where the pause went, in order: `stop 0.4 ms, maps 0.2 ms, …,
    /// release 0.1 ms`; what the copy-on-write method adds (the fork, the
    /// kernel's part of it) or stop-and-copy's copy, and where it went.
    pub fn phases_line(&self) -> String {
        let p = &self.phases;
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        let mut parts = vec![
            format!("stop {}", ms(p.stop)),
            format!("maps {}", ms(p.maps)),
            format!("probes {}", ms(p.probes)),
        ];
        if self.method == Method::Cow {
            parts.push(format!("not in a fork {}", ms(p.not_in_fork)));
            parts.push(format!(
                "fork {} (the kernel's {})",
                ms(p.fork_call),
                ms(p.fork)
            ));
            if !p.advice_back.is_zero() {
                parts.push(format!("advice back {}", ms(p.advice_back)));
            }
        } else {
            parts.push(format!(
                "copy {} ({})",
                ms(p.copy),
                if p.staged {
                    "staged, file written after the release"
                } else {
                    "streamed to the file"
                }
            ));
        }
        parts.push(format!("release {}", ms(p.release)));
        format!(
            "{}; pause {}{}",
            parts.join(", "),
            ms(self.pause),
            if self.method == Method::Cow {
                ", memory copied from the copy-on-write image after the release"
            } else {
                ""
            }
        )
    }

    /// One line: the file, how it was taken, the pause, the CPU spent and
    /// the bytes written.
    pub fn summary(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        format!(
            "{}: {}{}, pause {:.1} ms{}, cpu {:.1} ms, {:.1} MiB written{}",
            self.path.display(),
            self.method,
            if self.fallback.is_some() {
                " (fallback)"
            } else {
                ""
            },
            self.pause.as_secs_f64() * 1e3,
            if self.method == Method::Cow {
                format!(
                    " (the kernel's fork {:.1} ms{})",
                    self.phases.fork.as_secs_f64() * 1e3,
                    if self.dontfork_in_image > 0 {
                        format!(
                            ", with {:.1} MiB of MADV_DONTFORK memory",
                            mib(self.dontfork_in_image)
                        )
                    } else {
                        String::new()
                    }
                )
            } else {
                String::new()
            },
            self.cpu.as_secs_f64() * 1e3,
            mib(self.file_bytes),
            if self.incremental {
                format!(
                    " (incremental: {:.1} MiB from its base)",
                    mib(self.inherited_bytes)
                )
            } else {
                String::new()
            }
        )
    }
}

/// Copies `pieces` to `file` at `offset` in batches, while the target waits.
fn stream(
    source: &mut Source,
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
            source.read(batch, b)?;
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

/// Beside a recording's snapshots: the content id of the snapshot that
/// started the process's current soft-dirty epoch.
const EPOCH_FILE: &str = ".soft-dirty-epoch";

/// Where the bytes of the capture come from once the target runs again:
/// the copy-on-write image (plus what was copied early because the image
/// lacks it), or the staging area filled while the target was stopped.
enum Source<'a> {
    /// Read live from a process (the image, or a stopped target), with
    /// `(address, bytes)` pieces that override what it reads.
    Live(Copier, Vec<(u64, Vec<u8>)>),
    /// The staging area: the pieces of `StagedView`, back to back.
    Staged(StagedView, &'a mut [u8]),
}

impl Source<'_> {
    /// Fills `dst` with `pieces` back to back, like [`Copier::read`].
    fn read(&mut self, pieces: &[Piece], dst: &mut [u8]) -> Result<(), Error> {
        match self {
            Source::Live(copier, early) => {
                // Pieces inside an early copy come from it (the image may
                // not even map them); the rest from the process, in runs.
                let covering = |p: &Piece| {
                    early
                        .iter()
                        .find(|(a, b)| *a <= p.addr && p.addr + p.len <= a + b.len() as u64)
                };
                let (mut at, mut run_start, mut run) = (0usize, 0usize, Vec::new());
                for p in pieces {
                    match covering(p) {
                        Some((a, bytes)) => {
                            copier.read(&run, &mut dst[run_start..at])?;
                            run.clear();
                            let from = (p.addr - a) as usize;
                            dst[at..at + p.len as usize]
                                .copy_from_slice(&bytes[from..from + p.len as usize]);
                            at += p.len as usize;
                            run_start = at;
                        }
                        None => {
                            run.push(*p);
                            at += p.len as usize;
                        }
                    }
                }
                copier.read(&run, &mut dst[run_start..at])
            }
            Source::Staged(view, buf) => {
                let mut at = 0usize;
                for p in pieces {
                    let from = view.offset_of(p).ok_or_else(|| Error::Sys {
                        what: format!(
                            "reading {:#x}+{:#x} back from the staging area",
                            p.addr, p.len
                        ),
                        source: io::ErrorKind::InvalidInput.into(),
                    })?;
                    dst[at..at + p.len as usize].copy_from_slice(&buf[from..from + p.len as usize]);
                    at += p.len as usize;
                }
                Ok(())
            }
        }
    }

    /// Bytes the live reads could not get (written as zeros).
    fn unreadable(&self) -> u64 {
        match self {
            Source::Live(c, _) => c.unreadable,
            Source::Staged(..) => 0,
        }
    }
}

/// Where each staged piece sits in the staging area.
struct StagedView {
    /// `(address, length, offset)`, by address.
    index: Vec<(u64, u64, usize)>,
}

impl StagedView {
    fn new(pieces: &[Piece]) -> StagedView {
        let mut at = 0usize;
        let mut index: Vec<(u64, u64, usize)> = pieces
            .iter()
            .map(|p| {
                let e = (p.addr, p.len, at);
                at += p.len as usize;
                e
            })
            .collect();
        index.sort_by_key(|e| e.0);
        StagedView { index }
    }

    /// The staging offset of `p`, which must lie inside one staged piece.
    fn offset_of(&self, p: &Piece) -> Option<usize> {
        let i = self
            .index
            .partition_point(|e| e.0 <= p.addr)
            .checked_sub(1)?;
        let (addr, len, at) = self.index[i];
        (p.addr + p.len <= addr + len).then(|| at + (p.addr - addr) as usize)
    }
}

/// The pieces with file bytes of `loads`, in file order.
fn data_pieces(loads: &[Load]) -> Vec<Piece> {
    loads
        .iter()
        .filter(|l| l.filesz > 0)
        .map(|l| Piece {
            addr: l.start,
            len: l.filesz,
        })
        .collect()
}

/// What the staging area needs for `maps` in `mode`, from the smaps read
/// before the stop.
fn staging_estimate(maps: &[Mapping], mode: MemoryMode) -> u64 {
    plan(maps, mode, &[], &HashSet::new())
        .iter()
        .map(|l| {
            // Mappings `split_sparse` will cut keep about their resident
            // bytes (plus the short holes folded into them).
            let m = &maps[l.mapping];
            if is_sparse_candidate(l, m) {
                ((m.rss + m.swap) / 4 * 5 + (256 << 10)).min(l.filesz)
            } else {
                l.filesz
            }
        })
        .sum()
}

/// What the probes found: audit headers and the ranges their descriptors
/// name, and the file mappings that start with an ELF header.
#[derive(Default)]
struct Probes {
    audit_headers: Vec<u64>,
    audit_ranges: Vec<(u64, u64)>,
    elf_heads: HashSet<u64>,
}

impl Probes {
    /// [`Probes::read`], and the plan with what they found.
    fn planned(
        pid: i32,
        pinning: &Pinning,
        maps: &[Mapping],
        mode: MemoryMode,
    ) -> (Probes, Vec<Load>) {
        let probes = Probes::read(pid, pinning, maps, mode);
        let loads = plan(maps, mode, &probes.audit_ranges, &probes.elf_heads);
        (probes, loads)
    }

    /// Reads them from `pid`: the stopped target, or its copy-on-write
    /// image (which holds every mapping of `maps` the probes read).
    fn read(pid: i32, pinning: &Pinning, maps: &[Mapping], mode: MemoryMode) -> Probes {
        let mut copier = Copier::new(pid, pinning.clone());
        // Audit headers: a page-aligned magic at the start of an anonymous
        // read-write mapping. Every candidate in one read (Node.js has
        // hundreds).
        let candidates: Vec<u64> = maps
            .iter()
            .filter(|m| m.is_read_write() && m.is_anonymous() && m.size() >= HEADER_MAPPING_BYTES)
            .map(|m| m.start)
            .collect();
        let audit_headers: Vec<u64> = candidates
            .iter()
            .zip(copier.probe_many::<8>(&candidates))
            .filter(|(_, magic)| audit::is_header(magic))
            .map(|(&start, _)| start)
            .collect();
        let mut probes = Probes {
            audit_headers,
            ..Probes::default()
        };
        if mode == MemoryMode::None {
            return probes;
        }
        let memory =
            crate::memory::ProcessMemory::new(pid, maps.iter().map(|m| (m.start, m.end)).collect());
        for &h in &probes.audit_headers {
            probes.audit_ranges.extend(audit::locate(&memory, h));
        }
        let heads: Vec<u64> = maps
            .iter()
            .filter(|m| m.is_file() && m.offset == 0 && m.is_readable())
            .map(|m| m.start)
            .collect();
        for (&start, magic) in heads.iter().zip(copier.probe_many::<4>(&heads)) {
            if magic == *b"\x7fELF" {
                probes.elf_heads.insert(start);
            }
        }
        probes
    }
}

/// Whether a forked child lacks `m` (`MADV_DONTFORK`: `dc`) or sees it
/// zeroed (`MADV_WIPEONFORK`: `wf`): then it is copied while stopped.
fn lacks_in_image(m: &Mapping) -> bool {
    m.has_flag("dc") || m.has_flag("wf")
}

/// With [`Method::Cow`] asked for, why it cannot be used is an error;
/// otherwise the caller falls back.
fn refuse_cow(pid: i32, method: Method, why: &str) -> Result<(), Error> {
    if method == Method::Cow {
        return Err(Error::Malformed {
            path: format!("/proc/{pid}").into(),
            why: format!("copy-on-write capture cannot be used: {why}; use --method stop"),
        });
    }
    Ok(())
}

/// Opens `path` as the base of an incremental snapshot of `pid`.
fn open_base(path: &std::path::Path, pid: i32) -> Result<Snapshot, Error> {
    let base = Snapshot::open(path)?;
    let bad = |why: String| Error::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let Some(meta) = base.metadata() else {
        return Err(bad(
            "not a leaktrail snapshot, so it cannot be the base of an incremental one".into(),
        ));
    };
    if meta.pid != pid {
        return Err(bad(format!(
            "a snapshot of process {}, not {pid}; an incremental snapshot builds on one of the same process",
            meta.pid
        )));
    }
    if meta.id.is_empty() {
        return Err(bad(
            "written by an older leaktrail (no content id); take a full snapshot first".into(),
        ));
    }
    Ok(base)
}

/// How the snapshot written at `out` names its base `b`: by file name
/// when they share a directory, else by absolute path.
fn base_ref(b: &Snapshot, out: &std::path::Path) -> metadata::BaseRef {
    let canon = |p: &std::path::Path| {
        p.parent()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    d
                }
            })
            .and_then(|d| std::fs::canonicalize(d).ok())
    };
    let same_dir = canon(b.path()).is_some() && canon(b.path()) == canon(out);
    let file = match (same_dir, b.path().file_name()) {
        (true, Some(name)) => name.to_string_lossy().into_owned(),
        _ => std::fs::canonicalize(b.path())
            .unwrap_or_else(|_| b.path().to_path_buf())
            .to_string_lossy()
            .into_owned(),
    };
    metadata::BaseRef {
        file,
        id: b.metadata().map(|m| m.id.clone()).unwrap_or_default(),
    }
}

/// CPU time of this process so far (user + system, every thread).
fn cpu_time() -> Duration {
    // SAFETY: `ru` is a valid out-pointer, zeroed before the call.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
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
        && !lacks_in_image(m)
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
    /// The thread whose `/proc` files show the address space: `pid`, or
    /// a live thread when the main one called pthread_exit (its own
    /// `maps`, `mem`, `auxv`, `cmdline` and `exe` are empty then).
    mm: i32,
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
        let mm = if state == b'Z' {
            crate::procfs::address_space_thread(pid).ok_or(Error::Zombie { pid })?
        } else {
            pid
        };
        let tracer = field("TracerPid")
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0);
        if tracer != 0 && tracer as u32 != std::process::id() {
            return Err(Error::AlreadyTraced { pid, tracer });
        }
        let cmdline: Vec<String> = read_proc(mm, "cmdline", false)?
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let exe = std::fs::read_link(format!("/proc/{mm}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let auxv = read_proc(mm, "auxv", false)?;
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
            mm,
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

/// Raises a thread's scheduling priority for its lifetime: ours (nice -10;
/// threads spawned meanwhile, the copy threads, inherit it) or, for the
/// length of its fork, the target's thread that forks (`cow::Image`).
/// Best effort: without CAP_SYS_NICE nothing changes.
struct Boost {
    tid: i32,
    old: Option<i32>,
}

impl Boost {
    fn new() -> Boost {
        Boost::of(0, -10)
    }

    /// Sets thread `tid` (0: the calling one) to `nice` if that is better
    /// than what it has.
    fn of(tid: i32, nice: i32) -> Boost {
        let who = tid as libc::id_t;
        // SAFETY: getpriority/setpriority take no pointers; `who` is a
        // thread id (0: the calling thread), nice values being per thread
        // on Linux.
        unsafe {
            *libc::__errno_location() = 0;
            let old = libc::getpriority(libc::PRIO_PROCESS, who);
            if *libc::__errno_location() != 0 || old <= nice {
                return Boost { tid, old: None };
            }
            let ok = libc::setpriority(libc::PRIO_PROCESS, who, nice) == 0;
            Boost {
                tid,
                old: ok.then_some(old),
            }
        }
    }
}

impl Boost {
    /// Gives thread `other` the priority the boosted thread had before (a
    /// child forked while boosted inherited the boost).
    fn undo_on(&self, other: i32) {
        if let Some(old) = self.old {
            // SAFETY: as in `of`.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, other as libc::id_t, old) };
        }
    }
}

impl Drop for Boost {
    fn drop(&mut self) {
        if let Some(old) = self.old {
            // SAFETY: as in `of`.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, self.tid as libc::id_t, old) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_every_n_th_snapshot_of_a_recording_is_standalone_with_full_memory() {
        let mut how = Periodic::new(MemoryMode::Full);
        how.incremental = true;
        how.full_every = 3;
        let turns: Vec<bool> = (1..=7).map(|n| how.turn(n).1).collect();
        assert_eq!(turns, [false, true, true, false, true, true, false]);
        how.full_every = 0;
        assert!((2..=9).all(|n| how.turn(n) == (MemoryMode::Full, true)));
        let mut tables = Periodic::new(MemoryMode::Tables);
        tables.full_every = 2;
        let modes: Vec<MemoryMode> = (1..=4).map(|n| tables.turn(n).0).collect();
        use MemoryMode::{Full, Tables};
        assert_eq!(modes, [Full, Tables, Full, Tables]);
        tables.incremental = true;
        assert!(
            (1..=4).all(|n| !tables.turn(n).1),
            "full turns are standalone"
        );
        tables.full_every = 0;
        assert_eq!(tables.turn(1), (Tables, false));
    }

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
    fn streaming_staging_and_the_image_write_the_same_memory() {
        // A child that sits still, blocked reading an empty pipe: its
        // memory does not change between the two snapshots. (`sleep` would
        // not do: an interrupted nanosleep writes the time left.)
        let mut child = std::process::Command::new("cat")
            // Else the kernel writes the CPU number into its rseq area
            // whenever it comes back from a stop on another CPU.
            .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
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
            method: Method::Stop,
            ..Options::default()
        };
        let a = take(pid, &staged).unwrap();
        let streamed = Options {
            output: Some(dir.join("streamed.core")),
            staging_budget: Some(0),
            method: Method::Stop,
            ..Options::default()
        };
        let cow = Options {
            output: Some(dir.join("cow.core")),
            method: Method::Cow,
            ..Options::default()
        };
        let b = take(pid, &streamed).unwrap();
        let c = take(pid, &cow).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(a.phases.staged && !b.phases.staged);
        assert_eq!((a.method, c.method), (Method::Stop, Method::Cow));
        assert_eq!(a.captured_bytes, b.captured_bytes);
        assert!(a.captured_bytes > 0);
        assert_eq!(
            load_bytes(&a.path),
            load_bytes(&c.path),
            "the image differs"
        );
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
