//! One line of `/proc/PID/maps` (or a mapping's header line in `smaps`),
//! parsed without allocating: the tracer reads its own maps with it on the
//! hook path (to bound a thread's stack), and `leaktrail-recording`'s smaps
//! parser builds its `Mapping`s on it, so both read the kernel's format the
//! same way.
//!
//! The line is `start-end perms offset dev inode path`; the path may hold
//! spaces (it is everything after the inode, leading blanks dropped) and
//! may end in ` (deleted)`.

/// The fields of one maps line, borrowing the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapsLine<'a> {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `rwxp` as the kernel prints it.
    pub perms: [u8; 4],
    /// File offset.
    pub offset: u64,
    /// Inode of the file, 0 for anonymous memory.
    pub inode: u64,
    /// The path or pseudo-name, verbatim (` (deleted)` kept); empty for
    /// anonymous memory.
    pub path: &'a [u8],
}

/// Parses one maps line; `None` for anything else (a counter line of
/// `smaps`, a line cut short, an inverted range).
pub fn parse(line: &[u8]) -> Option<MapsLine<'_>> {
    let mut rest = line;
    let mut field = || -> Option<&[u8]> {
        let start = rest.iter().position(|&b| b != b' ')?;
        let t = &rest[start..];
        let end = t.iter().position(|&b| b == b' ').unwrap_or(t.len());
        rest = &t[end..];
        Some(&t[..end])
    };
    let range = field()?;
    let perms = field()?;
    let offset = field()?;
    let dev = field()?;
    let inode = field()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let start = hex(&range[..dash])?;
    let end = hex(&range[dash + 1..])?;
    if end < start || perms.len() != 4 || !dev.contains(&b':') {
        return None;
    }
    let path_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    Some(MapsLine {
        start,
        end,
        perms: [perms[0], perms[1], perms[2], perms[3]],
        offset: hex(offset)?,
        inode: decimal(inode)?,
        path: &rest[path_start..],
    })
}

/// The `start-end` at the beginning of a maps line, without the rest: what
/// the tracer needs, and cheaper than [`parse`].
pub fn parse_range(line: &[u8]) -> Option<(u64, u64)> {
    let end_of_range = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let range = &line[..end_of_range];
    let dash = range.iter().position(|&b| b == b'-')?;
    Some((hex(&range[..dash])?, hex(&range[dash + 1..])?))
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v.checked_mul(16)?.checked_add(d as u64)
    })
}

fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        v.checked_mul(10)?.checked_add((c - b'0') as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ugly_lines() {
        let l = parse(
            b"55d0c0a00000-55d0c0a01000 r--p 00001000 08:01 1234    /usr/bin/my  prog (deleted)",
        )
        .unwrap();
        assert_eq!(
            (l.start, l.end, l.offset, l.inode),
            (0x55d0c0a00000, 0x55d0c0a01000, 0x1000, 1234)
        );
        assert_eq!(&l.perms, b"r--p");
        assert_eq!(l.path, b"/usr/bin/my  prog (deleted)");
        let anon = parse(b"7f0000000000-7f0000001000 ---p 00000000 00:00 0 ").unwrap();
        assert_eq!(anon.path, b"");
        assert_eq!(parse(b"7f0000000000-7f00"), None);
        assert_eq!(parse(b"Rss:   4 kB"), None);
        assert_eq!(parse(b"2000-1000 rw-p 0 00:00 0"), None);
        assert_eq!(parse(b"1000-2000 rw 0 00:00 0"), None);
        assert_eq!(parse(b"zzzz-0000 rw-p 0 0 0"), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range(b"7f00-7f10 rw-p 0 00:00 0"),
            Some((0x7f00, 0x7f10))
        );
        assert_eq!(parse_range(b"zz"), None);
        assert_eq!(parse_range(b"10"), None);
        assert_eq!(parse_range(b"-10 x"), None);
    }
}
