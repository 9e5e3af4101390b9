//! Allocation plumbing: the frames between the code that wants memory and
//! `malloc`, which every stack of an allocation starts with and which name
//! nobody's leak.
//!
//! One list, used by every view that names "the" function of a stack (the
//! diagnosis, the report, the lost-site tables): [`allocating_frame`] is
//! the first frame outside it. The plumbing stays in the stacks shown.
//!
//! What counts: C's allocator and the usual wrappers around it (any
//! function whose name ends in `malloc`, `calloc`, `realloc`, `memalign`,
//! `strdup`, `strndup`: `xmalloc`, `g_malloc0`, `safe_realloc`), C++'s
//! `operator new` and the standard allocators, Rust's `alloc::` and
//! `__rust_alloc`, Node's and V8's array-buffer allocators and backing
//! stores, and V8's own malloc helpers. A wrapper named otherwise
//! (`my_get_buffer`) is not recognised: it is named, and its caller is the
//! next line of the stack.
//!
//! In a stack that runs JavaScript, the runtime between the program and
//! the allocator is plumbing too ([`is_runtime`]): the node binary's own
//! code (V8, libuv, Node's C++ and the embedded builtins), other JIT code,
//! and Node's own JS (`node:` scripts). A Node user's question is which of
//! *their* functions holds the memory: `retainBuffers`, not
//! `node::Buffer::CreateUnsafeArrayBuffer` or `createUnsafeBuffer`. An
//! addon's native code is not runtime: a leak in it is named there.

use crate::symbolize::{Frame, FrameKind};

/// Names that are plumbing wherever they appear in a (demangled) name.
const CONTAINS: &[&str] = &[
    "operator new",
    "operator delete",
    "std::allocator",
    "std::__new_allocator",
    "std::allocator_traits",
    "__gnu_cxx::new_allocator",
    "__gnu_cxx::__aligned_membuf",
    "node::NodeArrayBufferAllocator::",
    "node::ArrayBufferAllocator::",
    "node::DebuggingArrayBufferAllocator::",
    "v8::ArrayBuffer::Allocator::",
    "v8::ArrayBuffer::NewBackingStore",
    "v8::internal::BackingStore",
    "v8::internal::Malloced::",
    "v8::internal::AllocWithRetry",
    "v8::internal::AllocAtLeastWithRetry",
    "v8::internal::AlignedAllocWithRetry",
    "v8::internal::AccountingAllocator::",
    "v8::base::Malloc",
    "v8::base::Calloc",
    "v8::base::Realloc",
    "v8::base::AlignedAlloc",
];

/// Prefixes of plumbing names (Rust's allocation layers).
const PREFIXES: &[&str] = &[
    "alloc::alloc::",
    "alloc::raw_vec::",
    "<alloc::alloc::",
    "__rust_alloc",
    "__rust_realloc",
    "__rdl_alloc",
    "__rdl_realloc",
    "__rg_alloc",
];

/// Endings of a bare function name that make it an allocator or a wrapper
/// of one (`xmalloc`, `g_malloc0`, `safe_realloc`).
const SUFFIXES: &[&str] = &[
    "malloc",
    "malloc0",
    "calloc",
    "realloc",
    "reallocarray",
    "memalign",
    "aligned_alloc",
    "valloc",
    "strdup",
    "strndup",
];

/// The bare name of a demangled function: no parameters, template
/// arguments or namespaces (`ns::xmalloc(unsigned long)` is `xmalloc`).
fn bare(name: &str) -> &str {
    let name = name.split('(').next().unwrap_or(name);
    let name = name.split('<').next().unwrap_or(name);
    name.rsplit("::").next().unwrap_or(name).trim()
}

/// Whether a function with this (demangled) name is allocation plumbing.
pub fn is_plumbing(function: &str) -> bool {
    if CONTAINS.iter().any(|p| function.contains(p))
        || PREFIXES.iter().any(|p| function.starts_with(p))
    {
        return true;
    }
    let b = bare(function).to_ascii_lowercase();
    SUFFIXES.iter().any(|s| b.ends_with(s))
}

/// Whether a frame of a stack that runs JavaScript belongs to the runtime
/// rather than the program: code of the node binary, JIT code that is not
/// a JS function (builtins, stubs, handlers), or Node's own JS.
pub fn is_runtime(frame: &Frame) -> bool {
    match frame.kind {
        FrameKind::Js => frame
            .file
            .as_deref()
            .is_some_and(|f| f.starts_with("node:")),
        FrameKind::Jit => true,
        FrameKind::Type => false,
        FrameKind::Native | FrameKind::Unknown => frame
            .module
            .as_deref()
            .is_some_and(leaktrail_recording::is_node),
    }
}

