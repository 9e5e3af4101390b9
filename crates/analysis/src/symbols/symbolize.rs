//! Turning addresses into function names, offline, from the files the
//! process had mapped and the JIT map it left.
//!
//! A [`Symbolizer`] is built once from the process's file mappings (from a
//! snapshot's `NT_FILE` note, or `/proc/PID/maps`) and opens each ELF file
//! at most once, by mmap; build once, reuse for every frame. For each
//! address it gives:
//!
//! * native code: the function (demangled; DWARF's name when debug info
//!   exists, else the ELF symbol table's), file and line from DWARF, and
//!   each inlined call as a frame of its own ([`Symbolizer::frames`]);
//!   module and file offset always. Addresses go through the file offset,
//!   so code mapped a second time from the same file (V8 remapping node's
//!   builtins) resolves like the original;
//! * JIT code: the name from a perf map (`START SIZE NAME`, hex; the last
//!   entry covering an address wins, as `perf` reads it), with Node's
//!   `JS:*name file:line:col` split into its parts;
//! * nothing known: `0xADDR in ?? (module+0xOFF)` or `[anon]`.
//!
//! A module whose file's build id differs from the one the snapshot
//! recorded is not read at all: its frames stay as offsets and
//! [`Symbolizer::warnings`] says so.
//!
//! ```no_run
//! use leaktrail_recording::Snapshot;
//! use leaktrail_analysis::symbolize::Symbolizer;
//! let snap = Snapshot::open("app.core".as_ref())?;
//! let sym = Symbolizer::for_snapshot(&snap);
//! let pc = leaktrail_unwind_core::InstructionAddress(snap.threads()[0].pc());
//! println!("{}", sym.frame(pc));
//! # Ok::<(), leaktrail_analysis::Error>(())
//! ```

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use leaktrail_format::{frame_address, frame_note};
use leaktrail_recording::snapshot::note::FileRange;
use leaktrail_recording::Snapshot;
use leaktrail_unwind_core::{FrameAddress, ReturnAddress};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use crate::jitdump::JitDump;

/// Where a frame's code comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FrameKind {
    /// Code in a mapped file.
    #[default]
    Native,
    /// JavaScript compiled or interpreted by a JIT, named by its perf map.
    Js,
    /// Other JIT code in the perf map (builtins, stubs, bytecode handlers).
    Jit,
    /// Nothing known.
    Unknown,
    /// Not code: the one frame of a block without a stack (a heap walk's),
    /// named by its type or size class (`[type] Widget`, `[size 4096]`),
    /// so that views by stack show it by type.
    Type,
}

impl FrameKind {
    /// The name JSON documents and tables give it.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Native => "native",
            FrameKind::Js => "js",
            FrameKind::Jit => "jit",
            FrameKind::Unknown => "unknown",
            FrameKind::Type => "type",
        }
    }
}

/// One symbolized frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The runtime address.
    pub address: u64,
    /// Function name, if known (demangled).
    pub function: Option<String>,
    /// Source file, if known.
    pub file: Option<String>,
    /// Source line, if known.
    pub line: Option<u32>,
    /// File name of the module, if the address is in one.
    pub module: Option<String>,
    /// Offset of the address in the module's file.
    pub module_offset: u64,
    /// Native, JS, other JIT code, or unknown.
    pub kind: FrameKind,
    /// Source column (JS frames).
    pub column: Option<u32>,
    /// True for a call inlined into the frame after it.
    pub inlined: bool,
    /// The line where the function is declared (DWARF's `decl_line`), if
    /// known: what pprof calls a function's start line. For a JS frame
    /// named from V8's jitdump, the function's start position's line,
    /// while `line` and `column` are those of the call in it.
    pub start_line: Option<u32>,
    /// The column of a JS function's start position, when `start_line` is
    /// its line.
    pub start_column: Option<u32>,
}

impl Frame {
    pub(crate) fn unknown(address: u64) -> Frame {
        Frame {
            address,
            function: None,
            file: None,
            line: None,
            module: None,
            module_offset: 0,
            kind: FrameKind::Unknown,
            column: None,
            inlined: false,
            start_line: None,
            start_column: None,
        }
    }

