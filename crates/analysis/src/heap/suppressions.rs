//! Leak suppressions in the two formats users already have (issue 11):
//! LeakSanitizer's (`leak:PATTERN`, one a line) and valgrind's
//! (`{ name  Memcheck:Leak  [match-leak-kinds: …]  fun:… obj:… ... }`).
//!
//! A group of lost or possibly lost blocks is suppressed when an entry
//! matches its allocation stack (symbolized, inlined calls expanded,
//! innermost first):
//!
//! * **LSan**: some frame's function, module or source file matches
//!   PATTERN, a substring with `*` for any run of characters, `^` anchoring
//!   the start and `$` the end (LSan's `TemplateMatch`).
//! * **valgrind**: the frame lines match the stack from its innermost frame
//!   on, one frame each, `fun:` against the function and `obj:` against the
//!   module (`*` and `?` globs, whole names), `...` any number of frames;
//!   a stack may be longer than the entry. valgrind's stacks start in the
//!   allocator itself, ours at its caller, so a first line `fun:malloc`
//!   (or another allocator's name) stands for the frame we do not have.
//!   `match-leak-kinds:` limits the classes (`definite`, `indirect`,
//!   `possible`, `reachable`, `all`); other tools' entries are skipped.
//!
//! Each entry counts the blocks and bytes it suppressed, as valgrind's
//! `used_suppression` lines and LSan's "Suppressions used" table do.

use crate::leaks::LeakKind;
use crate::symbolize::Frame;
use crate::Error;

/// Allocator entry points a valgrind stack starts with.
const ALLOCATORS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "memalign",
    "posix_memalign",
    "aligned_alloc",
    "valloc",
    "pvalloc",
    "operator new",
    "operator new[]",
    "_Znwm",
    "_Znam",
    "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t",
];

/// One line of a valgrind entry's stack.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FramePattern {
    Fun(String),
    Obj(String),
    /// `...`: any number of frames.
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Lsan(String),
    Valgrind {
        kinds: Option<Vec<LeakKind>>,
        frames: Vec<FramePattern>,
    },
}

/// One suppression, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name: valgrind's entry name, or LSan's `leak:PATTERN`.
    pub name: String,
    /// `FILE:LINE` of its first line.
    pub origin: String,
    rule: Rule,
}

/// What one entry suppressed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Used {
    /// The entry's name.
    pub name: String,
    /// `FILE:LINE`.
    pub origin: String,
    /// Blocks it suppressed.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Suppressions read from any number of files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suppressions {
    entries: Vec<Entry>,
}

impl Suppressions {
    /// No suppressions.
    pub fn new() -> Self {
        Suppressions::default()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reads a suppression file (either format; one file may mix them).
    pub fn read_file(&mut self, path: &std::path::Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Insufficient(format!(
                "cannot read suppressions {}: {e}; give a file of `leak:PATTERN` lines or valgrind {{ ... }} entries",
                path.display()
            ))
        })?;
        self.parse(&text, &path.display().to_string())
    }

    /// Parses `text`, naming it `origin` in messages.
    pub fn parse(&mut self, text: &str, origin: &str) -> Result<(), Error> {
        let bad = |line: usize, what: String| {
            Error::Insufficient(format!(
                "{origin}:{line}: {what}; expected `leak:PATTERN` or a valgrind entry `{{ NAME Memcheck:Leak fun:... }}`"
            ))
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        while let Some((n, line)) = lines.next() {
            if let Some(pattern) = line.strip_prefix("leak:") {
                let pattern = pattern.trim();
                if pattern.is_empty() {
                    return Err(bad(n, "an empty leak: pattern".into()));
                }
                self.entries.push(Entry {
                    name: line.to_string(),
                    origin: format!("{origin}:{n}"),
                    rule: Rule::Lsan(pattern.to_string()),
                });
                continue;
            }
            if line.contains(':') && !line.starts_with('{') {
                // Other LSan/ASan types (`interceptor_via_fun:`, `called_from_lib:`).
                continue;
            }
            if line != "{" {
                return Err(bad(n, format!("unexpected {line:?}")));
            }
            let Some((_, name)) = lines.next() else {
                return Err(bad(n, "an entry with no name".into()));
            };
            let Some((_, tool)) = lines.next() else {
                return Err(bad(n, "an entry with no tool:kind line".into()));
            };
            let mut kinds = None;
            let mut frames = Vec::new();
            let mut closed = false;
            for (ln, l) in lines.by_ref() {
                if l == "}" {
                    closed = true;
                    break;
                }
                if let Some(list) = l.strip_prefix("match-leak-kinds:") {
                    kinds = Some(parse_kinds(list).map_err(|w| bad(ln, w))?);
                } else if let Some(f) = l.strip_prefix("fun:") {
                    frames.push(FramePattern::Fun(f.trim().to_string()));
                } else if let Some(o) = l.strip_prefix("obj:") {
                    frames.push(FramePattern::Obj(o.trim().to_string()));
                } else if l == "..." {
                    frames.push(FramePattern::Any);
                } else if l.starts_with("src:") {
                    // valgrind 3.22's `src:file:line`: we match by function.
                    frames.push(FramePattern::Any);
                } else {
                    return Err(bad(ln, format!("unexpected {l:?} in entry {name:?}")));
                }
            }
            if !closed {
                return Err(bad(n, format!("entry {name:?} has no closing }}")));
            }
            if !tool.split(',').any(|t| t.trim() == "Memcheck:Leak") {
                continue;
            }
            self.entries.push(Entry {
                name: name.to_string(),
                origin: format!("{origin}:{n}"),
                rule: Rule::Valgrind { kinds, frames },
            });
        }
        Ok(())
    }

    /// The first entry that suppresses a group of `kind` allocated by
    /// `stack`, by index.
    pub fn matching(&self, kind: LeakKind, stack: &[Frame]) -> Option<usize> {
        self.entries.iter().position(|e| e.matches(kind, stack))
    }
}

