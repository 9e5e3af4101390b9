//! C++'s allocation operators (`operator new`, `new[]`, their nothrow and
//! aligned forms, and every `delete`), for allocators that define their
//! own: tcmalloc's, jemalloc's and mimalloc's do not call `malloc`, so
//! their blocks went unrecorded (issue 16, item 2).
//!
//! The exported operators are C (`operators.c`, which says why: a throwing
//! `new` must unwind through them); this module is what they call: the
//! next definition of each operator, resolved on first use, and whether
//! its blocks are recorded here, at the operator, or already by our
//! `malloc`/`free` hooks further down:
//!
//! * libstdc++'s operators (every glibc program) call `malloc` and `free`
//!   through the PLT, which are our hooks: forwarded, recorded there.
//! * The allocator's own operators (defined by the file that defines
//!   `malloc`) are recorded here: the block after `new` returned, the free
//!   before `delete` runs (the rule of `free`: once the allocator has the
//!   address back, another thread may be handed it).
//! * Except those of jemalloc's that call its public API, which is our
//!   hooks again (found in Debian's 5.3 and in its `jemalloc_cpp.cpp`):
//!   the aligned `new`s call `aligned_alloc`, the unsized `delete`s `free`
//!   and the sized aligned ones `sdallocx`. Recording those twice would
//!   count a sampled program's unsampled blocks twice and every delete as
//!   an unknown free.
//!
//! * mimalloc's `mi_new` and `mi_free` families, which the operators of
//!   `mimalloc-new-delete.h` call (defined in the program's executable,
//!   often inlined into its code, so no operator of ours sees them): the
//!   allocator's own entry points, recorded here as its operators are.
//!   mimalloc calls `mi_free` itself through its PLT (from its sized
//!   `delete[]`, `mi_free_aligned`, …), under an entry point recorded
//!   already: a call whose return address is in the allocator's own code
//!   ([`next::allocator_text`]) is only forwarded.
//!
//! Nothing here allocates, locks or panics once resolved; the resolution
//! (`dlsym`, `dladdr`) happens once per operator, at its first call, and
//! again while it finds nothing (a C program that `dlopen`s a C++ library
//! later).

use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use leaktrail_format::Allocator;

use crate::next::{self, bootstrap};
use crate::tracer::{record_alloc, record_free};

/// The operators, in `operators.c`'s order.
const NAMES: [&CStr; COUNT] = [
    c"_Znwm",
    c"_Znam",
    c"_ZnwmRKSt9nothrow_t",
    c"_ZnamRKSt9nothrow_t",
    c"_ZnwmSt11align_val_t",
    c"_ZnamSt11align_val_t",
    c"_ZnwmSt11align_val_tRKSt9nothrow_t",
    c"_ZnamSt11align_val_tRKSt9nothrow_t",
    c"_ZdlPv",
    c"_ZdaPv",
    c"_ZdlPvRKSt9nothrow_t",
    c"_ZdaPvRKSt9nothrow_t",
    c"_ZdlPvm",
    c"_ZdaPvm",
    c"_ZdlPvSt11align_val_t",
    c"_ZdaPvSt11align_val_t",
    c"_ZdlPvSt11align_val_tRKSt9nothrow_t",
    c"_ZdaPvSt11align_val_tRKSt9nothrow_t",
    c"_ZdlPvmSt11align_val_t",
    c"_ZdaPvmSt11align_val_t",
    c"mi_new",
    c"mi_new_nothrow",
    c"mi_new_aligned",
    c"mi_new_aligned_nothrow",
    c"mi_free",
    c"mi_free_size",
    c"mi_free_aligned",
    c"mi_free_size_aligned",
];

const COUNT: usize = 28;

/// jemalloc's operators that are recorded here: the plain, array and
/// nothrow `new`s and the sized unaligned `delete`s; the others reach our
/// hooks (see the module's docs).
const JEMALLOC_OWN: [bool; COUNT] = {
    let mut own = [false; COUNT];
    let mut i = 0;
    while i < 4 {
        own[i] = true;
        i += 1;
    }
    own[12] = true;
    own[13] = true;
    own
};

const UNRESOLVED: u8 = 0;
const FORWARD: u8 = 1;
const RECORD: u8 = 2;

