//! libc's own residue: blocks the C library, the loader or the C++ runtime
//! allocated for themselves and would free at exit (issue 11).
//!
//! valgrind calls glibc's `__libc_freeres` and libstdc++'s
//! `__gnu_cxx::__freeres` before its leak check, so it never reports the
//! stdio buffers, the time-zone data, the environment `setenv` built, the
//! threads' DTVs and dynamic TLS, the thread stacks glibc caches, or
//! libstdc++'s emergency exception pool; heaptrack hides the same blocks with
//! built-in suppressions. We take the same blocks out of the four classes
//! into a class of their own, "libc internal", which `leaks` counts apart,
//! `--fail-on` ignores and `--show-libc` lists.
//!
//! A block is libc's when the frames of its allocation stack, from the
//! innermost up to the first one outside those libraries, pass through a
//! function of the kinds `__libc_freeres` frees ([`FREED_AT_EXIT`]), or when
//! its whole stack lies inside them (a library constructor, the loader).
//! The names need libc's symbols (Debian's `libc6-dbg`); without them only
//! the exported ones match.

use crate::symbolize::Frame;

/// Functions (or a distinctive part of their names) whose allocations
/// glibc's `__libc_freeres` or libstdc++'s `__freeres` release at exit.
pub const FREED_AT_EXIT: &[&str] = &[
    // stdio buffers (`_IO_cleanup` drops them).
    "_IO_file_doallocate",
    // Time-zone data (tzset.c and tzfile.c's `free_mem`).
    "__tzfile_read",
    "__tzstring",
    "tzset_internal",
    // The environment `setenv` built (setenv.c's `free_mem`).
    "__add_to_environ",
    // Threads' DTVs and dynamic TLS blocks (dl-tls.c).
    "allocate_dtv",
    "_dl_allocate_tls",
    "_dl_resize_dtv",
    "_dl_update_slotinfo",
    "tls_get_addr_tail",
    "__tls_get_addr",
    // Locale data and NSS modules.
    "_nl_",
    "setlocale",
    "nss_",
    // libstdc++'s emergency exception pool.
    "pool::pool",
];

/// Whether the module file name is libc, the loader or the C/C++ runtime.
pub fn is_runtime_module(name: &str) -> bool {
    let name = name.rsplit('/').next().unwrap_or(name);
    [
        "libc.so",
        "ld-linux",
        "ld.so",
        "libstdc++.so",
        "libgcc_s.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Whether a block allocated by `stack` (symbolized, inlined calls
/// expanded, innermost first) is libc's residue.
pub fn is_libc_residue(stack: &[Frame]) -> bool {
    let inside = |f: &Frame| f.module.as_deref().is_some_and(is_runtime_module);
    let lead = stack.iter().take_while(|f| inside(f)).count();
    if lead == 0 {
        return false;
    }
    lead == stack.len()
        || stack[..lead].iter().any(|f| {
            f.function
                .as_deref()
                .is_some_and(|n| FREED_AT_EXIT.iter().any(|k| n.contains(k)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(module: &str, function: &str) -> Frame {
        crate::synthetic::frame(function, module, "")
    }

    #[test]
    fn libc_residue_is_a_freed_at_exit_function_before_the_programs_frames() {
        let libc = "libc.so.6";
        let ld = "ld-linux-x86-64.so.2";
        // The stdout buffer, allocated by printf on main's behalf.
        let stdout_buffer = [
            frame(libc, "_IO_file_doallocate"),
            frame(libc, "_IO_doallocbuf"),
            frame(libc, "printf"),
            frame("app", "main"),
        ];
        assert!(is_libc_residue(&stdout_buffer));
        // A thread's DTV, made inside pthread_create.
        let dtv = [
            frame(ld, "allocate_dtv"),
            frame(ld, "_dl_allocate_tls"),
            frame(libc, "pthread_create"),
            frame("app", "main"),
        ];
        assert!(is_libc_residue(&dtv));
        // strdup on the program's behalf is the program's block.
        let strdup = [frame(libc, "strdup"), frame("app", "main")];
        assert!(!is_libc_residue(&strdup));
        // A block the program allocated itself.
        assert!(!is_libc_residue(&[frame("app", "main")]));
        // A freed-at-exit function called back from the program's code is
        // not enough: the name must come before the program's first frame.
        let later = [
            frame(libc, "malloc"),
            frame("app", "my_alloc"),
            frame(libc, "_IO_file_doallocate"),
        ];
        assert!(!is_libc_residue(&later));
        // Wholly inside the runtime: a library constructor run by the
        // loader.
        let ctor = [frame("libstdc++.so.6", "??"), frame(ld, "_dl_init")];
        assert!(is_libc_residue(&ctor));
        assert!(!is_libc_residue(&[]));
        assert!(is_runtime_module(
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
        ));
        assert!(!is_runtime_module("libcrypto.so.3"));
    }
}
