//! Issue 17 (items 2 and 6): what a person at a terminal sees. Colour and
//! the width follow the flag, the environment and the file descriptors;
//! long lists are bounded; `run` ends with its verdict and what to run
//! next; `top` is a live screen (driven in tmux, a real terminal).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::growth::{record_steps, shared_recording, step_snapshot, NO_FP, STEPS};
use crate::support::{self, fixture, json, leaktrail, repo_root, scratch, stdout, success};

/// `leaktrail` with none of the terminal variables of the environment the
/// tests run in, so each test sets what it means.
fn plain_env() -> Command {
    let mut c = leaktrail();
    for v in ["NO_COLOR", "CLICOLOR_FORCE", "COLUMNS", "TERM"] {
        c.env_remove(v);
    }
    c
}

fn watch_recording() -> PathBuf {
    repo_root().join("fixtures/recordings/watch-malloc-leak-v1")
}

const ESC: &str = "\x1b[";

/// `text` without its SGR escapes (`ESC [ ... m`).
fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(ESC) {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('m').expect("an SGR sequence ends with m");
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn issue_17_colour_follows_the_flag_and_the_environment_and_never_reaches_json() {
    let dir = watch_recording();
    let trend = |flags: &[&str], env: &[(&str, &str)]| {
        let mut c = plain_env();
        c.args(flags).arg("trend").arg(&dir);
        for (k, v) in env {
            c.env(k, v);
        }
        stdout(&mut c)
    };
    let plain = trend(&[], &[]);
    assert!(plain.contains("verdict:  growing"), "{plain}");
    assert!(!plain.contains(ESC), "a pipe sees plain text: {plain:?}");
    let red = "\x1b[1;31mgrowing\x1b[0m";
    let forced = trend(&["--color", "always"], &[]);
    assert!(forced.contains(red), "{forced:?}");
    assert_eq!(strip(&forced), plain, "colour adds escapes, nothing else");
    assert!(trend(&[], &[("CLICOLOR_FORCE", "1")]).contains(red));
    assert!(!trend(&[], &[("CLICOLOR_FORCE", "0")]).contains(ESC));
    assert!(!trend(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).contains(ESC));
    assert!(!trend(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]).contains(ESC));
    // The flag is global: after the subcommand too.
    assert!(stdout(
        plain_env()
            .arg("trend")
            .arg(&dir)
            .args(["--color", "always"])
    )
    .contains(red));
    let doc = stdout(
        plain_env()
            .args(["--color", "always", "trend", "--json"])
            .arg(&dir),
    );
    assert!(!doc.contains(ESC), "JSON is never coloured");
    serde_json::from_str::<Value>(&doc).expect("still JSON");
}

#[test]
fn issue_17_tables_fit_the_width_and_long_paths_lose_their_middle() {
    // The maps diff: without a width, every column; in 72 columns, the
    // address column gives way and every line fits.
    let dir = watch_recording();
    let diff = |columns: Option<&str>| {
        let mut c = plain_env();
        c.args(["maps", "diff"])
            .arg(format!("{}@first", dir.display()))
            .arg("@last");
        if let Some(w) = columns {
            c.env("COLUMNS", w);
        }
        stdout(&mut c)
    };
    let wide = diff(None);
    assert!(wide.contains("address (in B)"), "{wide}");
    let narrow = diff(Some("72"));
    assert!(!narrow.contains("address (in B)"), "{narrow}");
    assert!(
        narrow.contains("+5.8 MiB") && narrow.contains("[heap]"),
        "{narrow}"
    );
    for line in narrow.lines() {
        assert!(line.chars().count() <= 72, "too wide: {line:?}");
    }

    // growth's stacks: the source paths are shortened in the middle, the
    // file name and line kept.
    let rec = shared_recording();
    let full = stdout(plain_env().arg("growth").arg(&rec));
    let source = repo_root().join("fixtures/growth_sites.c");
    let frame = full
        .lines()
        .find(|l| l.contains("grow_cache "))
        .unwrap_or_else(|| panic!("{full}"));
    assert!(frame.contains(&source.display().to_string()), "{frame}");
    let width = 40;
    let fitted = stdout(
        plain_env()
            .env("COLUMNS", width.to_string())
            .arg("growth")
            .arg(&rec),
    );
    let frame = fitted
        .lines()
        .find(|l| l.contains("grow_cache "))
        .unwrap_or_else(|| panic!("{fitted}"));
    assert_eq!(frame.chars().count(), width, "{frame:?}");
    assert!(frame.contains('…'), "{frame:?}");
    assert!(frame.trim_start().starts_with("grow_cache /"), "{frame:?}");
    assert!(
        frame.ends_with(&frame_tail(&full, "grow_cache ")),
        "{frame:?}"
    );
}

