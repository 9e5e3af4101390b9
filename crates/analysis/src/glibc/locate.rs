//! Where glibc's malloc keeps its state in a process image: `main_arena`
//! and `mp_` in libc's data, and the thread-local `tcache` pointer's
//! offset from each thread pointer.
//!
//! From libc's symbols when present (its own `.symtab`, else the separate
//! debug file found by [`crate::symbols::debuginfo`]: Debian's `libc6-dbg`),
//! else from the layout: `main_arena` is the one `malloc_state` in libc's
//! data whose `next` list comes back to it, `mp_` the `malloc_par` whose
//! `sbrk_base` is the start of the brk heap. The `tcache` offset is read
//! from the GOT slot of libc's `R_X86_64_TPOFF64` relocation for it (the
//! loader wrote the offset there); without symbols, the slot whose offset
//! lands every thread on a tcache-sized chunk or on nothing.

use object::{Object, ObjectSymbol, RelocationFlags, RelocationTarget};

use super::layout::*;
use crate::heap::model::ProcessImage;
use crate::symbols::{debuginfo, symbolize::map_file, LoadTable};
use crate::Error;
use leaktrail_recording::{Mapping, Memory};

/// `R_X86_64_TPOFF64`.
const R_X86_64_TPOFF64: u32 = 18;
/// A `next` list longer than this is not glibc's (its default cap is 8
/// arenas per core).
pub const MAX_ARENAS: usize = 4096;

/// How the structures were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// libc's symbol table or its separate debug info.
    Symbols,
    /// The glibc layout, validated by walking.
    Layout,
}

impl Source {
    /// A word for messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Source::Symbols => "symbols",
            Source::Layout => "layout",
        }
    }
}

/// glibc's malloc state in one image.
#[derive(Clone, Debug)]
pub struct Allocator {
    /// libc's path.
    pub libc: String,
    /// `&main_arena`.
    pub main_arena: u64,
    /// `&mp_`, when found.
    pub mp: Option<u64>,
    /// The thread-pointer offset of the `tcache` variable (added to
    /// `fs_base`, wrapping), when found.
    pub tcache_tpoff: Option<u64>,
    /// How `main_arena` was found.
    pub source: Source,
}

/// The program's allocator and the file that holds it, as far as we can
/// tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramAllocator {
    /// Which allocator.
    pub kind: leaktrail_format::Allocator,
    /// The library it is in, when one of the mapped files.
    pub path: Option<String>,
    /// How we know: `tracer` (it forwarded the program's `malloc` there)
    /// or `mappings` (the libraries mapped).
    pub source: &'static str,
}

impl ProgramAllocator {
    /// Whether glibc's heap state describes the program's blocks: the
    /// allocator is glibc's, or not known to be another.
    pub fn is_glibc(&self) -> bool {
        matches!(
            self.kind,
            leaktrail_format::Allocator::Glibc | leaktrail_format::Allocator::Unknown
        )
    }

    /// The refusal of an analysis that reads glibc's heap state, for
    /// another allocator: one line, with what to read instead.
    pub fn not_glibc(&self, image: &str) -> Error {
        Error::Insufficient(format!(
            "{image}: the program's allocator is {}, not glibc's malloc: glibc's heap state does not describe its blocks, so it is not walked; the tracer's audit holds them (`leaktrail run -- CMD`)",
            self.describe()
        ))
    }

    /// `jemalloc (/usr/lib/…/libjemalloc.so.2, named by the tracer)`.
    pub fn describe(&self) -> String {
        let how = match self.source {
            "tracer" => "named by the tracer",
            _ => "from the libraries mapped",
        };
        match &self.path {
            Some(p) => format!("{} ({p}, {how})", self.kind.name()),
            None => format!("{} ({how})", self.kind.name()),
        }
    }
}

/// The program's allocator in `image`: the tracer's word `traced` when it
/// names one, else told from the libraries mapped (a replacing allocator
/// mapped wins over libc; a core mapping neither, a static binary, is
/// `unknown`).
pub fn program_allocator(
    image: &dyn ProcessImage,
    traced: leaktrail_format::Allocator,
) -> ProgramAllocator {
    use leaktrail_format::Allocator as A;
    let maps = image.mappings();
    let mapped = |kind: A| {
        maps.iter()
            .find(|m| A::of_library(m.path.as_bytes()) == kind)
            .map(|m| m.path.clone())
    };
    if traced != A::Unknown {
        return ProgramAllocator {
            kind: traced,
            path: mapped(traced),
            source: "tracer",
        };
    }
    for kind in [A::Jemalloc, A::Tcmalloc, A::Mimalloc, A::Glibc] {
        if let Some(path) = mapped(kind) {
            return ProgramAllocator {
                kind,
                path: Some(path),
                source: "mappings",
            };
        }
    }
    ProgramAllocator {
        kind: A::Unknown,
        path: None,
        source: "mappings",
    }
}

