//! Link flags of the tracer library, and its C part: C++'s allocation
//! operators (`src/operators.c`, which says why they are C).

use std::path::PathBuf;

fn main() {
    // Our own calls and address-takings of the exported hooks bind to our
    // definitions. With LD_PRELOAD they would anyway (we come first in the
    // search order); loaded late by `leaktrail attach` (RTLD_LOCAL, after
    // libc in the global scope) they would bind to libc's: the GOT entries
    // `attach` redirects would point at libc's malloc again, and
    // `realloc(NULL, n)` would skip our `malloc`.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");

    println!("cargo:rerun-if-changed=src/operators.c");
    cc::Build::new()
        .file("src/operators.c")
        // A throwing `operator new` unwinds through these frames.
        .flag("-fexceptions")
        .flag("-fvisibility=hidden")
        .warnings(true)
        .extra_warnings(true)
        .compile("leaktrail_operators");
    // rustc's version script exports only the crate's Rust symbols; GNU ld
    // merges a second, anonymous one that adds the operators (their mangled
    // names start so; nothing else of ours does) and mimalloc's `mi_new`
    // and `mi_free` families.
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("operators.map");
    std::fs::write(
        &script,
        "{ global: _Znw*; _Zna*; _Zdl*; _Zda*; mi_new*; mi_free*; };\n",
    )
    .expect("write the version script");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
}
