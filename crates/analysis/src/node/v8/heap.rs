//! Finding V8's heap in a snapshot and the objects on it.
//!
//! **Pages.** V8 allocates its heap in chunks aligned to 256 KiB, each
//! opening with a header (V8 11's `BasicMemoryChunk`: size, flags, heap,
//! area start and end, allocated bytes, wasted bytes, high-water mark,
//! owning space, then the reservation's allocator, address and size). The
//! postmortem metadata does not describe it, so we accept an aligned
//! address as a page only when the header is consistent with itself: the
//! reservation starts at the page and has its size, the area lies inside
//! it, and the owning space names the same heap and a known space id. The
//! owning space gives V8's own committed bytes per space; the pages'
//! allocated bytes give what is used.
//!
//! **Objects.** A heap object starts with a tagged pointer to its map, and
//! a map's own map is a *meta map*, which points to itself. We read every
//! word of every page's area (from-space pages not at all: those are the
//! scavenger's stale copies),
//! take a word that points to a map as an object's start, and skip the
//! words inside an object once its size is known (from its map, or from
//! its length for arrays, strings and the free-space fillers the sweeper
//! leaves over dead objects). This is mdb_v8's findjsobjects idea, made
//! safer by the page walk. It finds what V8 has not yet collected too, so
//! [`JsHeap::reachable`] then marks what is still in use from the roots
//! outside V8's pages, and only that is counted.
//!
//! Build once per snapshot (it reads the whole V8 heap: tens of ms per
//! 10 MiB), then query.

use std::cell::RefCell;
use std::collections::HashMap;

use leaktrail_recording::Memory;

use super::layout::Layout;
use super::metadata::Metadata;
use crate::Error;

/// V8's page alignment (`kPageSize`, 256 KiB since V8 6).
const PAGE_ALIGNMENT: u64 = 256 * 1024;
/// Words of the page header we read.
const HEADER_WORDS: usize = 12;
/// `MemoryChunk::FROM_PAGE`: a semispace page the scavenger copied out of.
const FROM_PAGE: u64 = 1 << 3;
/// `MemoryChunk::LARGE_PAGE`: one object per page.
const LARGE_PAGE: u64 = 1 << 5;

/// One of V8's spaces, as its own counters say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceUse {
    /// V8's name for the space (`old_space`, `new_space`, ...).
    pub name: &'static str,
    /// Pages found in the snapshot (from-space pages included).
    pub pages: u64,
    /// Bytes V8 has committed to the space (`BaseSpace::committed_`).
    pub committed: u64,
    /// Bytes of objects on its pages (the pages' allocated bytes; for the
    /// new space, the bytes below each page's high-water mark).
    pub used: u64,
}

/// What a map says about its instances.
#[derive(Clone, Debug)]
pub(crate) struct MapInfo {
    pub(crate) instance_type: u64,
    /// Bytes, or 0 for variable-sized objects.
    pub(crate) instance_size: u64,
}

/// One object found on the heap (untagged addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapObject {
    /// Its address.
    pub addr: u64,
    /// Its map's address.
    pub map: u64,
    /// Its size in bytes (shallow, as V8 counts it).
    pub size: u64,
}

struct Page {
    /// The page's reservation: `[base, base + size)`.
    base: u64,
    size: u64,
    area_start: u64,
    /// Where objects end: the area's end.
    limit: u64,
    large: bool,
    scan: bool,
    /// A code-space page: instructions, with objects embedded at any
    /// byte offset.
    code: bool,
}

/// The V8 heap of one snapshot: its spaces, its maps and its objects.
pub struct JsHeap<'m> {
    pub(crate) mem: &'m dyn Memory,
    pub(crate) layout: Layout,
    pub(crate) type_names: HashMap<i64, String>,
    spaces: Vec<SpaceUse>,
    objects: Vec<HeapObject>,
    maps: RefCell<HashMap<u64, Option<MapInfo>>>,
    /// The end of the function instance types `[js_function, end)`.
    function_types_end: u64,
    /// V8's `Heap` object (in the isolate), as the pages name it.
    heap_addr: u64,
    /// Every page found (from-space and code pages too), by base.
    pages: Vec<Page>,
    /// Captured memory that holds no roots (see [`JsHeap::set_dead`]).
    dead: Vec<(u64, u64)>,
}

