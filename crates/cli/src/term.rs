//! Everything the binary does differently on a terminal, in one place:
//! colour, fitting text to the width, progress on long steps.
//!
//! The rule is that a pipe, a file or a test sees plain text: colour only
//! when standard output is a terminal (or `--color always`,
//! `CLICOLOR_FORCE`), never with `NO_COLOR` or `--color never`, and never
//! in JSON (JSON is written past this module); progress only when standard
//! error is a terminal. Renderers in `leaktrail-report` stay plain: colour
//! is added here, after the text is laid out, by recognising the few words
//! that carry a verdict (`growing`, `definitely lost`, `+1.2 MiB`...), so
//! widths are computed on plain text and a renderer never needs to know.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set (or `CLICOLOR_FORCE` forces it).
    Auto,
    /// Always, even into a pipe.
    Always,
    /// Never.
    Never,
}

/// What the terminal around us is.
#[derive(Clone, Debug)]
pub struct Term {
    /// Whether to colour standard output.
    pub color: bool,
    /// The width to fit standard output to, if any.
    pub width: Option<usize>,
    /// Whether standard error is a terminal (progress and live lines).
    pub err_tty: bool,
    /// Whether to colour what we write to standard error.
    pub err_color: bool,
}

static TERM: OnceLock<Term> = OnceLock::new();

/// Whether an environment variable is set to something other than empty
/// (and, for `CLICOLOR_FORCE`, other than `0`).
fn env_on(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The terminal's width: `COLUMNS`, else the tty's size when standard
/// output is one.
fn width(out_tty: bool) -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
    {
        return (c > 0).then_some(c);
    }
    if out_tty {
        return crossterm::terminal::size()
            .ok()
            .map(|(w, _)| w as usize)
            .filter(|&w| w > 0);
    }
    None
}

impl Term {
    /// Decides from the flag, the environment and the file descriptors.
    pub fn detect(choice: ColorChoice) -> Term {
        let out_tty = std::io::stdout().is_terminal();
        let err_tty = std::io::stderr().is_terminal();
        let colour = |tty: bool| match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                !env_on("NO_COLOR")
                    && (env_on("CLICOLOR_FORCE")
                        || (tty && std::env::var_os("TERM").is_none_or(|t| t != "dumb")))
            }
        };
        Term {
            color: colour(out_tty),
            width: width(out_tty),
            err_tty,
            err_color: colour(err_tty),
        }
    }
}

/// Sets the terminal up once, from `--color` (main calls it first).
pub fn init(choice: ColorChoice) {
    let _ = TERM.set(Term::detect(choice));
}

/// The terminal (detected with `--color auto` if `init` was not called).
pub fn get() -> &'static Term {
    TERM.get_or_init(|| Term::detect(ColorChoice::Auto))
}

/// Writes a text rendering to standard output: fitted to the width and
/// coloured when the terminal says so.
pub fn print(text: &str) -> std::io::Result<()> {
    let t = get();
    let fitted = match t.width {
        Some(w) => fit(text, w),
        None => text.to_string(),
    };
    let painted = if t.color { paint(&fitted) } else { fitted };
    let mut out = std::io::stdout().lock();
    out.write_all(painted.as_bytes())?;
    out.flush()
}

/// Writes lines to standard error, coloured when it is a terminal (and
/// colour is on), never fitted: they are messages, not tables.
pub fn eprint(text: &str) {
    let t = get();
    let painted = if t.err_color {
        paint(text)
    } else {
        text.to_string()
    };
    let _ = std::io::stderr().lock().write_all(painted.as_bytes());
}

/// Shortens `s` to `max` characters by replacing its middle with `…`,
/// keeping more of the end than of the start.
pub fn shorten_middle(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max || max < 3 {
        return s.to_string();
    }
    // A path says most at its end (the file name): keep two thirds there.
    let keep = max - 1;
    let head = keep / 3;
    let tail = keep - head;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    out
}

/// Characters on a line (what a terminal shows, for our plain text).
fn columns(line: &str) -> usize {
    line.chars().count()
}

