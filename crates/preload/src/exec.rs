//! The variadic `execl`, `execlp` and `execle` (issue 16, item 4).
//!
//! glibc's `execl*` build an argument vector and call `__execve`
//! internally, never through the PLT, so our `execve` hook (which keeps
//! the supervisor's link open into the new image, see
//! [`hooks::execve`](crate::hooks::execve)) never saw them: `run` of a
//! wrapper that exec'd with `execl` lost the link. We define them
//! ourselves and hand the vector to our own `execve`/`execvp` hooks.
//!
//! Stable Rust cannot define a C variadic function. On x86-64 (System V)
//! a variadic call passes pointer arguments exactly as a call with that
//! many fixed pointer parameters does (six in registers, the rest on the
//! stack, in order), so each function is declared with [`MAX_ARGS`]
//! fixed pointer parameters after the path. The caller passed fewer:
//! the parameters past its NULL terminator read whatever lies above its
//! stack pointer (its own frame: mapped, and never used). The list is
//! read only up to the terminator; one without a terminator among them is
//! refused with `E2BIG` and one line, as glibc refuses a vector it cannot
//! build.

use core::ffi::{c_char, c_int};

use crate::{hooks, sys};

/// Arguments after the path we can read: `arg0` and 30 more, then the
/// terminator (and `execle`'s environment).
pub const MAX_ARGS: usize = 32;

extern "C" {
    static environ: *const *const c_char;
}

/// Which of the three.
#[derive(Clone, Copy)]
enum Kind {
    /// `execl`: `path`, the environment of the caller.
    Path,
    /// `execlp`: `file` searched in `PATH`.
    Search,
    /// `execle`: the environment follows the terminator.
    Env,
}

/// Runs the exec of `kind` with the argument list `args`, which holds the
/// caller's arguments up to a NULL and then whatever followed.
///
/// # Safety
/// `path` and the arguments before the first NULL are the caller's
/// NUL-terminated strings; for [`Kind::Env`], the pointer after the NULL
/// is its environment vector.
unsafe fn exec_list(path: *const c_char, args: &[*const c_char; MAX_ARGS], kind: Kind) -> c_int {
    let Some(end) = args.iter().position(|a| a.is_null()) else {
        return too_many();
    };
    let argv = args.as_ptr();
    match kind {
        // SAFETY: `argv` is NULL-terminated at `end` (the caller's list);
        // `environ` is the process's environment.
        Kind::Path => unsafe { hooks::execve(path, argv, environ) },
        // SAFETY: as above.
        Kind::Search => unsafe { hooks::execvp(path, argv) },
        Kind::Env => match args.get(end + 1) {
            // SAFETY: as above; execle's caller passes its environment
            // after the terminator.
            Some(&envp) => unsafe { hooks::execve(path, argv, envp.cast()) },
            None => too_many(),
        },
    }
}

#[cold]
fn too_many() -> c_int {
    sys::write_all(
        2,
        b"leaktrail: execl with more than 30 arguments: refused (E2BIG); use execv\n",
    );
    sys::set_errno(libc::E2BIG);
    -1
}

/// Declares one of the three with [`MAX_ARGS`] fixed pointer parameters.
macro_rules! exec_list_hook {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As for libc's (see the module documentation for how the
        /// variadic list is read).
        #[cfg_attr(not(test), no_mangle)]
        #[allow(clippy::too_many_arguments)]
        #[rustfmt::skip]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            a0: *const c_char, a1: *const c_char, a2: *const c_char, a3: *const c_char,
            a4: *const c_char, a5: *const c_char, a6: *const c_char, a7: *const c_char,
            a8: *const c_char, a9: *const c_char, a10: *const c_char, a11: *const c_char,
            a12: *const c_char, a13: *const c_char, a14: *const c_char, a15: *const c_char,
            a16: *const c_char, a17: *const c_char, a18: *const c_char, a19: *const c_char,
            a20: *const c_char, a21: *const c_char, a22: *const c_char, a23: *const c_char,
            a24: *const c_char, a25: *const c_char, a26: *const c_char, a27: *const c_char,
            a28: *const c_char, a29: *const c_char, a30: *const c_char, a31: *const c_char,
        ) -> c_int {
            let args = [
                a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16,
                a17, a18, a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31,
            ];
            // SAFETY: the caller's list, as the module documentation says.
            unsafe { exec_list(path, &args, $kind) }
        }
    };
}

exec_list_hook!(
    /// `execl(3)`: `execve` with the caller's environment.
    execl,
    Kind::Path
);
exec_list_hook!(
    /// `execlp(3)`: `execvp`.
    execlp,
    Kind::Search
);
exec_list_hook!(
    /// `execle(3)`: `execve` with the environment after the terminator.
    execle,
    Kind::Env
);