    /// The one frame of a site of blocks without a stack, named `name`
    /// (see [`FrameKind::Type`]).
    pub fn of_type(name: String) -> Frame {
        Frame {
            function: Some(name),
            kind: FrameKind::Type,
            ..Frame::unknown(0)
        }
    }

    /// This frame's part of a site's identity: the module's path and the
    /// offset in its file; without a module, the runtime address (and for a
    /// JS frame with a line, `:LINE:COLUMN` in place of the path); for a
    /// [`FrameKind::Type`] frame, its name (every one has address 0).
    pub fn site_frame(&self) -> (String, u64) {
        match (&self.module, self.kind) {
            (_, FrameKind::Type) => (self.function.clone().unwrap_or_default(), 0),
            (Some(m), _) => (m.clone(), self.module_offset),
            // A JS frame with a line is the call at that line: two calls in
            // one interpreted function share the frame's address (the
            // interpreter's) and differ only there.
            (None, FrameKind::Js) if self.line.is_some() => (
                format!(":{}:{}", self.line.unwrap_or(0), self.column.unwrap_or(0)),
                self.address,
            ),
            (None, _) => (String::new(), self.address),
        }
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, &self.function, &self.module) {
            (FrameKind::Js, Some(func), _) => {
                write!(f, "JS {func}")?;
                if let Some(file) = &self.file {
                    write!(f, " {file}")?;
                    if let Some(l) = self.line {
                        write!(f, ":{l}")?;
                        if let Some(c) = self.column {
                            write!(f, ":{c}")?;
                        }
                    }
                }
                if self.inlined {
                    f.write_str(" (inlined)")?;
                }
                return Ok(());
            }
            (FrameKind::Jit, Some(func), _) => return write!(f, "[jit] {func}"),
            (_, Some(func), _) => write!(f, "{func}")?,
            (_, None, Some(m)) => write!(
                f,
                "{:#x} in ?? ({m}+{:#x})",
                self.address, self.module_offset
            )?,
            (_, None, None) => write!(f, "{:#x} in ?? [anon]", self.address)?,
        }
        if self.inlined {
            f.write_str(" (inlined)")?;
        }
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            write!(f, " {file}:{line}")?;
        }
        Ok(())
    }
}

type Dwarf = addr2line::Context<gimli::EndianRcSlice<gimli::RunTimeEndian>>;

struct ElfSymbols {
    /// (file offset, virtual address, file size) of each loadable segment.
    loads: super::LoadTable,
    /// (start, size, name), sorted by start.
    symbols: Vec<(u64, u64, String)>,
    /// Data objects, likewise.
    objects: Vec<(u64, u64, String)>,
    dwarf: Option<Dwarf>,
}

