//! Finding our own mappings by reading `/proc/self/maps` with raw system
//! calls and a fixed buffer on the stack: usable on the hook path. Lines
//! are parsed by `leaktrail_format::maps_line`, as every reader of maps in
//! the workspace does.

use leaktrail_format::maps_line;

use crate::sys;

/// The `[start, end)` of the mapping that contains `addr`.
pub fn mapping_containing(addr: u64) -> Option<(u64, u64)> {
    let mut found = None;
    for_each_mapping(|start, end, _line| {
        if start <= addr && addr < end {
            found = Some((start, end));
            false
        } else {
            true
        }
    });
    found
}

/// Calls `f(start, end, line)` for each line of `/proc/self/maps` until it
/// returns false. Lines longer than the buffer are skipped.
pub fn for_each_mapping(mut f: impl FnMut(u64, u64, &[u8]) -> bool) {
    static PATH: &[u8] = b"/proc/self/maps\0";
    // SAFETY: PATH is NUL-terminated; open has no memory effects otherwise.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            PATH.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    } as i32;
    if fd < 0 {
        return;
    }
    // Small: this runs on the hook path, possibly on a 16 KiB thread stack.
    // Lines longer than the buffer (long paths) are skipped, which never
    // hides a stack (anonymous mappings have short lines).
    let mut buf = [0u8; 512];
    let mut have = 0usize;
    'read: loop {
        let n = sys::read(fd, &mut buf[have..]);
        if n == 0 {
            break;
        }
        have += n;
        let mut consumed = 0;
        while let Some(nl) = buf[consumed..have].iter().position(|&b| b == b'\n') {
            let line = &buf[consumed..consumed + nl];
            if let Some((start, end)) = maps_line::parse_range(line) {
                if !f(start, end, line) {
                    break 'read;
                }
            }
            consumed += nl + 1;
        }
        buf.copy_within(consumed..have, 0);
        have -= consumed;
        if have == buf.len() {
            // A line longer than the buffer: drop it.
            have = 0;
        }
    }
    sys::close(fd);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_stack() {
        let local = 5u64;
        let addr = &local as *const u64 as u64;
        let (s, e) = mapping_containing(addr).expect("stack mapping");
        assert!(s <= addr && addr < e);
    }
}
