//! The table of loaded modules the unwinder consults: where each one's code
//! is, and where its in-memory `.eh_frame_hdr` and `.eh_frame` are.
//!
//! Built with `dl_iterate_phdr` outside the hooks (at init, after `dlopen`,
//! around `dlclose`) and published with one atomic store. The unwinder reads
//! module memory (the CFI) directly, so before `dlclose` unmaps a module we
//! publish a table without it and wait until every unwind that might still
//! use the old table has finished (a two-counter epoch, like RCU's).
//! Replaced tables are leaked: `dlopen` is rare and they are small; they
//! live in our own mappings, never in the program's heap.
//!
//! Code the table cannot know yet (a library constructor's before our own
//! constructor built the table; a `dlopen`'d library's constructor, which
//! runs before `dlopen` returns) is found in the loader's own list,
//! `_r_debug`, read without locks or allocation (see [`TableHold::module_at`]).

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use leaktrail_unwind_core::{Cfi, Rule, Section};

use crate::sys;

/// One executable segment of a loaded object.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// Start of the executable segment (runtime address).
    pub start: u64,
    /// End of it.
    pub end: u64,
    /// Load bias of the object.
    pub bias: u64,
    /// Runtime address of `.eh_frame_hdr`, 0 if the object has none.
    pub eh_frame_hdr: u64,
    /// Its length.
    pub eh_frame_hdr_len: u64,
    /// Runtime address of `.eh_frame`, 0 if unknown.
    pub eh_frame: u64,
    /// Bytes from `.eh_frame` to the end of the segment holding it.
    pub eh_frame_len: u64,
    /// Whether this is the tracer itself.
    pub is_tracer: bool,
}

impl Module {
    /// The unwind rule at lookup address `pc` in this module's CFI.
    /// Does not allocate (see [`Cfi::rule_at`]); costs about a
    /// microsecond, so callers cache it.
    pub fn rule_at(&self, pc: u64) -> Rule {
        if self.eh_frame_hdr == 0 || self.eh_frame == 0 {
            return Rule::UNKNOWN;
        }
        // SAFETY: the module table holds only loaded objects, whose
        // `.eh_frame_hdr` and `.eh_frame` (bounded by the end of their
        // segment) are mapped and readable, and the caller's `TableHold`
        // keeps `dlclose` from unmapping them while we read.
        let (hdr, eh_frame) = unsafe {
            (
                core::slice::from_raw_parts(
                    self.eh_frame_hdr as *const u8,
                    self.eh_frame_hdr_len as usize,
                ),
                core::slice::from_raw_parts(self.eh_frame as *const u8, self.eh_frame_len as usize),
            )
        };
        Cfi {
            eh_frame: Section {
                data: eh_frame,
                address: self.eh_frame,
            },
            eh_frame_hdr: Some(Section {
                data: hdr,
                address: self.eh_frame_hdr,
            }),
            text_address: Some(self.start),
        }
        .rule_at(pc)
    }
}

/// A published module table.
pub struct ModuleTable {
    /// Sorted by `start`, non-overlapping.
    pub modules: &'static [Module],
    /// Which build this is.
    pub generation: u64,
}

impl ModuleTable {
    /// The module whose code holds `pc`.
    #[inline]
    pub fn find(&self, pc: u64) -> Option<&Module> {
        let i = self.modules.partition_point(|m| m.start <= pc);
        let m = self.modules.get(i.checked_sub(1)?)?;
        (pc < m.end).then_some(m)
    }
}

static TABLE: AtomicPtr<ModuleTable> = AtomicPtr::new(core::ptr::null_mut());
static GENERATION: AtomicU64 = AtomicU64::new(1);
static EPOCH: AtomicUsize = AtomicUsize::new(0);
static READERS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// `dlopen` calls in progress: the loader may be running a new module's
/// constructors, whose code the table does not know yet.
static OPENING: AtomicUsize = AtomicUsize::new(0);
/// `dlclose` calls in progress: the loader may unmap modules the table
/// does not name, so nothing reads the loader's list.
static CLOSING: AtomicUsize = AtomicUsize::new(0);
/// Serialises rebuilds (two threads' `dlopen`s) and the table arena.
static BUILDING: AtomicBool = AtomicBool::new(false);

