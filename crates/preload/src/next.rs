//! The allocator the program actually uses: the next definitions of the
//! malloc family after ours (`dlsym(RTLD_NEXT, …)`), which are glibc's in
//! most programs and jemalloc's, tcmalloc's or mimalloc's in programs
//! linked with one or started with one in `LD_PRELOAD`. Handing a program
//! glibc's blocks when it frees them with jemalloc's `free` (or asks
//! jemalloc's `malloc_usable_size` about them) crashes it.
//!
//! Resolved once, by the first hooked call (often a library constructor's,
//! before our own), outside the record path. `dlsym` itself may allocate
//! (its error state): the resolving thread's nested calls are served from a
//! small static buffer, whose blocks `free` recognises and ignores. Other
//! threads wait for the resolution (it takes microseconds).
//!
//! A function the allocator does not define itself (jemalloc has no
//! `pvalloc`) would resolve to glibc's, whose blocks the allocator cannot
//! free: such functions are built from the allocator's `memalign` instead.

use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::sys;

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
}

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type MemalignFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
/// jemalloc's `mallocx(size, flags)`.
pub type MallocxFn = unsafe extern "C" fn(usize, c_int) -> *mut c_void;
/// jemalloc's `rallocx(ptr, size, flags)`.
pub type RallocxFn = unsafe extern "C" fn(*mut c_void, usize, c_int) -> *mut c_void;
/// jemalloc's `xallocx(ptr, size, extra, flags)`.
pub type XallocxFn = unsafe extern "C" fn(*mut c_void, usize, usize, c_int) -> usize;
/// jemalloc's `dallocx(ptr, flags)`.
pub type DallocxFn = unsafe extern "C" fn(*mut c_void, c_int);
/// jemalloc's `sdallocx(ptr, size, flags)`.
pub type SdallocxFn = unsafe extern "C" fn(*mut c_void, usize, c_int);

/// One resolved function: its address, 0 until resolved (or when the
/// allocator has none).
pub struct Slot(AtomicUsize);

impl Slot {
    const fn new() -> Self {
        Slot(AtomicUsize::new(0))
    }

    /// The address, resolving every slot first if needed.
    #[inline]
    pub fn get(&self) -> usize {
        let f = self.0.load(Ordering::Acquire);
        if f != 0 {
            return f;
        }
        resolve();
        self.0.load(Ordering::Acquire)
    }
}

static MALLOC: Slot = Slot::new();
static CALLOC: Slot = Slot::new();
static REALLOC: Slot = Slot::new();
static FREE: Slot = Slot::new();
static MEMALIGN: Slot = Slot::new();
static POSIX_MEMALIGN: Slot = Slot::new();
static ALIGNED_ALLOC: Slot = Slot::new();
static VALLOC: Slot = Slot::new();
static PVALLOC: Slot = Slot::new();
/// The allocator's `malloc_usable_size` (0 if it has none of its own): what
/// sampling counts an unsampled block by, at its allocation and its free.
static USABLE_SIZE: Slot = Slot::new();
/// jemalloc's extended API; 0 in programs without it.
pub static MALLOCX: Slot = Slot::new();
/// See [`MALLOCX`].
pub static RALLOCX: Slot = Slot::new();
/// See [`MALLOCX`].
pub static XALLOCX: Slot = Slot::new();
/// See [`MALLOCX`].
pub static DALLOCX: Slot = Slot::new();
/// See [`MALLOCX`].
pub static SDALLOCX: Slot = Slot::new();

const UNRESOLVED: u32 = 0;
const RESOLVING: u32 = 1;
const RESOLVED: u32 = 2;
static STATE: AtomicU32 = AtomicU32::new(UNRESOLVED);
static RESOLVER: AtomicU32 = AtomicU32::new(0);

/// The file that defines the program's `malloc`, NUL-terminated as the
/// loader keeps it; empty until resolved or when unknown.
static ALLOCATOR_PATH: AtomicUsize = AtomicUsize::new(0);
/// The base address of that file, 0 until resolved or when unknown.
static HOME: AtomicUsize = AtomicUsize::new(0);

