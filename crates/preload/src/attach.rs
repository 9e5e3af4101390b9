//! Loaded late, into a running process, by `leaktrail attach` (issue 12).
//!
//! `leaktrail attach` makes the target call its own `dlopen` on this
//! library (through ptrace), then [`leaktrail_attach`] with an
//! [`AttachSpec`]. No `LD_PRELOAD` put our hooks first in the symbol search
//! order, so every module keeps calling the allocator it bound to; we
//! redirect the calls instead, in each loaded module's GOT: the
//! `R_X86_64_JUMP_SLOT` (PLT) and `R_X86_64_GLOB_DAT` (`-fno-plt`, address
//! taken) entries of the malloc family, C++'s allocation operators,
//! `dlopen` and `dlclose`, found from
//! the module's dynamic section in memory (`dl_iterate_phdr`). The hooks
//! are the same functions `LD_PRELOAD` interposes ([`crate::hooks`]); the
//! real functions are the program's global definitions
//! ([`crate::next::handle`]). A module loaded later goes through our
//! `dlopen`, which patches it too. Function pointers stored in the
//! program's own data (`void *(*f)(size_t) = malloc;` initialised by an
//! `R_X86_64_64` relocation) are not changed: they are the program's data.
//!
//! Each entry's old value is kept; [`leaktrail_detach`] writes it back,
//! stops recording and closes the link. The library stays loaded and
//! idle: `dlclose` is not safe while a thread may still be inside a hook,
//! or hold a pointer we handed out through a GOT it read before the
//! restore. A second attach finds it loaded (`dlopen` returns the same
//! handle) and starts again with an empty live table (frees went by
//! unseen meanwhile).
//!
//! Blocks from before the attach are not in the audit: their `free` finds
//! nothing, is counted (`unknown_frees`) and goes to the real `free`; the
//! analyses take them from the heap walk, as "before attach".
//!
//! A GOT entry is one aligned word, so a thread calling through it while we
//! write sees the old or the new function, both valid. Entries inside
//! `PT_GNU_RELRO` (all of them with `-z now`) are on read-only pages: the
//! page is made writable for the store and read-only again. None of this
//! runs on the hook path: it runs in the thread `leaktrail attach` borrowed,
//! and in our `dlopen`.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use leaktrail_format::handover::{self, AttachSpec, ExitNotice, Notice};
use leaktrail_format::{Lifecycle, UnwindMode, MAX_DEPTH};

use crate::{hooks, region, sys, thread, tracer, unwind};

/// The file name every copy of the tracer has.
const OUR_NAME: &[u8] = b"libleaktrail_preload";

/// Whether we were loaded by `dlopen` rather than `LD_PRELOAD`: the
/// environment does not name our file (`leaktrail run` puts its path
/// there). Our file, not our usual name: a copy of the library under
/// another name was taken for a late one, looked `__libc_start_main` up
/// in the global scope, found itself and called itself for ever. (Not by
/// a `dlsym(RTLD_DEFAULT)` of our own symbol: from our library it searches
/// our local scope too, and finds us loaded late as well.)
pub fn loaded_late() -> bool {
    // SAFETY: NUL-terminated name; getenv neither allocates nor locks.
    let p = unsafe { libc::getenv(c"LD_PRELOAD".as_ptr()) };
    if p.is_null() {
        return true;
    }
    // SAFETY: getenv returns a NUL-terminated string.
    let preload = unsafe { CStr::from_ptr(p) }.to_bytes();
    let Some(ours) = our_file() else {
        return !contains(preload, OUR_NAME);
    };
    // The loader splits the list at spaces and colons, and keeps each
    // entry as given as the object's name.
    !preload
        .split(|&c| c == b':' || c == b' ')
        .any(|entry| !entry.is_empty() && (entry == ours || base_name(entry) == base_name(ours)))
}

/// Our library's file name, as the loader keeps it.
fn our_file() -> Option<&'static [u8]> {
    // SAFETY: an all-zero Dl_info is a valid out-value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    let ours = loaded_late as *const () as *const c_void;
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(ours, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: the loader's NUL-terminated name of our object, which lives
    // as long as we do.
    Some(unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes())
}

fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&c| c == b'/').next().unwrap_or(path)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One redirected GOT entry.
struct Patch {
    slot: AtomicU64,
    original: AtomicU64,
    /// The entry's page is read-only (RELRO) between our writes.
    relro: AtomicBool,
}

const MAX_PATCHES: usize = 4096;

static PATCHES: [Patch; MAX_PATCHES] = [const {
    Patch {
        slot: AtomicU64::new(0),
        original: AtomicU64::new(0),
        relro: AtomicBool::new(false),
    }
}; MAX_PATCHES];
static PATCHED: AtomicUsize = AtomicUsize::new(0);
/// Entries we had no room to remember (so did not change).
static SKIPPED: AtomicUsize = AtomicUsize::new(0);
/// Whether the GOTs point at us now.
static ATTACHED: AtomicBool = AtomicBool::new(false);
/// Serialises patching (attach, our `dlopen` in any thread, detach).
static PATCHING: AtomicBool = AtomicBool::new(false);

fn lock_patching() {
    while PATCHING.swap(true, Ordering::Acquire) {
        sys::yield_now();
    }
}

fn unlock_patching() {
    PATCHING.store(false, Ordering::Release);
}

/// The names we redirect, besides C++'s allocation operators
/// ([`crate::operators::ours`]).
const REDIRECTED: [&[u8]; 12] = [
    b"malloc",
    b"free",
    b"calloc",
    b"realloc",
    b"reallocarray",
    b"memalign",
    b"aligned_alloc",
    b"posix_memalign",
    b"valloc",
    b"pvalloc",
    b"dlopen",
    b"dlclose",
];

/// What each redirected name becomes.
fn hook_for(name: &[u8]) -> Option<u64> {
    let f: usize = match name {
        b"malloc" => hooks::malloc as *const () as usize,
        b"free" => hooks::free as *const () as usize,
        b"calloc" => hooks::calloc as *const () as usize,
        b"realloc" => hooks::realloc as *const () as usize,
        b"reallocarray" => hooks::reallocarray as *const () as usize,
        b"memalign" => hooks::memalign as *const () as usize,
        b"aligned_alloc" => hooks::aligned_alloc as *const () as usize,
        b"posix_memalign" => hooks::posix_memalign as *const () as usize,
        b"valloc" => hooks::valloc as *const () as usize,
        b"pvalloc" => hooks::pvalloc as *const () as usize,
        b"dlopen" => dlopen_then_patch as *const () as usize,
        b"dlclose" => hooks::dlclose as *const () as usize,
        // C++'s operators: an allocator's own (jemalloc's, tcmalloc's,
        // mimalloc's) do not call malloc.
        _ => crate::operators::ours(name)?,
    };
    Some(f as u64)
}

/// `leaktrail attach`'s entry point (see the module documentation and
/// [`handover::ATTACH_SYMBOL`]). 0 when attached, else a
/// `handover::ATTACH_*` code; the process is then as it was, but for the
/// library being loaded.
///
/// # Safety
/// `spec` is a NUL-terminated string.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn leaktrail_attach(spec: *const c_char) -> c_int {
    if spec.is_null() {
        return handover::ATTACH_BAD_SPEC;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let spec = unsafe { CStr::from_ptr(spec) }.to_bytes();
    thread::quietly(|| attach(spec))
}

