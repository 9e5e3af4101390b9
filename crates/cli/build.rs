//! Builds the tracer's preload library and hands its bytes to the binary,
//! so that one `leaktrail` file is a complete install (issue 17).
//!
//! Cargo cannot depend on a cdylib's artifact on stable (artifact
//! dependencies are nightly-only), and a workspace build does not order the
//! preload crate before this one, so `include_bytes!` of the library that
//! `cargo build --workspace` puts beside the binary would fail from a clean
//! clone and under `cargo install`. So this script runs
//! `cargo build -p leaktrail-preload` itself, into a target directory of
//! its own inside `OUT_DIR`:
//!
//! - no deadlock: the outer cargo locks its own target directory, not
//!   this one;
//! - no recursion: the preload crate does not depend on this one;
//! - the outer `-j` holds: the inner cargo joins the jobserver the outer one
//!   hands to build scripts (`CARGO_MAKEFLAGS`);
//! - the cost is a second compilation of the preload crate and its few
//!   dependencies (`format`, `unwind-core`, `libc`, `gimli`), in the same
//!   profile, once per clean build (measured in the commit that added it).
//!
//! `LEAKTRAIL_EMBED_PRELOAD=PATH` embeds a library built elsewhere instead
//! (a packager's cross build, say).

use std::path::{Path, PathBuf};
use std::process::Command;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// FNV-1a, 64 bits: names the cache directory the library is written to
/// at run time, so two builds' libraries never share a file.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn build(root: &Path, out: &Path) -> PathBuf {
    let target_dir = out.join("preload-target");
    let profile = env("PROFILE");
    let (target, host) = (env("TARGET"), env("HOST"));
    let mut cmd = Command::new(env("CARGO"));
    cmd.args([
        "build",
        "--lib",
        "-p",
        "leaktrail-preload",
        "--manifest-path",
    ])
    .arg(root.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    if profile == "release" {
        cmd.arg("--release");
    }
    if target != host {
        cmd.args(["--target", &target]);
    }
    // Under `cargo clippy` the wrapper would lint the preload crate a
    // second time; the outer run lints it already.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
    let mut dir = target_dir;
    if target != host {
        dir.push(&target);
    }
    dir.join(profile).join("libleaktrail_preload.so")
}

fn main() {
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(env("OUT_DIR"));
    println!("cargo:rerun-if-env-changed=LEAKTRAIL_EMBED_PRELOAD");
    let lib = match std::env::var_os("LEAKTRAIL_EMBED_PRELOAD") {
        Some(path) => PathBuf::from(path),
        None => {
            for p in [
                "crates/preload",
                "crates/format",
                "crates/unwind-core",
                "Cargo.toml",
                "Cargo.lock",
            ] {
                println!("cargo:rerun-if-changed={}", root.join(p).display());
            }
            build(&root, &out)
        }
    };
    let bytes = std::fs::read(&lib).unwrap_or_else(|e| panic!("reading {}: {e}", lib.display()));
    std::fs::write(out.join("libleaktrail_preload.so"), &bytes)
        .unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", lib.display()));
    println!(
        "cargo:rustc-env=LEAKTRAIL_PRELOAD_HASH={:016x}",
        fnv1a(&bytes)
    );
}