/// Resolves every slot, once. Returns at once in the resolving thread's
/// own nested calls (they use [`bootstrap`]); other threads wait.
#[cold]
pub fn resolve() {
    let me = sys::gettid();
    match STATE.compare_exchange(UNRESOLVED, RESOLVING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            RESOLVER.store(me, Ordering::Release);
            resolve_all();
            STATE.store(RESOLVED, Ordering::Release);
        }
        Err(RESOLVED) => {}
        Err(_) if RESOLVER.load(Ordering::Acquire) == me => {}
        Err(_) => {
            while STATE.load(Ordering::Acquire) != RESOLVED {
                sys::yield_now();
            }
        }
    }
}

/// Set when `leaktrail attach` loaded us with `dlopen`: we are then not
/// in the global scope, and the program's functions are its global
/// definitions (`RTLD_DEFAULT`); `RTLD_NEXT` would search after an object
/// that is not in that list.
static LOADED_LATE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Looks the real functions up in the global scope from now on; call
/// before [`resolve`] when the library was loaded with `dlopen`.
pub fn loaded_late() {
    LOADED_LATE.store(true, Ordering::Release);
}

/// Set when the executable defines `malloc` itself (an allocator linked
/// into it, which exports it because libc refers to it): it comes before us
/// in the search order, so the program's allocator is its global
/// definitions, and `RTLD_NEXT` would find glibc's. A function it lacks
/// (jemalloc has no `reallocarray`) reaches our hook, which must hand the
/// program's own allocator's blocks back, not glibc's (freed by jemalloc's
/// `free`, they crashed the program).
static EXECUTABLE_FIRST: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Whether the executable defines the program's `malloc` (see
/// [`EXECUTABLE_FIRST`]), once resolved.
pub fn malloc_in_executable() -> bool {
    EXECUTABLE_FIRST.load(Ordering::Acquire)
}

/// The `dlsym` handle that finds the definitions the program would use
/// without us.
pub fn handle() -> *mut c_void {
    if LOADED_LATE.load(Ordering::Acquire) {
        libc::RTLD_DEFAULT
    } else {
        libc::RTLD_NEXT
    }
}

/// The next definition of the allocator's function `name`: the
/// executable's when it defines `malloc` and `name` ([`EXECUTABLE_FIRST`]),
/// else [`lookup`]'s. Never the global scope's otherwise: that would be
/// ours, calling itself.
fn lookup_allocator(name: &CStr) -> usize {
    if EXECUTABLE_FIRST.load(Ordering::Acquire) {
        // SAFETY: as in `lookup`.
        let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize };
        if defined_in_executable(name, global) {
            return global;
        }
    }
    lookup(name)
}

/// Whether `f`, the global address of `name`, is the executable's own
/// definition. Not merely an address in it: a non-PIE executable that
/// takes `malloc`'s address (node) makes its PLT entry the canonical
/// address, which `dlsym` returns and which calls us, and its dynamic
/// symbol `malloc` is undefined with that value (`dladdr` names it too):
/// the symbol must have a section.
fn defined_in_executable(name: &CStr, f: usize) -> bool {
    executable_symbol_size(name, f).is_some()
}

/// The size of the executable's own definition of `name` at `f` (see
/// [`defined_in_executable`]), `None` when `f` is not that.
fn executable_symbol_size(name: &CStr, f: usize) -> Option<usize> {
    extern "C" {
        fn dladdr1(
            addr: *const c_void,
            info: *mut libc::Dl_info,
            extra: *mut *const libc::Elf64_Sym,
            flags: c_int,
        ) -> c_int;
    }
    const RTLD_DL_SYMENT: c_int = 1;
    if f == 0 {
        return None;
    }
    // SAFETY: an all-zero Dl_info is a valid out-value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    let mut sym: *const libc::Elf64_Sym = core::ptr::null();
    // SAFETY: dladdr1 only reads the loader's tables and fills `info` and
    // `sym` (a pointer into the object's symbol table).
    if unsafe { dladdr1(f as *const c_void, &mut info, &mut sym, RTLD_DL_SYMENT) } == 0
        || info.dli_sname.is_null()
        || info.dli_saddr as usize != f
        || sym.is_null()
        // SAFETY: the object's symbol, valid while it is loaded.
        || unsafe { (*sym).st_shndx } == 0
    {
        return None;
    }
    // SAFETY: the loader's NUL-terminated symbol name.
    let sname = unsafe { CStr::from_ptr(info.dli_sname) };
    // SAFETY: getauxval only reads the auxiliary vector.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as usize;
    // SAFETY: as above.
    let size = unsafe { (*sym).st_size } as usize;
    (sname == name && base_of(phdr) == Some(info.dli_fbase as usize)).then_some(size)
}

