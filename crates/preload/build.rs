//! Link flags of the tracer library.

fn main() {
    // Our own calls and address-takings of the exported hooks bind to our
    // definitions. With LD_PRELOAD they would anyway (we come first in the
    // search order); loaded late by `leaktrail attach` (RTLD_LOCAL, after
    // libc in the global scope) they would bind to libc's: the GOT entries
    // `attach` redirects would point at libc's malloc again, and
    // `realloc(NULL, n)` would skip our `malloc`.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
}
