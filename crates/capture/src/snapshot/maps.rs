//! A minimal `/proc/PID/smaps` parser: what the snapshot needs to choose
//! mappings and summarise them.
//!
//! TODO(merge): `capture::procfs` is getting the project's maps parser from
//! the watch work; once it lands, this module should become a thin adapter
//! over it. It stays private until then so nobody starts depending on it.

/// One mapping of the target, with the smaps fields the snapshot uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    /// File offset in bytes.
    pub offset: u64,
    pub inode: u64,
    /// The path column, verbatim (`[heap]`, `/usr/lib/x.so (deleted)`, or
    /// empty for anonymous memory).
    pub path: String,
    /// Bytes, from the smaps fields of the same names (0 when absent).
    pub rss: u64,
    pub pss: u64,
    pub anonymous: u64,
    pub swap: u64,
    /// The two-letter `VmFlags` codes.
    pub vm_flags: Vec<String>,
}

impl Mapping {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Backed by a file (not anonymous memory and not a kernel pseudo-path).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && !self.path.is_empty() && !self.path.starts_with('[')
    }

    /// Anonymous memory: no file, or a bracketed name such as `[heap]`,
    /// `[stack]` or `[anon:name]` (but not the kernel's special mappings).
    pub fn is_anonymous(&self) -> bool {
        !self.is_file() && !self.is_special()
    }

    /// `[vvar]`, `[vsyscall]`, `[vdso]` and friends: set up by the kernel.
    pub fn is_special(&self) -> bool {
        matches!(
            self.path.as_str(),
            "[vvar]" | "[vvar_vclock]" | "[vsyscall]" | "[vdso]" | "[uprobes]"
        )
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }

    /// `rwxp` as the kernel prints it.
    pub fn perms(&self) -> String {
        let mut s = String::with_capacity(4);
        s.push(if self.read { 'r' } else { '-' });
        s.push(if self.write { 'w' } else { '-' });
        s.push(if self.exec { 'x' } else { '-' });
        s.push(if self.shared { 's' } else { 'p' });
        s
    }
}

/// Parses `/proc/PID/smaps` (or plain `maps`, which simply lacks the
/// fields). Errors name the offending line.
pub(crate) fn parse(text: &str) -> Result<Vec<Mapping>, String> {
    let mut out: Vec<Mapping> = Vec::new();
    for (no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let first = line.split_ascii_whitespace().next().unwrap_or("");
        if first.ends_with(':') {
            let Some(m) = out.last_mut() else {
                return Err(format!("line {}: field before any mapping", no + 1));
            };
            field(m, first.trim_end_matches(':'), &line[first.len()..]);
            continue;
        }
        out.push(header(line).ok_or_else(|| format!("line {}: not a mapping: {line:?}", no + 1))?);
    }
    Ok(out)
}

/// `now` (from `maps`, read while the process is stopped) with the smaps
/// counters and VmFlags of the same mapping in `before` (read just before
/// the stop). A mapping that is new, or changed its range, permissions or
/// file since, keeps no counters and no flags: callers treat that as
/// "unknown".
pub(crate) fn with_details(mut now: Vec<Mapping>, before: &[Mapping]) -> Vec<Mapping> {
    let by_start: std::collections::HashMap<u64, &Mapping> =
        before.iter().map(|b| (b.start, b)).collect();
    for m in &mut now {
        if let Some(b) = by_start.get(&m.start) {
            let same = b.start == m.start
                && b.end == m.end
                && (b.read, b.write, b.exec, b.shared) == (m.read, m.write, m.exec, m.shared)
                && b.offset == m.offset
                && b.inode == m.inode;
            if same {
                m.rss = b.rss;
                m.pss = b.pss;
                m.anonymous = b.anonymous;
                m.swap = b.swap;
                m.vm_flags = b.vm_flags.clone();
            }
        }
    }
    now
}

fn header(line: &str) -> Option<Mapping> {
    // `start-end perms offset dev inode   path with spaces`
    let mut rest = line;
    let mut next = || -> Option<&str> {
        let t = rest.trim_start();
        let end = t.find(|c: char| c.is_ascii_whitespace()).unwrap_or(t.len());
        let (tok, r) = t.split_at(end);
        rest = r;
        (!tok.is_empty()).then_some(tok)
    };
    let range = next()?;
    let perms = next()?.as_bytes();
    let offset = next()?;
    let _dev = next()?;
    let inode = next()?;
    let (s, e) = range.split_once('-')?;
    if perms.len() < 4 {
        return None;
    }
    let m = Mapping {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        path: rest.trim_start().to_string(),
        ..Mapping::default()
    };
    (m.start <= m.end).then_some(m)
}

fn field(m: &mut Mapping, key: &str, value: &str) {
    let kb = || -> u64 {
        value
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_mul(1024)
    };
    match key {
        "Rss" => m.rss = kb(),
        "Pss" => m.pss = kb(),
        "Anonymous" => m.anonymous = kb(),
        "Swap" => m.swap = kb(),
        "VmFlags" => m.vm_flags = value.split_ascii_whitespace().map(str::to_string).collect(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234                       /usr/bin/my prog (deleted)
Size:                  4 kB
Rss:                   4 kB
Pss:                   2 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me dw sd
7ffd1000-7ffd3000 rw-p 00000000 00:00 0                          [stack]
Rss:                   8 kB
Anonymous:             8 kB
VmFlags: rd wr mr mw me gd ac
7f0000000000-7f0000001000 ---p 00000000 00:00 0 
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_paths_with_spaces_fields_and_empty_paths() {
        let maps = parse(SMAPS).unwrap();
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].path, "/usr/bin/my prog (deleted)");
        assert!(maps[0].is_file() && !maps[0].write && maps[0].read);
        assert_eq!(maps[0].pss, 2048);
        assert_eq!(maps[1].path, "[stack]");
        assert!(maps[1].is_anonymous());
        assert_eq!(maps[1].anonymous, 8192);
        assert!(maps[1].has_flag("gd"));
        assert_eq!(maps[2].path, "");
        assert!(maps[2].is_anonymous() && !maps[2].read);
        assert!(maps[3].is_special());
        assert_eq!(maps[1].perms(), "rw-p");
    }

    #[test]
    fn details_carry_over_only_to_unchanged_mappings() {
        let before = parse(SMAPS).unwrap();
        let now = parse(
            "55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /usr/bin/my prog (deleted)\n\
             7ffd1000-7ffd4000 rw-p 00000000 00:00 0 [stack]\n\
             7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n",
        )
        .unwrap();
        let merged = with_details(now, &before);
        assert_eq!(merged[0].pss, 2048);
        assert_eq!(merged[0].vm_flags.len(), 6);
        // The stack grew and the guard became writable: both unknown now.
        assert!(merged[1].vm_flags.is_empty() && merged[1].rss == 0);
        assert!(merged[2].vm_flags.is_empty());
    }

    #[test]
    fn rejects_garbage_and_orphan_fields() {
        assert!(parse("Rss: 4 kB\n").is_err());
        assert!(parse("zzzz-0000 rw-p 0 0 0\n").is_err());
        assert!(parse("1000-2000 rw\n").is_err());
        assert!(parse("2000-1000 rw-p 0 00:00 0\n").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
    }
}
