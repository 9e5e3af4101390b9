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