/// The last 12 characters of the first line of `text` containing `what`:
/// the end of its path and its line number.
fn frame_tail(text: &str, what: &str) -> String {
    let line = text.lines().find(|l| l.contains(what)).expect("line");
    let n = line.chars().count();
    line.chars().skip(n - 12).collect()
}

/// Lines that list one buffer (`bufs` without -v): they start with its
/// address.
fn buffer_rows(text: &str) -> usize {
    text.lines()
        .filter(|l| l.trim_start().starts_with("0x"))
        .count()
}

#[test]
fn issue_17_bufs_lists_fifty_buffers_and_counts_the_rest() {
    let snap = step_snapshot(&shared_recording(), STEPS);
    let all = json(leaktrail().arg("bufs").arg(&snap).arg("--json"));
    let n = all["buffers"].as_array().expect("buffers").len();
    // The fixture: the pool's 2000, 100 per step of the cache, the burst's 500.
    assert_eq!(n, 2000 + 100 * STEPS + 500);
    let text = stdout(leaktrail().arg("bufs").arg(&snap));
    assert_eq!(buffer_rows(&text), 50, "{text}");
    let more = format!("… {} more buffers (use --all)", fmt_count(n - 50));
    assert!(text.contains(&more), "{more:?} in {text}");
    assert!(
        text.contains(&format!("{} buffers,", fmt_count(n))),
        "{text}"
    );
    let text = stdout(leaktrail().arg("bufs").arg(&snap).arg("--all"));
    assert_eq!(buffer_rows(&text), n);
    assert!(!text.contains("more buffers"));
    let text = stdout(leaktrail().arg("bufs").arg(&snap).args(["--limit", "7"]));
    assert_eq!(buffer_rows(&text), 7);
    assert!(text.contains(&format!("… {} more buffers", fmt_count(n - 7))));
}

fn fmt_count(n: usize) -> String {
    leaktrail_report::heap::count(n as u64)
}

#[test]
fn issue_17_refs_chain_summarises_a_linked_list_per_hop() {
    // growth_sites keeps its cache as a list headed by a global: the
    // oldest node is the far end of a chain through every other one.
    let steps = 3;
    let rec = record_steps("refs_chain", steps, "full");
    let snap = step_snapshot(&rec, steps);
    let bufs =
        json(
            leaktrail()
                .arg("bufs")
                .arg(&snap)
                .args(["--stack-contains", "grow_cache", "--json"]),
        );
    let nodes = bufs["buffers"].as_array().expect("buffers");
    assert_eq!(nodes.len(), 100 * steps);
    let oldest = nodes
        .iter()
        .min_by_key(|b| b["time_ns"].as_u64().expect("time"))
        .expect("a node");
    let addr = format!("{:#x}", oldest["addr"].as_u64().expect("addr"));
    let chains = json(
        leaktrail()
            .arg("refs")
            .arg(&snap)
            .arg(&addr)
            .args(["--chain", "--json"]),
    );
    let hops = chains["chains"][0]["hops"].as_array().expect("hops");
    let in_nodes = hops
        .iter()
        .filter(|h| h["whatis"]["buffer"]["stack"][0]["function"] == "grow_cache")
        .count();
    assert!(in_nodes > 100, "a long chain through the list: {in_nodes}");
    let text = stdout(leaktrail().arg("refs").arg(&snap).arg(&addr).arg("--chain"));
    let line = format!(
        "… {} more hops through buffers of 4,096 bytes from the same stack (use --all)",
        fmt_count(in_nodes - 2)
    );
    assert!(text.contains(&line), "{line:?} in {text}");
    let all = stdout(
        leaktrail()
            .arg("refs")
            .arg(&snap)
            .arg(&addr)
            .args(["--chain", "--all"]),
    );
    assert!(!all.contains("more hops"));
    assert!(
        all.lines().count() > in_nodes && text.lines().count() * 10 < all.lines().count(),
        "summarised: {} lines, in full {}",
        text.lines().count(),
        all.lines().count()
    );
}

