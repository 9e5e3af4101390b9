//! Finding our own mappings by reading `/proc/thread-self/maps` with raw
//! system calls and a fixed buffer on the stack: usable on the hook path.
//! Lines are parsed by `leaktrail_format::maps_line`, as every reader of
//! maps in the workspace does.
//!
//! `/proc/self` is the main thread's directory, whose `maps` is empty once
//! the main thread called `pthread_exit` while others run on: every stack
//! lookup then failed and the survivors' blocks had no stack (issue 16).
//! `/proc/thread-self` (Linux 3.17) is the calling thread's; `/proc/self`
//! remains the fallback where it is missing.

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

/// Calls `f(start, end, line)` for each line of our maps until it returns
/// false. Lines longer than the buffer are skipped.
pub fn for_each_mapping(mut f: impl FnMut(u64, u64, &[u8]) -> bool) {
    static PATHS: [&[u8]; 2] = [b"/proc/thread-self/maps\0", b"/proc/self/maps\0"];
    let Some(fd) = PATHS
        .iter()
        .map(|path| sys::open_read(path))
        .find(|&fd| fd >= 0)
    else {
        return;
    };
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