/// A reader's hold on the current table; while it lives, no module the
/// table names is unmapped by `dlclose`.
pub struct TableHold {
    epoch: usize,
    table: Option<&'static ModuleTable>,
}

impl TableHold {
    /// Takes a hold.
    #[inline]
    pub fn take() -> Self {
        let epoch = EPOCH.load(Ordering::Acquire) & 1;
        READERS[epoch].fetch_add(1, Ordering::SeqCst);
        let p = TABLE.load(Ordering::SeqCst);
        // SAFETY: published tables are never freed.
        let table = unsafe { p.as_ref() };
        TableHold { epoch, table }
    }

    /// The table, if one has been built.
    #[inline]
    pub fn table(&self) -> Option<&'static ModuleTable> {
        self.table
    }

    /// The module holding `pc`: the table's, or, while no table exists yet
    /// (allocations before our constructor) or a `dlopen` is running (a
    /// new module's constructors), the loader's own list's.
    #[inline]
    pub fn module_at(&self, pc: u64) -> Option<Module> {
        if let Some(m) = self.table.and_then(|t| t.find(pc)) {
            return Some(*m);
        }
        if self.table.is_some() && OPENING.load(Ordering::SeqCst) == 0 {
            return None;
        }
        // A dlclose that started after our hold waits for it (see
        // `publish`); one that started before is seen here.
        if CLOSING.load(Ordering::SeqCst) != 0 {
            return None;
        }
        linkmap::module_at(pc)
    }
}

impl Drop for TableHold {
    #[inline]
    fn drop(&mut self) {
        READERS[self.epoch].fetch_sub(1, Ordering::Release);
    }
}

/// The table built at init: objects loaded with the program, which the
/// loader never unloads.
static INITIAL: AtomicPtr<ModuleTable> = AtomicPtr::new(core::ptr::null_mut());

/// Most executable segments a table holds beyond those counted before the
/// build (modules loaded meanwhile).
const SLACK: usize = 16;