/// The next definition of each operator, valid once its [`KIND`] is set.
static NEXT: [AtomicUsize; COUNT] = [const { AtomicUsize::new(0) }; COUNT];
/// [`UNRESOLVED`], [`FORWARD`] or [`RECORD`], stored after [`NEXT`].
static KIND: [AtomicU8; COUNT] = [const { AtomicU8::new(UNRESOLVED) }; COUNT];

// The C operators are an archive member nothing else references: taking
// their addresses links them into the library (not into unit tests, where
// they would interpose the test binary's own operators). Declared without
// parameters: only their addresses are taken here (`leaktrail attach`
// writes them into GOT entries), they are never called from Rust.
#[cfg(not(test))]
extern "C-unwind" {
    fn _Znwm();
    fn _Znam();
    fn _ZnwmRKSt9nothrow_t();
    fn _ZnamRKSt9nothrow_t();
    fn _ZnwmSt11align_val_t();
    fn _ZnamSt11align_val_t();
    fn _ZnwmSt11align_val_tRKSt9nothrow_t();
    fn _ZnamSt11align_val_tRKSt9nothrow_t();
    fn _ZdlPv();
    fn _ZdaPv();
    fn _ZdlPvRKSt9nothrow_t();
    fn _ZdaPvRKSt9nothrow_t();
    fn _ZdlPvm();
    fn _ZdaPvm();
    fn _ZdlPvSt11align_val_t();
    fn _ZdaPvSt11align_val_t();
    fn _ZdlPvSt11align_val_tRKSt9nothrow_t();
    fn _ZdaPvSt11align_val_tRKSt9nothrow_t();
    fn _ZdlPvmSt11align_val_t();
    fn _ZdaPvmSt11align_val_t();
    fn mi_new();
    fn mi_new_nothrow();
    fn mi_new_aligned();
    fn mi_new_aligned_nothrow();
    fn mi_free();
    fn mi_free_size();
    fn mi_free_aligned();
    fn mi_free_size_aligned();
}

/// Our operators, in [`NAMES`]' order.
#[cfg(not(test))]
#[used]
static OURS: [unsafe extern "C-unwind" fn(); COUNT] = [
    _Znwm,
    _Znam,
    _ZnwmRKSt9nothrow_t,
    _ZnamRKSt9nothrow_t,
    _ZnwmSt11align_val_t,
    _ZnamSt11align_val_t,
    _ZnwmSt11align_val_tRKSt9nothrow_t,
    _ZnamSt11align_val_tRKSt9nothrow_t,
    _ZdlPv,
    _ZdaPv,
    _ZdlPvRKSt9nothrow_t,
    _ZdaPvRKSt9nothrow_t,
    _ZdlPvm,
    _ZdaPvm,
    _ZdlPvSt11align_val_t,
    _ZdaPvSt11align_val_t,
    _ZdlPvSt11align_val_tRKSt9nothrow_t,
    _ZdaPvSt11align_val_tRKSt9nothrow_t,
    _ZdlPvmSt11align_val_t,
    _ZdaPvmSt11align_val_t,
    mi_new,
    mi_new_nothrow,
    mi_new_aligned,
    mi_new_aligned_nothrow,
    mi_free,
    mi_free_size,
    mi_free_aligned,
    mi_free_size_aligned,
];

/// Our definition of the operator whose mangled name is `name`, for
/// `leaktrail attach`'s GOT redirection; `None` for another name (and in
/// unit tests, where the C operators are not linked).
pub fn ours(name: &[u8]) -> Option<usize> {
    let i = NAMES.iter().position(|n| n.to_bytes() == name)?;
    #[cfg(not(test))]
    return Some(OURS[i] as usize);
    #[cfg(test)]
    {
        let _ = i;
        None
    }
}

/// Whether `f` is one of our operators.
pub fn is_ours(f: u64) -> bool {
    #[cfg(not(test))]
    return OURS.iter().any(|&o| o as usize as u64 == f);
    #[cfg(test)]
    {
        let _ = f;
        false
    }
}