/// Set when the executable's allocator (see [`EXECUTABLE_FIRST`]) was
/// diverted to our hooks, every function of it that the program can call
/// ([`divert_executables_allocator`]).
static DIVERTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The entries [`divert_executables_allocator`] diverted (0 where none).
static DIVERTED_ENTRIES: [AtomicUsize; 15] = [const { AtomicUsize::new(0) }; 15];

/// The executable's malloc-family functions diverted to our hooks (their
/// original addresses; none unless [`malloc_bypasses_us`] is false in a
/// program whose executable defines `malloc`): code that calls one of them
/// is recorded there.
pub fn diverted_entries() -> [u64; 15] {
    core::array::from_fn(|i| DIVERTED_ENTRIES[i].load(Ordering::Acquire) as u64)
}

/// Whether the program's allocator bypasses the tracer: its executable
/// defines `malloc` and its entries could not be diverted to our hooks.
pub fn malloc_bypasses_us() -> bool {
    malloc_in_executable() && !DIVERTED.load(Ordering::Acquire)
}

/// Diverts the executable's own allocator to our hooks
/// ([`crate::detour`]): every function of the malloc family it defines,
/// or none. Its slots then hold the trampolines, which run its code as it
/// was. All or none, because a `malloc` recorded without its `free`
/// would make every block a false leak.
fn divert_executables_allocator() {
    use crate::hooks;
    let functions: [(Option<&Slot>, &CStr, usize); 15] = [
        (
            Some(&MALLOC),
            c"malloc",
            hooks::malloc as *const () as usize,
        ),
        (
            Some(&CALLOC),
            c"calloc",
            hooks::calloc as *const () as usize,
        ),
        (
            Some(&REALLOC),
            c"realloc",
            hooks::realloc as *const () as usize,
        ),
        (Some(&FREE), c"free", hooks::free as *const () as usize),
        (
            Some(&MEMALIGN),
            c"memalign",
            hooks::memalign as *const () as usize,
        ),
        (
            Some(&POSIX_MEMALIGN),
            c"posix_memalign",
            hooks::posix_memalign as *const () as usize,
        ),
        (
            Some(&ALIGNED_ALLOC),
            c"aligned_alloc",
            hooks::aligned_alloc as *const () as usize,
        ),
        (
            Some(&VALLOC),
            c"valloc",
            hooks::valloc as *const () as usize,
        ),
        (
            Some(&PVALLOC),
            c"pvalloc",
            hooks::pvalloc as *const () as usize,
        ),
        // Ours is built on `realloc`: the allocator's is never called.
        (
            None,
            c"reallocarray",
            hooks::reallocarray as *const () as usize,
        ),
        (
            Some(&MALLOCX),
            c"mallocx",
            hooks::mallocx as *const () as usize,
        ),
        (
            Some(&RALLOCX),
            c"rallocx",
            hooks::rallocx as *const () as usize,
        ),
        (
            Some(&XALLOCX),
            c"xallocx",
            hooks::xallocx as *const () as usize,
        ),
        (
            Some(&DALLOCX),
            c"dallocx",
            hooks::dallocx as *const () as usize,
        ),
        (
            Some(&SDALLOCX),
            c"sdallocx",
            hooks::sdallocx as *const () as usize,
        ),
    ];
    // The executable's definition of each, and its code.
    let mut code: [Option<&[u8]>; 15] = [None; 15];
    for (i, &(_, name, _)) in functions.iter().enumerate() {
        match executable_function(name) {
            Some(Ok(f)) => code[i] = Some(f),
            Some(Err(())) => return,
            None => {}
        }
    }
    let Some(malloc) = code[0] else {
        return;
    };
    let Some(mut island) = crate::detour::Island::near(malloc.as_ptr() as u64) else {
        return;
    };
    let mut all = true;
    // (entry, trampoline) of each function diverted: an allocator may
    // define two names at one address (tcmalloc's `memalign` and
    // `aligned_alloc`), diverted once.
    let mut done = [(0u64, 0u64); 15];
    for (i, (&(slot, _, hook), code)) in functions.iter().zip(code).enumerate() {
        let Some(code) = code else {
            continue;
        };
        let ip = code.as_ptr() as u64;
        DIVERTED_ENTRIES[i].store(ip as usize, Ordering::Relaxed);
        if let Some(&(_, trampoline)) = done.iter().find(|&&(e, _)| e == ip) {
            if let Some(slot) = slot {
                slot.0.store(trampoline as usize, Ordering::Release);
            }
            continue;
        }
        // SAFETY: the executable's function, whole (its symbol's size,
        // inside its mapping), before `main`: see `detour`'s docs.
        let diverted = unsafe {
            island.divert(code, ip, hook as u64, |trampoline| {
                if let Some(slot) = slot {
                    slot.0.store(trampoline as usize, Ordering::Release);
                }
            })
        };
        match diverted {
            Ok(trampoline) => done[i] = (ip, trampoline),
            Err(_) => {
                // The island's room or a write failed: those diverted
                // before run our hooks, which forward through their
                // trampolines, and the tracer records nothing (see
                // `malloc_bypasses_us`).
                all = false;
                break;
            }
        }
    }
    // A slot that took another function's entry as its fallback (the
    // allocator's `memalign` for a missing `aligned_alloc`) must go
    // through that function's trampoline, not its diverted entry.
    for slot in [
        &MALLOC,
        &CALLOC,
        &REALLOC,
        &FREE,
        &MEMALIGN,
        &POSIX_MEMALIGN,
        &ALIGNED_ALLOC,
        &VALLOC,
        &PVALLOC,
        &MALLOCX,
        &RALLOCX,
        &XALLOCX,
        &DALLOCX,
        &SDALLOCX,
    ] {
        let f = slot.0.load(Ordering::Acquire) as u64;
        if let Some(&(_, trampoline)) = done.iter().find(|&&(e, _)| e != 0 && e == f) {
            slot.0.store(trampoline as usize, Ordering::Release);
        }
    }
    island.seal();
    DIVERTED.store(all, Ordering::Release);
}

