//! The ELF notes of a Linux x86_64 core file, both directions.
//!
//! The layouts are the kernel's (`include/uapi/linux/elfcore.h` and
//! `fs/binfmt_elf.c`) as gdb and the kernel's own cores use them. Each
//! encoder (`prstatus`, `prpsinfo`, `file`) has its parser next to it
//! (`parse_prstatus`, …), tolerant of what the kernel and gdb write (older,
//! shorter or padded records), and the round trips are tested here.

/// `NT_PRSTATUS`: one thread's status and general registers.
pub const NT_PRSTATUS: u32 = 1;
/// `NT_FPREGSET`: one thread's `user_fpregs_struct`.
pub const NT_FPREGSET: u32 = 2;
/// `NT_PRPSINFO`: the process's name, arguments and ids.
pub const NT_PRPSINFO: u32 = 3;
/// `NT_AUXV`: the auxiliary vector, verbatim.
pub const NT_AUXV: u32 = 6;
/// `NT_SIGINFO`: the `siginfo_t` of the signal that stopped the thread.
pub const NT_SIGINFO: u32 = 0x5349_4749;
/// `NT_FILE`: the file-backed mappings.
pub const NT_FILE: u32 = 0x4649_4c45;
/// `NT_X86_XSTATE`: one thread's XSAVE area (owner name `LINUX`).
pub const NT_X86_XSTATE: u32 = 0x202;

/// Size of `struct elf_prstatus` on x86_64.
pub const PRSTATUS_BYTES: usize = 336;
/// Offset of `pr_reg` (the `user_regs_struct`) in `struct elf_prstatus`.
pub const PRSTATUS_REG_OFFSET: usize = 112;
/// Size of `struct elf_prpsinfo` on x86_64.
pub const PRPSINFO_BYTES: usize = 136;
/// Words in `user_regs_struct` on x86_64.
pub const GREGS_WORDS: usize = 27;
/// Index of `rip` in `user_regs_struct`.
pub const REG_RIP: usize = 16;
/// Index of `rsp` in `user_regs_struct`.
pub const REG_RSP: usize = 19;
/// Index of `rbp` in `user_regs_struct`.
pub const REG_RBP: usize = 4;

