//! Opening snapshot cores: ours, gdb's `gcore`'s and the kernel's.
//!
//! [`Snapshot::open`] maps the file read-only (nothing is copied: a 4 GiB
//! core costs address space, not memory), checks that it is a complete
//! x86_64 ELF core, indexes its PT_LOAD segments by address and parses its
//! notes: threads and registers (`NT_PRSTATUS`), the process
//! (`NT_PRPSINFO`), file mappings (`NT_FILE`) and, when leaktrail wrote the
//! file, our metadata note. [`Snapshot`] implements [`Memory`], borrowing
//! straight from the mapping, so every analysis runs the same over a core
//! as over a live process.
//!
//! A core without our note (the kernel's, `gcore`'s) still gives threads,
//! memory and modules (from `NT_FILE`); [`Snapshot::metadata`] is `None`.
//!
//! ```no_run
//! use leaktrail_recording::{Memory, Snapshot};
//! let snap = Snapshot::open("app.core".as_ref())?;
//! for t in snap.threads() {
//!     println!("{} pc={:#x}", t.tid, t.pc());
//! }
//! let word = snap.read_u64(snap.threads()[0].sp())?;
//! # Ok::<(), leaktrail_recording::Error>(())
//! ```

pub mod chain;
pub mod elf;
pub mod metadata;
pub mod note;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use leaktrail_format::{NOTE_NAME, NOTE_TYPE};
use memmap2::Mmap;
use metadata::{Metadata, Module};
use note::{FileRange, ProcessInfo, REG_RBP, REG_RIP, REG_RSP};
use note::{NT_FILE, NT_FPREGSET, NT_PRPSINFO, NT_PRSTATUS, NT_X86_XSTATE};
use object::elf::{FileHeader64, ET_CORE, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

use crate::maps::{classify, Mapping, Region};
use crate::memory::Memory;
use crate::Error;

/// The name a snapshot gets when the caller does not choose one:
/// `leaktrail-<comm>-<pid>-<UTC time>.core`, the recording directory's
/// default name with `.core`.
pub fn default_file_name(comm: &str, pid: i32, unix_secs: u64) -> String {
    format!(
        "{}.core",
        crate::dir::default_dir_name(comm, pid, unix_secs.saturating_mul(1000))
    )
}

/// One PT_LOAD segment: `memsz` bytes at `vaddr`, of which the first
/// `filesz` are in the file at `offset` (the rest read as zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Start address.
    pub vaddr: u64,
    /// Bytes of address space.
    pub memsz: u64,
    /// File offset of the data.
    pub offset: u64,
    /// Bytes present in the file.
    pub filesz: u64,
    /// `PF_R | PF_W | PF_X`.
    pub flags: u32,
}

impl Segment {
    /// End address (exclusive).
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }

    /// `rwxp` as maps prints it (a core's segments are private).
    pub fn perms(&self) -> String {
        let bit = |flag: u32, c: char| if self.flags & flag != 0 { c } else { '-' };
        format!(
            "{}{}{}p",
            bit(object::elf::PF_R, 'r'),
            bit(object::elf::PF_W, 'w'),
            bit(object::elf::PF_X, 'x')
        )
    }

    /// Writable in the process.
    pub fn writable(&self) -> bool {
        self.flags & object::elf::PF_W != 0
    }
}

/// One thread of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    /// Kernel thread id.
    pub tid: i32,
    /// The signal it was stopped with (0 for none).
    pub signal: i32,
    /// `user_regs_struct`, as words.
    pub regs: Vec<u64>,
    /// `user_fpregs_struct`, raw, if present.
    pub fpregs: Option<Vec<u8>>,
    /// The XSAVE area, raw, if present.
    pub xstate: Option<Vec<u8>>,
}

impl Thread {
    fn reg(&self, i: usize) -> u64 {
        self.regs.get(i).copied().unwrap_or(0)
    }

    /// Instruction pointer.
    pub fn pc(&self) -> u64 {
        self.reg(REG_RIP)
    }

    /// Stack pointer.
    pub fn sp(&self) -> u64 {
        self.reg(REG_RSP)
    }

    /// Frame pointer.
    pub fn fp(&self) -> u64 {
        self.reg(REG_RBP)
    }
}