/// The address of the executable's own definition of `name`, if it
/// defines it.
pub fn executable_address(name: &CStr) -> Option<u64> {
    // SAFETY: dlsym with a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    executable_symbol_size(name, f).map(|_| f as u64)
}

/// The code of the executable's own definition of `name` (its symbol's
/// size, at its address), if it defines it: `Ok` when its entry can be
/// diverted ([`crate::detour::Entry::plan`]), `Err` when not.
pub fn executable_function(name: &CStr) -> Option<Result<&'static [u8], ()>> {
    // SAFETY: dlsym with a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    let size = executable_symbol_size(name, f)?;
    let readable = crate::selfmaps::mapping_containing(f as u64)
        .is_some_and(|(_, end)| (f as u64).saturating_add(size as u64) <= end);
    if !readable {
        return Some(Err(()));
    }
    // SAFETY: `[f, f+size)` lies in one mapping: the executable's text,
    // mapped for the program's life.
    let code = unsafe { core::slice::from_raw_parts(f as *const u8, size) };
    Some(
        crate::detour::Entry::plan(code, f as u64)
            .map(|_| code)
            .map_err(|_| ()),
    )
}

/// Whether the program's global definition of `name` is not `ours` but the
/// executable's: it comes before us in the search order, and no call to
/// `name` reaches us.
pub fn executable_defines(name: &CStr, ours: usize) -> bool {
    // SAFETY: dlsym with a NUL-terminated name; nested allocations in this
    // thread are served by the bootstrap buffer.
    let global = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    global != ours && defined_in_executable(name, global)
}

/// The load base of the object containing `addr`.
fn base_of(addr: usize) -> Option<usize> {
    // SAFETY: an all-zero Dl_info is a valid out-value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    (unsafe { libc::dladdr(addr as *const c_void, &mut info) } != 0)
        .then_some(info.dli_fbase as usize)
}

/// The next definition of `name` (see [`handle`]), 0 if there is none.
pub fn lookup(name: &CStr) -> usize {
    // SAFETY: dlsym with a NUL-terminated name; nested allocations in this
    // thread are served by the bootstrap buffer.
    unsafe { libc::dlsym(handle(), name.as_ptr()) as usize }
}