/// Appends one note record (4-byte aligned name and descriptor, as in
/// core files) to `out`.
pub fn push(out: &mut Vec<u8>, name: &str, kind: u32, desc: &[u8]) {
    let namesz = name.len() + 1;
    out.extend_from_slice(&(namesz as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(desc);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// What goes into one thread's `NT_PRSTATUS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadStatus {
    /// Thread id (`pr_pid`).
    pub tid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Session.
    pub sid: i32,
    /// The current signal (`pr_cursig`, and `si_signo`).
    pub signal: i32,
    /// `user_regs_struct` as raw bytes (216 on x86_64; shorter is padded).
    pub regs: Vec<u8>,
    /// Whether an `NT_FPREGSET` follows.
    pub fpvalid: bool,
}

/// Encodes a `struct elf_prstatus`.
pub fn prstatus(s: &ThreadStatus) -> Vec<u8> {
    let mut b = vec![0u8; PRSTATUS_BYTES];
    b[0..4].copy_from_slice(&s.signal.to_le_bytes()); // pr_info.si_signo
    b[12..14].copy_from_slice(&(s.signal as i16).to_le_bytes()); // pr_cursig
    b[32..36].copy_from_slice(&s.tid.to_le_bytes());
    b[36..40].copy_from_slice(&s.ppid.to_le_bytes());
    b[40..44].copy_from_slice(&s.pgrp.to_le_bytes());
    b[44..48].copy_from_slice(&s.sid.to_le_bytes());
    let n = s.regs.len().min(GREGS_WORDS * 8);
    b[PRSTATUS_REG_OFFSET..PRSTATUS_REG_OFFSET + n].copy_from_slice(&s.regs[..n]);
    b[328..332].copy_from_slice(&(s.fpvalid as i32).to_le_bytes());
    b
}

/// What goes into `NT_PRPSINFO`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The state letter from `/proc/PID/stat` (`R`, `S`, ...).
    pub state: u8,
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Session.
    pub sid: i32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Nice value.
    pub nice: i8,
    /// `pr_flag` (the kernel's task flags; 0 when unknown).
    pub flag: u64,
    /// The command name (`comm`); cut at 15 bytes.
    pub fname: String,
    /// The command line, arguments joined by spaces; cut at 79 bytes.
    pub psargs: String,
}

/// Encodes a `struct elf_prpsinfo`.
pub fn prpsinfo(p: &ProcessInfo) -> Vec<u8> {
    let mut b = vec![0u8; PRPSINFO_BYTES];
    let sname = if p.state == 0 { b'R' } else { p.state };
    // pr_state is the index of the letter in "RSDTZW"; gdb shows pr_sname.
    b[0] = b"RSDTZW".iter().position(|&c| c == sname).unwrap_or(0) as u8;
    b[1] = sname;
    b[2] = (sname == b'Z') as u8;
    b[3] = p.nice as u8;
    b[8..16].copy_from_slice(&p.flag.to_le_bytes());
    b[16..20].copy_from_slice(&p.uid.to_le_bytes());
    b[20..24].copy_from_slice(&p.gid.to_le_bytes());
    b[24..28].copy_from_slice(&p.pid.to_le_bytes());
    b[28..32].copy_from_slice(&p.ppid.to_le_bytes());
    b[32..36].copy_from_slice(&p.pgrp.to_le_bytes());
    b[36..40].copy_from_slice(&p.sid.to_le_bytes());
    copy_c_string(&mut b[40..56], &p.fname);
    copy_c_string(&mut b[56..136], &p.psargs);
    b
}

/// Copies `s` into `dst`, cut to leave a terminating NUL.
fn copy_c_string(dst: &mut [u8], s: &str) {
    let n = s.len().min(dst.len() - 1);
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// One entry of `NT_FILE`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileRange {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Offset in the file, in bytes (stored in pages).
    pub offset: u64,
    /// The file's path.
    pub path: String,
}

/// Page size `NT_FILE` counts offsets in.
pub const FILE_NOTE_PAGE: u64 = 4096;

/// Encodes `NT_FILE`: count, page size, `count` triples (start, end,
/// offset in pages), then the NUL-terminated paths.
pub fn file(entries: &[FileRange]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + entries.len() * 64);
    b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    b.extend_from_slice(&FILE_NOTE_PAGE.to_le_bytes());
    for e in entries {
        b.extend_from_slice(&e.start.to_le_bytes());
        b.extend_from_slice(&e.end.to_le_bytes());
        b.extend_from_slice(&(e.offset / FILE_NOTE_PAGE).to_le_bytes());
    }
    for e in entries {
        b.extend_from_slice(e.path.as_bytes());
        b.push(0);
    }
    b
}

/// Encodes the `siginfo_t` (128 bytes) of `NT_SIGINFO` for a stop by
/// `signal` sent from outside (`SI_USER`).
pub fn siginfo(signal: i32) -> Vec<u8> {
    let mut b = vec![0u8; 128];
    b[0..4].copy_from_slice(&signal.to_le_bytes());
    b
}

// Decoders: the inverse of the encoders above, and tolerant of what the
// kernel and gdb write (older, shorter or padded records).