impl Entry {
    fn matches(&self, kind: LeakKind, stack: &[Frame]) -> bool {
        match &self.rule {
            Rule::Lsan(p) => {
                kind != LeakKind::Reachable
                    && stack.iter().any(|f| {
                        [
                            f.function.as_deref(),
                            f.module.as_deref(),
                            f.file.as_deref(),
                        ]
                        .into_iter()
                        .flatten()
                        .any(|s| lsan_match(p, s))
                    })
            }
            Rule::Valgrind { kinds, frames } => {
                let kind_ok = match kinds {
                    Some(ks) => ks.contains(&kind),
                    None => true,
                };
                let frames = match frames.first() {
                    Some(FramePattern::Fun(f)) if ALLOCATORS.iter().any(|a| glob(f, a)) => {
                        &frames[1..]
                    }
                    _ => &frames[..],
                };
                kind_ok && valgrind_match(frames, stack)
            }
        }
    }
}

fn parse_kinds(list: &str) -> Result<Vec<LeakKind>, String> {
    let mut out = Vec::new();
    for k in list.split(',').map(str::trim) {
        match k {
            "definite" => out.push(LeakKind::Definite),
            "indirect" => out.push(LeakKind::Indirect),
            "possible" => out.push(LeakKind::Possible),
            "reachable" => out.push(LeakKind::Reachable),
            "all" => out.extend(LeakKind::ALL),
            "none" => {}
            other => return Err(format!("unknown leak kind {other:?}")),
        }
    }
    Ok(out)
}

/// valgrind's frame lines against the stack, from the innermost frame.
fn valgrind_match(pats: &[FramePattern], stack: &[Frame]) -> bool {
    match pats.split_first() {
        None => true,
        Some((FramePattern::Any, rest)) => {
            (0..=stack.len()).any(|i| valgrind_match(rest, &stack[i..]))
        }
        Some((p, rest)) => {
            let Some((f, more)) = stack.split_first() else {
                return false;
            };
            let ok = match p {
                FramePattern::Fun(g) => f.function.as_deref().is_some_and(|n| glob(g, n)),
                FramePattern::Obj(g) => f.module.as_deref().is_some_and(|m| {
                    // valgrind names objects by path; we know the file name.
                    glob(g, m) || glob(g.rsplit('/').next().unwrap_or(g), m)
                }),
                FramePattern::Any => true,
            };
            ok && valgrind_match(rest, more)
        }
    }
}

/// valgrind's glob: `*` any run, `?` one character, over the whole name.
fn glob(pattern: &str, name: &str) -> bool {
    wildcard(pattern.as_bytes(), name.as_bytes(), true)
}

/// `*` any run of bytes and, with `question`, `?` any one byte.
fn wildcard(p: &[u8], n: &[u8], question: bool) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some((b'*', rest)) => (0..=n.len()).any(|i| wildcard(rest, &n[i..], question)),
        Some((b'?', rest)) if question => !n.is_empty() && wildcard(rest, &n[1..], question),
        Some((c, rest)) => n.first() == Some(c) && wildcard(rest, &n[1..], question),
    }
}

