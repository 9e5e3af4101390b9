//! Turning addresses into function names, offline, from the files the
//! process had mapped.
//!
//! A [`Symbolizer`] is built once from the process's file mappings (from a
//! snapshot's module list or `/proc/PID/maps`) and opens each ELF file at
//! most once, by mmap; build once, reuse for every frame.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
use serde::Serialize;

/// One file-backed mapping of the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMapping {
    /// Path of the file.
    pub path: String,
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
}

/// One symbolized frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The runtime address.
    pub address: u64,
    /// Function name, if known.
    pub function: Option<String>,
    /// Source file, if known.
    pub file: Option<String>,
    /// Source line, if known.
    pub line: Option<u32>,
    /// File name of the module, if the address is in one.
    pub module: Option<String>,
    /// Offset of the address in the module's file.
    pub module_offset: u64,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.function, &self.module) {
            (Some(func), _) => write!(f, "{func}")?,
            (None, Some(m)) => write!(
                f,
                "{:#x} in ?? ({m}+{:#x})",
                self.address, self.module_offset
            )?,
            (None, None) => write!(f, "{:#x} in ?? [anon]", self.address)?,
        }
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            write!(f, " {file}:{line}")?;
        }
        Ok(())
    }
}

struct ElfSymbols {
    /// (file offset, virtual address, file size) of each loadable segment.
    loads: Vec<(u64, u64, u64)>,
    /// (start, size, name), sorted by start.
    symbols: Vec<(u64, u64, String)>,
}

impl ElfSymbols {
    fn open(path: &str) -> Option<ElfSymbols> {
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: we map the file read-only; if another process truncates
        // it under us, reads may fault — the same risk every symbolizer that
        // maps files takes, and far cheaper than copying large binaries.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let obj = object::File::parse(&*map).ok()?;
        let loads = obj
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, s.address(), size)
            })
            .collect();
        let mut symbols: Vec<(u64, u64, String)> = obj
            .symbols()
            .chain(obj.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        symbols.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        symbols.dedup_by_key(|s| s.0);
        Some(ElfSymbols { loads, symbols })
    }

    fn vaddr_of_offset(&self, off: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|(o, _, size)| *o <= off && off < o + size)
            .map(|(o, v, _)| v + (off - o))
    }

    fn function_at(&self, vaddr: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|s| s.0 <= vaddr);
        let (start, size, name) = self.symbols.get(i.checked_sub(1)?)?;
        (*size == 0 || vaddr < start + size).then_some(name.as_str())
    }
}

/// Symbolizes addresses of one process image.
pub struct Symbolizer {
    mappings: Vec<FileMapping>,
    files: RefCell<HashMap<String, Option<Rc<ElfSymbols>>>>,
}

impl Symbolizer {
    /// A symbolizer over these file mappings.
    pub fn new(mut mappings: Vec<FileMapping>) -> Self {
        mappings.sort_by_key(|m| m.start);
        Symbolizer {
            mappings,
            files: RefCell::new(HashMap::new()),
        }
    }

    fn mapping(&self, addr: u64) -> Option<&FileMapping> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }

    fn symbols(&self, path: &str) -> Option<Rc<ElfSymbols>> {
        let mut files = self.files.borrow_mut();
        files
            .entry(path.to_string())
            .or_insert_with(|| ElfSymbols::open(path).map(Rc::new))
            .clone()
    }

    /// Symbolizes `address`. Return addresses point after their call, so
    /// they are looked up one byte earlier (the call may end a function).
    pub fn frame(&self, address: u64, is_return_address: bool) -> Frame {
        let lookup = if is_return_address {
            address.saturating_sub(1)
        } else {
            address
        };
        let mut frame = Frame {
            address,
            function: None,
            file: None,
            line: None,
            module: None,
            module_offset: 0,
        };
        let Some(m) = self.mapping(lookup) else {
            return frame;
        };
        let file_off = lookup - m.start + m.offset;
        frame.module = Some(
            m.path
                .rsplit('/')
                .next()
                .unwrap_or(m.path.as_str())
                .to_string(),
        );
        frame.module_offset = address - m.start + m.offset;
        if let Some(syms) = self.symbols(&m.path) {
            if let Some(v) = syms.vaddr_of_offset(file_off) {
                frame.function = syms.function_at(v).map(str::to_string);
            }
        }
        frame
    }

    /// Symbolizes a captured stack (all return addresses).
    pub fn stack(&self, frames: &[u64]) -> Vec<Frame> {
        frames.iter().map(|&a| self.frame(a, true)).collect()
    }
}