/// The next definition of operator `which` (0 if there is none), and in
/// `record` whether the operator records its blocks itself.
///
/// # Safety
/// `record` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn leaktrail_operator_next(which: u32, record: *mut c_int) -> usize {
    let (f, kind) = match KIND.get(which as usize) {
        Some(kind) => match kind.load(Ordering::Acquire) {
            UNRESOLVED => resolve(which as usize),
            kind => (NEXT[which as usize].load(Ordering::Relaxed), kind),
        },
        None => (0, FORWARD),
    };
    // SAFETY: the caller's out-pointer.
    unsafe { *record = c_int::from(kind == RECORD) };
    f
}

#[cold]
fn resolve(i: usize) -> (usize, u8) {
    // The allocator's file first: its `malloc` decides who records.
    next::resolve();
    // Found now, off the hook path (see `leaktrail_called_by_allocator`).
    next::allocator_text();
    next::own_text();
    let f = next::lookup(NAMES[i]);
    if f == 0 {
        return (0, FORWARD);
    }
    let own = next::defined_by_allocator(f)
        && match next::allocator_path().map(|p| Allocator::of_path(p.to_bytes())) {
            Some(Allocator::Jemalloc) => JEMALLOC_OWN[i],
            _ => true,
        };
    let kind = if own { RECORD } else { FORWARD };
    // Two threads racing here store the same values.
    NEXT[i].store(f, Ordering::Relaxed);
    KIND[i].store(kind, Ordering::Release);
    (f, kind)
}

/// Whether `return_address` is in the allocator's own code (a call it
/// made itself, through its PLT, from an entry point we recorded) or in
/// ours (one of our operators tail-called through the allocator's PLT):
/// compares against ranges found at resolution, no lock.
#[no_mangle]
pub extern "C" fn leaktrail_called_by_allocator(return_address: *const c_void) -> c_int {
    let at = return_address as u64;
    let (our_start, our_end) = next::own_text();
    // An allocator in the executable shares its file with the program:
    // its own calls are told by `divert_executables` instead.
    let (start, end) = if next::malloc_in_executable() {
        (0, 0)
    } else {
        next::allocator_text()
    };
    c_int::from((start..end).contains(&at) || (our_start..our_end).contains(&at))
}

