//! What a block holds, when its bytes say so: a C++ object by the symbol of
//! its vtable pointer (`_ZTV6Widget`+16 is a `Widget`), else a hint — a C
//! string, an array of pointers, zeros. Blocks without stacks (a heap
//! walk's) are grouped by it; every view shows it.

use crate::heap::model::{AreaKind, Heap};
use crate::symbolize::Symbolizer;

/// What a block looks like.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockType {
    /// A C++ object of this class (demangled), by its vtable.
    Class(String),
    /// Printable text ending in a NUL.
    CString,
    /// Words that are each zero or an address in the image, not all zero.
    Pointers,
    /// Only zero bytes (of the first [`SAMPLE`]).
    Zeroed,
    /// A thread's dynamic TLS vector (glibc's DTV): libc's own, which
    /// valgrind frees before it looks (`__libc_freeres`).
    ThreadDtv,
}

impl BlockType {
    /// How views name it: the class, or `<C string>`, `<pointer array>`,
    /// `<zero-filled>` for hints.
    pub fn name(&self) -> String {
        match self {
            BlockType::Class(c) => c.clone(),
            BlockType::CString => "<C string>".into(),
            BlockType::Pointers => "<pointer array>".into(),
            BlockType::Zeroed => "<zero-filled>".into(),
            BlockType::ThreadDtv => THREAD_DTV.into(),
        }
    }
}

/// How a block without a stack is grouped in every view: a C++ class by
/// its name alone (its objects are one size anyway), anything else by its
/// size class (by its largest size) and its hint, if any. `leaks` groups,
/// `bufs --group-by stack`, and the one-frame sites of `growth`,
/// `flamegraph`, `pprof` and `report` are all keyed by it, so their totals
/// agree.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// The class or hint name ([`BlockType::name`]).
    pub type_name: Option<String>,
    /// The size class, for blocks that are not C++ objects.
    pub size_class: Option<u64>,
}

impl Label {
    /// The label of the block `[addr, addr + size)`.
    pub fn of(heap: &Heap<'_>, symbolizer: &Symbolizer, addr: u64, size: u64) -> Label {
        match of(heap, symbolizer, addr, size) {
            Some(t @ (BlockType::Class(_) | BlockType::ThreadDtv)) => Label {
                type_name: Some(t.name()),
                size_class: None,
            },
            t => Label {
                type_name: t.map(|t| t.name()),
                size_class: Some(leaktrail_format::class_size(leaktrail_format::class_of(
                    size,
                ))),
            },
        }
    }

    /// The label as the name of a site's one frame, marked so that nobody
    /// takes it for a function: `[type] Widget`, `[size 4096]`,
    /// `[size 64] <C string>`.
    pub fn frame_name(&self) -> String {
        match (&self.type_name, self.size_class) {
            (Some(t), None) => format!("[type] {t}"),
            (Some(t), Some(c)) => format!("[size {c}] {t}"),
            (None, Some(c)) => format!("[size {c}]"),
            (None, None) => "[no type]".into(),
        }
    }
}

/// How views name a thread's DTV.
pub const THREAD_DTV: &str = "<thread DTV>";

/// How many bytes of a block the hints read.
pub const SAMPLE: u64 = 64;
/// A C string has at least this many printable bytes before its NUL.
const MIN_STRING: usize = 4;

/// The type of the block `[addr, addr + size)`, if its bytes tell.
pub fn of(heap: &Heap<'_>, symbolizer: &Symbolizer, addr: u64, size: u64) -> Option<BlockType> {
    if heap.thread_dtvs.binary_search(&addr).is_ok() {
        return Some(BlockType::ThreadDtv);
    }
    let n = size.min(SAMPLE) as usize;
    if n < 8 {
        return None;
    }
    let mut sample = [0u8; SAMPLE as usize];
    let buf = &mut sample[..n];
    heap.memory.read(addr, buf).ok()?;
    let word = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let first = word(0);
    if heap
        .area_of(first)
        .is_some_and(|a| matches!(a.kind, AreaKind::File | AreaKind::ModuleData))
    {
        if let Some(class) = vtable_class(symbolizer, first) {
            return Some(BlockType::Class(class));
        }
    }
    if buf.iter().all(|&b| b == 0) {
        return Some(BlockType::Zeroed);
    }
    let text = buf
        .iter()
        .take_while(|&&b| b == b'\t' || b == b'\n' || (0x20..0x7f).contains(&b))
        .count();
    if text >= MIN_STRING && (buf.get(text) == Some(&0) || (text == n && size <= SAMPLE)) {
        return Some(BlockType::CString);
    }
    let words = n / 8;
    if words >= 2
        && (0..words).all(|i| {
            let v = word(i);
            v == 0 || (v % 8 == 0 && heap.area_of(v).is_some())
        })
    {
        return Some(BlockType::Pointers);
    }
    None
}

/// The class whose vtable `ptr` points into (`_ZTV<name>` at an offset
/// past its offset-to-top and typeinfo words).
fn vtable_class(symbolizer: &Symbolizer, ptr: u64) -> Option<String> {
    let (name, off) = symbolizer.symbol(ptr)?;
    if !name.starts_with("_ZTV") || off < 16 || off % 8 != 0 {
        return None;
    }
    let demangled = addr2line::demangle_auto(std::borrow::Cow::Borrowed(name.as_str()), None);
    // cpp_demangle spells a vtable `{vtable(Widget)}`; c++filt, `vtable for
    // Widget`.
    let class = demangled
        .strip_prefix("{vtable(")
        .and_then(|c| c.strip_suffix(")}"))
        .or_else(|| demangled.strip_prefix("vtable for "))
        .unwrap_or(&demangled);
    Some(class.to_string())
}