/// Rebuilds and publishes the table. Call outside hooks only: it takes the
/// loader's lock. Allocates nothing from the program's heap: tables live in
/// mappings of our own, so the program's allocator sees none of our
/// blocks.
pub fn rebuild() {
    while BUILDING.swap(true, Ordering::Acquire) {
        sys::yield_now();
    }
    let mut count = 0usize;
    // SAFETY: the callback only counts segments in the info it is handed.
    unsafe { libc::dl_iterate_phdr(Some(count_segments), &mut count as *mut usize as *mut _) };
    let capacity = count + SLACK;
    let bytes = core::mem::size_of::<ModuleTable>() + capacity * core::mem::size_of::<Module>();
    if let Some(base) = arena::take(bytes as u64) {
        let first = (base as usize + core::mem::size_of::<ModuleTable>()) as *mut Module;
        let mut fill = Fill {
            at: first,
            len: 0,
            capacity,
        };
        // SAFETY: the callback writes at most `capacity` modules from
        // `first`, inside the fresh block.
        unsafe { libc::dl_iterate_phdr(Some(collect), &mut fill as *mut Fill as *mut _) };
        // SAFETY: the first `fill.len` modules were written.
        let modules = unsafe { core::slice::from_raw_parts_mut(first, fill.len) };
        modules.sort_unstable_by_key(|m| m.start);
        let table = base as *mut ModuleTable;
        // SAFETY: the block starts with room for the table, aligned (the
        // arena hands out 64-byte aligned blocks).
        unsafe {
            table.write(ModuleTable {
                modules,
                generation: GENERATION.fetch_add(1, Ordering::Relaxed) + 1,
            })
        };
        let _ = INITIAL.compare_exchange(
            core::ptr::null_mut(),
            table,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        publish(table);
    }
    BUILDING.store(false, Ordering::Release);
}

/// Around the real `dlopen`: while it runs, unknown code may be the new
/// module's (its constructors run before `dlopen` returns).
pub fn opening<R>(f: impl FnOnce() -> R) -> R {
    OPENING.fetch_add(1, Ordering::SeqCst);
    let r = f();
    OPENING.fetch_sub(1, Ordering::SeqCst);
    r
}

/// Before `dlclose`: fall back to the objects that can never be unloaded,
/// so no unwind reads a module while the loader unmaps it. [`closed`]
/// ends it.
pub fn retreat_to_initial() {
    CLOSING.fetch_add(1, Ordering::SeqCst);
    let initial = INITIAL.load(Ordering::SeqCst);
    if !initial.is_null() {
        publish(initial);
    } else {
        // Still wait for unwinds that may be reading the loader's list.
        publish(TABLE.load(Ordering::SeqCst));
    }
}

/// After `dlclose`: learns what is still loaded.
pub fn closed() {
    rebuild();
    CLOSING.fetch_sub(1, Ordering::SeqCst);
}

/// Publishes `table` and waits until no unwind still holds an older one.
fn publish(table: *mut ModuleTable) {
    TABLE.store(table, Ordering::SeqCst);
    GENERATION.fetch_add(1, Ordering::Relaxed);
    let old = EPOCH.fetch_add(1, Ordering::SeqCst) & 1;
    while READERS[old].load(Ordering::SeqCst) != 0 {
        sys::yield_now();
    }
}

/// In a fork child: only the forking thread exists, and it holds no table;
/// holds the parent's other threads had are gone with them, and would
/// otherwise make the child's next `dlclose` wait forever.
pub fn reset_after_fork() {
    for r in &READERS {
        r.store(0, Ordering::SeqCst);
    }
    OPENING.store(0, Ordering::SeqCst);
    CLOSING.store(0, Ordering::SeqCst);
    BUILDING.store(false, Ordering::SeqCst);
}

/// Generation of the published table: changes whenever the table does, so
/// per-thread caches know to drop their rules.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Where `collect` writes.
struct Fill {
    at: *mut Module,
    len: usize,
    capacity: usize,
}

unsafe extern "C" fn count_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the counter `rebuild` passed in; the loader passes
    // a valid info struct whose dlpi_phdr points at dlpi_phnum headers.
    unsafe {
        let count = &mut *(data as *mut usize);
        let info = &*info;
        let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        *count += phdrs
            .iter()
            .filter(|ph| ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0)
            .count();
    }
    0
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the Fill `rebuild` passed in.
    let fill = unsafe { &mut *(data as *mut Fill) };
    // SAFETY: the loader passes a valid info struct for the call.
    let info = unsafe { &*info };
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    segments_of(info.dlpi_addr, phdrs, |m| {
        if fill.len < fill.capacity {
            // SAFETY: below capacity, inside the block `rebuild` took.
            unsafe { fill.at.add(fill.len).write(m) };
            fill.len += 1;
        }
    });
    0
}

/// Calls `push` with each executable segment of the object loaded with
/// `bias` whose program headers are `phdrs` (mapped, as the loader keeps
/// them).
fn segments_of(bias: u64, phdrs: &[libc::Elf64_Phdr], mut push: impl FnMut(Module)) {
    let mut hdr = (0u64, 0u64);
    for ph in phdrs {
        if ph.p_type == libc::PT_GNU_EH_FRAME {
            hdr = (bias.wrapping_add(ph.p_vaddr), ph.p_memsz);
        }
    }
    let (eh_frame, eh_frame_len) = if hdr.0 != 0 {
        locate_eh_frame(hdr, bias, phdrs).unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let tracer_fn = rebuild as fn() as usize as u64;
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            let start = bias.wrapping_add(ph.p_vaddr);
            let end = start + ph.p_memsz;
            push(Module {
                start,
                end,
                bias,
                eh_frame_hdr: if eh_frame != 0 { hdr.0 } else { 0 },
                eh_frame_hdr_len: hdr.1,
                eh_frame,
                eh_frame_len,
                is_tracer: start <= tracer_fn && tracer_fn < end,
            });
        }
    }
}

/// Blocks for module tables, carved from mappings of our own. Tables are
/// never freed (a lock-free reader may still hold one), so neither is this.
mod arena {
    use core::sync::atomic::{AtomicU64, Ordering};

    use crate::sys;

