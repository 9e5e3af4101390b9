//! What an install brings besides the binary: shell completions and man
//! pages generated from the clap definitions (issue 17, item 4).

use crate::support::{leaktrail, scratch, stdout};

/// Every subcommand `leaktrail --help` lists, so a new one is covered as
/// soon as it exists.
pub fn subcommands() -> Vec<String> {
    let help = stdout(leaktrail().arg("--help"));
    let list: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions continue further in.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    assert!(list.len() > 15, "the Commands: list of --help: {help}");
    list
}

/// Issue 17 ("a one-binary install").
#[test]
fn issue_17_completions_for_bash_zsh_and_fish_name_every_subcommand() {
    let subs = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(leaktrail().args(["completions", shell]));
        assert!(script.len() > 1000, "{shell}: {script}");
        for sub in &subs {
            assert!(script.contains(sub.as_str()), "{shell} lacks {sub}");
        }
    }
    crate::support::assert_usage_error(leaktrail().args(["completions", "tcsh"]), &["tcsh"]);
}

/// Issue 17 ("a one-binary install").
#[test]
fn issue_17_man_pages_cover_every_subcommand() {
    let subs = subcommands();
    let page = stdout(leaktrail().arg("man"));
    assert!(
        page.starts_with(".ie") || page.contains(".TH leaktrail 1"),
        "{page}"
    );
    for sub in &subs {
        assert!(
            page.contains(&format!("leaktrail\\-{sub}(1)")),
            "leaktrail(1) lacks {sub}"
        );
    }
    let dir = scratch("man");
    stdout(leaktrail().args(["man", "-o"]).arg(&dir));
    for sub in subs
        .iter()
        .map(|s| format!("leaktrail-{s}.1"))
        .chain(["leaktrail.1".into()])
    {
        let text = std::fs::read_to_string(dir.join(&sub)).unwrap_or_else(|e| panic!("{sub}: {e}"));
        assert!(text.contains(".SH SYNOPSIS"), "{sub}: {text}");
    }
    assert!(
        dir.join("leaktrail-maps-diff.1").exists(),
        "nested subcommands get pages"
    );
}

/// Issue 17 ("a one-binary install"): `cargo install` gives one file, and
/// `run` works with it alone, through the library the binary carries. The
/// install builds in a target directory of its own under
/// `target/tmp/` (kept between runs, so only the first is a full build),
/// in the dev profile to keep the suite's time down: the embedding is the
/// same in both profiles, only the inner build's `--release` differs.
#[test]
fn issue_17_cargo_install_is_a_complete_install() {
    let root = scratch("cargo-install");
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-target");
    crate::support::success(
        std::process::Command::new(env!("CARGO"))
            .args([
                "install",
                "--offline",
                "--locked",
                "--debug",
                "-j",
                "1",
                "--path",
            ])
            .arg(crate::support::repo_root().join("crates/cli"))
            .arg("--root")
            .arg(&root)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("LEAKTRAIL_EMBED_PRELOAD"),
    );
    let bin = root.join("bin/leaktrail");
    let installed: Vec<_> = std::fs::read_dir(root.join("bin"))
        .expect("bin")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(installed, ["leaktrail"], "one file, no library beside it");
    assert!(!root.join("lib").exists());
    let cache = root.join("cache");
    let work = scratch("cargo-install-run");
    crate::support::success(
        std::process::Command::new(&bin)
            .args(["run", "--out", "rec", "--", "true"])
            .current_dir(&work)
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("LEAKTRAIL_PRELOAD"),
    );
    // The exit snapshot is taken at the tracer's hand-over: it was loaded.
    assert!(work.join("rec/snapshots/0001-exit.core").exists());
    let dirs: Vec<_> = std::fs::read_dir(cache.join("leaktrail"))
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let name = dirs[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("preload-") && name.len() == 8 + 16,
        "{name}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dirs[0])
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(dirs[0].join("libleaktrail_preload.so").is_file());
}