impl<'m> JsHeap<'m> {
    /// Finds the heap in `mem` and every object on it. Fails when no V8
    /// page is in captured memory (a snapshot taken with `--memory tables`
    /// or `none`, or a process that is not node).
    pub fn open(mem: &'m dyn Memory, md: &Metadata) -> Result<JsHeap<'m>, Error> {
        Self::open_with(mem, md, true)
    }

    /// [`JsHeap::open`] without reading the objects: the spaces and
    /// [`JsHeap::handles`] only.
    pub fn open_pages(mem: &'m dyn Memory, md: &Metadata) -> Result<JsHeap<'m>, Error> {
        Self::open_with(mem, md, false)
    }

    fn open_with(mem: &'m dyn Memory, md: &Metadata, objects: bool) -> Result<JsHeap<'m>, Error> {
        let layout = Layout::new(md)?;
        let type_names = md.type_names();
        let js_function = layout.types.js_function;
        let function_types_end = type_names
            .keys()
            .map(|&t| t as u64)
            .filter(|&t| t > js_function)
            .min()
            .unwrap_or(js_function + 1);
        let mut heap = JsHeap {
            mem,
            layout,
            type_names,
            spaces: Vec::new(),
            objects: Vec::new(),
            maps: RefCell::new(HashMap::new()),
            function_types_end,
            heap_addr: 0,
            pages: Vec::new(),
            dead: Vec::new(),
        };
        let mut pages = heap.find_pages();
        if pages.is_empty() {
            return Err(Error::Insufficient(
                "no V8 heap page is in the snapshot's captured memory: take it with --memory full (the default) from a node process".into(),
            ));
        }
        for page in pages.iter().filter(|p| objects && p.scan) {
            heap.scan_page(page);
        }
        pages.sort_by_key(|p| p.base);
        heap.pages = pages;
        Ok(heap)
    }

    /// V8's spaces with their committed and used bytes, by name.
    pub fn spaces(&self) -> &[SpaceUse] {
        &self.spaces
    }

    /// Every object found, in address order within each page.
    pub fn objects(&self) -> &[HeapObject] {
        &self.objects
    }

    /// The address of V8's `Heap` object the pages belong to (it lives
    /// inside the `Isolate`).
    pub(crate) fn heap_addr(&self) -> u64 {
        self.heap_addr
    }

    fn word(&self, addr: u64) -> Option<u64> {
        self.mem.read_u64(addr).ok()
    }

    fn find_pages(&mut self) -> Vec<Page> {
        let mut found = Vec::new();
        // Space name -> index into self.spaces; the owners already counted
        // (the new space's two semispaces are two owners of one name).
        let mut spaces: HashMap<&'static str, usize> = HashMap::new();
        let mut owners: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut candidates = Vec::new();
        let mut heaps: HashMap<u64, u64> = HashMap::new();
        for (start, end) in self.mem.ranges() {
            let mut a = start.div_ceil(PAGE_ALIGNMENT) * PAGE_ALIGNMENT;
            while a + HEADER_WORDS as u64 * 8 <= end {
                if let Some(h) = self.page_header(a) {
                    candidates.push((a, h));
                }
                a += PAGE_ALIGNMENT;
            }
        }
        for (base, h) in candidates {
            let (flags, heap, area_start, area_end) = (h[1], h[2], h[3], h[4]);
            let (allocated, hwm, owner) = (h[5], h[7], h[8]);
            let Some(id) = self.space_id(owner, heap) else {
                continue;
            };
            *heaps.entry(heap).or_default() += 1;
            let name = space_name(id);
            let idx = *spaces.entry(name).or_insert_with(|| {
                self.spaces.push(SpaceUse {
                    name,
                    pages: 0,
                    committed: 0,
                    used: 0,
                });
                self.spaces.len() - 1
            });
            if owners.insert(owner) {
                self.spaces[idx].committed += self.word(owner + 24).unwrap_or(0);
            }
            let from = flags & FROM_PAGE != 0;
            let large = flags & LARGE_PAGE != 0 || name.contains("large_object");
            let new_space = name == "new_space";
            // Objects are read over the whole area, even on a new-space
            // page: its high-water mark lags the top of the linear area V8
            // allocates from, so what was made since the last collection
            // lies above it. Above the top lie the scavenger's leftovers,
            // which the marking finds unreachable and no count takes.
            let limit = area_end;
            let used = if from {
                0
            } else if new_space {
                hwm.clamp(area_start, area_end) - area_start
            } else if large {
                area_end - area_start
            } else {
                allocated.min(area_end - area_start)
            };
            let space = &mut self.spaces[idx];
            space.pages += 1;
            space.used += used;
            found.push(Page {
                base,
                size: h[0],
                area_start,
                limit,
                large,
                // Code lives in its own spaces and holds no JS objects; its
                // instruction bytes would only feed false starts.
                scan: !from && !name.starts_with("code"),
                code: !from && name.starts_with("code"),
            });
        }
        self.spaces.sort_by_key(|s| space_order(s.name));
        self.heap_addr = heaps
            .into_iter()
            .max_by_key(|&(h, n)| (n, h))
            .map_or(0, |(h, _)| h);
        found
    }

    /// The header words of a page at `a`, if they are consistent.
    fn page_header(&self, a: u64) -> Option<[u64; HEADER_WORDS]> {
        let mut h = [0u64; HEADER_WORDS];
        for (i, w) in h.iter_mut().enumerate() {
            *w = self.word(a + 8 * i as u64)?;
        }
        let (size, heap, area_start, area_end) = (h[0], h[2], h[3], h[4]);
        let (reservation, reserved) = (h[10], h[11]);
        let ok = size >= 4096
            && size % 4096 == 0
            && size < 1 << 40
            && heap != 0
            && area_start > a
            && area_start < area_end
            && area_end <= a + size
            && reservation == a
            && reserved >= size
            && h[8] != 0;
        ok.then_some(h)
    }

    /// The `AllocationSpace` id of the space at `owner`, when it is a
    /// space of `heap`.
    fn space_id(&self, owner: u64, heap: u64) -> Option<u64> {
        if self.word(owner + 8)? != heap {
            return None;
        }
        let id = self.word(owner + 16)? & 0xffff_ffff;
        (1..=8).contains(&id).then_some(id)
    }

    fn scan_page(&mut self, page: &Page) {
        let len = page.limit.saturating_sub(page.area_start);
        let owned;
        let bytes: &[u8] = match self.mem.borrow(page.area_start, len) {
            Some(b) => b,
            None => {
                let mut v = vec![0u8; len as usize];
                if self.mem.read(page.area_start, &mut v).is_err() {
                    return;
                }
                owned = v;
                &owned
            }
        };
        let mut covered_until = page.area_start;
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let addr = page.area_start + 8 * i as u64;
            if addr < covered_until {
                continue;
            }
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if w & 3 != 1 {
                continue;
            }
            let map = w - 1;
            let Some(info) = self.map_info(map) else {
                continue;
            };
            let size = self.size_of(addr, &info).max(8);
            covered_until = addr + size;
            if info.instance_type != self.layout.types.free_space {
                self.objects.push(HeapObject { addr, map, size });
            }
            if page.large {
                break;
            }
        }
    }

    /// What the map at `map` says, if it is a map: its own map must be a
    /// meta map (a map whose map is itself).
    pub(crate) fn map_info(&self, map: u64) -> Option<MapInfo> {
        if let Some(known) = self.maps.borrow().get(&map) {
            return known.clone();
        }
        let info = self.read_map(map);
        self.maps.borrow_mut().insert(map, info.clone());
        info
    }

    fn read_map(&self, map: u64) -> Option<MapInfo> {
        let l = &self.layout;
        let meta = self.word(map + l.map)?;
        if meta & 3 != 1 || self.word(meta - 1 + l.map)? != meta {
            return None;
        }
        let ty = self.u16_at(map + l.map_instance_type)? as u64;
        if ty >= 4096 {
            return None;
        }
        let words = self.u8_at(map + l.map_instance_size_words)? as u64;
        Some(MapInfo {
            instance_type: ty,
            instance_size: words * 8,
        })
    }

    pub(crate) fn u8_at(&self, addr: u64) -> Option<u8> {
        let mut b = [0u8; 1];
        self.mem.read(addr, &mut b).ok()?;
        Some(b[0])
    }

    pub(crate) fn u16_at(&self, addr: u64) -> Option<u16> {
        let mut b = [0u8; 2];
        self.mem.read(addr, &mut b).ok()?;
        Some(u16::from_le_bytes(b))
    }

    pub(crate) fn u32_at(&self, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.mem.read(addr, &mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }

    /// The word at `addr`.
    pub(crate) fn read_word(&self, addr: u64) -> Option<u64> {
        self.word(addr)
    }

    /// The Smi at `addr` (value in the upper 32 bits).
    pub(crate) fn smi_at(&self, addr: u64) -> Option<i64> {
        let w = self.word(addr)?;
        (w & 1 == 0).then_some((w as i64) >> 32)
    }

    /// The map and its description of the tagged heap object `tagged`.
    pub(crate) fn object_map(&self, tagged: u64) -> Option<(u64, MapInfo)> {
        if tagged & 3 != 1 {
            return None;
        }
        let map = self.word(tagged - 1 + self.layout.map)?;
        if map & 3 != 1 {
            return None;
        }
        Some((map - 1, self.map_info(map - 1)?))
    }

    /// The instance type of the tagged heap object `tagged`.
    pub(crate) fn type_of(&self, tagged: u64) -> Option<u64> {
        self.object_map(tagged).map(|(_, i)| i.instance_type)
    }

    /// The size of the object at `addr` with map `info`.
    fn size_of(&self, addr: u64, info: &MapInfo) -> u64 {
        if info.instance_size != 0 {
            return info.instance_size;
        }
        let l = &self.layout;
        let t = &l.types;
        let ty = info.instance_type;
        let length = || self.smi_at(addr + l.fixed_array_length).unwrap_or(0).max(0) as u64;
        let align = |n: u64| n.div_ceil(8) * 8;
        if l.is_string(ty) {
            let n = self.u32_at(addr + l.string_length).unwrap_or(0) as u64;
            let one_byte = ty & l.string_encoding_mask == l.one_byte_tag;
            return align(l.seq_chars + if one_byte { n } else { 2 * n });
        }
        if ty == t.free_space {
            return length();
        }
        if ty == t.fixed_double_array {
            return l.fixed_array_data + 8 * length();
        }
        if ty == t.byte_array {
            return align(l.fixed_array_data + length());
        }
        if ty == t.property_array {
            // length_and_hash: the length is the low 10 bits.
            return l.fixed_array_data + 8 * (length() & 0x3ff);
        }
        if ty == t.descriptor_array {
            let n = self.u16_at(addr + 8).unwrap_or(0) as u64;
            return l.descriptors_header + 8 * l.desc_size * n;
        }
        if self.is_fixed_array_like(ty) {
            return l.fixed_array_data + 8 * length();
        }
        8
    }

    /// Fixed arrays, their subclasses (hash tables, contexts) and weak
    /// fixed arrays: a Smi length, then that many tagged slots.
    fn is_fixed_array_like(&self, ty: u64) -> bool {
        let t = &self.layout.types;
        (t.fixed_array..t.byte_array).contains(&ty)
            || ty == t.weak_fixed_array
            || self.is_context(ty)
    }

    fn is_context(&self, ty: u64) -> bool {
        (self.layout.first_context_type..=self.layout.last_context_type).contains(&ty)
    }

    /// Whether the map at `map` is a prototype's (`Map::IsPrototypeMapBit`
    /// of bit field 3, the bit below `IsDictionaryMapBit`, whose shift the
    /// metadata gives: an order V8 has kept since 2016).
    pub(crate) fn is_prototype_map(&self, map: u64) -> bool {
        let shift = self.layout.dictionary_map_shift.saturating_sub(1);
        self.u32_at(map + self.layout.map_bit_field3)
            .is_some_and(|b| (b as u64 >> shift) & 1 == 1)
    }

    /// Whether an instance type is a JS object's (what `jsobjects` counts).
    pub fn is_js_object(&self, ty: u64) -> bool {
        ty >= self.layout.types.first_js_receiver
    }

    /// Whether an instance type is a JS function's (closures, class
    /// constructors, builtins' functions).
    pub fn is_function(&self, ty: u64) -> bool {
        (self.layout.types.js_function..self.function_types_end).contains(&ty)
    }
}

/// Reachability: which objects found are still in use.
///
/// The page walk finds every object V8 has not yet collected, garbage
/// included: a program that makes and drops arrays at a steady rate shows
/// tens of thousands more between two collections, which a count by
/// constructor would read as growth. So we mark, as a collector would,
/// but conservatively: every aligned word of captured memory outside V8's
/// pages (stacks, the malloc heap where V8 keeps its isolate, handles and
/// global handles, data sections) that is a strong tagged pointer to an
/// object's start is a root, and so is such a word at any byte offset of a
/// code page (code embeds objects in its instructions); from a marked
/// object, each of its words that is one is an edge. Weak references (tag
/// `11`) are not followed; from-space pages (the scavenger's stale copies)
/// are neither roots nor objects. A stale word (a freed block, a dead stack
/// slot) can only keep garbage counted, never lose a live object.
impl JsHeap<'_> {
    /// Takes `[start, end)` ranges as holding no roots: the stacks below
    /// each thread's stack pointer and malloc's free memory
    /// ([`super::dead_ranges`]), whose stale words would keep garbage
    /// counted (a dropped array's last pointer is often in one).
    pub fn set_dead(&mut self, dead: Vec<(u64, u64)>) {
        self.dead = dead;
    }

    /// One flag per [`JsHeap::objects`] entry: whether it is reachable.
    pub fn reachable(&self) -> Vec<bool> {
        let mut by_addr: Vec<(u64, u32)> = self
            .objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.addr, i as u32))
            .collect();
        by_addr.sort_unstable();
        let lo = by_addr.first().map_or(u64::MAX, |o| o.0);
        let hi = by_addr.last().map_or(0, |o| o.0);
        let mut marker = Marker {
            by_addr,
            lo,
            hi,
            live: vec![false; self.objects.len()],
            work: Vec::new(),
        };
        let mut skip: Vec<(u64, u64)> = self
            .pages
            .iter()
            .map(|p| (p.base, p.base + p.size))
            .chain(self.dead.iter().copied())
            .collect();
        skip.sort_unstable();
        for (start, end) in self.mem.ranges() {
            let mut at = start;
            for &(s, e) in skip.iter().filter(|&&(s, e)| s < end && e > start) {
                if s > at {
                    self.each_word(at, s, 8, |w| marker.visit(w));
                }
                at = at.max(e);
            }
            if at < end {
                self.each_word(at, end, 8, |w| marker.visit(w));
            }
        }
        for p in self.pages.iter().filter(|p| p.code) {
            self.each_word(p.area_start, p.limit, 1, |w| marker.visit(w));
        }
        while let Some(i) = marker.work.pop() {
            let o = self.objects[i];
            let body = match self.map_info(o.map) {
                Some(info) if self.holds_no_pointers(info.instance_type) => 0,
                _ => o.size,
            };
            marker.visit(o.map + 1);
            self.each_word(o.addr + 8, o.addr + body, 8, |w| marker.visit(w));
        }
        marker.live
    }

