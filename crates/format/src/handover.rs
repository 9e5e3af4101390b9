//! The contract between the tracer and `leaktrail run` (the supervisor).
//!
//! The supervisor starts the program with the tracer in `LD_PRELOAD` and
//! configures it through the environment variables below, one of them the
//! number of a socket ([`SUPERVISOR_FD`]). On that socket the tracer writes
//! one [`Notice`] line at its start and one at the program's exit, and each
//! time waits for one byte back:
//!
//! ```text
//! start PID 0 0xHEADER
//! exit PID STATUS 0xHEADER
//! ```
//!
//! `PID` is decimal, `STATUS` the exit status as an unsigned 32-bit decimal,
//! `HEADER` the audit region's header address in lowercase hex (`0x0` if
//! there is none), and the line ends in `\n`. The tracer writes it on its
//! hook-free init and exit paths, so [`Notice::encode`] fills a caller's
//! fixed buffer and never allocates.
//!
//! The tracer waits at most [`HANDOVER_DEADLINE_MS`] for each answer, then
//! drops the link and lets the program go on. A process that execs without
//! forking first (a wrapper: `env`, `nice`, `stdbuf`) keeps the link: its
//! new image writes its own `start` line, with its own header, and the
//! supervisor follows it.
//!
//! ```
//! use leaktrail_format::handover::{ExitNotice, Notice, LINE_BYTES};
//! let n = Notice::Exit(ExitNotice { pid: 42, status: 3, header_addr: 0x7f00 });
//! let mut buf = [0u8; LINE_BYTES];
//! let line = n.encode(&mut buf);
//! assert_eq!(line, b"exit 42 3 0x7f00\n");
//! assert_eq!(Notice::parse("exit 42 3 0x7f00"), Some(n));
//! ```

use core::ffi::CStr;

/// The name of an environment variable of the contract, with the NUL the
/// tracer's `getenv` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvName(&'static CStr);

impl EnvName {
    /// The name, for `getenv` and `unsetenv`.
    pub const fn as_c_str(self) -> &'static CStr {
        self.0
    }

    /// The name without its NUL.
    pub const fn as_str(self) -> &'static str {
        match core::str::from_utf8(self.0.to_bytes()) {
            Ok(s) => s,
            // Every name below is ASCII.
            Err(_) => "",
        }
    }
}

impl core::fmt::Display for EnvName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "std")]
impl AsRef<std::ffi::OsStr> for EnvName {
    fn as_ref(&self) -> &std::ffi::OsStr {
        std::ffi::OsStr::new(self.as_str())
    }
}

/// How the tracer captures stacks: an [`crate::UnwindMode`] name; anything
/// else means [`crate::UnwindMode::Dwarf`].
pub const UNWIND: EnvName = EnvName(c"LEAKTRAIL_UNWIND");
/// Frames per stack, clamped to `1..=`[`crate::MAX_DEPTH`].
pub const DEPTH: EnvName = EnvName(c"LEAKTRAIL_DEPTH");
/// Mean bytes between sampled blocks (Poisson sampling by bytes); absent or
/// 0: record every block.
pub const SAMPLE: EnvName = EnvName(c"LEAKTRAIL_SAMPLE");
/// Seed of the sampler's random numbers (tests set it to make the choice
/// of blocks repeatable); absent: from the clock and the thread.
pub const SAMPLE_SEED: EnvName = EnvName(c"LEAKTRAIL_SAMPLE_SEED");
/// `1`: load but record nothing.
pub const DISABLE: EnvName = EnvName(c"LEAKTRAIL_DISABLE");
/// Most bytes the audit region may occupy.
pub const REGION_LIMIT: EnvName = EnvName(c"LEAKTRAIL_REGION_LIMIT");
/// The tracer's end of the supervisor's socket, `FD:INODE` (see
/// [`parse_link`]). It stays in the environment: the descriptor is closed
/// on exec except when the process the supervisor launched execs (a
/// wrapper such as `env`), so only that process's new image finds a
/// descriptor with that inode, and goes on talking to the supervisor.
pub const SUPERVISOR_FD: EnvName = EnvName(c"LEAKTRAIL_SUPERVISOR_FD");
/// Milliseconds the tracer waits for the supervisor's answer at any
/// hand-over before going on without it (default
/// [`DEFAULT_DEADLINE_MS`]).
pub const HANDOVER_DEADLINE_MS: EnvName = EnvName(c"LEAKTRAIL_HANDOVER_DEADLINE_MS");
/// The default hand-over deadline: ten minutes, room for the final
/// snapshot of a large heap.
pub const DEFAULT_DEADLINE_MS: u64 = 600_000;

