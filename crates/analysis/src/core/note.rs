//! Parsers for the notes of a Linux x86_64 core file: the inverse of
//! `leaktrail_capture::snapshot::note`, and tolerant of what the kernel and
//! gdb write (older, shorter or padded records).

use leaktrail_capture::snapshot::note::{
    FileRange, ProcessInfo, ThreadStatus, GREGS_WORDS, PRPSINFO_BYTES, PRSTATUS_BYTES,
    PRSTATUS_REG_OFFSET,
};

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
pub fn prstatus(b: &[u8]) -> Result<ThreadStatus, String> {
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
pub fn prpsinfo(b: &[u8]) -> Result<ProcessInfo, String> {
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
pub fn file(b: &[u8]) -> Result<Vec<FileRange>, String> {
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
    use leaktrail_capture::snapshot::note as enc;

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
        assert_eq!(prstatus(&enc::prstatus(&s)).unwrap(), s);
        assert!(prstatus(&enc::prstatus(&s)[..100]).is_err());
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
        assert_eq!(prpsinfo(&enc::prpsinfo(&p)).unwrap(), p);
        let long = ProcessInfo {
            fname: "a".repeat(40),
            psargs: "b".repeat(200),
            ..p
        };
        let back = prpsinfo(&enc::prpsinfo(&long)).unwrap();
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
        assert_eq!(file(&enc::file(&files)).unwrap(), files);
        assert_eq!(file(&enc::file(&[])).unwrap(), vec![]);
    }

    #[test]
    fn file_note_rejects_truncation_and_lies() {
        let files = vec![FileRange {
            start: 1,
            end: 2,
            offset: 0,
            path: "/x".into(),
        }];
        let b = enc::file(&files);
        assert!(file(&b[..20]).is_err());
        assert!(file(&b[..4]).is_err());
        let mut lie = b.clone();
        lie[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(file(&lie).is_err());
    }
}
