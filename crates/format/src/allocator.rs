//! Which allocator a program's `malloc` is (issue 16, item 2): glibc's, or
//! one that replaces it (jemalloc, tcmalloc, mimalloc, another). The tracer
//! stores it in [`Header::allocator`](crate::Header::allocator) once it
//! knows which definition it forwards to; readers of a core without a
//! tracer tell it from the libraries mapped. Analyses that read glibc's
//! own heap state (the heap walker, `info`'s self-check) say so instead of
//! guessing when it is not glibc's.

/// A program's allocator. Stored as a `u32` in the header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Allocator {
    /// Not known (not resolved yet, or a reader of an older region).
    Unknown = 0,
    /// glibc's malloc.
    Glibc = 1,
    /// jemalloc.
    Jemalloc = 2,
    /// tcmalloc (gperftools).
    Tcmalloc = 3,
    /// mimalloc.
    Mimalloc = 4,
    /// Another definition of `malloc` (the program's own, or a library we
    /// do not name).
    Other = 5,
}

impl Allocator {
    /// Decodes a stored word; an unknown value is [`Allocator::Unknown`].
    pub fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::Glibc,
            2 => Self::Jemalloc,
            3 => Self::Tcmalloc,
            4 => Self::Mimalloc,
            5 => Self::Other,
            _ => Self::Unknown,
        }
    }

    /// The word for messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Glibc => "glibc",
            Self::Jemalloc => "jemalloc",
            Self::Tcmalloc => "tcmalloc",
            Self::Mimalloc => "mimalloc",
            Self::Other => "other",
        }
    }

    /// The allocator a file defining `malloc` is, by its name (`path` may
    /// be a full path): `libc.so.6` is glibc's, `libjemalloc.so.2`
    /// jemalloc's, and so on; any other file is [`Allocator::Other`].
    pub fn of_path(path: &[u8]) -> Self {
        let name = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => &path[i + 1..],
            None => path,
        };
        match Self::of_library(name) {
            Self::Unknown => Self::Other,
            a => a,
        }
    }

    /// The replacing allocator a mapped library is, by its file name, or
    /// glibc for libc itself; [`Allocator::Unknown`] for any other file.
    /// For telling a program's allocator from what a core maps.
    pub fn of_library(name: &[u8]) -> Self {
        let name = match name.iter().rposition(|&b| b == b'/') {
            Some(i) => &name[i + 1..],
            None => name,
        };
        if name.starts_with(b"libjemalloc") {
            Self::Jemalloc
        } else if name.starts_with(b"libtcmalloc") {
            Self::Tcmalloc
        } else if name.starts_with(b"libmimalloc") {
            Self::Mimalloc
        } else if name.starts_with(b"libc.so") || name.starts_with(b"libc-2.") {
            Self::Glibc
        } else {
            Self::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_allocator_of_a_file() {
        for (path, want) in [
            (
                &b"/usr/lib/x86_64-linux-gnu/libc.so.6"[..],
                Allocator::Glibc,
            ),
            (b"libc.so.6", Allocator::Glibc),
            (b"/lib/libc-2.31.so", Allocator::Glibc),
            (
                b"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
                Allocator::Jemalloc,
            ),
            (b"/usr/lib/libtcmalloc_minimal.so.4", Allocator::Tcmalloc),
            (b"/usr/lib/libmimalloc.so.2.0", Allocator::Mimalloc),
            (b"/srv/bin/server", Allocator::Other),
            (b"", Allocator::Other),
        ] {
            assert_eq!(Allocator::of_path(path), want, "{path:?}");
        }
        assert_eq!(
            Allocator::of_library(b"/srv/bin/server"),
            Allocator::Unknown
        );
        assert_eq!(
            Allocator::of_library(b"/usr/lib/libcrypto.so.3"),
            Allocator::Unknown
        );
    }

    #[test]
    fn round_trips_through_the_stored_word() {
        for a in [
            Allocator::Unknown,
            Allocator::Glibc,
            Allocator::Jemalloc,
            Allocator::Tcmalloc,
            Allocator::Mimalloc,
            Allocator::Other,
        ] {
            assert_eq!(Allocator::from_u32(a as u32), a);
        }
        assert_eq!(Allocator::from_u32(77), Allocator::Unknown);
    }
}