fn attach(spec: &[u8]) -> c_int {
    let Some(spec) = AttachSpec::parse(spec) else {
        return handover::ATTACH_BAD_SPEC;
    };
    if !loaded_late() {
        return handover::ATTACH_PRELOADED;
    }
    if ATTACHED.load(Ordering::Acquire) {
        return handover::ATTACH_BUSY;
    }
    crate::next::loaded_late();
    crate::next::resolve();
    // The executable's own calls would go straight to its allocator,
    // unseen; libc's, through the GOT, to our hooks: every block libc
    // allocated would be a false leak. `run` diverts it before `main`.
    if crate::next::executable_defines(c"malloc", crate::hooks::malloc as *const () as usize) {
        return handover::ATTACH_OWN_ALLOCATOR;
    }
    let mode = core::str::from_utf8(spec.unwind)
        .ok()
        .and_then(UnwindMode::from_name)
        .unwrap_or(UnwindMode::Dwarf);
    let depth = spec.depth.clamp(1, MAX_DEPTH as u32);
    tracer::configure(mode, depth);
    let pid = sys::getpid();
    thread::MAIN_TID.store(pid as u64, Ordering::Relaxed);
    crate::selfmaps::for_each_mapping(|_, end, line| {
        if line.ends_with(b"[stack]") {
            thread::MAIN_STACK_TOP.store(end, Ordering::Relaxed);
            return false;
        }
        true
    });
    let Some(fd) = connect(spec.socket) else {
        return handover::ATTACH_NO_LINK;
    };
    // Sampling as `run --sample` sets it up (see `tracer::init`); nothing
    // calls the hooks yet, or again after a detach.
    let rate = spec.sample;
    if rate != 0 {
        region::ATOMIC_COUNTS.store(true, Ordering::Relaxed);
    }
    let seed = spec
        .seed
        .unwrap_or_else(|| sys::clock_ns(libc::CLOCK_REALTIME) ^ pid as u64);
    crate::sample::configure(rate, seed);
    let hdr = match region::header() {
        Some(hdr) => {
            region::forget_live(hdr);
            hdr
        }
        None => {
            unwind::shared::init();
            match region::create(mode, depth) {
                Some(hdr) => hdr,
                None => {
                    crate::sample::configure(0, 0);
                    sys::close(fd);
                    return handover::ATTACH_NO_REGION;
                }
            }
        }
    };
    hdr.counters.sample_rate.store(rate, Ordering::Relaxed);
    // The program's allocator, for `info` and the heap walker, as `run`
    // names it.
    crate::allocator::publish(hdr, false);
    if rate != 0 && hdr.counters.thread_classes.load(Ordering::Acquire) == 0 {
        crate::sample::map_thread_classes(hdr);
    }
    unwind::modules::rebuild();
    tracer::install_fork_handlers();
    tracer::link_attached(fd);
    hand_over_at_exit();
    hdr.attached.store(1, Ordering::Relaxed);
    tracer::set_lifecycle(hdr, Lifecycle::Running);
    lock_patching();
    ATTACHED.store(true, Ordering::Release);
    patch_loaded();
    unlock_patching();
    // The start line, without waiting for the answer: the heap we join was
    // there long before us; there is no beginning to hold back.
    let notice = Notice::Start(ExitNotice {
        pid: pid as i32,
        status: 0,
        header_addr: hdr as *const _ as u64,
    });
    let mut line = [0u8; handover::LINE_BYTES];
    sys::send_all(fd, notice.encode(&mut line));
    0
}

/// Registers, once, the hand-over at the program's exit. `run`'s comes
/// from our `exit` and `__libc_start_main`, which no symbol search finds in
/// a library loaded late; a handler registered now (glibc's `on_exit`,
/// which passes the status) runs before every handler the program
/// registered before the attach (they run last registered first), with the
/// heap as the program left it, and waits until `leaktrail attach` has
/// taken its last snapshot. After a detach there is no link and it does
/// nothing; a second attach finds it registered.
fn hand_over_at_exit() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    extern "C" {
        fn on_exit(f: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
    }
    // SAFETY: registers a plain function with no argument; glibc copies
    // the pair into its list of exit handlers.
    unsafe { on_exit(at_exit, core::ptr::null_mut()) };
}

extern "C" fn at_exit(status: c_int, _arg: *mut c_void) {
    crate::exit::hand_over(status);
}

/// `leaktrail detach`'s entry point ([`handover::DETACH_SYMBOL`]): puts
/// every entry back, stops recording, closes the link. Returns how many
/// entries were restored.
///
/// # Safety
/// None beyond the process being ours to change.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn leaktrail_detach() -> c_int {
    thread::quietly(|| {
        lock_patching();
        let was = ATTACHED.swap(false, Ordering::AcqRel);
        let n = PATCHED.swap(0, Ordering::AcqRel);
        let mut restored = 0;
        for p in PATCHES[..n.min(MAX_PATCHES)].iter().rev() {
            let slot = p.slot.load(Ordering::Relaxed);
            let original = p.original.load(Ordering::Relaxed);
            // A module dlclose'd since is unmapped: read without faulting,
            // and write only over a value that is still ours.
            let mut word = [0u8; 8];
            if !sys::read_own(slot, &mut word) {
                continue;
            }
            if hook_value(u64::from_ne_bytes(word))
                && store(slot, original, p.relro.load(Ordering::Relaxed))
            {
                restored += 1;
            }
        }
        unlock_patching();
        if was {
            if let Some(hdr) = region::header() {
                tracer::set_lifecycle(hdr, Lifecycle::Disabled);
            }
            tracer::unlink();
        }
        restored
    })
}

