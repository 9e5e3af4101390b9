//! Frames named from debug info the binary does not carry itself (issue 11,
//! item 6): a separate debug file found by `.gnu_debuglink`, and DWARF in
//! zstd-compressed sections. End to end: the program runs under `leaktrail
//! run`, and `leaks` names the leaking function with its file and line.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{fixture, leaktrail_json, scratch, success};

/// `tree` leaks one root of 1120 bytes from `leak_tree`.
const CASE: &str = "tree";
const ROOT_BYTES: u64 = 1120;

/// `objcopy ARGS`, in `dir`.
fn objcopy(dir: &Path, args: &[&str]) {
    success(Command::new("objcopy").current_dir(dir).args(args));
}

/// `readelf -SW -t` of `file`: its sections, with compression.
fn sections(file: &Path) -> String {
    String::from_utf8(success(Command::new("readelf").arg("-SWt").arg(file)).stdout).expect("utf-8")
}

/// Runs `exe CASE` under the tracer into `dir`; returns the exit snapshot.
fn exit_snapshot(exe: &Path, dir: &Path) -> PathBuf {
    crate::valgrind::exit_core(exe, CASE, dir)
}

/// The innermost frame of the definitely lost root.
fn leak_frame(core: &Path) -> Value {
    let doc = leaktrail_json(["leaks".as_ref(), "--json".as_ref(), core.as_os_str()]);
    let group = doc["groups"]
        .as_array()
        .and_then(|gs| {
            gs.iter()
                .find(|g| g["kind"] == "definite" && g["bytes"] == ROOT_BYTES)
        })
        .unwrap_or_else(|| panic!("no definite group of {ROOT_BYTES} bytes: {doc}"));
    group["stack"][0].clone()
}

fn assert_named_with_line(frame: &Value) {
    assert_eq!(frame["function"], "leak_tree", "{frame}");
    assert!(
        frame["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("valgrind_cases.c")),
        "{frame}"
    );
    assert!(frame["line"].as_u64().is_some_and(|l| l > 0), "{frame}");
}

#[test]
fn issue_11_a_gnu_debuglink_debug_file_names_a_stripped_programs_frame() {
    let work = scratch("debuglink");
    std::fs::copy(fixture("valgrind_cases", &["-O2"]), work.join("app")).expect("copy");
    objcopy(&work, &["--only-keep-debug", "app", "app.debug"]);
    objcopy(
        &work,
        &[
            "--strip-all",
            "--add-gnu-debuglink=app.debug",
            "app",
            "app.stripped",
        ],
    );
    let stripped = work.join("app.stripped");
    let s = sections(&stripped);
    assert!(s.contains(".gnu_debuglink"), "{s}");
    assert!(!s.contains(".symtab") && !s.contains(".debug_info"), "{s}");
    let core = exit_snapshot(&stripped, &work.join("rec"));
    assert_named_with_line(&leak_frame(&core));
    // Without the debug file nothing names it: the debug file did.
    std::fs::remove_file(work.join("app.debug")).expect("remove");
    let frame = leak_frame(&core);
    assert!(frame["function"].is_null(), "{frame}");
}

#[test]
fn issue_11_zstd_compressed_debug_sections_name_a_frame() {
    let work = scratch("zstd");
    std::fs::copy(fixture("valgrind_cases", &["-O2"]), work.join("app")).expect("copy");
    // gcc 12 has no -gz=zstd; binutils 2.40 compresses with zstd. The
    // symbol table stays, but only DWARF knows the file and line.
    objcopy(
        &work,
        &["--compress-debug-sections=zstd", "app", "app.zstd"],
    );
    let exe = work.join("app.zstd");
    let s = sections(&exe);
    let info = s
        .split("] .debug_info")
        .nth(1)
        .and_then(|rest| rest.lines().take(4).find(|l| l.contains("ZSTD")));
    assert!(info.is_some(), ".debug_info is not zstd-compressed: {s}");
    let core = exit_snapshot(&exe, &work.join("rec"));
    assert_named_with_line(&leak_frame(&core));
}