/// The base address of the object defining `f`, 0 if unknown.
fn owner(f: usize) -> usize {
    if f == 0 {
        return 0;
    }
    // SAFETY: an all-zero Dl_info is a valid out-value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(f as *const c_void, &mut info) } == 0 {
        return 0;
    }
    if !info.dli_fname.is_null() {
        ALLOCATOR_PATH
            .compare_exchange(
                0,
                info.dli_fname as usize,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok();
    }
    info.dli_fbase as usize
}

fn resolve_all() {
    if !LOADED_LATE.load(Ordering::Acquire)
        && executable_defines(c"malloc", crate::hooks::malloc as *const () as usize)
    {
        EXECUTABLE_FIRST.store(true, Ordering::Release);
    }
    let malloc = lookup_allocator(c"malloc");
    let (calloc, realloc, free) = (
        lookup_allocator(c"calloc"),
        lookup_allocator(c"realloc"),
        lookup_allocator(c"free"),
    );
    if malloc == 0 || calloc == 0 || realloc == 0 || free == 0 {
        // No next definition (we are the only malloc?): glibc's own.
        store_glibc();
        return;
    }
    let home = owner(malloc);
    HOME.store(home, Ordering::Release);
    // The allocator's own definition of `name`, or `fallback`.
    let own = |name: &CStr, fallback: usize| {
        let f = lookup_allocator(name);
        if f != 0 && home != 0 && owner(f) == home {
            f
        } else {
            fallback
        }
    };
    let memalign = own(c"memalign", memalign_from_posix as *const () as usize);
    MEMALIGN.0.store(memalign, Ordering::Release);
    POSIX_MEMALIGN.0.store(
        own(
            c"posix_memalign",
            posix_memalign_from_memalign as *const () as usize,
        ),
        Ordering::Release,
    );
    ALIGNED_ALLOC
        .0
        .store(own(c"aligned_alloc", memalign), Ordering::Release);
    VALLOC.0.store(
        own(c"valloc", valloc_from_memalign as *const () as usize),
        Ordering::Release,
    );
    PVALLOC.0.store(
        own(c"pvalloc", pvalloc_from_memalign as *const () as usize),
        Ordering::Release,
    );
    USABLE_SIZE
        .0
        .store(own(c"malloc_usable_size", 0), Ordering::Release);
    for (slot, name) in [
        (&MALLOCX, c"mallocx"),
        (&RALLOCX, c"rallocx"),
        (&XALLOCX, c"xallocx"),
        (&DALLOCX, c"dallocx"),
        (&SDALLOCX, c"sdallocx"),
    ] {
        slot.0.store(own(name, 0), Ordering::Release);
    }
    CALLOC.0.store(calloc, Ordering::Release);
    REALLOC.0.store(realloc, Ordering::Release);
    FREE.0.store(free, Ordering::Release);
    MALLOC.0.store(malloc, Ordering::Release);
    // (`LEAKTRAIL_DISABLE=1`: loaded, recording nothing, the program's
    // code left as it is.)
    if EXECUTABLE_FIRST.load(Ordering::Acquire)
        && crate::tracer::env(leaktrail_format::handover::DISABLE) != Some(b"1")
    {
        divert_executables_allocator();
    }
}

fn store_glibc() {
    for (slot, f) in [
        (&MEMALIGN, __libc_memalign as *const () as usize),
        (
            &POSIX_MEMALIGN,
            posix_memalign_from_memalign as *const () as usize,
        ),
        (&ALIGNED_ALLOC, __libc_memalign as *const () as usize),
        (&VALLOC, valloc_from_memalign as *const () as usize),
        (&PVALLOC, pvalloc_from_memalign as *const () as usize),
        (&USABLE_SIZE, libc::malloc_usable_size as *const () as usize),
        (&CALLOC, __libc_calloc as *const () as usize),
        (&REALLOC, __libc_realloc as *const () as usize),
        (&FREE, __libc_free as *const () as usize),
        (&MALLOC, __libc_malloc as *const () as usize),
    ] {
        slot.0.store(f, Ordering::Release);
    }
}

/// The path of the file defining the program's `malloc` (for example
/// `/usr/lib/x86_64-linux-gnu/libjemalloc.so.2`), once resolved.
pub fn allocator_path() -> Option<&'static CStr> {
    let p = ALLOCATOR_PATH.load(Ordering::Acquire);
    // SAFETY: the loader's NUL-terminated name of a loaded object, which
    // lives as long as the object (the allocator is never unloaded).
    (p != 0).then(|| unsafe { CStr::from_ptr(p as *const core::ffi::c_char) })
}