/// An opened core file.
///
/// An incremental snapshot (one whose note names a base) is opened with
/// its whole chain: [`Snapshot::segments`] and every read see the whole
/// memory, each segment's bytes taken from the file that holds them
/// ([`chain`]).
pub struct Snapshot {
    path: PathBuf,
    map: Mmap,
    segments: Vec<Segment>,
    /// Per segment: 0 for this file, `i` for `bases[i - 1]`.
    sources: Vec<u32>,
    /// The files of the chain behind this one, nearest first.
    bases: Vec<Mmap>,
    notes: Notes,
    /// Every note of the file, as `(name, type, desc)`.
    raw_notes: Vec<(String, u32, Vec<u8>)>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("path", &self.path)
            .field("segments", &self.segments.len())
            .field("threads", &self.notes.threads.len())
            .finish()
    }
}

impl Snapshot {
    /// Opens and indexes a core file. Fails with [`Error::Malformed`] for
    /// anything that is not a complete x86_64 ELF core.
    pub fn open(path: &Path) -> Result<Snapshot, Error> {
        Self::open_at(path, 0)
    }

    /// Opens `path` as the `depth`-th link of a chain.
    fn open_at(path: &Path, depth: usize) -> Result<Snapshot, Error> {
        crate::dir::expect_regular_file(path)?;
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the mapping is read-only and private. If another process
        // truncates the file while we hold it, reads past the new end fault
        // (SIGBUS); snapshots are written under a temporary name and
        // renamed, so a finished snapshot is never rewritten in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let own = Self::from_mmap(path, map)?;
        chain::resolve(own, depth)
    }

    fn from_mmap(path: &Path, map: Mmap) -> Result<Snapshot, Error> {
        let bad = |why: String| Error::Malformed {
            what: path.display().to_string(),
            why,
        };
        let data: &[u8] = &map;
        if data.len() < 4 || data[..4] != *b"\x7fELF" {
            return Err(bad("not an ELF file (no \\x7fELF magic)".into()));
        }
        let header = FileHeader64::<Endianness>::parse(data).map_err(|e| {
            bad(format!(
                "not a 64-bit ELF file, or its header is truncated ({e})"
            ))
        })?;
        let endian = header
            .endian()
            .map_err(|e| bad(format!("bad ELF byte order ({e})")))?;
        let e_type = header.e_type.get(endian);
        if e_type != ET_CORE {
            return Err(bad(format!(
                "an ELF file of type {e_type} ({}), not a core file",
                match e_type {
                    1 => "relocatable object",
                    2 => "executable",
                    3 => "shared object or PIE",
                    _ => "unknown",
                }
            )));
        }
        let machine = header.e_machine.get(endian);
        if machine != object::elf::EM_X86_64 {
            return Err(bad(format!(
                "a core for ELF machine {machine}; only x86_64 (62) is supported"
            )));
        }
        let phdrs = header
            .program_headers(endian, data)
            .map_err(|e| bad(format!("program headers are truncated or invalid ({e})")))?;

        let mut notes_acc = Notes::default();
        let mut raw_notes = Vec::new();
        let mut segments = Vec::new();
        let len = data.len() as u64;
        for ph in phdrs {
            match ph.p_type(endian) {
                PT_LOAD => {
                    let s = Segment {
                        vaddr: ph.p_vaddr(endian),
                        memsz: ph.p_memsz(endian),
                        offset: ph.p_offset(endian),
                        filesz: ph.p_filesz(endian),
                        flags: ph.p_flags(endian),
                    };
                    let fits = matches!(s.offset.checked_add(s.filesz), Some(e) if e <= len);
                    if !fits {
                        return Err(bad(format!(
                            "truncated: the segment at {:#x} needs file bytes up to {}, the file has {len}",
                            s.vaddr,
                            s.offset.saturating_add(s.filesz)
                        )));
                    }
                    if s.filesz > s.memsz || s.vaddr.checked_add(s.memsz).is_none() {
                        return Err(bad(format!(
                            "segment at {:#x} has impossible sizes",
                            s.vaddr
                        )));
                    }
                    if s.memsz > 0 {
                        segments.push(s);
                    }
                }
                PT_NOTE => {
                    let notes = ph
                        .notes(endian, data)
                        .map_err(|e| bad(format!("truncated or invalid note segment ({e})")))?;
                    let Some(mut notes) = notes else { continue };
                    loop {
                        let note = match notes.next() {
                            Ok(Some(n)) => n,
                            Ok(None) => break,
                            Err(e) => return Err(bad(format!("invalid note ({e})"))),
                        };
                        notes_acc
                            .take(note.name(), note.n_type(endian), note.desc())
                            .map_err(&bad)?;
                        raw_notes.push((
                            String::from_utf8_lossy(note.name()).into_owned(),
                            note.n_type(endian),
                            note.desc().to_vec(),
                        ));
                    }
                }
                _ => {}
            }
        }
        if notes_acc.threads.is_empty() {
            return Err(bad(
                "a core file without any thread (no NT_PRSTATUS note)".into()
            ));
        }
        segments.sort_by_key(|s| s.vaddr);
        for w in segments.windows(2) {
            if w[0].end() > w[1].vaddr {
                return Err(bad(format!(
                    "segments at {:#x} and {:#x} overlap",
                    w[0].vaddr, w[1].vaddr
                )));
            }
        }
        Ok(Snapshot {
            path: path.to_path_buf(),
            map,
            sources: vec![0; segments.len()],
            segments,
            bases: Vec::new(),
            notes: notes_acc,
            raw_notes,
        })
    }