/// Whether the stack runs JavaScript (has a JS frame).
pub fn runs_js(frames: &[Frame]) -> bool {
    frames.iter().any(|f| f.kind == FrameKind::Js)
}

fn named_outside_plumbing(f: &Frame) -> bool {
    f.function.as_deref().is_some_and(|n| !is_plumbing(n))
}

/// The frame that names who allocated: the first (innermost) frame with a
/// function name outside the plumbing (and, in a stack that runs
/// JavaScript, outside the runtime); failing that, the first outside the
/// plumbing; then the first with a name at all; then the first frame.
pub fn allocating_frame(frames: &[Frame]) -> Option<&Frame> {
    let js = runs_js(frames);
    frames
        .iter()
        .find(|f| named_outside_plumbing(f) && !(js && is_runtime(f)))
        .or_else(|| frames.iter().find(|f| named_outside_plumbing(f)))
        .or_else(|| frames.iter().find(|f| f.function.is_some()))
        .or_else(|| frames.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: FrameKind, function: &str, module: Option<&str>, file: Option<&str>) -> Frame {
        Frame {
            function: Some(function.into()),
            file: file.map(Into::into),
            module: module.map(Into::into),
            kind,
            ..Frame::unknown(0)
        }
    }

    #[test]
    fn the_allocating_frame_is_the_first_outside_the_plumbing() {
        use FrameKind::{Js, Native};
        // A C program: the wrapper's caller.
        let c = [
            frame(Native, "xmalloc", Some("app"), None),
            frame(Native, "remember_request", Some("app"), None),
            frame(Native, "main", Some("app"), None),
        ];
        assert_eq!(
            allocating_frame(&c).and_then(|f| f.function.as_deref()),
            Some("remember_request")
        );
        // Node: past node's allocator, V8, the builtins and Node's own JS.
        let node = [
            frame(
                Native,
                "node::NodeArrayBufferAllocator::Allocate(unsigned long)",
                Some("node"),
                None,
            ),
            frame(
                Native,
                "node::Buffer::CreateUnsafeArrayBuffer",
                Some("node"),
                None,
            ),
            frame(FrameKind::Jit, "Builtins_CallApiCallback", None, None),
            frame(Js, "createUnsafeBuffer", None, Some("node:internal/buffer")),
            frame(Js, "retainBuffers", None, Some("/app/stepper.js")),
        ];
        assert_eq!(
            allocating_frame(&node).and_then(|f| f.function.as_deref()),
            Some("retainBuffers")
        );
        // An addon's native code is the program's.
        let addon = [
            frame(Native, "addon_leak_blocks", Some("addon.node"), None),
            frame(Native, "napi_call", Some("node"), None),
            frame(Js, "handleRequest", None, Some("/app/stepper.js")),
        ];
        assert_eq!(
            allocating_frame(&addon).and_then(|f| f.function.as_deref()),
            Some("addon_leak_blocks")
        );
    }

    #[test]
    fn plumbing_is_recognised_by_name() {
        for yes in [
            "operator new(unsigned long)",
            "operator new[](unsigned long)",
            "malloc",
            "xmalloc",
            "g_malloc0",
            "safe_realloc",
            "xstrdup",
            "app::pool::xcalloc(unsigned long, unsigned long)",
            "node::NodeArrayBufferAllocator::AllocateUninitialized(unsigned long)",
            "v8::internal::BackingStore::Allocate(v8::internal::Isolate*, unsigned long)",
            "std::allocator<char>::allocate(unsigned long)",
            "__gnu_cxx::new_allocator<int>::allocate(unsigned long, void const*)",
            "alloc::raw_vec::RawVec<T,A>::grow_one",
            "alloc::alloc::exchange_malloc",
            "__rust_alloc",
            "v8::internal::AllocAtLeastWithRetry(unsigned long)",
        ] {
            assert!(is_plumbing(yes), "{yes}");
        }
        for no in [
            "remember_request",
            "cache_response",
            "handleRequest",
            "node::Buffer::New(v8::Isolate*, unsigned long)",
            "v8::internal::Zone::Expand(unsigned long)",
            "std::vector<int>::push_back(int const&)",
            "mallocator_stats",
            "allocate_frame",
        ] {
            assert!(!is_plumbing(no), "{no}");
        }
    }
}