/// The range of the allocator's file's mappings and of ours, `(0, 0)`
/// until found.
static TEXT: [(AtomicUsize, AtomicUsize); 2] = [
    (AtomicUsize::new(0), AtomicUsize::new(0)),
    (AtomicUsize::new(0), AtomicUsize::new(0)),
];

/// The addresses the file defining the program's `malloc` is mapped at
/// (first to last mapping), found once from our maps; `(0, 0)` when
/// unknown. For telling the allocator's calls to its own entry points
/// from the program's on the hook path.
pub fn allocator_text() -> (u64, u64) {
    text(0, HOME.load(Ordering::Acquire) as u64)
}

/// The addresses our own library is mapped at (see [`allocator_text`]):
/// a call from there is one of our hooks forwarding (a tail call through
/// the allocator's PLT keeps our return address).
pub fn own_text() -> (u64, u64) {
    text(1, own_text as *const () as u64)
}

/// The range of the mappings of the file mapped at `inside`, cached in
/// `TEXT[which]`.
fn text(which: usize, inside: u64) -> (u64, u64) {
    let (lo_slot, hi_slot) = &TEXT[which];
    let end = hi_slot.load(Ordering::Acquire);
    if end != 0 {
        return (lo_slot.load(Ordering::Relaxed) as u64, end as u64);
    }
    if inside == 0 {
        return (0, 0);
    }
    // The file's mappings, by the name the kernel gives the one holding
    // `inside` (the loader's name may be a symlink's).
    let mut name = [0u8; 256];
    let mut name_len = 0;
    let (mut lo, mut hi) = (u64::MAX, 0);
    crate::selfmaps::for_each_mapping(|start, end, line| {
        if name_len == 0 && start <= inside && inside < end {
            if let Some(at) = line.iter().position(|&b| b == b'/') {
                let path = &line[at..];
                if path.len() <= name.len() {
                    name[..path.len()].copy_from_slice(path);
                    name_len = path.len();
                }
            }
        }
        let path = line.iter().position(|&b| b == b'/').map(|at| &line[at..]);
        if name_len != 0 && path == Some(&name[..name_len]) {
            lo = lo.min(start);
            hi = hi.max(end);
        }
        true
    });
    if hi == 0 {
        // Not mapped under a name (never seen): an empty range, found.
        (lo, hi) = (1, 1);
    }
    lo_slot.store(lo as usize, Ordering::Relaxed);
    hi_slot.store(hi as usize, Ordering::Release);
    (lo, hi)
}

/// Whether `f` is defined by the file that defines the program's
/// `malloc` (see [`allocator_path`]). Takes the loader's lock (`dladdr`):
/// not for the record path.
pub fn defined_by_allocator(f: usize) -> bool {
    let home = HOME.load(Ordering::Acquire);
    home != 0 && owner(f) == home
}

/// Whether resolution happened and the program's allocator is glibc's.
pub fn is_glibc() -> bool {
    allocator_path().is_none_or(|p| {
        let b = p.to_bytes();
        b.ends_with(b"/libc.so.6") || b == b"libc.so.6"
    })
}

macro_rules! forward {
    ($slot:expr, $ty:ty, $fallback:expr, ($($arg:expr),*)) => {{
        let f = $slot.get();
        if f == 0 {
            $fallback
        } else {
            // SAFETY: the slot holds the allocator's function of this type.
            let f: $ty = unsafe { core::mem::transmute::<usize, $ty>(f) };
            // SAFETY: forwarding the caller's arguments.
            unsafe { f($($arg),*) }
        }
    }};
}

/// The allocator's `malloc`.
#[inline]
pub fn malloc(size: usize) -> *mut c_void {
    forward!(MALLOC, MallocFn, bootstrap::alloc(size), (size))
}

/// The allocator's `calloc`.
#[inline]
pub fn calloc(n: usize, size: usize) -> *mut c_void {
    // The bootstrap buffer is zeroed and never reused.
    forward!(
        CALLOC,
        CallocFn,
        n.checked_mul(size)
            .map_or(core::ptr::null_mut(), bootstrap::alloc),
        (n, size)
    )
}