    const CHUNK: u64 = 64 * 1024;
    static BASE: AtomicU64 = AtomicU64::new(0);
    static USED: AtomicU64 = AtomicU64::new(0);
    static SIZE: AtomicU64 = AtomicU64::new(0);

    /// A fresh zeroed block of `bytes`, 64-byte aligned. The caller holds
    /// `BUILDING`.
    pub fn take(bytes: u64) -> Option<u64> {
        let bytes = bytes.div_ceil(64) * 64;
        let (mut base, mut used) = (BASE.load(Ordering::Relaxed), USED.load(Ordering::Relaxed));
        if base == 0 || used + bytes > SIZE.load(Ordering::Relaxed) {
            let size = CHUNK.max(bytes.div_ceil(4096) * 4096);
            base = sys::map_anonymous(size)?;
            used = 0;
            BASE.store(base, Ordering::Relaxed);
            SIZE.store(size, Ordering::Relaxed);
        }
        USED.store(used + bytes, Ordering::Relaxed);
        Some(base + used)
    }
}

/// The loader's own list of loaded objects (`_r_debug`), read without its
/// lock and without allocating: for code the table does not know yet.
/// Program headers are read with `process_vm_readv` on ourselves, which
/// fails rather than faults on an address that is not mapped.
mod linkmap {
    use core::ffi::{c_char, c_int, c_void};

    use super::{segments_of, Module};
    use crate::sys;

    #[repr(C)]
    struct LinkMap {
        l_addr: u64,
        l_name: *const c_char,
        l_ld: *const c_void,
        l_next: *const LinkMap,
        l_prev: *const LinkMap,
    }

    #[repr(C)]
    struct RDebug {
        r_version: c_int,
        r_map: *const LinkMap,
        r_brk: u64,
        r_state: c_int,
        r_ldbase: u64,
    }

    extern "C" {
        static _r_debug: RDebug;
    }

    /// Most program headers read per object.
    const MAX_PHDRS: usize = 24;
    /// Most list entries walked (a corrupt list must not loop forever).
    const MAX_OBJECTS: usize = 4096;

    /// The executable segment holding `pc`, from the loader's list.
    #[inline(never)]
    pub fn module_at(pc: u64) -> Option<Module> {
        // The object loaded nearest below `pc` holds it, if any does.
        let mut best: Option<u64> = None;
        // SAFETY: the loader's list of the base namespace: entries are
        // complete before they are linked in, and a dlclose, which frees
        // them, is not running (see `TableHold::module_at`).
        let mut l = unsafe { core::ptr::addr_of!(_r_debug.r_map).read() };
        let mut walked = 0;
        while !l.is_null() && walked < MAX_OBJECTS {
            // SAFETY: as above.
            let (addr, next) = unsafe { ((*l).l_addr, (*l).l_next) };
            if addr != 0 && addr <= pc && best.is_none_or(|b| addr > b) {
                best = Some(addr);
            }
            l = next;
            walked += 1;
        }
        if let Some(base) = best {
            if let Some(m) = segment_at(base, pc) {
                return Some(m);
            }
        }
        main_program_segment_at(pc)
    }

    /// From the ELF header at `bias` (shared objects map their first page
    /// at their bias).
    fn segment_at(bias: u64, pc: u64) -> Option<Module> {
        let mut ehdr = core::mem::MaybeUninit::<libc::Elf64_Ehdr>::zeroed();
        if !sys::read_own(bias, bytes_of(&mut ehdr)) {
            return None;
        }
        // SAFETY: zero-initialised and then filled; any bytes are valid.
        let ehdr = unsafe { ehdr.assume_init() };
        if ehdr.e_ident[..4] != *b"\x7fELF"
            || ehdr.e_phentsize as usize != core::mem::size_of::<libc::Elf64_Phdr>()
        {
            return None;
        }
        segment_from(
            bias,
            bias.checked_add(ehdr.e_phoff)?,
            ehdr.e_phnum as usize,
            pc,
        )
    }