    /// The bytes of file `source` of the chain (0: this file).
    fn data(&self, source: u32) -> &[u8] {
        match source {
            0 => &self.map,
            i => self.bases.get(i as usize - 1).map_or(&[][..], |m| &m[..]),
        }
    }

    /// The file bytes of segment `i`.
    fn segment_bytes(&self, i: usize) -> &[u8] {
        let s = &self.segments[i];
        let from = s.offset as usize;
        self.data(self.sources[i])
            .get(from..from + s.filesz as usize)
            .unwrap_or(&[])
    }

    /// The size of the file, in bytes (this file alone, not its chain).
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The file this snapshot was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// PT_LOAD segments, by address.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Threads, in the order of the core (the main or crashing thread
    /// first).
    pub fn threads(&self) -> &[Thread] {
        &self.notes.threads
    }

    /// `NT_PRPSINFO`, if present.
    pub fn process(&self) -> Option<&ProcessInfo> {
        self.notes.process.as_ref()
    }

    /// The file-backed mappings from `NT_FILE` (empty if absent).
    pub fn files(&self) -> &[FileRange] {
        &self.notes.files
    }

    /// The raw auxiliary vector.
    pub fn auxv(&self) -> &[u8] {
        &self.notes.auxv
    }

    /// leaktrail's note, when leaktrail wrote the file.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.notes.metadata.as_ref()
    }

    /// Why our note was present but unreadable, if it was.
    pub fn metadata_error(&self) -> Option<&str> {
        self.notes.metadata_error.as_deref()
    }

    /// The process id, from our note or `NT_PRPSINFO`.
    pub fn pid(&self) -> Option<i32> {
        self.notes
            .metadata
            .as_ref()
            .map(|m| m.pid)
            .or_else(|| self.notes.process.as_ref().map(|p| p.pid))
    }

    /// The process's mappings, classified by the one classifier
    /// ([`crate::maps::classify`], with the threads' stack pointers): from
    /// our note, which keeps every mapping with its resident bytes, or, in a
    /// core without it (`gcore`'s, the kernel's), from the captured
    /// segments named by `NT_FILE` (no counters). Reclassifying also gives
    /// notes written before the classifier was shared today's regions.
    pub fn mappings(&self) -> Vec<Mapping> {
        let offsets: BTreeMap<u64, u64> = self
            .notes
            .files
            .iter()
            .map(|f| (f.start, f.offset))
            .collect();
        let mapping = |start: u64, end: u64, perms: String, path: &str, rss: u64| {
            let (path, deleted) = match path.strip_suffix(" (deleted)") {
                Some(p) => (p.to_string(), true),
                None => (path.to_string(), false),
            };
            let is_file = path.starts_with('/');
            Mapping {
                start,
                end,
                perms,
                offset: offsets.get(&start).copied().unwrap_or(0),
                // Only "file or not" matters to the classifier; neither
                // source keeps the inode.
                inode: u64::from(is_file),
                path,
                deleted,
                region: Region::Anon,
                rss,
                pss: 0,
                private_dirty: 0,
                anonymous: if is_file { 0 } else { rss },
                swap: 0,
                vm_flags: Vec::new(),
            }
        };
        let mut out: Vec<Mapping> = match self.metadata() {
            Some(m) if !m.regions.is_empty() => m
                .regions
                .iter()
                .map(|r| mapping(r.start, r.end, r.perms.clone(), &r.path, r.rss))
                .collect(),
            _ => self
                .segments
                .iter()
                .map(|s| {
                    let path = self
                        .notes
                        .files
                        .iter()
                        .find(|f| f.start <= s.vaddr && s.vaddr < f.end)
                        .map_or("", |f| f.path.as_str());
                    mapping(s.vaddr, s.end(), s.perms(), path, 0)
                })
                .collect(),
        };
        out.sort_by_key(|m| m.start);
        let sps: Vec<u64> = self.notes.threads.iter().map(|t| t.sp()).collect();
        classify(&mut out, &sps);
        out
    }

    /// Loaded modules: from our note (with build ids) or, for foreign
    /// cores, from `NT_FILE` (a module per path mapped at file offset 0).
    pub fn modules(&self) -> Vec<Module> {
        if let Some(m) = &self.notes.metadata {
            return m.modules.clone();
        }
        let mut by_path: BTreeMap<&str, Vec<&FileRange>> = BTreeMap::new();
        for f in &self.notes.files {
            by_path.entry(f.path.as_str()).or_default().push(f);
        }
        let mut out: Vec<Module> = by_path
            .into_iter()
            .filter_map(|(path, rs)| {
                let base = rs.iter().find(|r| r.offset == 0)?.start;
                // Only ELF modules: the first page of their header mapping
                // is in the core when the writer kept it; otherwise every
                // file mapped at offset 0 counts.
                let mut magic = [0u8; 4];
                if self.read(base, &mut magic).is_ok() && magic != *b"\x7fELF" {
                    return None;
                }
                Some(Module {
                    path: path.to_string(),
                    base,
                    start: rs.iter().map(|r| r.start).min().unwrap_or(base),
                    end: rs.iter().map(|r| r.end).max().unwrap_or(base),
                    build_id: self.build_id_at(base),
                })
            })
            .collect();
        out.sort_by_key(|m| m.base);
        out
    }

    /// The GNU build id of the ELF image whose header is at `base`, read
    /// from the captured first page (the kernel and leaktrail keep it;
    /// the build-id note sits in the first page of every common layout).
    pub fn build_id_at(&self, base: u64) -> Option<String> {
        let page = self.borrow(base, 4096)?;
        let hdr = FileHeader64::<Endianness>::parse(page).ok()?;
        let endian = hdr.endian().ok()?;
        for ph in hdr.program_headers(endian, page).ok()? {
            if ph.p_type(endian) != PT_NOTE {
                continue;
            }
            // Notes outside the page are simply not found.
            let Ok(Some(mut notes)) = ph.notes(endian, page) else {
                continue;
            };
            while let Ok(Some(n)) = notes.next() {
                if n.name() == b"GNU" && n.n_type(endian) == object::elf::NT_GNU_BUILD_ID {
                    return Some(n.desc().iter().map(|b| format!("{b:02x}")).collect());
                }
            }
        }
        None
    }

    /// Addresses of audit-region headers in the captured memory: those our
    /// note lists, and any segment start holding the magic.
    pub fn audit_headers(&self) -> Vec<u64> {
        // Mapping starts are page-aligned; the tracer maps its header on
        // its own, so it starts a segment.
        let mut out: Vec<u64> = self
            .segments
            .iter()
            .filter(|s| s.writable())
            .filter(|s| {
                let mut magic = [0u8; 8];
                self.read(s.vaddr, &mut magic).is_ok() && magic == leaktrail_format::MAGIC
            })
            .map(|s| s.vaddr)
            .collect();
        if let Some(m) = &self.notes.metadata {
            for &h in &m.audit_headers {
                let mut magic = [0u8; 8];
                if self.read(h, &mut magic).is_ok() && magic == leaktrail_format::MAGIC {
                    out.push(h);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The segment holding `addr`, if any.
    pub fn segment_of(&self, addr: u64) -> Option<&Segment> {
        self.index_of(addr).map(|i| &self.segments[i])
    }

    fn index_of(&self, addr: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.vaddr <= addr);
        let i = i.checked_sub(1)?;
        (addr < self.segments[i].end()).then_some(i)
    }

    /// Bytes of memory present in the file.
    pub fn captured_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.filesz).sum()
    }
}