/// The allocator's `realloc`.
///
/// # Safety
/// `p` is a live block of the allocator (not a bootstrap block).
#[inline]
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    forward!(REALLOC, ReallocFn, core::ptr::null_mut(), (p, size))
}

/// The allocator's `free`.
///
/// # Safety
/// `p` is a live block of the allocator (not a bootstrap block).
#[inline]
pub unsafe fn free(p: *mut c_void) {
    forward!(FREE, FreeFn, (), (p))
}

/// The allocator's `memalign`.
#[inline]
pub fn memalign(align: usize, size: usize) -> *mut c_void {
    forward!(MEMALIGN, MemalignFn, core::ptr::null_mut(), (align, size))
}

/// The allocator's `posix_memalign`.
///
/// # Safety
/// `out` is valid for a write.
#[inline]
pub unsafe fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    forward!(
        POSIX_MEMALIGN,
        PosixMemalignFn,
        libc::ENOMEM,
        (out, align, size)
    )
}

/// The allocator's `aligned_alloc`.
#[inline]
pub fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    forward!(
        ALIGNED_ALLOC,
        MemalignFn,
        core::ptr::null_mut(),
        (align, size)
    )
}

/// The allocator's `valloc`.
#[inline]
pub fn valloc(size: usize) -> *mut c_void {
    forward!(VALLOC, MallocFn, core::ptr::null_mut(), (size))
}

/// The allocator's `pvalloc`.
#[inline]
pub fn pvalloc(size: usize) -> *mut c_void {
    forward!(PVALLOC, MallocFn, core::ptr::null_mut(), (size))
}

/// Set once the allocator is known to be glibc's ([`crate::allocator`]):
/// [`usable_size`] then reads the block's chunk header itself.
static GLIBC_CHUNKS: AtomicBool = AtomicBool::new(false);

/// The allocator is glibc's malloc: its blocks' usable sizes can be read
/// from their chunk headers.
pub fn read_glibc_chunks() {
    GLIBC_CHUNKS.store(true, Ordering::Release);
}

/// What glibc's `malloc_usable_size` returns for the live block `p` on
/// x86-64 (no memory tags), without the call and without its check of the
/// next chunk's in-use bit (a live block is in use), which is a second
/// cache line: the chunk's size is the word before the block, its low
/// three bits flags; an mmapped chunk has a 16-byte header, a heap chunk's
/// block also owns the next chunk's first word.
///
/// # Safety
/// `p` is a live block of glibc's malloc.
#[inline]
unsafe fn glibc_usable_size(p: u64) -> u64 {
    const IS_MMAPPED: u64 = 2;
    // SAFETY: the 8 bytes before a live block are its chunk's size field.
    let field = unsafe { core::ptr::read((p as *const u64).wrapping_sub(1)) };
    let size = field & !7;
    if field & IS_MMAPPED != 0 {
        size.saturating_sub(16)
    } else {
        size.saturating_sub(8)
    }
}

/// The allocator's usable size of the live block `p`; 0 when the allocator
/// has no `malloc_usable_size` of its own.
#[inline]
pub fn usable_size(p: u64) -> u64 {
    if GLIBC_CHUNKS.load(Ordering::Relaxed) {
        // SAFETY: the allocator is glibc's and `p` one of its live blocks.
        return unsafe { glibc_usable_size(p) };
    }
    type UsableFn = unsafe extern "C" fn(*mut c_void) -> usize;
    // A plain load, not `Slot::get`: the block exists, so its allocation
    // resolved every slot, and a slot left 0 would re-enter `resolve`.
    let f = USABLE_SIZE.0.load(Ordering::Acquire);
    if f == 0 {
        return 0;
    }
    // SAFETY: the slot holds the allocator's malloc_usable_size.
    let f: UsableFn = unsafe { core::mem::transmute::<usize, UsableFn>(f) };
    // SAFETY: `p` is a live block of that allocator.
    unsafe { f(p as *mut c_void) as u64 }
}

/// The address of the jemalloc function in `slot`; `None` if the program
/// has none.
#[inline]
pub fn extended(slot: &Slot) -> Option<usize> {
    let f = slot.get();
    (f != 0).then_some(f)
}

const PAGE: usize = 4096;