/// Parses a [`SUPERVISOR_FD`] value: `FD:INODE` (or a bare `FD`, inode
/// unknown).
pub fn parse_link(value: &[u8]) -> Option<(i32, Option<u64>)> {
    let (fd, inode) = match value.iter().position(|&b| b == b':') {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    let number = |digits: &[u8]| -> Option<u64> {
        if digits.is_empty() || digits.len() > 19 {
            return None;
        }
        digits.iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u64)
        })
    };
    let fd = i32::try_from(number(fd)?).ok()?;
    match inode {
        Some(i) => Some((fd, Some(number(i)?))),
        None => Some((fd, None)),
    }
}
/// The tracer's entry point for `leaktrail attach`, called in the target
/// (by ptrace) after `dlopen` loaded the library: `int
/// leaktrail_attach(const char *spec)`, `spec` an [`AttachSpec`] line.
/// Returns 0 when the malloc family is redirected, else one of the
/// `ATTACH_*` codes.
pub const ATTACH_SYMBOL: &str = "leaktrail_attach";
/// `int leaktrail_detach(void)`: puts every redirected GOT entry back,
/// stops recording and closes the link; the library stays loaded, idle.
/// Returns the number of entries restored.
pub const DETACH_SYMBOL: &str = "leaktrail_detach";
/// [`ATTACH_SYMBOL`]'s answer: the spec did not parse.
pub const ATTACH_BAD_SPEC: i32 = 1;
/// [`ATTACH_SYMBOL`]'s answer: the process is traced from its start
/// (`leaktrail run`), there is nothing to attach.
pub const ATTACH_PRELOADED: i32 = 2;
/// [`ATTACH_SYMBOL`]'s answer: the audit region could not be mapped.
pub const ATTACH_NO_REGION: i32 = 3;
/// [`ATTACH_SYMBOL`]'s answer: the supervisor's socket could not be reached.
pub const ATTACH_NO_LINK: i32 = 4;
/// [`ATTACH_SYMBOL`]'s answer: already attached (another `attach` runs).
pub const ATTACH_BUSY: i32 = 5;
/// [`ATTACH_SYMBOL`]'s answer: the executable defines `malloc` itself (an
/// allocator linked into it). `run` diverts such an allocator at its
/// functions' entries before `main`; in a running program a thread may be
/// inside one, so `attach` does not.
pub const ATTACH_OWN_ALLOCATOR: i32 = 6;

/// What `leaktrail attach` tells the tracer it loaded late, in place of
/// the environment `run` sets: `UNWIND DEPTH SOCKET [SAMPLE [SEED]]`,
/// space-separated, the socket an abstract Unix socket name (without the
/// leading NUL) on which the supervisor listens, `SAMPLE` the mean bytes
/// between sampled blocks (0 or absent: every block, as [`SAMPLE`]) and
/// `SEED` the sampler's seed (absent: one from the clock, as
/// [`SAMPLE_SEED`]). The tracer connects, writes its `start` line
/// and goes on without waiting for the answer: the heap it joins was there
/// long before, there is no beginning to hold back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachSpec<'a> {
    /// An [`crate::UnwindMode`] name.
    pub unwind: &'a [u8],
    /// Frames per stack.
    pub depth: u32,
    /// The abstract socket's name.
    pub socket: &'a [u8],
    /// Mean bytes between sampled blocks; 0 records every block.
    pub sample: u64,
    /// The sampler's seed, when given.
    pub seed: Option<u64>,
}

impl<'a> AttachSpec<'a> {
    /// Parses a spec line; `None` unless it has three to five fields, a
    /// decimal depth, a socket name of 1 to 100 bytes and decimal sample
    /// and seed.
    pub fn parse(line: &'a [u8]) -> Option<AttachSpec<'a>> {
        let decimal = |s: &[u8]| core::str::from_utf8(s).ok().and_then(decimal);
        let mut it = line.split(|&b| b == b' ');
        let unwind = it.next()?;
        let depth = it.next()?;
        let socket = it.next()?;
        let sample = it.next().map(decimal).unwrap_or(Some(0))?;
        let seed = match it.next() {
            Some(s) => Some(decimal(s)?),
            None => None,
        };
        if it.next().is_some() || socket.is_empty() || socket.len() > 100 || depth.len() > 9 {
            return None;
        }
        let depth = u32::try_from(decimal(depth)?).ok()?;
        Some(AttachSpec {
            unwind,
            depth,
            socket,
            sample,
            seed,
        })
    }
}

/// Where the supervisor looks for the tracer library first.
pub const PRELOAD: EnvName = EnvName(c"LEAKTRAIL_PRELOAD");

/// Who is writing and where its audit region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitNotice {
    /// The process.
    pub pid: i32,
    /// The status it is exiting with (0 at the start).
    pub status: i32,
    /// Address of its audit region's header (0 if it has none).
    pub header_addr: u64,
}

