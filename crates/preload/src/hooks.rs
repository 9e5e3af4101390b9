//! The exported hooks: the malloc family (with jemalloc's extended API),
//! anonymous `mmap`, `dlopen`/`dlclose`. Each calls the real function (the
//! program's allocator, found by [`next`], or the kernel) and records
//! around it.
//!
//! Symbols are unmangled only outside `cfg(test)`, so the crate's unit
//! tests do not interpose their own test binary's allocator.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::next::{self, bootstrap};
use crate::tracer::{
    record_alloc, record_alloc_inlined, record_free, record_free_inlined, record_map, record_unmap,
    restore, Freed,
};
use crate::{sys, thread, unwind};

/// `malloc(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let p = next::malloc(size);
    if !p.is_null() {
        record_alloc_inlined(p as u64, size as u64);
    }
    p
}

/// `calloc(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let p = next::calloc(n, size);
    if !p.is_null() {
        record_alloc(p as u64, n.wrapping_mul(size) as u64);
    }
    p
}

/// `free(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() || bootstrap::owns(p) {
        return;
    }
    record_free_inlined(p as u64);
    // SAFETY: forwarding the caller's block.
    unsafe { next::free(p) }
}

/// `realloc(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: realloc(NULL, n) is malloc(n).
        return unsafe { malloc(size) };
    }
    if bootstrap::owns(p) {
        // A block of the bootstrap buffer: move it to the real allocator.
        // SAFETY: malloc(n) as the caller would have it.
        let q = unsafe { malloc(size) };
        if !q.is_null() {
            let n = size.min(bootstrap::bytes_after(p));
            // SAFETY: both blocks hold at least `n` bytes and are distinct.
            unsafe { core::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, n) };
        }
        return q;
    }
    // Take the old record out first: once the real realloc frees `p`,
    // another thread may be handed that address.
    let old = record_free(p as u64);
    // SAFETY: forwarding the caller's arguments.
    let q = unsafe { next::realloc(p, size) };
    moved(p, q, size, old);
    q
}

/// After a resize of `p` (whose record `record_free` took out) to `size`
/// bytes that returned `q`: records the outcome.
fn moved(p: *mut c_void, q: *mut c_void, size: usize, old: Freed) {
    if q.is_null() {
        if size != 0 {
            // Failed: `p` is still live and unchanged.
            restore(p as u64, old, None);
        }
        // realloc(p, 0) freed `p` and returned NULL.
    } else {
        record_alloc(q as u64, size as u64);
    }
}

/// `reallocarray(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarding to realloc with the product.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            sys::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// Records `p`, a block of `size` bytes, if the allocation succeeded.
#[inline]
fn recorded(p: *mut c_void, size: usize) -> *mut c_void {
    if !p.is_null() {
        record_alloc(p as u64, size as u64);
    }
    p
}

/// `memalign(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    recorded(next::memalign(align, size), size)
}

/// `aligned_alloc(3)`: glibc 2.36 rejects alignments that are not powers
/// of two; so do we.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        sys::set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    recorded(next::aligned_alloc(align, size), size)
}

/// `posix_memalign(3)`. Leaves `errno` as it was, as POSIX asks.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    let saved = sys::errno();
    let mut p = core::ptr::null_mut();
    // SAFETY: `p` is a valid out-pointer.
    let r = unsafe { next::posix_memalign(&mut p, align, size) };
    sys::set_errno(saved);
    if r != 0 || p.is_null() {
        return if r != 0 { r } else { libc::ENOMEM };
    }
    // SAFETY: the caller passes a valid out-pointer.
    unsafe { *out = p };
    record_alloc(p as u64, size as u64);
    0
}

/// `valloc(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    recorded(next::valloc(size), size)
}

/// `pvalloc(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    recorded(next::pvalloc(size), size)
}

/// jemalloc's `mallocx(3)`, in programs that use jemalloc.
///
/// # Safety
/// As for jemalloc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mallocx(size: usize, flags: c_int) -> *mut c_void {
    let Some(f) = next::extended(&next::MALLOCX) else {
        return core::ptr::null_mut();
    };
    // SAFETY: `f` is jemalloc's mallocx.
    let f: next::MallocxFn = unsafe { core::mem::transmute::<usize, next::MallocxFn>(f) };
    // SAFETY: forwarding the caller's arguments.
    recorded(unsafe { f(size, flags) }, size)
}