unsafe extern "C" fn memalign_from_posix(align: usize, size: usize) -> *mut c_void {
    let mut p = core::ptr::null_mut();
    // memalign accepts any power of two; posix_memalign wants at least a
    // pointer's alignment.
    let align = align.max(core::mem::size_of::<usize>());
    let f = POSIX_MEMALIGN.0.load(Ordering::Acquire);
    if f == 0 || f == posix_memalign_from_memalign as *const () as usize {
        return core::ptr::null_mut();
    }
    // SAFETY: `f` is the allocator's posix_memalign.
    let f: PosixMemalignFn = unsafe { core::mem::transmute::<usize, PosixMemalignFn>(f) };
    // SAFETY: `p` is a valid out-pointer.
    if unsafe { f(&mut p, align, size) } != 0 {
        sys::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    }
    p
}

unsafe extern "C" fn posix_memalign_from_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    let p = memalign(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a valid out-pointer.
    unsafe { *out = p };
    0
}

unsafe extern "C" fn valloc_from_memalign(size: usize) -> *mut c_void {
    memalign(PAGE, size)
}

unsafe extern "C" fn pvalloc_from_memalign(size: usize) -> *mut c_void {
    match size.max(1).checked_next_multiple_of(PAGE) {
        Some(n) => memalign(PAGE, n),
        None => {
            sys::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// The static buffer that serves the resolving thread's nested
/// allocations (`dlsym`'s). Never freed, never reused.
pub mod bootstrap {
    use core::cell::UnsafeCell;
    use core::ffi::c_void;
    use core::sync::atomic::{AtomicUsize, Ordering};

    const BYTES: usize = 16 * 1024;

    #[repr(C, align(16))]
    struct Buffer(UnsafeCell<[u8; BYTES]>);

    // SAFETY: disjoint pieces are handed out by an atomic cursor.
    unsafe impl Sync for Buffer {}

    static BUFFER: Buffer = Buffer(UnsafeCell::new([0; BYTES]));
    static USED: AtomicUsize = AtomicUsize::new(0);

    /// A zeroed piece of the buffer, or null when it is used up.
    pub fn alloc(size: usize) -> *mut c_void {
        let Some(n) = size.max(1).checked_next_multiple_of(16) else {
            return core::ptr::null_mut();
        };
        let at = USED.fetch_add(n, Ordering::Relaxed);
        if at.checked_add(n).is_none_or(|end| end > BYTES) {
            return core::ptr::null_mut();
        }
        // SAFETY: `[at, at+n)` lies inside the buffer and is ours alone.
        unsafe { (BUFFER.0.get() as *mut u8).add(at) as *mut c_void }
    }

    /// Whether `p` came from the buffer.
    #[inline]
    pub fn owns(p: *mut c_void) -> bool {
        let start = BUFFER.0.get() as usize;
        (p as usize).wrapping_sub(start) < BYTES
    }

    /// The bytes from `p` (a block of the buffer) to the buffer's end: an
    /// upper bound of its size, for copying it out on `realloc`.
    pub fn bytes_after(p: *mut c_void) -> usize {
        BYTES - (p as usize - BUFFER.0.get() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_usable_sizes_are_read_from_the_chunk_as_glibc_computes_them() {
        let mut blocks = Vec::new();
        for size in (0..3000).step_by(7).chain([131_072, 200_000, 1 << 22]) {
            // SAFETY: plain glibc allocations, freed below.
            blocks.push(unsafe { libc::malloc(size) });
            // SAFETY: as above.
            blocks.push(unsafe { libc::calloc(1, size) });
        }
        for (align, size) in [(64, 100), (4096, 5000), (1 << 16, 300_000)] {
            // SAFETY: as above.
            blocks.push(unsafe { libc::memalign(align, size) });
        }
        let mut mmapped = 0;
        for &p in &blocks {
            assert!(!p.is_null());
            // SAFETY: `p` is a live glibc block.
            let ours = unsafe { glibc_usable_size(p as u64) };
            // SAFETY: as above.
            let glibc = unsafe { libc::malloc_usable_size(p) } as u64;
            assert_eq!(ours, glibc, "{p:p}");
            // SAFETY: as above; the size word says whether it was mmapped.
            mmapped += (unsafe { *(p as *const u64).sub(1) } & 2 != 0) as u32;
        }
        assert!(mmapped >= 4, "the large blocks were mmapped");
        for p in blocks {
            // SAFETY: each block once.
            unsafe { libc::free(p) };
        }
    }
}