/// A line from the tracer: it started (before the program's code runs) or
/// the program is ending. Either way the tracer waits for our answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `start PID 0 0xHEADER`.
    Start(ExitNotice),
    /// `exit PID STATUS 0xHEADER`.
    Exit(ExitNotice),
}

/// Bytes that hold any encoded line: `start`, a signed 32-bit pid, an
/// unsigned 32-bit status, 16 hex digits, separators and the newline make
/// 48.
pub const LINE_BYTES: usize = 64;

/// Appends bytes to a fixed buffer; [`LINE_BYTES`] leaves room for every
/// line, so nothing is ever cut.
struct Cursor<'a> {
    buf: &'a mut [u8; LINE_BYTES],
    len: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let k = bytes.len().min(LINE_BYTES - self.len);
        self.buf[self.len..self.len + k].copy_from_slice(&bytes[..k]);
        self.len += k;
    }

    /// `v` in base `radix` (10 or 16), lowercase, no leading zeros.
    fn digits(&mut self, mut v: u64, radix: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v % radix) as usize];
            v /= radix;
            if v == 0 {
                break;
            }
        }
        self.put(&tmp[i..]);
    }
}

impl Notice {
    /// What the line says about the process.
    pub fn notice(&self) -> ExitNotice {
        match *self {
            Notice::Start(n) | Notice::Exit(n) => n,
        }
    }

    /// Writes the line, newline included, into `buf` and returns it.
    /// Allocates nothing and takes no lock.
    pub fn encode<'a>(&self, buf: &'a mut [u8; LINE_BYTES]) -> &'a [u8] {
        let (word, n): (&[u8], _) = match *self {
            Notice::Start(n) => (b"start ", n),
            Notice::Exit(n) => (b"exit ", n),
        };
        let mut c = Cursor { buf, len: 0 };
        c.put(word);
        if n.pid < 0 {
            c.put(b"-");
        }
        c.digits(n.pid.unsigned_abs() as u64, 10);
        c.put(b" ");
        c.digits(n.status as u32 as u64, 10);
        c.put(b" 0x");
        c.digits(n.header_addr, 16);
        c.put(b"\n");
        let len = c.len;
        &buf[..len]
    }

    /// Parses one line, with or without its newline. `None` for anything
    /// that is not exactly a line [`Notice::encode`] writes (case aside in
    /// the hex digits).
    pub fn parse(line: &str) -> Option<Notice> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut it = line.split(' ');
        let kind = it.next()?;
        let pid = it.next()?;
        let status = it.next()?;
        let addr = it.next()?.strip_prefix("0x")?;
        if it.next().is_some() {
            return None;
        }
        let pid = match pid.strip_prefix('-') {
            Some(abs) => i32::try_from(-i64::try_from(decimal(abs)?).ok()?).ok()?,
            None => i32::try_from(decimal(pid)?).ok()?,
        };
        let status = u32::try_from(decimal(status)?).ok()? as i32;
        if addr.is_empty() || addr.len() > 16 || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let header_addr = u64::from_str_radix(addr, 16).ok()?;
        let n = ExitNotice {
            pid,
            status,
            header_addr,
        };
        match kind {
            "start" => Some(Notice::Start(n)),
            "exit" => Some(Notice::Exit(n)),
            _ => None,
        }
    }
}