/// jemalloc's `rallocx(3)`.
///
/// # Safety
/// As for jemalloc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn rallocx(p: *mut c_void, size: usize, flags: c_int) -> *mut c_void {
    let Some(f) = next::extended(&next::RALLOCX) else {
        return core::ptr::null_mut();
    };
    // SAFETY: `f` is jemalloc's rallocx.
    let f: next::RallocxFn = unsafe { core::mem::transmute::<usize, next::RallocxFn>(f) };
    let old = record_free(p as u64);
    // SAFETY: forwarding the caller's arguments.
    let q = unsafe { f(p, size, flags) };
    // rallocx never frees on failure, even for size 0 (which it forbids).
    moved(p, q, size.max(1), old);
    q
}

/// jemalloc's `xallocx(3)`: resizes in place; the block keeps its address
/// and gets the size asked for when it fits (else its real size, which
/// jemalloc returns).
///
/// # Safety
/// As for jemalloc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn xallocx(p: *mut c_void, size: usize, extra: usize, flags: c_int) -> usize {
    let Some(f) = next::extended(&next::XALLOCX) else {
        return 0;
    };
    // SAFETY: `f` is jemalloc's xallocx.
    let f: next::XallocxFn = unsafe { core::mem::transmute::<usize, next::XallocxFn>(f) };
    // Taken out before the resize, which changes the usable size an
    // unsampled block was counted by; the block stays where it is, so no
    // other thread can be handed its address meanwhile.
    let old = record_free(p as u64);
    // SAFETY: forwarding the caller's arguments.
    let real = unsafe { f(p, size, extra, flags) };
    let new = (real as u64).min(size.saturating_add(extra) as u64);
    restore(p as u64, old, Some(new));
    real
}

/// jemalloc's `dallocx(3)`.
///
/// # Safety
/// As for jemalloc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dallocx(p: *mut c_void, flags: c_int) {
    let Some(f) = next::extended(&next::DALLOCX) else {
        return;
    };
    // SAFETY: `f` is jemalloc's dallocx.
    let f: next::DallocxFn = unsafe { core::mem::transmute::<usize, next::DallocxFn>(f) };
    record_free(p as u64);
    // SAFETY: forwarding the caller's arguments.
    unsafe { f(p, flags) }
}

/// jemalloc's `sdallocx(3)`.
///
/// # Safety
/// As for jemalloc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sdallocx(p: *mut c_void, size: usize, flags: c_int) {
    let Some(f) = next::extended(&next::SDALLOCX) else {
        return;
    };
    // SAFETY: `f` is jemalloc's sdallocx.
    let f: next::SdallocxFn = unsafe { core::mem::transmute::<usize, next::SdallocxFn>(f) };
    record_free(p as u64);
    // SAFETY: forwarding the caller's arguments.
    unsafe { f(p, size, flags) }
}

const PAGE: u64 = 4096;

fn page_round(len: usize) -> u64 {
    (len as u64).div_ceil(PAGE) * PAGE
}

/// `mmap(2)`: the kernel's, recording anonymous mappings.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments to the kernel; libc's
    // syscall() sets errno and returns -1 (MAP_FAILED) on failure.
    let r = unsafe { libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, offset) };
    if r != -1 {
        if flags & libc::MAP_FIXED != 0 {
            record_unmap(r as u64, page_round(len));
        }
        if flags & libc::MAP_ANONYMOUS != 0 {
            record_map(r as u64, page_round(len));
        }
    }
    r as *mut c_void
}

/// `mmap64`: the same as `mmap` on 64-bit targets.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> *mut c_void {
    // SAFETY: as for mmap.
    unsafe { mmap(addr, len, prot, flags, fd, offset) }
}

/// `munmap(2)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    // SAFETY: forwarding the caller's arguments to the kernel.
    let r = unsafe { libc::syscall(libc::SYS_munmap, addr, len) };
    if r == 0 {
        record_unmap(addr as u64, page_round(len));
    }
    r as c_int
}

/// `mremap(2)`. Declared with the optional fifth argument always present:
/// on x86_64 a variadic caller passing four arguments is compatible.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments to the kernel.
    let r = unsafe { libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr) };
    if r != -1 && record_unmap(old as u64, page_round(old_len)) {
        record_map(r as u64, page_round(new_len));
    }
    r as *mut c_void
}

