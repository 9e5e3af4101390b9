//! Launching Node.js so that its JIT frames can be named.
//!
//! V8 names nothing it compiles unless asked: `--perf-basic-prof` makes it
//! write `/tmp/perf-PID.map` (`START SIZE NAME` per compiled function),
//! which every snapshot copies, and `--interpreted-frames-native-stack`
//! gives interpreted functions a frame of their own code too, so they
//! appear in native stacks instead of as one anonymous interpreter frame.
//! `--perf-prof` makes it write `./jit-PID.dump` as well: the same code
//! objects with the time each was made and, for optimized code, the line
//! and column of each call (inlined calls included). Perf-map lines have
//! no time, and V8 reuses code addresses; the jitdump tells which function
//! was at an address when a block was allocated. When the run is over the
//! jitdump is moved into the recording ([`keep_jitdump`]) and the rest V8
//! left behind is removed.

use std::path::Path;

pub use leaktrail_recording::is_node;

/// The flags `leaktrail run` adds to a Node.js command line.
pub const SYMBOL_FLAGS: [&str; 3] = [
    "--perf-basic-prof",
    "--perf-prof",
    "--interpreted-frames-native-stack",
];

/// Where `--perf-prof` writes process `pid`'s jitdump: its working
/// directory, which `leaktrail run` shares.
pub fn jitdump_path(pid: i32, cwd: &Path) -> std::path::PathBuf {
    cwd.join(format!("jit-{pid}.dump"))
}

/// Moves process `pid`'s jitdump from `cwd` into the recording `dir` as
/// `jit.dump` (mode 0600, like everything a recording holds), copying when
/// the two are on different file systems. `Ok(false)` when there is none.
pub fn keep_jitdump(pid: i32, cwd: &Path, dir: &Path, name: &str) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let from = jitdump_path(pid, cwd);
    if !from.is_file() {
        return Ok(false);
    }
    let to = dir.join(name);
    std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o600))?;
    if std::fs::rename(&from, &to).is_err() {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::copy(&from, &tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, &to)?;
        std::fs::remove_file(&from)?;
    }
    Ok(true)
}

/// `argv` with [`SYMBOL_FLAGS`] inserted right after the program, leaving
/// out any the user already gave.
pub fn with_symbol_flags(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + SYMBOL_FLAGS.len());
    out.extend(argv.first().cloned());
    for flag in SYMBOL_FLAGS {
        if !argv.iter().skip(1).any(|a| a == flag) {
            out.push(flag.to_string());
        }
    }
    out.extend(argv.iter().skip(1).cloned());
    out
}

/// Removes what `--perf-basic-prof` and `--perf-prof` (and `--prof`/`--log`,
/// if the user added them) left behind for process `pid`:
/// `/tmp/perf-PID.map`, a jitdump not kept, and `isolate-0x…-PID-…v8.log`
/// files in `cwd`. Returns what was removed.
pub fn remove_leftovers(pid: i32, cwd: &Path) -> Vec<std::path::PathBuf> {
    let mut removed = Vec::new();
    let dump = jitdump_path(pid, cwd);
    if std::fs::remove_file(&dump).is_ok() {
        removed.push(dump);
    }
    let map = std::path::PathBuf::from(format!("/tmp/perf-{pid}.map"));
    if std::fs::remove_file(&map).is_ok() {
        removed.push(map);
    }
    let needle = format!("-{pid}-");
    if let Ok(entries) = std::fs::read_dir(cwd) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("isolate-")
                && name.ends_with("v8.log")
                && name.contains(&needle)
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed.push(e.path());
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_node() {
        for yes in [
            "node",
            "/usr/bin/node",
            "nodejs",
            "node20",
            "/opt/n/bin/node18",
        ] {
            assert!(is_node(yes), "{yes}");
        }
        for no in [
            "nodemon",
            "npm",
            "/usr/bin/python3",
            "node-gyp",
            "mynode",
            "",
        ] {
            assert!(!is_node(no), "{no}");
        }
    }

    #[test]
    fn inserts_flags_once_after_the_program() {
        let argv: Vec<String> = ["node", "--perf-basic-prof", "app.js", "--port", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            with_symbol_flags(&argv),
            [
                "node",
                "--perf-prof",
                "--interpreted-frames-native-stack",
                "--perf-basic-prof",
                "app.js",
                "--port",
                "1"
            ]
        );
    }
}