/// Fits each line of `text` to `width` columns: the longest path on a
/// too-long line (a word with a `/`) is shortened in the middle, then, if
/// that was not enough, the longest word. Table columns before the path
/// keep their alignment, since tables put names last.
pub fn fit(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&fit_line(line, width));
    }
    out
}

fn fit_line(line: &str, width: usize) -> String {
    let mut line = line.to_string();
    for want_path in [true, false] {
        let over = columns(&line).saturating_sub(width);
        if over == 0 {
            break;
        }
        let longest = line
            .split(' ')
            .filter(|w| !want_path || w.contains('/'))
            .max_by_key(|w| columns(w))
            .map(str::to_string);
        let Some(word) = longest else { continue };
        let len = columns(&word);
        // A word is never cut below 16 columns: past that it says nothing.
        let target = len.saturating_sub(over).max(16);
        if target < len {
            line = line.replacen(&word, &shorten_middle(&word, target), 1);
        }
    }
    line
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Words that carry a verdict, and their colour.
const WORDS: &[(&str, &str)] = &[
    ("definitely lost", "\x1b[1;31m"),
    ("indirectly lost", RED),
    ("possibly lost", YELLOW),
    ("still reachable", GREEN),
    ("growing", "\x1b[1;31m"),
    ("inconclusive", YELLOW),
    ("flat", GREEN),
];

/// Colours a plain rendering: verdict words, signed byte changes (`+`
/// red, `-` green), labels at the start of a line (`verdict:`), and the
/// `next:` hints.
pub fn paint(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.starts_with("next:") {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{CYAN}{line}{RESET}"));
            continue;
        }
        paint_line(line, &mut out);
    }
    out
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn paint_line(line: &str, out: &mut String) {
    let b = line.as_bytes();
    // A label ends a first word with a colon: `verdict:`, `rss:`.
    let label_end = line
        .find(':')
        .filter(|&c| {
            c > 0
                && line[..c]
                    .bytes()
                    .all(|x| x.is_ascii_lowercase() || x == b' ')
        })
        .filter(|&c| !line[..c].starts_with(' ') && line[..c].split(' ').count() <= 3)
        .map_or(0, |c| c + 1);
    if label_end > 0 {
        out.push_str(BOLD);
        out.push_str(&line[..label_end]);
        out.push_str(RESET);
    }
    let mut i = label_end;
    while i < b.len() {
        let boundary = i == 0 || !is_word_byte(b[i - 1]);
        if boundary {
            if let Some((w, colour)) = WORDS.iter().find(|(w, _)| {
                line[i..].starts_with(w) && b.get(i + w.len()).is_none_or(|&x| !is_word_byte(x))
            }) {
                out.push_str(colour);
                out.push_str(w);
                out.push_str(RESET);
                i += w.len();
                continue;
            }
            if let Some(len) = signed_bytes_at(&line[i..]) {
                out.push_str(if b[i] == b'+' { RED } else { GREEN });
                out.push_str(&line[i..i + len]);
                out.push_str(RESET);
                i += len;
                continue;
            }
        }
        let c = line[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&line[i..i + c]);
        i += c;
    }
}

/// The length of a signed byte amount at the start of `s`: `+1.5 MiB`,
/// `-512 B`, with an optional `/h`.
fn signed_bytes_at(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !matches!(b.first(), Some(b'+' | b'-')) {
        return None;
    }
    let digits = b[1..]
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .count();
    if digits == 0 || b.get(1 + digits) != Some(&b' ') {
        return None;
    }
    let rest = &s[2 + digits..];
    let unit = ["KiB", "MiB", "GiB", "TiB", "PiB", "B"]
        .iter()
        .find(|u| rest.starts_with(**u))?;
    let mut len = 2 + digits + unit.len();
    if s[len..].starts_with("/h") {
        len += 2;
    }
    Some(len)
}

/// A step that may take a while: a spinner with its name and the time
/// spent, on standard error when it is a terminal (hidden otherwise).
/// Dropping it clears the line.
pub struct Progress(ProgressBar);

impl Progress {
    /// Starts showing `what` (e.g. "scanning for leaks").
    pub fn step(what: impl Into<std::borrow::Cow<'static, str>>) -> Progress {
        let bar = if get().err_tty {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(what);
        Progress(bar)
    }

    /// A bar over `total` items (e.g. job's inputs).
    pub fn bar(total: u64, what: impl Into<std::borrow::Cow<'static, str>>) -> Progress {
        let bar = if get().err_tty {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left)",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#>."),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(what);
        Progress(bar)
    }

    /// Renames the step.
    pub fn say(&self, what: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.set_message(what);
    }

    /// Moves the bar to `n` items done.
    pub fn set(&self, n: u64) {
        self.0.set_position(n);
    }
}

/// The line `run` keeps refreshed in place on a terminal (RSS, heap, the
/// trend so far), on standard error: standard output is the program's.
/// Hidden when standard error is not a terminal.
pub struct LiveLine(ProgressBar);

impl LiveLine {
    /// A new line, empty until the first [`LiveLine::show`].
    pub fn new() -> LiveLine {
        let bar = if get().err_tty {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        } else {
            ProgressBar::hidden()
        };
        LiveLine(bar)
    }

    /// Whether it is drawn at all (false off a terminal).
    pub fn visible(&self) -> bool {
        !self.0.is_hidden()
    }

    /// Replaces the line.
    pub fn show(&self, line: &str) {
        let t = get();
        self.0.set_message(if t.err_color {
            paint(line)
        } else {
            line.to_string()
        });
    }
}

impl Drop for LiveLine {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Runs `f` under a [`Progress::step`] named `what`.
pub fn step<T>(what: &'static str, f: impl FnOnce() -> T) -> T {
    let _p = Progress::step(what);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middles_are_shortened() {
        assert_eq!(shorten_middle("abcdef", 10), "abcdef");
        assert_eq!(
            shorten_middle("/usr/lib/x86_64/libc.so.6", 11),
            "/us…bc.so.6"
        );
        assert_eq!(
            columns(&shorten_middle("/usr/lib/x86_64/libc.so.6", 11)),
            11
        );
    }

    #[test]
    fn long_paths_are_shortened_to_fit_and_short_lines_kept() {
        let line = "   +1.0 MiB     4.0 KiB   heap rw-p /very/long/path/to/some/deeply/nested/library/libthing.so.1";
        let got = fit(&format!("short\n{line}\n"), 60);
        let lines: Vec<&str> = got.split('\n').collect();
        assert_eq!(lines[0], "short");
        assert_eq!(columns(lines[1]), 60, "{}", lines[1]);
        assert!(lines[1].starts_with("   +1.0 MiB     4.0 KiB   heap rw-p /very/"));
        assert!(lines[1].ends_with("libthing.so.1"), "{}", lines[1]);
        assert!(lines[1].contains('…'));
        assert_eq!(lines[2], "");
    }

    #[test]
    fn verdicts_and_changes_are_coloured_and_nothing_else() {
        assert_eq!(
            paint("verdict:  growing  +7.0 GiB/h flatten"),
            format!(
                "{BOLD}verdict:{RESET}  \x1b[1;31mgrowing{RESET}  {RED}+7.0 GiB/h{RESET} flatten"
            )
        );
        assert_eq!(paint("a-1 B x"), "a-1 B x", "not at a word start");
        assert_eq!(paint("  -3.0 MiB"), format!("  {GREEN}-3.0 MiB{RESET}"));
        assert_eq!(
            paint("next: leaktrail report rec"),
            format!("{CYAN}next: leaktrail report rec{RESET}")
        );
        assert_eq!(paint("plain line, 0x1f"), "plain line, 0x1f");
    }

    #[test]
    fn the_environment_decides_colour() {
        // `detect` reads the process's environment; the decision itself is
        // what matters: never overrides, always forces.
        assert!(!Term::detect(ColorChoice::Never).color);
        assert!(Term::detect(ColorChoice::Always).color);
    }
}
