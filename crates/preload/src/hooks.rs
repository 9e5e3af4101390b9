//! The exported hooks: the malloc family, anonymous `mmap`, `dlopen`/
//! `dlclose`. Each calls the real function (glibc's `__libc_*` entry
//! points, or the kernel) and records around it.
//!
//! Symbols are unmangled only outside `cfg(test)`, so the crate's unit
//! tests do not interpose their own test binary's allocator.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::tracer::{record_alloc, record_free, record_map, record_unmap, restore};
use crate::{sys, thread, unwind};

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn __libc_valloc(size: usize) -> *mut c_void;
    fn __libc_pvalloc(size: usize) -> *mut c_void;
}

/// `malloc(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { __libc_malloc(size) };
    if !p.is_null() {
        record_alloc(p as u64, size as u64);
    }
    p
}

/// `calloc(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { __libc_calloc(n, size) };
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
    if !p.is_null() {
        record_free(p as u64);
    }
    // SAFETY: forwarding the caller's argument.
    unsafe { __libc_free(p) }
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
    // Take the old record out first: once the real realloc frees `p`,
    // another thread may be handed that address.
    let old = record_free(p as u64);
    // SAFETY: forwarding the caller's arguments.
    let q = unsafe { __libc_realloc(p, size) };
    if q.is_null() {
        if size != 0 {
            // Failed: `p` is still live and unchanged.
            if let Some(old) = old {
                restore(p as u64, old);
            }
        }
        // realloc(p, 0) freed `p` and returned NULL.
    } else {
        record_alloc(q as u64, size as u64);
    }
    q
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

/// `memalign(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { __libc_memalign(align, size) };
    if !p.is_null() {
        record_alloc(p as u64, size as u64);
    }
    p
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
    // SAFETY: forwarding the caller's arguments.
    unsafe { memalign(align, size) }
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
    // SAFETY: forwarding the caller's arguments.
    let p = unsafe { __libc_memalign(align, size) };
    sys::set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
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
    // SAFETY: forwarding the caller's argument.
    let p = unsafe { __libc_valloc(size) };
    if !p.is_null() {
        record_alloc(p as u64, size as u64);
    }
    p
}

/// `pvalloc(3)`.
///
/// # Safety
/// As for libc's.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's argument.
    let p = unsafe { __libc_pvalloc(size) };
    if !p.is_null() {
        record_alloc(p as u64, size as u64);
    }
    p
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

/// The next definition of `name` after ours (libc's).
pub fn next_symbol(cache: &AtomicUsize, name: &core::ffi::CStr) -> usize {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; called outside the
        // malloc hooks, nested allocations pass through.
        f = thread::quietly(|| unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) }) as usize;
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
    let h = unsafe { real(file, mode) };
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
    thread::quietly(unwind::modules::rebuild);
    r
}