#[test]
fn issue_17_run_ends_with_the_verdict_and_the_next_commands() {
    let exe = fixture("growth_sites", NO_FP);
    let dir = scratch("run_next").join("rec");
    // stdin closed: the fixture does its first step and exits.
    let out = success(
        plain_env()
            .args(["run", "--every", "0", "--interval", "100ms", "--out"])
            .arg(&dir)
            .arg("--")
            .arg(&exe)
            .arg("1")
            .stdin(Stdio::null()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let d = dir.display();
    assert!(
        err.contains(&format!("leaktrail: recording in {d} (1 snapshot)")),
        "{err}"
    );
    assert!(err.contains("\nverdict:  "), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("region ") && l.contains(" verdict ")),
        "{err}"
    );
    assert!(
        err.contains(&format!("\nnext: leaktrail report {d} ")),
        "{err}"
    );
    assert!(
        err.contains(&format!("\nnext: leaktrail growth {d} ")),
        "{err}"
    );
    assert!(!err.contains(ESC), "not a terminal: plain lines");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "step 1\n");
}

/// A tmux server of our own (its own socket), killed with every session
/// in it when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "the top test needs tmux: apt-get install tmux (.ci/run does)"
        );
        Tmux {
            socket: format!("leaktrail-{name}-{}", std::process::id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// Starts `sh -c COMMAND` in a detached 160x30 session named `top`.
    fn start(&self, command: &str) {
        success(self.cmd().args([
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "30",
            "sh",
            "-c",
            command,
        ]));
    }

    /// The visible text of the pane (no escapes).
    fn screen(&self) -> String {
        String::from_utf8_lossy(
            &success(self.cmd().args(["capture-pane", "-p", "-t", "top"])).stdout,
        )
        .into_owned()
    }

    /// Polls the screen until `done` holds (bounded by a generous
    /// deadline; the wait is on the screen's content, not on time).
    fn until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let s = self.screen();
            if done(&s) {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the screen never showed {what}:\n{s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// The row of `site` in top's table.
fn row<'a>(screen: &'a str, site: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(&format!("  {site}")))
}

#[test]
fn issue_17_top_shows_the_growing_site_live_in_tmux_and_q_restores_the_terminal() {
    let exe = fixture("growth_sites", NO_FP);
    let dir = scratch("top").join("rec");
    let mut traced = support::start_in_steps(&dir, "tables", &[exe.as_os_str(), "3".as_ref()]);
    let pid = support::recorded_pid(&dir);
    let tmux = Tmux::new("top");
    let top = format!(
        "{} top -p {pid} --interval 200ms; echo top-status=$?; exec cat",
        env!("CARGO_BIN_EXE_leaktrail")
    );
    tmux.start(&top);

    // Step 1 done: grow_cache holds its first 100 buffers of 4096 bytes.
    let site = "grow_cache (growth_sites.c:";
    let s = tmux.until("grow_cache's first 100 buffers", |s| {
        row(s, site).is_some_and(|r| r.contains(" 400.0 KiB ") && r.contains(" 100  "))
    });
    assert!(
        s.starts_with(&format!("leaktrail top: pid {pid} (growth_sites")),
        "{s}"
    );
    let rss = s
        .lines()
        .find(|l| l.starts_with("rss "))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(rss.contains(" since start"), "{rss}");
    assert!(
        s.lines()
            .any(|l| l.starts_with("heap ") && l.contains("   anon ")),
        "{s}"
    );

    // Step 2: 100 more; top shows the growth, and ranks the site first.
    traced.send(b"\n");
    assert_eq!(traced.line(), "step 2");
    let s = tmux.until("grow_cache grown by 100 buffers", |s| {
        row(s, site).is_some_and(|r| r.contains(" 800.0 KiB ") && r.contains(" 200  "))
    });
    let r = row(&s, site).expect("row");
    assert!(r.trim_start().starts_with("+400.0 KiB "), "{r}");
    let header = s
        .lines()
        .position(|l| l.ends_with("  site"))
        .expect("header");
    assert_eq!(
        s.lines().nth(header + 1),
        Some(r),
        "the fastest grower is first:\n{s}"
    );
    assert!(
        row(&s, "fill_pool (growth_sites.c:").is_some_and(|r| r.trim_start().starts_with("0 B ")),
        "{s}"
    );

    // q quits: the alternate screen is gone, the shell's screen is back
    // with top's last word, and top exited 0.
    success(tmux.cmd().args(["send-keys", "-t", "top", "q"]));
    let s = tmux.until("top's exit", |s| s.contains("top-status="));
    assert!(s.contains("top-status=0"), "{s}");
    assert!(
        !s.contains("fastest-growing sites"),
        "the terminal is restored:\n{s}"
    );
    assert!(
        s.contains(&format!("leaktrail top: pid {pid} (growth_sites"))
            && s.contains(") watched for "),
        "{s}"
    );
    assert!(s.contains("grew most: grow_cache (growth_sites.c:"), "{s}");
    traced.close_stdin();
    assert!(traced.wait().success());
}

#[test]
fn issue_17_run_live_shows_the_view_of_the_program_it_starts() {
    // A program that leaks 4 KiB buffers at 1 MiB/s from leak_one until
    // killed, and never reads its terminal (the view takes the keyboard).
    let exe = fixture("watch_malloc_leak", &[]);
    let dir = scratch("run_live").join("rec");
    let tmux = Tmux::new("live");
    let run = format!(
        "{} run --live --every 0 --interval 200ms --out {} -- {} 1048576 0; echo run-status=$?; exec cat",
        env!("CARGO_BIN_EXE_leaktrail"),
        dir.display(),
        exe.display()
    );
    tmux.start(&run);
    // leak_one is inlined into leak_loop at -O1: the site is either.
    let site = "leak_";
    let s = tmux.until("the leaking site growing", |s| {
        row(s, site).is_some_and(|r| r.trim_start().starts_with('+'))
    });
    let pid = support::recorded_pid(&dir);
    assert!(
        s.starts_with(&format!("leaktrail top: pid {pid} (")),
        "the view is of the program run started:\n{s}"
    );
    let header = s
        .lines()
        .position(|l| l.ends_with("  site"))
        .expect("header");
    assert_eq!(s.lines().nth(header + 1), row(&s, site), "{s}");
    // q closes the view; the program goes on until it is ended, then run
    // prints its verdict and what to run next.
    success(tmux.cmd().args(["send-keys", "-t", "top", "q"]));
    let s = tmux.until("the view closed", |s| s.contains(") watched for "));
    assert!(!s.contains("fastest-growing sites"), "{s}");
    assert!(!s.contains("run-status="), "the program goes on:\n{s}");
    // SAFETY: kill sends a signal; pid is the traced program this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let s = tmux.until("run's ending", |s| s.contains("run-status="));
    assert!(
        s.contains(&format!("next: leaktrail report {}", dir.display())),
        "{s}"
    );
    assert!(
        s.contains("run-status=143"),
        "SIGTERM's status passed through:\n{s}"
    );
}
