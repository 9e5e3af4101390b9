//! The table of loaded modules the unwinder consults: where each one's code
//! is, and where its in-memory `.eh_frame_hdr` and `.eh_frame` are.
//!
//! Built with `dl_iterate_phdr` outside the hooks (at init, after `dlopen`,
//! around `dlclose`) and published with one atomic store. The unwinder reads
//! module memory (the CFI) directly, so before `dlclose` unmaps a module we
//! publish a table without it and wait until every unwind that might still
//! use the old table has finished (a two-counter epoch, like RCU's).
//! Replaced tables are leaked: `dlopen` is rare and they are small.

use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

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
    pub modules: Vec<Module>,
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

/// Rebuilds and publishes the table. Call outside hooks only: it
/// allocates and takes the loader's lock.
pub fn rebuild() {
    let mut modules: Vec<Module> = Vec::with_capacity(64);
    // SAFETY: the callback only reads the phdr info the loader hands it,
    // and `modules` outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(collect),
            &mut modules as *mut Vec<Module> as *mut libc::c_void,
        );
    }
    modules.sort_by_key(|m| m.start);
    let table = Box::into_raw(Box::new(ModuleTable {
        modules,
        generation: GENERATION.fetch_add(1, Ordering::Relaxed) + 1,
    }));
    let _ = INITIAL.compare_exchange(
        core::ptr::null_mut(),
        table,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    publish(table);
}

/// Before `dlclose`: fall back to the objects that can never be unloaded,
/// so no unwind reads a module while the loader unmaps it.
pub fn retreat_to_initial() {
    let initial = INITIAL.load(Ordering::SeqCst);
    if !initial.is_null() {
        publish(initial);
    }
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
}

/// Generation of the published table: changes whenever the table does, so
/// per-thread caches know to drop their rules.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the vector `rebuild` passed in.
    let modules = unsafe { &mut *(data as *mut Vec<Module>) };
    // SAFETY: the loader passes a valid info struct for the call.
    let info = unsafe { &*info };
    let bias = info.dlpi_addr;
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
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
            modules.push(Module {
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
    0
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