fn i32_at(b: &[u8], off: usize) -> i32 {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(i32::from_le_bytes)
        .unwrap_or(0)
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Parses `struct elf_prstatus`.
pub fn parse_prstatus(b: &[u8]) -> Result<ThreadStatus, String> {
    if b.len() < PRSTATUS_BYTES {
        return Err(format!(
            "NT_PRSTATUS of {} bytes; x86_64 needs {PRSTATUS_BYTES}",
            b.len()
        ));
    }
    let cursig = i16::from_le_bytes([b[12], b[13]]) as i32;
    Ok(ThreadStatus {
        tid: i32_at(b, 32),
        ppid: i32_at(b, 36),
        pgrp: i32_at(b, 40),
        sid: i32_at(b, 44),
        signal: cursig,
        regs: b[PRSTATUS_REG_OFFSET..PRSTATUS_REG_OFFSET + GREGS_WORDS * 8].to_vec(),
        fpvalid: i32_at(b, 328) != 0,
    })
}

/// Parses `struct elf_prpsinfo`.
pub fn parse_prpsinfo(b: &[u8]) -> Result<ProcessInfo, String> {
    if b.len() < PRPSINFO_BYTES {
        return Err(format!(
            "NT_PRPSINFO of {} bytes; x86_64 needs {PRPSINFO_BYTES}",
            b.len()
        ));
    }
    Ok(ProcessInfo {
        state: b[1],
        nice: b[3] as i8,
        flag: u64_at(b, 8).unwrap_or(0),
        uid: i32_at(b, 16) as u32,
        gid: i32_at(b, 20) as u32,
        pid: i32_at(b, 24),
        ppid: i32_at(b, 28),
        pgrp: i32_at(b, 32),
        sid: i32_at(b, 36),
        fname: c_string(&b[40..56]),
        psargs: c_string(&b[56..136]),
    })
}

/// Parses `NT_FILE`.
pub fn parse_file(b: &[u8]) -> Result<Vec<FileRange>, String> {
    let count = u64_at(b, 0).ok_or("NT_FILE shorter than its header")?;
    let page = u64_at(b, 8).ok_or("NT_FILE shorter than its header")?;
    let table_end = count
        .checked_mul(24)
        .and_then(|n| n.checked_add(16))
        .filter(|&n| n <= b.len() as u64)
        .ok_or_else(|| format!("NT_FILE claims {count} entries but holds {} bytes", b.len()))?
        as usize;
    let mut names = b[table_end..].split(|&c| c == 0);
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = 16 + i * 24;
        let (start, end, pgoff) = (
            u64_at(b, at).unwrap_or(0),
            u64_at(b, at + 8).unwrap_or(0),
            u64_at(b, at + 16).unwrap_or(0),
        );
        let name = names
            .next()
            .ok_or_else(|| format!("NT_FILE has {count} entries but fewer names"))?;
        out.push(FileRange {
            start,
            end,
            offset: pgoff.saturating_mul(page),
            path: String::from_utf8_lossy(name).into_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prstatus_round_trips() {
        let s = ThreadStatus {
            tid: 4242,
            ppid: 1,
            pgrp: 4242,
            sid: 7,
            signal: 11,
            regs: (0..GREGS_WORDS as u64 * 8).map(|i| i as u8).collect(),
            fpvalid: true,
        };
        assert_eq!(parse_prstatus(&prstatus(&s)).unwrap(), s);
        assert!(parse_prstatus(&prstatus(&s)[..100]).is_err());
    }

    #[test]
    fn prpsinfo_round_trips_and_cuts_long_strings() {
        let p = ProcessInfo {
            state: b'S',
            pid: 99,
            ppid: 98,
            pgrp: 97,
            sid: 96,
            uid: 1000,
            gid: 100,
            nice: -5,
            flag: 0x40_0000,
            fname: "my prog (x)".into(),
            psargs: "./my prog --flag".into(),
        };
        assert_eq!(parse_prpsinfo(&prpsinfo(&p)).unwrap(), p);
        let long = ProcessInfo {
            fname: "a".repeat(40),
            psargs: "b".repeat(200),
            ..p
        };
        let back = parse_prpsinfo(&prpsinfo(&long)).unwrap();
        assert_eq!(back.fname.len(), 15);
        assert_eq!(back.psargs.len(), 79);
    }

    #[test]
    fn file_note_round_trips_with_odd_paths() {
        let files = vec![
            FileRange {
                start: 0x1000,
                end: 0x3000,
                offset: 0,
                path: "/usr/bin/my prog (deleted)".into(),
            },
            FileRange {
                start: 0x3000,
                end: 0x4000,
                offset: 0x2000,
                path: "/lib/ü.so".into(),
            },
        ];
        assert_eq!(parse_file(&file(&files)).unwrap(), files);
        assert_eq!(parse_file(&file(&[])).unwrap(), vec![]);
    }

    #[test]
    fn file_note_rejects_truncation_and_lies() {
        let files = vec![FileRange {
            start: 1,
            end: 2,
            offset: 0,
            path: "/x".into(),
        }];
        let b = file(&files);
        assert!(parse_file(&b[..20]).is_err());
        assert!(parse_file(&b[..4]).is_err());
        let mut lie = b.clone();
        lie[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_file(&lie).is_err());
    }
}
