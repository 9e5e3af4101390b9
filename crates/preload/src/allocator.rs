//! Names the program's allocator in the header (issue 16, item 2): the
//! file defining the `malloc` we forward to ([`next::allocator_path`]),
//! told apart by [`Allocator::of_path`]. The heap walker and `info` read it
//! to say that glibc's heap state does not describe a jemalloc program's
//! blocks, rather than guess from an idle glibc arena.
//!
//! And says what bypasses us: an executable that defines `malloc` itself
//! (an allocator linked statically exports it, since libc refers to it)
//! comes before `LD_PRELOAD` in the loader's search order, so every call,
//! libc's own included, goes to it and none reaches a symbol of ours; one
//! that defines C++'s operators (`mimalloc-new-delete.h`) keeps `new` from
//! us. The executable's own calls are direct, through no GOT; its malloc
//! family is diverted at its functions' entries instead ([`crate::detour`]),
//! and only where that cannot be done safely does the header say so
//! ([`Header::bypassed`]) for `info` and `leaks`, and the tracer once on
//! stderr. With `malloc` bypassed the tracer records nothing at all (see
//! `tracer::init`): the few calls that still reach a hook (a function the
//! allocator lacks, such as jemalloc's missing `reallocarray`) would make
//! blocks whose `free` never does, every one a false leak.

use core::sync::atomic::Ordering;

use leaktrail_format::{Allocator, Header, BYPASS_MALLOC, BYPASS_OPERATORS};

use crate::next;

/// Stores the program's allocator in `hdr`, and what bypasses the tracer,
/// saying the latter on stderr when `aloud`. Called after
/// [`next::resolve`]: at init when `LD_PRELOAD` loaded us (aloud), at
/// `leaktrail attach` (quietly: the program's stderr is not ours to write
/// into; `attach` reads the header).
pub fn publish(hdr: &Header, aloud: bool) {
    let say = |line: &[u8]| {
        if aloud {
            crate::tracer::say(line)
        }
    };
    let allocator = match next::allocator_path() {
        Some(path) => Allocator::of_path(path.to_bytes()),
        // No next definition: we forward to glibc's own entry points.
        None => Allocator::Glibc,
    };
    hdr.allocator.store(allocator as u32, Ordering::Release);
    if allocator == Allocator::Glibc {
        next::read_glibc_chunks();
    }
    let mut bypassed = 0;
    if next::malloc_bypasses_us() {
        bypassed |= BYPASS_MALLOC;
        say(
            b"leaktrail: this program's executable defines malloc itself (an allocator linked \
              into it) and its entry could not be diverted to the tracer: its allocations \
              bypass the tracer and none is recorded (link the allocator as a shared \
              library to trace them)\n",
        );
    }
    // Operators in the executable that call `malloc` reach our hooks:
    // libstdc++'s, linked statically (gcc's own cc1). Those of an
    // allocator's header call into the allocator, which is then not
    // glibc's: `mimalloc-new-delete.h`'s call `mi_new` and `mi_free`,
    // hooked; another's are not seen.
    let new = crate::operators::ours(b"_Znwm").unwrap_or(0);
    // mimalloc's header calls `mi_new` and `mi_free`, which we hook (see
    // `operators`).
    if new != 0
        && !matches!(allocator, Allocator::Glibc | Allocator::Mimalloc)
        && next::executable_defines(c"_Znwm", new)
        && !crate::operators::diverted()
    {
        bypassed |= BYPASS_OPERATORS;
        say(
            b"leaktrail: this program's executable defines C++'s operator new and delete \
              itself (mimalloc-new-delete.h or the like): blocks from new bypass the tracer \
              and are not recorded; malloc's are\n",
        );
    }
    hdr.bypassed.store(bypassed, Ordering::Release);
}
