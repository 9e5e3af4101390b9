//! The tracer's own system calls.
//!
//! Everything here goes straight to the kernel through `syscall(2)`, never
//! through libc wrappers that the program (or we) might have interposed,
//! and nothing here allocates.

use core::ffi::c_void;

/// `mmap` of fresh private anonymous memory, or `None`.
pub fn map_anonymous(len: u64) -> Option<u64> {
    // SAFETY: a fresh anonymous mapping touches no existing memory.
    let p = unsafe {
        libc::syscall(
            libc::SYS_mmap,
            0usize,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1i32,
            0usize,
        )
    };
    if p == -1 || p == 0 {
        return None;
    }
    name_mapping(p as u64, len);
    Some(p as u64)
}

/// `mmap` of one fresh private anonymous mapping at exactly `addr`, or
/// `None` where something is mapped already (`MAP_FIXED_NOREPLACE`; a
/// kernel before 4.17 takes the address as a hint, which is checked).
pub fn map_anonymous_at(addr: u64, len: u64) -> Option<u64> {
    // SAFETY: NOREPLACE never replaces an existing mapping; a fresh
    // anonymous one touches no existing memory.
    let p = unsafe {
        libc::syscall(
            libc::SYS_mmap,
            addr as usize,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1i32,
            0usize,
        )
    };
    if p == -1 {
        return None;
    }
    if p as u64 != addr {
        unmap(p as u64, len);
        return None;
    }
    name_mapping(addr, len);
    Some(addr)
}

/// `mprotect(addr, len, prot)`; whether it succeeded.
///
/// # Safety
/// `[addr, addr+len)` is mapped and nothing relies on its current
/// protection while it changes (see the caller).
pub unsafe fn protect(addr: u64, len: u64, prot: i32) -> bool {
    // SAFETY: the caller's contract; mprotect touches no memory contents.
    unsafe { libc::syscall(libc::SYS_mprotect, addr as usize, len as usize, prot) == 0 }
}

/// Names our mappings `[anon:leaktrail]` in `/proc/PID/maps`, where the
/// kernel supports it (5.17+ with CONFIG_ANON_VMA_NAME); harmless otherwise.
fn name_mapping(addr: u64, len: u64) {
    const PR_SET_VMA: i32 = 0x53564d41;
    const PR_SET_VMA_ANON_NAME: u64 = 0;
    static NAME: &[u8] = b"leaktrail\0";
    // SAFETY: prctl only reads the NUL-terminated name.
    unsafe {
        libc::syscall(
            libc::SYS_prctl,
            PR_SET_VMA,
            PR_SET_VMA_ANON_NAME,
            addr,
            len,
            NAME.as_ptr(),
        );
    }
}

/// Makes `[addr, addr+len)` of a mapping we made inaccessible.
pub fn protect_none(addr: u64, len: u64) {
    // SAFETY: callers pass pages of a mapping the tracer made and never
    // touches there.
    unsafe {
        libc::syscall(
            libc::SYS_mprotect,
            addr as usize,
            len as usize,
            libc::PROT_NONE,
        );
    }
}

/// Unmaps a mapping we made.
pub fn unmap(addr: u64, len: u64) {
    // SAFETY: callers pass only mappings the tracer made and no longer uses.
    unsafe {
        libc::syscall(libc::SYS_munmap, addr as usize, len as usize);
    }
}

/// Sends all of `bytes` on the socket `fd` (the supervisor's link),
/// ignoring failures. Never raises `SIGPIPE`: a supervisor that is gone
/// (a killed `leaktrail attach`) must not kill the program with it.
pub fn send_all(fd: i32, bytes: &[u8]) {
    all_of(bytes, |b| {
        // SAFETY: `b` is a live slice; no address is passed.
        unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd,
                b.as_ptr() as *const c_void,
                b.len(),
                libc::MSG_NOSIGNAL,
                core::ptr::null::<c_void>(),
                0usize,
            )
        }
    });
}

/// Writes all of `bytes` to file descriptor `fd`, ignoring failures.
pub fn write_all(fd: i32, bytes: &[u8]) {
    all_of(bytes, |b| {
        // SAFETY: `b` is a live slice.
        unsafe { libc::syscall(libc::SYS_write, fd, b.as_ptr() as *const c_void, b.len()) }
    });
}

/// Calls `put` (a `write`-like system call: bytes taken, or -1) until all
/// of `bytes` went, retrying after `EINTR`; stops at any other failure.
fn all_of(mut bytes: &[u8], mut put: impl FnMut(&[u8]) -> libc::c_long) {
    while !bytes.is_empty() {
        let n = put(bytes);
        if n == -1 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Opens the NUL-terminated `path` read-only, close-on-exec; negative on
/// failure.
pub fn open_read(path: &[u8]) -> i32 {
    if path.last() != Some(&0) {
        return -1;
    }
    // SAFETY: `path` is NUL-terminated (checked above); open has no memory
    // effects otherwise.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    fd as i32
}

/// Reads into `buf`; the count, or 0 on end of file or error.
pub fn read(fd: i32, buf: &mut [u8]) -> usize {
    loop {
        // SAFETY: `buf` is a live, writable slice.
        let n = unsafe {
            libc::syscall(
                libc::SYS_read,
                fd,
                buf.as_mut_ptr() as *mut c_void,
                buf.len(),
            )
        };
        if n == -1 && errno() == libc::EINTR {
            continue;
        }
        return if n > 0 { n as usize } else { 0 };
    }
}

/// Closes a file descriptor.
pub fn close(fd: i32) {
    // SAFETY: closing a descriptor has no memory effects.
    unsafe {
        libc::syscall(libc::SYS_close, fd);
    }
}

/// The calling thread's kernel id.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and no effects.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// The process id.
pub fn getpid() -> u32 {
    // SAFETY: getpid has no arguments and no effects.
    unsafe { libc::syscall(libc::SYS_getpid) as u32 }
}

/// Gives up the CPU (spin locks call it after spinning a while).
pub fn yield_now() {
    // SAFETY: sched_yield has no arguments and no memory effects.
    unsafe {
        libc::syscall(libc::SYS_sched_yield);
    }
}

/// Nanoseconds of `clock`. Goes through the vDSO (no system call, no lock).
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Sets the thread's errno.
pub fn set_errno(v: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = v };
}

/// The (device, inode) of an open descriptor, or `None`.
pub fn file_identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer for fstat.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
    (r == 0).then_some((st.st_dev, st.st_ino))
}

/// Copies `buf.len()` bytes of our own memory at `addr` into `buf` with
/// `process_vm_readv`, which fails instead of faulting where nothing is
/// mapped. Whether all of it was read.
pub fn read_own(addr: u64, buf: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and
    // only reads the remote range, checking it is mapped.
    let n = unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            getpid(),
            &local as *const libc::iovec,
            1usize,
            &remote as *const libc::iovec,
            1usize,
            0usize,
        )
    };
    n == buf.len() as i64
}

/// Waits up to `ms` milliseconds for `fd` to be readable (or at its end):
/// `Some(true)` if it is, `Some(false)` on timeout or interruption, `None`
/// on error.
pub fn poll_in(fd: i32, ms: i32) -> Option<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd.
    let r = unsafe { libc::syscall(libc::SYS_poll, &mut p as *mut libc::pollfd, 1usize, ms) };
    match r {
        -1 if errno() == libc::EINTR => Some(false),
        -1 => None,
        0 => Some(false),
        _ => Some(true),
    }
}