static REAL_DLOPEN: AtomicUsize = AtomicUsize::new(0);
static REAL_DLCLOSE: AtomicUsize = AtomicUsize::new(0);

/// The next definition of `name` after ours (libc's); the global one
/// when `leaktrail attach` loaded us ([`next::handle`]).
pub fn next_symbol(cache: &AtomicUsize, name: &core::ffi::CStr) -> usize {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; called outside the
        // malloc hooks, nested allocations pass through.
        f = thread::quietly(|| unsafe { libc::dlsym(next::handle(), name.as_ptr()) }) as usize;
        cache.store(f, Ordering::Release);
    }
    f
}

/// `dlopen(3)`: after the load, the unwinder learns the new modules.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let f = next_symbol(&REAL_DLOPEN, c"dlopen");
    if f == 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: `f` is libc's dlopen.
    let real: unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void =
        unsafe { core::mem::transmute(f) };
    // SAFETY: forwarding the caller's arguments.
    let h = unwind::modules::opening(|| unsafe { real(file, mode) });
    if !h.is_null() {
        thread::quietly(unwind::modules::rebuild);
    }
    h
}

/// `dlclose(3)`: the unwinder stops reading dlopen'd modules while the
/// loader may unmap them, then learns what is still loaded.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    let f = next_symbol(&REAL_DLCLOSE, c"dlclose");
    if f == 0 {
        return -1;
    }
    // SAFETY: `f` is libc's dlclose.
    let real: unsafe extern "C" fn(*mut c_void) -> c_int = unsafe { core::mem::transmute(f) };
    unwind::modules::retreat_to_initial();
    // SAFETY: forwarding the caller's argument.
    let r = unsafe { real(handle) };
    thread::quietly(unwind::modules::closed);
    r
}

/// Around an exec of the process that holds the supervisor's link: the
/// descriptor stays open into the new image (only for this exec), whose
/// tracer takes the link up again, so `run -- env X=1 ./prog` records
/// `prog`. Forked and spawned children never get it (their exec closes
/// it, `fork` children close it at once). Restored if the exec fails.
fn exec_keeping_link<R>(exec: impl FnOnce() -> R) -> R {
    let fd = crate::tracer::linked();
    if let Some(fd) = fd {
        // SAFETY: fcntl on our own descriptor has no memory effects.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    let r = exec();
    if let Some(fd) = fd {
        // SAFETY: as above; the exec failed, we are still this image.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    r
}

type Argv = *const *const c_char;

macro_rules! exec_hook {
    ($(#[$doc:meta])* $name:ident, $cache:ident, ($($arg:ident: $ty:ty),*)) => {
        static $cache: AtomicUsize = AtomicUsize::new(0);

        $(#[$doc])*
        ///
        /// # Safety
        /// As for libc's.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            let name = concat!(stringify!($name), "\0");
            let Ok(cname) = core::ffi::CStr::from_bytes_with_nul(name.as_bytes()) else {
                return -1;
            };
            let f = next_symbol(&$cache, cname);
            if f == 0 {
                sys::set_errno(libc::ENOSYS);
                return -1;
            }
            // SAFETY: `f` is libc's function of this name and type.
            let real: unsafe extern "C" fn($($ty),*) -> c_int = unsafe { core::mem::transmute(f) };
            // SAFETY: forwarding the caller's arguments.
            exec_keeping_link(|| unsafe { real($($arg),*) })
        }
    };
}

exec_hook!(
    /// `execve(2)`, keeping the supervisor's link (see [`exec_keeping_link`]).
    execve, REAL_EXECVE, (path: *const c_char, argv: Argv, envp: Argv)
);
exec_hook!(
    /// `execv(3)`.
    execv, REAL_EXECV, (path: *const c_char, argv: Argv)
);
exec_hook!(
    /// `execvp(3)` (what `env`, `nice` and `stdbuf` call).
    execvp, REAL_EXECVP, (file: *const c_char, argv: Argv)
);
exec_hook!(
    /// `execvpe(3)`.
    execvpe, REAL_EXECVPE, (file: *const c_char, argv: Argv, envp: Argv)
);
exec_hook!(
    /// `fexecve(3)`.
    fexecve, REAL_FEXECVE, (fd: c_int, argv: Argv, envp: Argv)
);
exec_hook!(
    /// `execveat(2)`.
    execveat, REAL_EXECVEAT, (dirfd: c_int, path: *const c_char, argv: Argv, envp: Argv, flags: c_int)
);