fn build_id_hex(obj: &object::File<'_>) -> Option<String> {
    let id = obj.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// Functions of the symbol tables of `obj`, unsorted.
fn text_symbols(obj: &object::File<'_>) -> Vec<(u64, u64, String)> {
    obj.symbols()
        .chain(obj.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
        .collect()
}

fn load_dwarf(obj: &object::File<'_>) -> Option<Dwarf> {
    obj.section_by_name(".debug_info")?;
    let endian = if obj.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<_, gimli::Error> {
        let data = obj
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[]));
        Ok(gimli::EndianRcSlice::new(Rc::from(&*data), endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
}

/// Maps the regular file at `path`. A snapshot names these paths, so
/// anything may be there: the open does not wait (a FIFO would block it
/// until a writer came), and only a regular file is mapped (a device has
/// no size, and reading one may never end).
pub(crate) fn map_file(path: &str) -> Option<memmap2::Mmap> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: we map the file read-only; if another process truncates
    // it under us, reads may fault — the same risk every symbolizer that
    // maps files takes, and far cheaper than copying large binaries.
    unsafe { memmap2::Mmap::map(&file) }.ok()
}

enum Opened {
    Ok(ElfSymbols),
    /// The file's build id is not the one the snapshot recorded.
    Changed(String),
    Missing,
}

impl ElfSymbols {
    fn open(path: &str, expected_build_id: Option<&str>) -> Opened {
        let Some(map) = map_file(path) else {
            return Opened::Missing;
        };
        let Ok(obj) = object::File::parse(&*map) else {
            return Opened::Missing;
        };
        let id = build_id_hex(&obj);
        if let (Some(want), Some(have)) = (expected_build_id, id.as_deref()) {
            if want != have {
                return Opened::Changed(format!(
                    "{path} changed on disk since the snapshot (build id {want}, now {have}); its frames are shown as offsets"
                ));
            }
        }
        let loads = super::LoadTable::of(&obj);
        let mut symbols = text_symbols(&obj);
        symbols.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        symbols.dedup_by_key(|s| s.0);
        let mut objects: Vec<(u64, u64, String)> = obj
            .symbols()
            .chain(obj.dynamic_symbols())
            .filter(|s| matches!(s.kind(), SymbolKind::Data | SymbolKind::Tls) && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        objects.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        objects.dedup_by_key(|s| s.0);
        // Debug info in the file, else in a separate debug file; its
        // symbol table too, which holds the local functions a stripped
        // library's dynamic symbols lack.
        let mut dwarf = load_dwarf(&obj);
        if dwarf.is_none() || obj.section_by_name(".symtab").is_none() {
            if let Some(dmap) = super::debuginfo::find(path, &obj, id.as_deref()) {
                if let Ok(dobj) = object::File::parse(&*dmap) {
                    if dwarf.is_none() {
                        dwarf = load_dwarf(&dobj);
                    }
                    symbols.extend(text_symbols(&dobj));
                    symbols.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                    symbols.dedup_by_key(|s| s.0);
                }
            }
        }
        Opened::Ok(ElfSymbols {
            loads,
            symbols,
            objects,
            dwarf,
        })
    }

    fn vaddr_of_offset(&self, off: u64) -> Option<u64> {
        self.loads.vaddr_of_offset(off)
    }

    fn function_at(&self, vaddr: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|s| s.0 <= vaddr);
        let (start, size, name) = self.symbols.get(i.checked_sub(1)?)?;
        (*size == 0 || vaddr < start + size).then_some(name.as_str())
    }

    fn object_at(&self, vaddr: u64) -> Option<(&str, u64)> {
        let i = self.objects.partition_point(|s| s.0 <= vaddr);
        let (start, size, name) = self.objects.get(i.checked_sub(1)?)?;
        (vaddr < start + (*size).max(1)).then_some((name.as_str(), vaddr - start))
    }

    /// DWARF frames for `vaddr`: innermost inlined call first, the real
    /// function last.
    fn dwarf_frames(&self, vaddr: u64) -> Vec<DwarfFrame> {
        let Some(ctx) = &self.dwarf else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let Ok(mut it) = ctx.find_frames(vaddr).skip_all_loads() else {
            return out;
        };
        let unit = ctx.find_dwarf_and_unit(vaddr).skip_all_loads();
        while let Ok(Some(f)) = it.next() {
            let start_line = unit
                .as_ref()
                .zip(f.dw_die_offset)
                .and_then(|(u, off)| decl_line(u, off));
            let name = f
                .function
                .as_ref()
                .and_then(|n| n.demangle().ok().map(|c| c.into_owned()));
            let (file, line) = f
                .location
                .map(|l| (l.file.map(str::to_string), l.line))
                .unwrap_or((None, None));
            out.push(DwarfFrame {
                name,
                file,
                line,
                start_line,
            });
        }
        out
    }
}

/// What DWARF says of one frame at an address.
struct DwarfFrame {
    name: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    start_line: Option<u32>,
}

/// The `decl_line` of the function whose entry (a subprogram or an inlined
/// subroutine) is at `offset`, following `abstract_origin` and
/// `specification` to the declaration that has it (an inlined call's
/// entry and an out-of-line C++ member's both lack it).
fn decl_line<R: gimli::Reader>(
    unit: &gimli::UnitRef<'_, R>,
    mut offset: gimli::UnitOffset<R::Offset>,
) -> Option<u32> {
    // A chain longer than a few links is malformed (or a cycle).
    for _ in 0..4 {
        let entry = unit.entry(offset).ok()?;
        if let Some(line) = entry
            .attr_value(gimli::DW_AT_decl_line)
            .ok()
            .flatten()
            .and_then(|v| v.udata_value())
        {
            return u32::try_from(line).ok();
        }
        let next = [gimli::DW_AT_abstract_origin, gimli::DW_AT_specification]
            .into_iter()
            .find_map(|at| match entry.attr_value(at).ok().flatten() {
                Some(gimli::AttributeValue::UnitRef(o)) => Some(o),
                _ => None,
            })?;
        offset = next;
    }
    None
}

/// One line of a perf map.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JitEntry {
    start: u64,
    end: u64,
    seq: usize,
    name: String,
}

/// A parsed `/tmp/perf-PID.map`.
#[derive(Clone, Debug, Default)]
pub struct PerfMap {
    entries: Vec<JitEntry>,
    longest: u64,
}

impl PerfMap {
    /// Parses `START SIZE NAME` lines (hex, with or without `0x`); lines
    /// that do not parse are skipped.
    pub fn parse(text: &str) -> PerfMap {
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        let mut entries: Vec<JitEntry> = text
            .lines()
            .enumerate()
            .filter_map(|(seq, line)| {
                let mut parts = line.trim().splitn(3, ' ');
                let start = hex(parts.next()?)?;
                let size = hex(parts.next()?)?;
                let name = parts.next().unwrap_or("").trim().to_string();
                (size > 0).then(|| JitEntry {
                    start,
                    end: start.saturating_add(size),
                    seq,
                    name,
                })
            })
            .collect();
        entries.sort_by_key(|e| (e.start, e.seq));
        let longest = entries.iter().map(|e| e.end - e.start).max().unwrap_or(0);
        PerfMap { entries, longest }
    }

    /// The name of the last entry covering `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.start <= addr);
        self.entries[..i]
            .iter()
            .rev()
            .take_while(|e| addr - e.start < self.longest.max(1))
            .filter(|e| addr < e.end)
            .max_by_key(|e| e.seq)
            .map(|e| e.name.as_str())
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits a perf-map name into a frame: Node's `JS:*name file:line:col`
/// (also V8's older `LazyCompile:~name file:line`) become JS frames, the
/// rest JIT frames named as written.
/// Where the location begins in a JS code name's `NAME LOCATION` (the
/// space before it): a function's name may hold spaces (`get size`), a
/// script's path rarely does, so the first space before something that
/// starts as a script does (`/`, `node:`, `file:`, a URL), else the last.
fn location_start(rest: &str) -> Option<usize> {
    let script_like = |s: &str| {
        s.starts_with('/')
            || s.starts_with("node:")
            || s.starts_with("file:")
            || s.starts_with("http:")
            || s.starts_with("https:")
    };
    rest.match_indices(' ')
        .map(|(i, _)| i)
        .find(|&i| script_like(&rest[i + 1..]))
        .or_else(|| rest.rfind(' '))
}

pub(crate) fn jit_frame(address: u64, name: &str) -> Frame {
    let mut f = Frame::unknown(address);
    f.kind = FrameKind::Jit;
    f.function = Some(name.to_string());
    let js = [
        "JS:",
        "LazyCompile:",
        "Function:",
        "Script:",
        "InterpretedFunction:",
    ]
    .iter()
    .find_map(|p| name.strip_prefix(p));
    if let Some(rest) = js {
        let rest = rest.trim_start_matches(['*', '~', '^', '+', '-']);
        let (func, loc) = match location_start(rest) {
            Some(i) => (&rest[..i], Some(rest[i + 1..].trim())),
            None => (rest, None),
        };
        f.kind = FrameKind::Js;
        f.function = Some(if func.is_empty() {
            "(anonymous)".into()
        } else {
            func.to_string()
        });
        if let Some(loc) = loc.filter(|l| !l.is_empty()) {
            // file:line:col, where the file may itself hold colons
            // (`node:internal/...`).
            let mut parts = loc.rsplitn(3, ':');
            let a = parts.next();
            let b = parts.next();
            let c = parts.next();
            match (a, b, c) {
                (Some(col), Some(line), Some(file))
                    if col.parse::<u32>().is_ok() && line.parse::<u32>().is_ok() =>
                {
                    f.file = Some(file.to_string());
                    f.line = line.parse().ok();
                    f.column = col.parse().ok();
                }
                _ => match loc.rsplit_once(':') {
                    Some((file, line)) if line.parse::<u32>().is_ok() => {
                        f.file = Some(file.to_string());
                        f.line = line.parse().ok();
                    }
                    _ => f.file = Some(loc.to_string()),
                },
            }
        }
    }
    f
}

/// Symbolizes addresses of one process image.
pub struct Symbolizer {
    mappings: Vec<FileRange>,
    build_ids: HashMap<String, String>,
    perf_map: PerfMap,
    files: RefCell<HashMap<String, Option<Rc<ElfSymbols>>>>,
    warnings: RefCell<Vec<String>>,
    /// Stacks share most of their frames; demangling and DWARF lookups
    /// are worth doing once per address.
    memo: RefCell<HashMap<FrameAddress, Vec<Frame>>>,
    unwinder: std::cell::OnceCell<crate::unwind::Unwinder>,
    /// V8's jitdump of the process, when the recording has one: JIT frames
    /// are then named as of [`Symbolizer::set_jit_epoch`].
    jitdump: Option<Rc<JitDump>>,
    jit_epoch: std::cell::Cell<usize>,
}

impl Symbolizer {
    /// A symbolizer over these file mappings.
    pub fn new(mut mappings: Vec<FileRange>) -> Self {
        mappings.sort_by_key(|m| m.start);
        Symbolizer {
            mappings,
            build_ids: HashMap::new(),
            perf_map: PerfMap::default(),
            files: RefCell::new(HashMap::new()),
            warnings: RefCell::new(Vec::new()),
            memo: RefCell::new(HashMap::new()),
            unwinder: std::cell::OnceCell::new(),
            jitdump: None,
            jit_epoch: std::cell::Cell::new(usize::MAX),
        }
    }

    /// A symbolizer for a snapshot: its `NT_FILE` mappings (or module list),
    /// the build ids our note recorded, and the perf map copied into it.
    pub fn for_snapshot(snap: &Snapshot) -> Self {
        let mut mappings: Vec<FileRange> = snap.files().to_vec();
        let modules = snap.modules();
        if mappings.is_empty() {
            // No NT_FILE: assume each module is mapped contiguously from
            // file offset 0 at its base (true of what ld.so maps).
            mappings = modules
                .iter()
                .map(|m| FileRange {
                    path: m.path.clone(),
                    start: m.base,
                    end: m.end,
                    offset: 0,
                })
                .collect();
        }
        let mut s = Symbolizer::new(mappings);
        s.build_ids = modules
            .iter()
            .filter_map(|m| Some((m.path.clone(), m.build_id.clone()?)))
            .collect();
        if let Some(text) = snap.metadata().and_then(|m| m.perf_map.as_deref()) {
            s.perf_map = PerfMap::parse(text);
        }
        // The recording's jitdump, if it is this process's.
        if let Some(dump) = JitDump::for_snapshot(snap) {
            if snap.pid().is_some_and(|pid| pid as u32 == dump.pid) && !dump.is_empty() {
                s.jitdump = Some(dump);
            }
        }
        s
    }

    /// Uses V8's jitdump for JIT frames (see [`Symbolizer::set_jit_epoch`]).
    pub fn with_jitdump(mut self, dump: JitDump) -> Self {
        self.jitdump = Some(Rc::new(dump));
        self
    }

    /// The jitdump JIT frames are named from, if any.
    pub fn jitdump(&self) -> Option<&JitDump> {
        self.jitdump.as_deref()
    }

    /// Names JIT frames from the code objects loaded by `epoch`
    /// ([`JitDump::epoch`] of a block's allocation time); `None` for all
    /// of them. Without a jitdump it changes nothing.
    pub fn set_jit_epoch(&self, epoch: Option<usize>) {
        self.jit_epoch.set(epoch.unwrap_or(usize::MAX));
    }

    /// Uses `perf_map` (the text of a perf map) for JIT frames.
    pub fn with_perf_map(mut self, perf_map: &str) -> Self {
        self.perf_map = PerfMap::parse(perf_map);
        self
    }

    /// The file mappings it symbolizes with, by address.
    pub fn mappings(&self) -> &[FileRange] {
        &self.mappings
    }

    /// A stack walker over the same mappings, made on first use.
    pub fn unwinder(&self) -> &crate::unwind::Unwinder {
        self.unwinder
            .get_or_init(|| crate::unwind::Unwinder::new(self.mappings.clone()))
    }

    /// What went wrong reading modules so far (changed files), once each.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.borrow().clone()
    }

    fn mapping(&self, addr: u64) -> Option<&FileRange> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }

    fn symbols(&self, path: &str) -> Option<Rc<ElfSymbols>> {
        if let Some(s) = self.files.borrow().get(path) {
            return s.clone();
        }
        let opened = match ElfSymbols::open(path, self.build_ids.get(path).map(String::as_str)) {
            Opened::Ok(s) => Some(Rc::new(s)),
            Opened::Changed(why) => {
                self.warnings.borrow_mut().push(why);
                None
            }
            Opened::Missing => None,
        };
        self.files
            .borrow_mut()
            .insert(path.to_string(), opened.clone());
        opened
    }

    /// Symbolizes `address` to one frame (the outermost function when
    /// calls were inlined there). Return addresses point after their call,
    /// so they are looked up one byte earlier (the call may end a
    /// function; see [`leaktrail_unwind_core::ReturnAddress`]).
    pub fn frame(&self, at: impl Into<FrameAddress>) -> Frame {
        let at = at.into();
        let mut frames = self.frames(at);
        frames.pop().unwrap_or_else(|| Frame::unknown(at.address()))
    }

    /// Symbolizes `address` to its frames: each inlined call innermost
    /// first (marked `inlined`), then the function that contains them.
    pub fn frames(&self, at: impl Into<FrameAddress>) -> Vec<Frame> {
        self.noted_frames(at.into(), None)
    }

    /// [`Symbolizer::frames`] of a recorded frame word: its return
    /// address, and the note the tracer kept with it (an interpreted JS
    /// frame's bytecode offset: see [`leaktrail_format::FRAME_ADDRESS_BITS`]).
    pub fn word_frames(&self, word: u64) -> Vec<Frame> {
        self.noted_frames(ReturnAddress(frame_address(word)).into(), frame_note(word))
    }

    /// A recorded frame word as people tell stacks apart: with its note
    /// only where the note names the frame's line (an interpreted JS
    /// frame whose bytecode is known), else its return address alone.
    pub fn canonical_word(&self, word: u64) -> u64 {
        let address = frame_address(word);
        let matters = frame_note(word).is_some()
            && self
                .jitdump
                .as_ref()
                .is_some_and(|j| j.note_matters(address));
        if matters {
            word
        } else {
            address
        }
    }

    fn noted_frames(&self, at: FrameAddress, note: Option<u64>) -> Vec<Frame> {
        // JIT frames from a jitdump depend on the epoch: not memoised (a
        // binary search; the native frames are the costly ones).
        if self.jitdump.is_some() && self.mapping(at.lookup_address()).is_none() {
            return self.resolve(at, note);
        }
        if let Some(f) = self.memo.borrow().get(&at) {
            return f.clone();
        }
        let f = self.resolve(at, None);
        self.memo.borrow_mut().insert(at, f.clone());
        f
    }

    fn resolve(&self, at: FrameAddress, note: Option<u64>) -> Vec<Frame> {
        let (address, lookup) = (at.address(), at.lookup_address());
        let mut frame = Frame::unknown(address);
        let Some(m) = self.mapping(lookup) else {
            if let Some(frames) = self
                .jitdump
                .as_ref()
                .and_then(|j| j.frames(address, note, self.jit_epoch.get()))
            {
                return frames;
            }
            return vec![match self.perf_map.lookup(lookup) {
                Some(name) => jit_frame(address, name),
                None => frame,
            }];
        };
        let file_off = lookup - m.start + m.offset;
        frame.kind = FrameKind::Native;
        frame.module = Some(
            m.path
                .rsplit('/')
                .next()
                .unwrap_or(m.path.as_str())
                .to_string(),
        );
        frame.module_offset = address - m.start + m.offset;
        let Some(syms) = self.symbols(&m.path) else {
            return vec![frame];
        };
        let Some(v) = syms.vaddr_of_offset(file_off) else {
            return vec![frame];
        };
        frame.function = syms
            .function_at(v)
            .map(|n| addr2line::demangle_auto(Cow::Borrowed(n), None).into_owned());
        let dwarf = syms.dwarf_frames(v);
        if dwarf.is_empty() {
            if frame.function.is_none() {
                if let Some(name) = self.perf_map.lookup(lookup) {
                    return vec![jit_frame(address, name)];
                }
            }
            return vec![frame];
        }
        let last = dwarf.len() - 1;
        dwarf
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let mut f = frame.clone();
                if d.name.is_some() {
                    f.function = d.name;
                }
                f.file = d.file;
                f.line = d.line;
                f.start_line = d.start_line;
                f.inlined = i < last;
                f
            })
            .collect()
    }

    /// The data or code symbol containing `address` (a global variable,
    /// a function), with the offset into it.
    pub fn symbol(&self, address: u64) -> Option<(String, u64)> {
        // The mapping at or below: bss continues past the file's last
        // page in anonymous memory, at the same load bias.
        let i = self.mappings.partition_point(|m| m.start <= address);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        if address >= m.end && address - m.end > (64 << 20) {
            return None;
        }
        let syms = self.symbols(&m.path)?;
        // One bias for all of a file's mappings, from its first: a RELRO
        // mapping's file page also holds the end of the read-only segment
        // before it, so its own offset can name the wrong segment.
        let first = self.mappings.iter().find(|f| f.path == m.path).unwrap_or(m);
        let bias = first
            .start
            .wrapping_sub(syms.vaddr_of_offset(first.offset)?);
        let v = address.wrapping_sub(bias);
        if let Some((name, off)) = syms.object_at(v) {
            return Some((name.to_string(), off));
        }
        let i = syms.symbols.partition_point(|s| s.0 <= v);
        let (start, size, name) = syms.symbols.get(i.checked_sub(1)?)?;
        (*size == 0 || v < start + size).then(|| {
            (
                addr2line::demangle_auto(Cow::Borrowed(name.as_str()), None).into_owned(),
                v - start,
            )
        })
    }

    /// The JIT function containing `address`, from the perf map.
    pub fn jit(&self, address: u64) -> Option<Frame> {
        self.perf_map.lookup(address).map(|n| jit_frame(address, n))
    }

    /// Symbolizes a captured stack (recorded frame words), one frame per
    /// word: the outermost function of each.
    pub fn stack(&self, frames: &[u64]) -> Vec<Frame> {
        frames
            .iter()
            .map(|&w| {
                let mut f = self.word_frames(w);
                f.pop().unwrap_or_else(|| Frame::unknown(frame_address(w)))
            })
            .collect()
    }

    /// Symbolizes a captured stack with inlined calls expanded.
    pub fn stack_inlined(&self, frames: &[u64]) -> Vec<Frame> {
        frames.iter().flat_map(|&w| self.word_frames(w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrail_unwind_core::InstructionAddress;

    #[test]
    fn perf_map_last_covering_entry_wins() {
        let map = PerfMap::parse(
            "1000 100 JS:~old /a.js:1:1\n\
             garbage line\n\
             0x1080 40 Builtin:Stub\n\
             1000 100 JS:*fresh /srv/app.js:12:5\n",
        );
        assert_eq!(map.lookup(0x1010), Some("JS:*fresh /srv/app.js:12:5"));
        assert_eq!(map.lookup(0x1090), Some("JS:*fresh /srv/app.js:12:5"));
        assert_eq!(map.lookup(0x1100), None);
        assert_eq!(map.lookup(0xfff), None);
    }

    #[test]
    fn js_names_split_into_function_file_line_column() {
        let f = jit_frame(0x10, "JS:*makeBuffers /srv/app.js:12:5");
        assert_eq!(f.kind, FrameKind::Js);
        assert_eq!(f.function.as_deref(), Some("makeBuffers"));
        assert_eq!(f.file.as_deref(), Some("/srv/app.js"));
        assert_eq!((f.line, f.column), (Some(12), Some(5)));
        assert_eq!(f.to_string(), "JS makeBuffers /srv/app.js:12:5");
        let f = jit_frame(0x10, "JS:~ node:internal/main:3:9");
        assert_eq!(f.function.as_deref(), Some("(anonymous)"));
        assert_eq!(f.file.as_deref(), Some("node:internal/main"));
        // A name with a space (a getter), and one V8 inferred.
        let f = jit_frame(0x10, "JS:*get size /srv/app.js:3:7");
        assert_eq!(f.function.as_deref(), Some("get size"));
        assert_eq!(f.file.as_deref(), Some("/srv/app.js"));
        assert_eq!((f.line, f.column), (Some(3), Some(7)));
        let f = jit_frame(
            0x10,
            "JS:^Readable.push node:internal/streams/readable:387:35",
        );
        assert_eq!(f.function.as_deref(), Some("Readable.push"));
        assert_eq!(f.file.as_deref(), Some("node:internal/streams/readable"));
        let f = jit_frame(0x10, "LazyCompile:~old /x.js:4");
        assert_eq!((f.function.as_deref(), f.line), (Some("old"), Some(4)));
        let f = jit_frame(0x10, "Builtin:ArrayPrototypePush");
        assert_eq!(f.kind, FrameKind::Jit);
        assert_eq!(f.to_string(), "[jit] Builtin:ArrayPrototypePush");
    }

    #[test]
    fn unknown_frames_print_module_offset_or_anon() {
        let s = Symbolizer::new(vec![FileRange {
            path: "/nonexistent/libx.so".into(),
            start: 0x7000_0000,
            end: 0x7000_1000,
            offset: 0x2000,
        }]);
        assert_eq!(
            s.frame(InstructionAddress(0x7000_0010)).to_string(),
            "0x70000010 in ?? (libx.so+0x2010)"
        );
        assert_eq!(
            s.frame(InstructionAddress(0x10)).to_string(),
            "0x10 in ?? [anon]"
        );
    }

    fn own_mappings() -> Vec<FileRange> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let path = f.get(5)?;
                let (a, b) = f[0].split_once('-')?;
                Some(FileRange {
                    path: path.to_string(),
                    start: u64::from_str_radix(a, 16).ok()?,
                    end: u64::from_str_radix(b, 16).ok()?,
                    offset: u64::from_str_radix(f[2], 16).ok()?,
                })
            })
            .filter(|m| m.path.starts_with('/'))
            .collect()
    }

    #[test]
    fn code_mapped_a_second_time_resolves_by_file_offset() {
        // As V8 does with node's builtins: the same file pages at another
        // address. The copy must symbolize like the original.
        let mut mappings = own_mappings();
        let pc = code_mapped_a_second_time_resolves_by_file_offset as *const () as usize as u64;
        let m = mappings
            .iter()
            .find(|m| m.start <= pc && pc < m.end)
            .cloned()
            .unwrap();
        let shift = 0x1000_0000_0000u64;
        mappings.push(FileRange {
            start: m.start + shift,
            end: m.end + shift,
            ..m
        });
        let s = Symbolizer::new(mappings);
        let a = s.frame(InstructionAddress(pc));
        let b = s.frame(InstructionAddress(pc + shift));
        assert!(a.function.is_some());
        assert_eq!(a.function, b.function);
        assert_eq!((a.file, a.line), (b.file, b.line));
        assert_eq!(a.module_offset, b.module_offset);
    }

    #[test]
    fn our_own_functions_resolve_with_file_and_line() {
        let s = Symbolizer::new(own_mappings());
        let pc = our_own_functions_resolve_with_file_and_line as *const () as usize as u64;
        let f = s.frame(InstructionAddress(pc));
        assert!(
            f.function
                .as_deref()
                .is_some_and(|n| n.contains("our_own_functions_resolve_with_file_and_line")),
            "{f:?}"
        );
        assert!(
            f.file
                .as_deref()
                .is_some_and(|p| p.ends_with("symbolize.rs")),
            "{f:?}"
        );
    }

    /// Issue 11: libc's DWARF is in Debian's `libc6-dbg`, found by build
    /// id, its sections zlib-compressed. A file and line for `malloc` can
    /// only come from there (the installed libc is stripped).
    #[test]
    fn issue_11_libc_resolves_through_its_separate_compressed_debug_file() {
        let s = Symbolizer::new(own_mappings());
        let pc = libc::malloc as *const () as usize as u64;
        let libc_path = s.mapping(pc).map(|m| m.path.clone()).unwrap();
        let obj_map = map_file(&libc_path).unwrap();
        let obj = object::File::parse(&*obj_map).unwrap();
        if super::super::debuginfo::find(&libc_path, &obj, build_id_hex(&obj).as_deref()).is_none()
        {
            eprintln!("skipped: no separate debug info for {libc_path} (apt-get install libc6-dbg; .ci/run does)");
            return;
        }
        let f = s.frame(InstructionAddress(pc));
        assert!(
            f.function.as_deref().is_some_and(|n| n.contains("malloc")),
            "{f:?}"
        );
        assert!(f.file.is_some() && f.line.is_some(), "{f:?}");
    }
}