/// LSan's template match: a substring with `*` wildcards, `^` and `$`
/// anchors.
fn lsan_match(pattern: &str, name: &str) -> bool {
    let (start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    let g = format!(
        "{}{p}{}",
        if start { "" } else { "*" },
        if end { "" } else { "*" }
    );
    wildcard(g.as_bytes(), name.as_bytes(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::frame;

    fn stack() -> Vec<Frame> {
        vec![
            frame("parse_header", "app", "/src/http/parse.c"),
            frame("handle_request", "app", "/src/http/server.c"),
            frame("main", "app", "/src/main.c"),
            frame(
                "__libc_start_call_main",
                "libc.so.6",
                "libc_start_call_main.h",
            ),
        ]
    }

    fn parsed(text: &str) -> Suppressions {
        let mut s = Suppressions::new();
        s.parse(text, "supp").expect("parses");
        s
    }

    #[test]
    fn lsan_patterns_match_functions_modules_and_files_with_anchors_and_stars() {
        let d = LeakKind::Definite;
        let s = parsed(
            "# comment\n\nleak:handle_req\nleak:^parse_h*er$\nleak:libc.so\nleak:http/server.c\ninterceptor_via_fun:x\n",
        );
        assert_eq!(s.entries().len(), 4);
        for (i, e) in s.entries().iter().enumerate() {
            assert!(e.matches(d, &stack()), "{i}: {e:?}");
        }
        assert_eq!(s.entries()[1].origin, "supp:4");
        let miss = parsed("leak:^handle$\nleak:request_x\nleak:^header\n");
        assert_eq!(miss.matching(d, &stack()), None);
        // Still reachable blocks are not leaks to LSan.
        assert_eq!(
            parsed("leak:main").matching(LeakKind::Reachable, &stack()),
            None
        );
    }

    #[test]
    fn valgrind_entries_match_from_the_innermost_frame_with_ellipses_and_kinds() {
        let s = parsed(
            "{\n  by_prefix\n  Memcheck:Leak\n  match-leak-kinds: definite,indirect\n  fun:malloc\n  fun:parse_*\n  fun:handle_request\n}\n\
             {\n  ellipsis\n  Memcheck:Leak\n  ...\n  fun:main\n  obj:*/libc.so.6\n}\n\
             {\n  other_tool\n  Helgrind:Race\n  fun:parse_header\n}\n",
        );
        assert_eq!(s.entries().len(), 2);
        assert_eq!(s.entries()[0].name, "by_prefix");
        assert_eq!(s.matching(LeakKind::Definite, &stack()), Some(0));
        // The first entry does not take possibly lost blocks; the second does.
        assert_eq!(s.matching(LeakKind::Possible, &stack()), Some(1));
        let not_innermost = parsed("{\n n\n Memcheck:Leak\n fun:handle_request\n}\n");
        assert_eq!(not_innermost.matching(LeakKind::Definite, &stack()), None);
        let longer = parsed("{\n n\n Memcheck:Leak\n fun:parse_header\n fun:handle_request\n fun:main\n fun:*\n fun:extra\n}\n");
        assert_eq!(longer.matching(LeakKind::Definite, &stack()), None);
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        let err = |t: &str| {
            Suppressions::new()
                .parse(t, "f.supp")
                .unwrap_err()
                .to_string()
        };
        assert!(err("{\n name\n Memcheck:Leak\n fun:x\n")
            .contains("f.supp:1: entry \"name\" has no closing }"));
        assert!(err("garbage\n").contains("f.supp:1: unexpected \"garbage\""));
        assert!(err("leak:\n").contains("f.supp:1: an empty leak: pattern"));
        assert!(err("{\n n\n Memcheck:Leak\n match-leak-kinds: lost\n}\n")
            .contains("f.supp:4: unknown leak kind \"lost\""));
        assert!(
            err("{\n n\n Memcheck:Leak\n bogus\n}\n").contains("f.supp:4: unexpected \"bogus\"")
        );
    }

    #[test]
    fn globs_cover_the_whole_name() {
        assert!(glob("ma*c", "malloc"));
        assert!(glob("m?lloc", "malloc"));
        assert!(!glob("mall", "malloc"));
        assert!(lsan_match("all", "malloc"));
        assert!(!lsan_match("^all", "malloc"));
        assert!(lsan_match("loc$", "malloc"));
        assert!(!lsan_match("m?lloc", "malloc"));
    }
}