/// What the notes say, gathered while walking them.
#[derive(Default)]
struct Notes {
    threads: Vec<Thread>,
    process: Option<ProcessInfo>,
    files: Vec<FileRange>,
    auxv: Vec<u8>,
    metadata: Option<Metadata>,
    metadata_error: Option<String>,
}

impl Notes {
    fn take(&mut self, name: &[u8], kind: u32, desc: &[u8]) -> Result<(), String> {
        match (name, kind) {
            (b"CORE", NT_PRSTATUS) => {
                let s = note::parse_prstatus(desc)?;
                self.threads.push(Thread {
                    tid: s.tid,
                    signal: s.signal,
                    regs: s
                        .regs
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                    fpregs: None,
                    xstate: None,
                });
            }
            // The FP and XSAVE notes belong to the NT_PRSTATUS before them.
            (b"CORE", NT_FPREGSET) => {
                if let Some(t) = self.threads.last_mut() {
                    t.fpregs = Some(desc.to_vec());
                }
            }
            (b"LINUX", NT_X86_XSTATE) => {
                if let Some(t) = self.threads.last_mut() {
                    t.xstate = Some(desc.to_vec());
                }
            }
            (b"CORE", NT_PRPSINFO) => self.process = Some(note::parse_prpsinfo(desc)?),
            (b"CORE", NT_FILE) => self.files = note::parse_file(desc)?,
            (b"CORE", note::NT_AUXV) => self.auxv = desc.to_vec(),
            (n, NOTE_TYPE) if n == NOTE_NAME.as_bytes() => match Metadata::from_json(desc) {
                Ok(m) => self.metadata = Some(m),
                // A damaged note of ours should not hide the rest of the
                // core; `info` reports it.
                Err(e) => self.metadata_error = Some(format!("leaktrail note unreadable: {e}")),
            },
            _ => {}
        }
        Ok(())
    }
}