    /// Strings, byte arrays and double arrays: raw bytes after the header
    /// (what strings point to is strings, never a JS object).
    fn holds_no_pointers(&self, ty: u64) -> bool {
        let t = &self.layout.types;
        self.layout.is_string(ty) || ty == t.byte_array || ty == t.fixed_double_array
    }

    /// Calls `f` with the word at every `step`-th byte of `[start, end)`
    /// that is captured.
    fn each_word(&self, start: u64, end: u64, step: usize, mut f: impl FnMut(u64)) {
        const CHUNK: u64 = 1 << 20;
        let mut buf = Vec::new();
        let mut at = start;
        while at + 8 <= end {
            // Overlap chunks by 7 bytes so unaligned words across a seam
            // are read too.
            let len = (end - at).min(CHUNK + 7);
            let bytes: &[u8] = match self.mem.borrow(at, len) {
                Some(b) => b,
                None => {
                    buf.resize(len as usize, 0);
                    if self.mem.read(at, &mut buf).is_err() {
                        at += CHUNK;
                        continue;
                    }
                    &buf
                }
            };
            let mut k = 0;
            while k + 8 <= bytes.len() && (k as u64) < CHUNK {
                let mut w = [0u8; 8];
                w.copy_from_slice(&bytes[k..k + 8]);
                f(u64::from_le_bytes(w));
                k += step;
            }
            at += CHUNK;
        }
    }
}