    fn main_program_segment_at(pc: u64) -> Option<Module> {
        // SAFETY: getauxval reads the auxiliary vector; no effects.
        let (phdr, phnum) = unsafe {
            (
                libc::getauxval(libc::AT_PHDR),
                libc::getauxval(libc::AT_PHNUM) as usize,
            )
        };
        if phdr == 0 {
            return None;
        }
        let mut phdrs = [core::mem::MaybeUninit::<libc::Elf64_Phdr>::zeroed(); MAX_PHDRS];
        let n = read_phdrs(phdr, phnum, &mut phdrs)?;
        // The bias: where PT_PHDR says the headers are, against where they are.
        let bias = n
            .iter()
            .find(|ph| ph.p_type == libc::PT_PHDR)
            .map(|ph| phdr.wrapping_sub(ph.p_vaddr))?;
        holding(bias, n, pc)
    }

    fn segment_from(bias: u64, at: u64, phnum: usize, pc: u64) -> Option<Module> {
        let mut phdrs = [core::mem::MaybeUninit::<libc::Elf64_Phdr>::zeroed(); MAX_PHDRS];
        let n = read_phdrs(at, phnum, &mut phdrs)?;
        holding(bias, n, pc)
    }

    fn read_phdrs(
        at: u64,
        phnum: usize,
        buf: &mut [core::mem::MaybeUninit<libc::Elf64_Phdr>; MAX_PHDRS],
    ) -> Option<&[libc::Elf64_Phdr]> {
        let n = phnum.min(MAX_PHDRS);
        let bytes = n * core::mem::size_of::<libc::Elf64_Phdr>();
        // SAFETY: the buffer holds MAX_PHDRS >= n headers' bytes.
        let dst = unsafe { core::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, bytes) };
        if !sys::read_own(at, dst) {
            return None;
        }
        // SAFETY: zero-initialised, then the first `n` filled; any bytes
        // are a valid Elf64_Phdr.
        Some(unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const libc::Elf64_Phdr, n) })
    }

    /// The segment of the object (`bias`, `phdrs`) that holds `pc`.
    fn holding(bias: u64, phdrs: &[libc::Elf64_Phdr], pc: u64) -> Option<Module> {
        let executable = |ph: &&libc::Elf64_Phdr| {
            let start = bias.wrapping_add(ph.p_vaddr);
            ph.p_type == libc::PT_LOAD
                && ph.p_flags & libc::PF_X != 0
                && start <= pc
                && pc < start.wrapping_add(ph.p_memsz)
        };
        phdrs.iter().find(executable)?;
        let mut found = None;
        segments_of(bias, phdrs, |m| {
            if m.start <= pc && pc < m.end {
                found = Some(m);
            }
        });
        found
    }

    fn bytes_of<T>(v: &mut core::mem::MaybeUninit<T>) -> &mut [u8] {
        // SAFETY: the bytes of a MaybeUninit may be written freely.
        unsafe {
            core::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, core::mem::size_of::<T>())
        }
    }
}

/// Finds `.eh_frame` through the pointer in `.eh_frame_hdr`, and bounds it
/// by the end of the loaded segment that holds it.
fn locate_eh_frame(hdr: (u64, u64), bias: u64, phdrs: &[libc::Elf64_Phdr]) -> Option<(u64, u64)> {
    use gimli::{BaseAddresses, EhFrameHdr, LittleEndian, Pointer};
    // SAFETY: PT_GNU_EH_FRAME describes mapped, readable memory of a loaded
    // object, which stays mapped while the loader lock (held by
    // dl_iterate_phdr) is held.
    let bytes = unsafe { core::slice::from_raw_parts(hdr.0 as *const u8, hdr.1 as usize) };
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr.0);
    let parsed = EhFrameHdr::new(bytes, LittleEndian).parse(&bases, 8).ok()?;
    let eh_frame = match parsed.eh_frame_ptr() {
        Pointer::Direct(a) => a,
        Pointer::Indirect(_) => return None,
    };
    let seg = phdrs.iter().find(|ph| {
        let s = bias.wrapping_add(ph.p_vaddr);
        ph.p_type == libc::PT_LOAD && s <= eh_frame && eh_frame < s + ph.p_memsz
    })?;
    let seg_end = bias.wrapping_add(seg.p_vaddr) + seg.p_memsz;
    Some((eh_frame, seg_end - eh_frame))
}