/// Finds glibc's malloc state in `image`. Fails when no glibc is mapped,
/// when the program's allocator is another ([`ProgramAllocator::not_glibc`])
/// or no `main_arena` validates.
pub fn locate(image: &dyn ProcessImage) -> Result<Allocator, Error> {
    let program = program_allocator(image, leaktrail_format::Allocator::Unknown);
    if !program.is_glibc() {
        return Err(program.not_glibc(&image.name()));
    }
    let mut maps = image.mappings();
    maps.sort_by_key(|m| m.start);
    let libc = maps
        .iter()
        .find(|m| is_libc(&m.path))
        .map(|m| m.path.clone())
        .ok_or_else(|| {
            Error::Insufficient(format!(
                "{} has no glibc mapped (a static binary, or another C library): its malloc heap cannot be walked",
                image.name()
            ))
        })?;
    let mem = image.memory();
    let syms = Symbols::read(&libc, &maps);
    let data = libc_data(&maps, &libc);
    let (main_arena, source) = match syms.main_arena.filter(|&a| arena_list(mem, a).is_some()) {
        Some(a) => (a, Source::Symbols),
        None => (
            scan_main_arena(mem, &data).ok_or_else(|| {
                Error::Insufficient(format!(
                    "{}: glibc's main_arena was not found in {libc}'s data (not glibc 2.35-2.39 on x86_64?); \
                     install its debug info (Debian: libc6-dbg) to locate it by symbol",
                    image.name()
                ))
            })?,
            Source::Layout,
        ),
    };
    let brk = maps.iter().find(|m| m.path == "[heap]").map(|m| m.start);
    let mp = syms
        .mp
        .or_else(|| scan_mp(mem, &data, brk))
        .filter(|&p| mem.read_u64(p + MP_TCACHE_BINS).is_ok_and(|b| b <= 1024));
    let tcache_tpoff = match syms.tcache_slot {
        Some(slot) => mem.read_u64(slot).ok(),
        None => pick_tcache_tpoff(image, &syms.tpoff_slots),
    };
    Ok(Allocator {
        libc,
        main_arena,
        mp,
        tcache_tpoff,
        source,
    })
}

/// Whether `path` names glibc's `libc.so.6` (or an old `libc-2.NN.so`).
fn is_libc(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    name == "libc.so.6" || (name.starts_with("libc-") && name.ends_with(".so"))
}

/// What libc's symbols and relocations say, in runtime addresses.
#[derive(Default)]
struct Symbols {
    main_arena: Option<u64>,
    mp: Option<u64>,
    /// The GOT slot of the `tcache` TPOFF relocation.
    tcache_slot: Option<u64>,
    /// Every symbol-less TPOFF slot (candidates when `tcache` is unknown).
    tpoff_slots: Vec<u64>,
}

impl Symbols {
    fn read(path: &str, maps: &[Mapping]) -> Symbols {
        let mut out = Symbols::default();
        let Some(map) = map_file(path) else {
            return out;
        };
        let Ok(obj) = object::File::parse(&*map) else {
            return out;
        };
        let loads = LoadTable::of(&obj);
        let Some(bias) = maps
            .iter()
            .filter(|m| m.path == path)
            .find_map(|m| Some(m.start.wrapping_sub(loads.vaddr_of_offset(m.offset)?)))
        else {
            return out;
        };
        let id = obj
            .build_id()
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let debug = debuginfo::find(path, &obj, id.as_deref());
        let dobj = debug.as_deref().and_then(|d| object::File::parse(d).ok());
        let mut tcache_off = None;
        for s in obj.symbols().chain(dobj.iter().flat_map(|d| d.symbols())) {
            match s.name() {
                Ok("main_arena") => out.main_arena = Some(bias.wrapping_add(s.address())),
                Ok("mp_") => out.mp = Some(bias.wrapping_add(s.address())),
                Ok("tcache") if s.kind() == object::SymbolKind::Tls => {
                    tcache_off = Some(s.address())
                }
                _ => {}
            }
        }
        for (offset, r) in obj.dynamic_relocations().into_iter().flatten() {
            if r.flags()
                != (RelocationFlags::Elf {
                    r_type: R_X86_64_TPOFF64,
                })
                || r.target() != RelocationTarget::Absolute
            {
                continue;
            }
            let slot = bias.wrapping_add(offset);
            if tcache_off == Some(r.addend() as u64) {
                out.tcache_slot = Some(slot);
            }
            out.tpoff_slots.push(slot);
        }
        out
    }
}