/// Whether `v` is one of our hooks (an entry we set and nobody changed).
fn hook_value(v: u64) -> bool {
    REDIRECTED.iter().any(|n| hook_for(n) == Some(v)) || crate::operators::is_ours(v)
}

/// `dlopen` while attached: the real one (through the unwinder's hook),
/// then the new modules' GOTs.
unsafe extern "C" fn dlopen_then_patch(file: *const c_char, mode: c_int) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    let h = unsafe { hooks::dlopen(file, mode) };
    if !h.is_null() {
        thread::quietly(|| {
            lock_patching();
            if ATTACHED.load(Ordering::Acquire) {
                patch_loaded();
            }
            unlock_patching();
        });
    }
    h
}

/// Patches every loaded module but ours, the loader and the vDSO (the
/// caller holds the patching lock).
fn patch_loaded() {
    // SAFETY: the callback reads only the loader's info for each object.
    unsafe { libc::dl_iterate_phdr(Some(visit), core::ptr::null_mut()) };
}

const PT_DYNAMIC: u32 = 2;
const PT_GNU_RELRO: u32 = 0x6474_e552;
const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_STRSZ: i64 = 10;
const DT_JMPREL: i64 = 23;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const PAGE: u64 = 4096;

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    _data: *mut c_void,
) -> c_int {
    // SAFETY: the loader passes a valid info for the duration of the call.
    let info = unsafe { &*info };
    let name = if info.dlpi_name.is_null() {
        &b""[..]
    } else {
        // SAFETY: the loader's NUL-terminated name.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    if contains(name, OUR_NAME) || contains(name, b"/ld-linux") || contains(name, b"linux-vdso") {
        return 0;
    }
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    let base = info.dlpi_addr;
    // SAFETY: the loader's program headers of this object.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let mut dynamic = 0u64;
    let mut relro = (0u64, 0u64);
    for ph in phdrs {
        match ph.p_type {
            PT_DYNAMIC => dynamic = base + ph.p_vaddr,
            // glibc protects whole pages only: start rounded down, end down.
            PT_GNU_RELRO => {
                relro = (
                    (base + ph.p_vaddr) & !(PAGE - 1),
                    (base + ph.p_vaddr + ph.p_memsz) & !(PAGE - 1),
                )
            }
            _ => {}
        }
    }
    if dynamic != 0 {
        // SAFETY: the object's dynamic section, mapped while it is loaded.
        unsafe { patch_module(base, dynamic as *const [i64; 2], relro) };
    }
    0
}

/// Redirects the entries of one module, whose `_DYNAMIC` is `dynamic`.
///
/// # Safety
/// `dynamic` is the in-memory dynamic section of a loaded object at load
/// bias `base`.
unsafe fn patch_module(base: u64, dynamic: *const [i64; 2], relro: (u64, u64)) {
    let (mut strtab, mut strsz, mut symtab) = (0u64, 0u64, 0u64);
    let (mut rela, mut relasz, mut jmprel, mut pltrelsz) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..1024 {
        // SAFETY: the section ends with DT_NULL, within our bound.
        let [tag, val] = unsafe { *dynamic.add(i) };
        // The loader relocated the pointers in place (x86_64 keeps
        // _DYNAMIC writable); an unrelocated one is below the bias.
        let ptr = |v: i64| {
            let v = v as u64;
            if v < base {
                base + v
            } else {
                v
            }
        };
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = ptr(val),
            DT_STRSZ => strsz = val as u64,
            DT_SYMTAB => symtab = ptr(val),
            DT_RELA => rela = ptr(val),
            DT_RELASZ => relasz = val as u64,
            DT_JMPREL => jmprel = ptr(val),
            DT_PLTRELSZ => pltrelsz = val as u64,
            _ => {}
        }
    }
    if strtab == 0 || symtab == 0 {
        return;
    }
    for (table, bytes) in [(jmprel, pltrelsz), (rela, relasz)] {
        if table == 0 {
            continue;
        }
        for k in 0..bytes / 24 {
            let r = (table + k * 24) as *const u64;
            // SAFETY: inside the object's relocation table.
            let (offset, rinfo) = unsafe { (*r, *r.add(1)) };
            let kind = rinfo as u32;
            if kind != R_X86_64_JUMP_SLOT && kind != R_X86_64_GLOB_DAT {
                continue;
            }
            let sym = (symtab + (rinfo >> 32) * 24) as *const u32;
            // SAFETY: the symbol the relocation names, in the object's table.
            let name_at = unsafe { *sym } as u64;
            if name_at >= strsz {
                continue;
            }
            // SAFETY: a NUL-terminated name inside the string table.
            let name = unsafe { CStr::from_ptr((strtab + name_at) as *const c_char) }.to_bytes();
            if let Some(hook) = hook_for(name) {
                let slot = base + offset;
                let in_relro = slot >= relro.0 && slot + 8 <= relro.1;
                redirect(slot, hook, in_relro);
            }
        }
    }
}