/// Set when the executable's own operators were diverted to ours
/// ([`divert_executables`]).
static DIVERTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Diverts C++'s operators that the executable defines, in a program
/// whose allocator is linked into the executable and was diverted
/// (`next::divert_executables_allocator`): jemalloc's `libjemalloc.a`
/// brings its operators along, which do not call `malloc`. At their
/// entries ([`crate::detour`]), all or none, before `main`. Who records
/// is read from each operator's code: one that calls a diverted function
/// (`free`, `aligned_alloc`, `sdallocx`, or another operator, as
/// jemalloc's aligned `new`s and unsized `delete`s, or libstdc++'s
/// calling `malloc`) is recorded there and only forwarded here; the
/// others are the allocator's own and recorded here. Returns whether they
/// were diverted.
pub fn divert_executables() -> bool {
    let mut entries = [0u64; 15 + COUNT];
    entries[..15].copy_from_slice(&next::diverted_entries());
    let mut code: [Option<&'static [u8]>; COUNT] = [None; COUNT];
    for (i, name) in NAMES.iter().enumerate() {
        // An alias of a diverted malloc-family function (tcmalloc's
        // `delete` is its `free`) reaches that hook already; its entry is
        // a jump now, not the code to plan.
        if next::executable_address(name).is_some_and(|f| entries[..15].contains(&f)) {
            continue;
        }
        match next::executable_function(name) {
            Some(Ok(f)) if ours(name.to_bytes()).is_some() => code[i] = Some(f),
            Some(_) => return false,
            None => {}
        }
    }
    // Every entry a call may reach us through: the diverted malloc
    // family, and these operators themselves.
    for (e, c) in entries[15..].iter_mut().zip(&code) {
        *e = c.map_or(0, |c| c.as_ptr() as u64);
    }
    let mut kind = [FORWARD; COUNT];
    for (i, c) in code.iter().enumerate() {
        let Some(c) = c else {
            continue;
        };
        let ip = c.as_ptr() as u64;
        // (A loop back to its own entry is not a call.)
        let mut others = entries;
        others.iter_mut().filter(|e| **e == ip).for_each(|e| *e = 0);
        match crate::detour::calls_any(c, ip, &others) {
            Some(true) => kind[i] = FORWARD,
            Some(false) => kind[i] = RECORD,
            None => return false,
        }
    }
    // Found now, off the hook path (see `leaktrail_called_by_allocator`;
    // diverted operators never reach `resolve`).
    next::allocator_text();
    next::own_text();
    let Some(first) = code.iter().flatten().next() else {
        return false;
    };
    let Some(mut island) = crate::detour::Island::near(first.as_ptr() as u64) else {
        return false;
    };
    let mut all = true;
    // (entry, trampoline) of each operator diverted: `delete` and
    // `delete[]` may be one function.
    let mut done = [(0u64, 0u64); COUNT];
    for (i, c) in code.iter().enumerate() {
        let (Some(c), Some(hook)) = (c, ours(NAMES[i].to_bytes())) else {
            continue;
        };
        let ip = c.as_ptr() as u64;
        if let Some(&(_, trampoline)) = done.iter().find(|&&(e, _)| e == ip) {
            NEXT[i].store(trampoline as usize, Ordering::Relaxed);
            KIND[i].store(kind[i], Ordering::Release);
            done[i] = (ip, trampoline);
            continue;
        }
        // SAFETY: the executable's function, whole, before `main`: see
        // `detour`'s docs.
        let diverted = unsafe {
            island.divert(c, ip, hook as u64, |trampoline| {
                NEXT[i].store(trampoline as usize, Ordering::Relaxed);
                KIND[i].store(kind[i], Ordering::Release);
            })
        };
        match diverted {
            Ok(trampoline) => done[i] = (ip, trampoline),
            Err(_) => {
                // Those diverted already only forward from now on: a `new`
                // recorded without its `delete` would be a false leak.
                // The operators are then said to bypass the tracer.
                for (j, &(e, _)) in done.iter().enumerate() {
                    if e != 0 {
                        KIND[j].store(FORWARD, Ordering::Release);
                    }
                }
                KIND[i].store(FORWARD, Ordering::Release);
                all = false;
                break;
            }
        }
    }
    island.seal();
    DIVERTED.store(all, Ordering::Release);
    all
}

/// Whether [`divert_executables`] diverted the executable's operators.
pub fn diverted() -> bool {
    DIVERTED.load(Ordering::Acquire)
}

/// After an allocator's own `new` returned `p` for `size` bytes.
#[no_mangle]
pub extern "C" fn leaktrail_operator_allocated(p: *mut c_void, size: usize) {
    if !p.is_null() {
        record_alloc(p as u64, size as u64);
    }
}

/// Before an allocator's own `delete` of `p`; whether to forward it (not
/// a block of the bootstrap buffer, which no allocator knows).
#[no_mangle]
pub extern "C" fn leaktrail_operator_freeing(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 1;
    }
    if bootstrap::owns(p) {
        return 0;
    }
    record_free(p as u64);
    1
}

/// A `new` with no definition to forward to (none is loaded: the program
/// could not have been linked so). From our `malloc`; a throwing `new`
/// cannot throw from here, so it ends the program as `noexcept` would.
#[no_mangle]
pub extern "C" fn leaktrail_operator_unresolved_new(
    size: usize,
    align: usize,
    nothrow: c_int,
) -> *mut c_void {
    let size = size.max(1);
    let p = if align > 16 {
        // SAFETY: our hook, with the caller's arguments.
        unsafe { crate::hooks::aligned_alloc(align, size.next_multiple_of(align)) }
    } else {
        // SAFETY: as above.
        unsafe { crate::hooks::malloc(size) }
    };
    if p.is_null() && nothrow == 0 {
        crate::tracer::say(b"leaktrail: operator new found no definition to forward to\n");
        // SAFETY: ends the process; a `new` that cannot throw must not
        // return null.
        unsafe { libc::abort() };
    }
    p
}

/// A `delete` with no definition to forward to: the block came from our
/// `malloc`.
///
/// # Safety
/// `p` is null or a live block of the program's allocator.
#[no_mangle]
pub unsafe extern "C" fn leaktrail_operator_unresolved_delete(p: *mut c_void) {
    // SAFETY: our hook, with the caller's block.
    unsafe { crate::hooks::free(p) }
}