/// A run of decimal digits (no sign) that fits in a u64.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: Notice) -> ([u8; LINE_BYTES], usize) {
        let mut buf = [0u8; LINE_BYTES];
        let len = n.encode(&mut buf).len();
        (buf, len)
    }

    #[test]
    fn lines_round_trip() {
        for pid in [0, 1, 42, i32::MAX, -1, i32::MIN] {
            for status in [0, 3, 255, -1, i32::MIN, i32::MAX] {
                for header_addr in [0, 1, 0x7f00_0000_1000, u64::MAX] {
                    let n = ExitNotice {
                        pid,
                        status,
                        header_addr,
                    };
                    for notice in [Notice::Start(n), Notice::Exit(n)] {
                        let (buf, len) = line(notice);
                        assert_eq!(buf[len - 1], b'\n');
                        let text = core::str::from_utf8(&buf[..len]).unwrap();
                        assert_eq!(Notice::parse(text), Some(notice), "{text:?}");
                        assert_eq!(Notice::parse(&text[..len - 1]), Some(notice));
                    }
                }
            }
        }
    }

    #[test]
    fn lines_are_what_the_supervisor_always_read() {
        let n = ExitNotice {
            pid: 42,
            status: -1,
            header_addr: 0,
        };
        let (buf, len) = line(Notice::Exit(n));
        assert_eq!(&buf[..len], b"exit 42 4294967295 0x0\n");
        let (buf, len) = line(Notice::Start(ExitNotice { status: 0, ..n }));
        assert_eq!(&buf[..len], b"start 42 0 0x0\n");
        let longest = ExitNotice {
            pid: i32::MIN,
            status: -1,
            header_addr: u64::MAX,
        };
        assert_eq!(line(Notice::Start(longest)).1, 48);
    }

    #[test]
    fn parses_notices() {
        let n = ExitNotice {
            pid: 42,
            status: 3,
            header_addr: 0x7f00_0000_1000,
        };
        assert_eq!(
            Notice::parse("exit 42 3 0x7f0000001000"),
            Some(Notice::Exit(n))
        );
        assert_eq!(
            Notice::parse("start 42 0 0x7F0000001000"),
            Some(Notice::Start(ExitNotice { status: 0, ..n }))
        );
        assert_eq!(
            Notice::parse("exit 42 3 0x7f0000001000").map(|n| n.notice()),
            Some(n)
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "",
            "\n",
            "hello",
            "exit",
            "exit 42",
            "exit 42 3",
            "exit 42 3 ",
            "exit x 3 0x1",
            "stop 42 3 0x1",
            "Exit 42 3 0x1",
            "exit 42 3 1",
            "exit 42 3 0x",
            "exit 42 3 0xg",
            "exit 42 3 0x+1",
            "exit 42 3 0x-1",
            "exit 42 3 0x10000000000000000",
            "exit 42 3 0x1 extra",
            "exit 42 3 0x1\n\n",
            "exit  42 3 0x1",
            " exit 42 3 0x1",
            "exit\t42 3 0x1",
            "exit 42 -3 0x1",
            "exit 42 +3 0x1",
            "exit +42 3 0x1",
            "exit - 3 0x1",
            "exit 2147483648 3 0x1",
            "exit 42 4294967296 0x1",
            "exit 42 99999999999999999999999 0x1",
            "exit 42 3 0x1\r",
        ] {
            assert_eq!(Notice::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn attach_specs() {
        assert_eq!(
            AttachSpec::parse(b"dwarf 64 leaktrail-attach-1-2"),
            Some(AttachSpec {
                unwind: b"dwarf",
                depth: 64,
                socket: b"leaktrail-attach-1-2",
                sample: 0,
                seed: None,
            })
        );
        assert_eq!(
            AttachSpec::parse(b"fp 8 s 16384 42"),
            Some(AttachSpec {
                unwind: b"fp",
                depth: 8,
                socket: b"s",
                sample: 16384,
                seed: Some(42),
            })
        );
        assert_eq!(
            AttachSpec::parse(b"fp 8 s 524288").map(|s| s.sample),
            Some(524288)
        );
        for bad in [
            &b""[..],
            b"dwarf 64",
            b"dwarf x s",
            b"dwarf 64 s extra",
            b"dwarf 64 ",
            b"dwarf 64 s 1 2 3",
            b"dwarf 64 s 99999999999999999999",
            b"dwarf 64 s 1 x",
        ] {
            assert_eq!(AttachSpec::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn link_values() {
        assert_eq!(parse_link(b"7:123456"), Some((7, Some(123456))));
        assert_eq!(parse_link(b"7"), Some((7, None)));
        for bad in [&b""[..], b":5", b"7:", b"x:1", b"7:1:2", b"99999999999"] {
            assert_eq!(parse_link(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn env_names() {
        assert_eq!(UNWIND.as_str(), "LEAKTRAIL_UNWIND");
        assert_eq!(SUPERVISOR_FD.as_c_str(), c"LEAKTRAIL_SUPERVISOR_FD");
        for name in [
            UNWIND,
            DEPTH,
            SAMPLE,
            SAMPLE_SEED,
            DISABLE,
            REGION_LIMIT,
            SUPERVISOR_FD,
            HANDOVER_DEADLINE_MS,
            PRELOAD,
        ] {
            assert!(name.as_str().starts_with("LEAKTRAIL_"), "{name}");
            assert_eq!(name.as_str().as_bytes(), name.as_c_str().to_bytes());
        }
    }
}