/// libc's writable data: its `rw` file mappings and the anonymous
/// mapping right after them (its bss).
fn libc_data(maps: &[Mapping], libc: &str) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        if m.path != libc || m.perms.as_bytes().get(1) != Some(&b'w') {
            continue;
        }
        out.push((m.start, m.end));
        if let Some(n) = maps.get(i + 1) {
            if n.start == m.end && n.path.is_empty() && n.perms.as_bytes().get(1) == Some(&b'w') {
                out.push((n.start, n.end));
            }
        }
    }
    out
}

/// The arenas of the `next` list from `main_arena`, when it is a list that
/// comes back to its start through readable arenas.
pub fn arena_list(mem: &dyn Memory, main_arena: u64) -> Option<Vec<u64>> {
    let mut out = vec![main_arena];
    let mut a = mem.read_u64(main_arena + ARENA_NEXT).ok()?;
    while a != main_arena {
        if out.len() >= MAX_ARENAS || a % 8 != 0 || mem.read_u64(a + ARENA_SIZE - 8).is_err() {
            return None;
        }
        out.push(a);
        a = mem.read_u64(a + ARENA_NEXT).ok()?;
    }
    Some(out)
}

/// Reads the words of `[start, end)`, whole or not at all.
fn words(mem: &dyn Memory, start: u64, end: u64) -> Option<Vec<u64>> {
    let mut buf = vec![0u8; (end - start) as usize];
    mem.read(start, &mut buf).ok()?;
    Some(
        buf.chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
            .collect(),
    )
}

/// `main_arena` by its layout: an 8-aligned `malloc_state` in libc's data
/// with an empty bin pointing at itself (`bin_at`, as every arena starts),
/// whose `next` list comes back to it.
pub(crate) fn scan_main_arena(mem: &dyn Memory, data: &[(u64, u64)]) -> Option<u64> {
    for &(start, end) in data {
        let Some(w) = words(mem, start, end) else {
            continue;
        };
        let n = (ARENA_SIZE / 8) as usize;
        for i in 0..w.len().saturating_sub(n) {
            let a = start + 8 * i as u64;
            // Some bin among the small ones is empty in any process: its
            // fd and bk both point at bin_at(a, bin).
            let empty_bins = (2..64u64)
                .filter(|&b| {
                    let fd = ((ARENA_BINS + (b - 1) * 16) / 8) as usize + i;
                    w[fd] == bin_at(a, b) && w[fd + 1] == bin_at(a, b)
                })
                .count();
            if empty_bins >= 8 && arena_list(mem, a).is_some() {
                return Some(a);
            }
        }
    }
    None
}

/// `mp_` by its layout: a `malloc_par` in libc's data whose `sbrk_base` is
/// the brk heap's start and whose tcache limits are glibc's possible ones.
fn scan_mp(mem: &dyn Memory, data: &[(u64, u64)], brk: Option<u64>) -> Option<u64> {
    let brk = brk?;
    for &(start, end) in data {
        let Some(w) = words(mem, start, end) else {
            continue;
        };
        for i in 0..w.len().saturating_sub((MP_SIZE / 8) as usize) {
            let at = |off: u64| w[i + (off / 8) as usize];
            if at(MP_SBRK_BASE) & !(PAGE - 1) == brk
                && (1..=TCACHE_BINS).contains(&at(MP_TCACHE_BINS))
                && at(MP_TCACHE_COUNT) <= u16::MAX as u64
            {
                return Some(start + 8 * i as u64);
            }
        }
    }
    None
}

/// The `tcache` offset without symbols: the TPOFF slot whose offset puts,
/// for every thread, either nothing or a pointer to the user memory of a
/// tcache-sized chunk, and for at least one thread the latter.
fn pick_tcache_tpoff(image: &dyn ProcessImage, slots: &[u64]) -> Option<u64> {
    let mem = image.memory();
    let tcache_chunk = request2size(TCACHE_SIZE);
    slots.iter().find_map(|&slot| {
        let off = mem.read_u64(slot).ok()?;
        let mut hits = 0;
        for t in image.threads() {
            let fs = t
                .regs
                .get(crate::heap::model::REG_FS_BASE)
                .copied()
                .unwrap_or(0);
            let p = mem.read_u64(fs.wrapping_add(off)).ok()?;
            if p == 0 {
                continue;
            }
            let size = mem.read_u64(p.wrapping_sub(8)).ok()?;
            if p % ALIGN != 0 || size & !FLAGS != tcache_chunk {
                return None;
            }
            hits += 1;
        }
        (hits > 0).then_some(off)
    })
}
