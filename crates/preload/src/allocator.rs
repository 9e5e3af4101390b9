//! Names the program's allocator in the header (issue 16, item 2): the
//! file defining the `malloc` we forward to ([`next::allocator_path`]),
//! told apart by [`Allocator::of_path`]. The heap walker and `info` read it
//! to say that glibc's heap state does not describe a jemalloc program's
//! blocks, rather than guess from an idle glibc arena.

use core::sync::atomic::Ordering;

use leaktrail_format::{Allocator, Header};

use crate::next;

/// Stores the program's allocator in `hdr`. Called at init, after
/// [`next::resolve`].
pub fn publish(hdr: &Header) {
    let allocator = match next::allocator_path() {
        Some(path) => Allocator::of_path(path.to_bytes()),
        // No next definition: we forward to glibc's own entry points.
        None => Allocator::Glibc,
    };
    hdr.allocator.store(allocator as u32, Ordering::Release);
}