/// Points the GOT entry at `slot` to `hook`, remembering its value.
fn redirect(slot: u64, hook: u64, relro: bool) {
    // SAFETY: an aligned GOT entry of a loaded object.
    let current = unsafe { &*(slot as *const AtomicU64) }.load(Ordering::Acquire);
    if current == hook {
        return;
    }
    let n = PATCHED.load(Ordering::Relaxed);
    let Some(p) = PATCHES.get(n) else {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    p.slot.store(slot, Ordering::Relaxed);
    p.original.store(current, Ordering::Relaxed);
    p.relro.store(relro, Ordering::Relaxed);
    if store(slot, hook, relro) {
        PATCHED.store(n + 1, Ordering::Release);
    }
}

/// Writes `value` into the GOT entry at `slot`, lifting RELRO's read-only
/// protection of its page for the store. Whether it was written.
fn store(slot: u64, value: u64, relro: bool) -> bool {
    let page = slot & !(PAGE - 1);
    if relro && !protect(page, libc::PROT_READ | libc::PROT_WRITE) {
        return false;
    }
    // SAFETY: an aligned, now writable GOT entry.
    unsafe { &*(slot as *const AtomicU64) }.store(value, Ordering::Release);
    if relro {
        protect(page, libc::PROT_READ);
    }
    true
}

fn protect(page: u64, prot: c_int) -> bool {
    // SAFETY: changes the protection of one page of a loaded object's
    // RELRO segment, which holds only relocated pointers.
    unsafe { libc::syscall(libc::SYS_mprotect, page as usize, PAGE as usize, prot) == 0 }
}

/// Connects to the supervisor's abstract Unix socket `name`.
fn connect(name: &[u8]) -> Option<i32> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        )
    } as i32;
    if fd < 0 {
        return None;
    }
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if name.len() + 1 > addr.sun_path.len() {
        sys::close(fd);
        return None;
    }
    // sun_path[0] stays 0: the abstract namespace.
    for (d, &s) in addr.sun_path[1..].iter_mut().zip(name) {
        *d = s as c_char;
    }
    let len = core::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_connect,
            fd,
            &addr as *const libc::sockaddr_un,
            len as libc::socklen_t,
        )
    };
    if r != 0 {
        sys::close(fd);
        return None;
    }
    Some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_redirected_name_has_its_own_hook() {
        let names = REDIRECTED;
        let mut hooks: Vec<u64> = names.iter().filter_map(|n| hook_for(n)).collect();
        assert_eq!(hooks.len(), names.len());
        hooks.sort_unstable();
        hooks.dedup();
        assert_eq!(hooks.len(), names.len());
        assert!(hook_for(b"mallocx").is_none());
        assert!(hooks.iter().all(|&h| hook_value(h)));
    }

    #[test]
    fn base_name_is_the_part_after_the_last_slash() {
        assert_eq!(base_name(b"/a/b/libtracer.so"), b"libtracer.so");
        assert_eq!(base_name(b"libtracer.so"), b"libtracer.so");
    }

    #[test]
    fn contains_finds_our_name_in_a_preload_list() {
        assert!(contains(b"/a/libx.so:/c/libleaktrail_preload.so", OUR_NAME));
        assert!(!contains(b"/usr/lib/libjemalloc.so.2", OUR_NAME));
    }
}