/// The state of one marking.
struct Marker {
    /// Objects' addresses with their index, ascending.
    by_addr: Vec<(u64, u32)>,
    lo: u64,
    hi: u64,
    live: Vec<bool>,
    work: Vec<usize>,
}

impl Marker {
    /// Marks the object `w` points to, when it is a strong tagged pointer
    /// to an object's start not yet marked.
    fn visit(&mut self, w: u64) {
        if w & 3 != 1 {
            return;
        }
        let a = w - 1;
        if a < self.lo || a > self.hi {
            return;
        }
        if let Ok(k) = self.by_addr.binary_search_by_key(&a, |o| o.0) {
            let i = self.by_addr[k].1 as usize;
            if !self.live[i] {
                self.live[i] = true;
                self.work.push(i);
            }
        }
    }
}

fn space_name(id: u64) -> &'static str {
    match id {
        1 => "new_space",
        2 => "old_space",
        3 => "code_space",
        4 => "shared_space",
        5 => "new_large_object_space",
        6 => "large_object_space",
        7 => "code_large_object_space",
        _ => "shared_large_object_space",
    }
}

fn space_order(name: &str) -> usize {
    [
        "new_space",
        "old_space",
        "code_space",
        "shared_space",
        "new_large_object_space",
        "large_object_space",
        "code_large_object_space",
        "shared_large_object_space",
    ]
    .iter()
    .position(|&n| n == name)
    .unwrap_or(usize::MAX)
}