impl Memory for Snapshot {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr
                .checked_add(done as u64)
                .ok_or(Error::Unmapped { addr: u64::MAX })?;
            let i = self.index_of(at).ok_or(Error::Unmapped { addr: at })?;
            let s = &self.segments[i];
            let rel = at - s.vaddr;
            let n = ((s.memsz - rel) as usize).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            if rel < s.filesz {
                let in_file = ((s.filesz - rel) as usize).min(n);
                let rel = rel as usize;
                dst[..in_file].copy_from_slice(&self.segment_bytes(i)[rel..rel + in_file]);
                dst[in_file..].fill(0);
            } else {
                // Past p_filesz: the writer left these out as all zeros.
                dst.fill(0);
            }
            done += n;
        }
        Ok(())
    }

    fn borrow(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let i = self.index_of(addr)?;
        let s = &self.segments[i];
        let rel = addr - s.vaddr;
        if rel.checked_add(len)? > s.filesz {
            return None;
        }
        self.segment_bytes(i)
            .get(rel as usize..(rel + len) as usize)
    }

    fn ranges(&self) -> Vec<(u64, u64)> {
        self.segments.iter().map(|s| (s.vaddr, s.end())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::elf::{Layout, ProgramHeader, PAGE, PF_R, PF_W, PT_LOAD as LOAD, PT_NOTE as NOTE};
    use super::note as enc;
    use super::*;

    /// A small core built with the capture crate's encoders.
    fn tiny_core(dir: &Path, with_note: bool) -> PathBuf {
        let meta = with_note.then(|| Metadata {
            pid: 77,
            audit_headers: vec![0x20000],
            ..Default::default()
        });
        let name = if with_note { "ours" } else { "foreign" };
        core_with(dir, name, meta)
    }

    /// A small core built with the encoders, with `meta` as its note.
    fn core_with(dir: &Path, name: &str, meta: Option<Metadata>) -> PathBuf {
        let layout = Layout::new(2);
        let mut data = vec![0u8; 2 * PAGE as usize];
        data[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        data[PAGE as usize..PAGE as usize + 8].copy_from_slice(b"LEAKTRL1");
        let mut notes = Vec::new();
        let mut regs = vec![0u8; 27 * 8];
        regs[REG_RIP * 8..REG_RIP * 8 + 8].copy_from_slice(&0x401000u64.to_le_bytes());
        regs[REG_RSP * 8..REG_RSP * 8 + 8].copy_from_slice(&0x10008u64.to_le_bytes());
        enc::push(
            &mut notes,
            "CORE",
            enc::NT_PRSTATUS,
            &enc::prstatus(&enc::ThreadStatus {
                tid: 77,
                regs,
                ..Default::default()
            }),
        );
        enc::push(&mut notes, "CORE", enc::NT_FPREGSET, &[1u8; 512]);
        enc::push(
            &mut notes,
            "CORE",
            enc::NT_FILE,
            &enc::file(&[FileRange {
                start: 0x400000,
                end: 0x401000,
                offset: 0,
                path: "/bin/t".into(),
            }]),
        );
        if let Some(meta) = meta {
            enc::push(&mut notes, NOTE_NAME, NOTE_TYPE, &meta.to_json());
        }
        let d = layout.data_offset;
        let phdrs = [
            ProgramHeader {
                kind: NOTE,
                offset: d + data.len() as u64,
                filesz: notes.len() as u64,
                align: 4,
                ..Default::default()
            },
            ProgramHeader {
                kind: LOAD,
                flags: PF_R | PF_W,
                offset: d,
                vaddr: 0x10000,
                filesz: PAGE,
                memsz: 2 * PAGE,
                align: PAGE,
            },
            ProgramHeader {
                kind: LOAD,
                flags: PF_R | PF_W,
                offset: d + PAGE,
                vaddr: 0x20000,
                filesz: PAGE,
                memsz: PAGE,
                align: PAGE,
            },
        ];
        let mut file = layout.headers(&phdrs);
        file.extend_from_slice(&data);
        file.extend_from_slice(&notes);
        let p = dir.join(format!("{name}.core"));
        std::fs::write(&p, file).unwrap();
        p
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leaktrail-core-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_threads_memory_and_zero_tails() {
        let dir = tmpdir("read");
        let snap = Snapshot::open(&tiny_core(&dir, true)).unwrap();
        assert_eq!(snap.threads().len(), 1);
        let t = &snap.threads()[0];
        assert_eq!((t.tid, t.pc(), t.sp()), (77, 0x401000, 0x10008));
        assert_eq!(t.fpregs.as_deref(), Some(&[1u8; 512][..]));
        assert_eq!(snap.read_u64(0x10000).unwrap(), 0x1122_3344_5566_7788);
        // Past filesz, inside memsz: zeros, readable but not borrowable.
        assert_eq!(snap.read_u64(0x10000 + PAGE).unwrap(), 0);
        assert!(snap.borrow(0x10000 + PAGE, 8).is_none());
        assert_eq!(snap.borrow(0x10000, 8).unwrap().len(), 8);
        // A read spanning the zero tail of one segment and the next is
        // refused only where nothing is mapped.
        assert!(matches!(
            snap.read_u64(0x30000),
            Err(Error::Unmapped { addr: 0x30000 })
        ));
        assert_eq!(snap.pid(), Some(77));
        assert_eq!(snap.audit_headers(), vec![0x20000]);
        assert_eq!(snap.ranges(), vec![(0x10000, 0x12000), (0x20000, 0x21000)]);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Mappings come from the note, reclassified by the one classifier: an
    /// old note that called a glibc arena `anon` and the vDSO `special`
    /// reads as `trend` and `info` see them now.
    #[test]
    fn mappings_are_the_notes_reclassified_and_a_foreign_cores_segments() {
        use crate::snapshot::metadata::{CapturedMapping, RegionKind};
        let dir = tmpdir("mappings");
        let record = |start: u64, end: u64, perms: &str, path: &str, kind| CapturedMapping {
            start,
            end,
            perms: perms.into(),
            path: path.into(),
            kind,
            rss: 4096,
            captured: 0,
        };
        let arena = 0x7f00_0000_0000u64;
        let meta = Metadata {
            pid: 77,
            regions: vec![
                record(
                    0x400000,
                    0x401000,
                    "r-xp",
                    "/bin/t (deleted)",
                    RegionKind::File,
                ),
                record(0x10000, 0x12000, "rw-p", "", RegionKind::Stack),
                record(arena, arena + 0x21000, "rw-p", "", RegionKind::Anon),
                record(
                    arena + 0x21000,
                    arena + (64 << 20),
                    "---p",
                    "",
                    RegionKind::Anon,
                ),
                record(
                    0x7fff_0000_0000,
                    0x7fff_0000_1000,
                    "r-xp",
                    "[vdso]",
                    RegionKind::Special,
                ),
            ],
            ..Default::default()
        };
        let snap = Snapshot::open(&core_with(&dir, "mappings", Some(meta))).unwrap();
        let maps = snap.mappings();
        let regions: Vec<Region> = maps.iter().map(|m| m.region).collect();
        assert_eq!(
            regions,
            [
                Region::Stack,
                Region::File,
                Region::Heap,
                Region::Heap,
                Region::File
            ],
            "{maps:?}"
        );
        assert_eq!((maps[1].path.as_str(), maps[1].deleted), ("/bin/t", true));
        assert_eq!(maps[1].offset, 0, "NT_FILE says offset 0 for /bin/t");
        // Without a note: the two captured segments, the one holding the
        // thread's SP a stack.
        let foreign = Snapshot::open(&tiny_core(&dir, false)).unwrap();
        let f: Vec<(u64, Region, String)> = foreign
            .mappings()
            .into_iter()
            .map(|m| (m.start, m.region, m.perms))
            .collect();
        assert_eq!(
            f,
            [
                (0x10000, Region::Stack, "rw-p".to_string()),
                (0x20000, Region::Anon, "rw-p".to_string())
            ]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn foreign_cores_get_modules_from_nt_file() {
        let dir = tmpdir("foreign");
        let snap = Snapshot::open(&tiny_core(&dir, false)).unwrap();
        assert!(snap.metadata().is_none());
        let m = snap.modules();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].path.as_str(), m[0].base), ("/bin/t", 0x400000));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn truncated_and_foreign_files_are_malformed_not_panics() {
        let dir = tmpdir("bad");
        let good = std::fs::read(tiny_core(&dir, true)).unwrap();
        let p = dir.join("cut.core");
        // Every prefix length is refused cleanly.
        for cut in [0, 3, 10, 63, 64, 100, 300, 4096, 4200, good.len() - 1] {
            std::fs::write(&p, &good[..cut]).unwrap();
            match Snapshot::open(&p) {
                Err(Error::Malformed { .. }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        std::fs::write(&p, b"hello, not a core at all").unwrap();
        assert!(matches!(Snapshot::open(&p), Err(Error::Malformed { .. })));
        let exe = Snapshot::open(Path::new("/proc/self/exe"));
        match exe {
            Err(Error::Malformed { why, .. }) => assert!(why.contains("not a core"), "{why}"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn more_than_65534_segments_use_pn_xnum_both_ways() {
        let loads = 70_000usize;
        let layout = Layout::new(loads);
        let mut notes = Vec::new();
        enc::push(
            &mut notes,
            "CORE",
            enc::NT_PRSTATUS,
            &enc::prstatus(&enc::ThreadStatus {
                tid: 1,
                regs: vec![0; 27 * 8],
                ..Default::default()
            }),
        );
        let mut phdrs = vec![ProgramHeader {
            kind: NOTE,
            offset: layout.data_offset,
            filesz: notes.len() as u64,
            align: 4,
            ..Default::default()
        }];
        for i in 0..loads as u64 {
            phdrs.push(ProgramHeader {
                kind: LOAD,
                flags: PF_R,
                vaddr: 0x1000_0000 + i * 2 * PAGE,
                memsz: PAGE,
                align: PAGE,
                ..Default::default()
            });
        }
        let mut file = layout.headers(&phdrs);
        file.extend_from_slice(&notes);
        let dir = tmpdir("xnum");
        let p = dir.join("many.core");
        std::fs::write(&p, file).unwrap();
        let snap = Snapshot::open(&p).unwrap();
        assert_eq!(snap.segments().len(), loads);
        assert_eq!(snap.read_u64(0x1000_0000 + 2 * PAGE).unwrap(), 0);
        std::fs::remove_dir_all(dir).ok();
    }
}
