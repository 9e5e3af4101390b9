//! What `/proc/PID/…` of a live process says: `stat`, `cmdline`, `smaps`
//! (parsed and classified by [`leaktrail_recording::maps`], the one parser
//! and classifier), `smaps_rollup`, the threads' stack pointers, the memory
//! limit.
//!
//! The parsers are pure functions over text so that they can be tested with
//! the ugly inputs the kernel really produces (a `comm` with spaces and
//! parentheses, records cut short because the process exited while we
//! read). The readers around them turn `errno`s into the crate's [`Error`]
//! with the pid named.

use std::path::Path;

use leaktrail_recording::maps::{
    classify, parse_field, parse_smaps, LimitSource, Mapping, MemoryLimit, ParseError,
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The totals of `/proc/PID/smaps_rollup`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    /// `Rss`.
    pub rss: u64,
    /// `Pss`.
    pub pss: u64,
    /// `Pss_Anon` (0 on kernels before 5.7).
    pub pss_anon: u64,
    /// `Pss_File` (0 on kernels before 5.7).
    pub pss_file: u64,
    /// `Pss_Shmem` (0 on kernels before 5.7).
    pub pss_shmem: u64,
    /// `Anonymous`.
    pub anonymous: u64,
    /// `Swap`.
    pub swap: u64,
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The pid.
    pub pid: i32,
    /// The command name (`comm`), which may hold spaces and parentheses.
    pub comm: String,
    /// The state letter (`R`, `S`, `Z`, …).
    pub state: char,
    /// Start time after boot, in clock ticks: with the pid, it names a
    /// process uniquely (pids are reused).
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. `comm` is found between the first `(` and the
/// *last* `)`, since the name itself may contain both.
pub fn parse_stat(text: &str) -> Result<Stat, ParseError> {
    let open = text
        .find('(')
        .ok_or_else(|| ParseError(format!("expected `pid (comm) …`, found {text:?}")))?;
    let close = text
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or_else(|| ParseError(format!("no closing `)` after comm in {text:?}")))?;
    let pid = text[..open].trim().parse().map_err(|_| {
        ParseError(format!(
            "expected a pid before `(`, found {:?}",
            &text[..open]
        ))
    })?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After comm: state is field 3, starttime field 22 (1-based).
    let state = rest
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| ParseError("stat is cut short after comm".into()))?;
    let start_time = rest
        .get(22 - 3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ParseError("stat is cut short before starttime".into()))?;
    Ok(Stat {
        pid,
        comm,
        state,
        start_time,
    })
}

/// Parses `/proc/PID/smaps_rollup`. Unknown and truncated lines are skipped;
/// a file without an `Rss` line is an error (a kernel thread, or a process
/// that has already released its memory).
pub fn parse_rollup(text: &str) -> Result<Rollup, ParseError> {
    let mut r = Rollup::default();
    let mut saw_rss = false;
    for line in text.lines() {
        let Some((key, v)) = parse_field(line) else {
            continue;
        };
        match key {
            "Rss" => {
                r.rss = v;
                saw_rss = true;
            }
            "Pss" => r.pss = v,
            "Pss_Anon" => r.pss_anon = v,
            "Pss_File" => r.pss_file = v,
            "Pss_Shmem" => r.pss_shmem = v,
            "Anonymous" => r.anonymous = v,
            "Swap" => r.swap = v,
            _ => {}
        }
    }
    if saw_rss {
        Ok(r)
    } else {
        Err(ParseError("no `Rss:` line (no user memory)".into()))
    }
}

/// Parses `/proc/PID/task/TID/syscall`: the stack pointer is the
/// second-to-last field when the thread is blocked, and there is none when
/// it is `running`.
pub fn parse_syscall_sp(text: &str) -> Option<u64> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 3 {
        return None;
    }
    let sp = fields[fields.len() - 2];
    u64::from_str_radix(sp.strip_prefix("0x")?, 16).ok()
}

/// The stack pointers of the threads of `pid` that are not running right
/// now. Best effort: threads come and go, and each file needs ptrace-read
/// access; what we cannot read we skip.
pub fn thread_stack_pointers(pid: i32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("syscall")).ok())
        .filter_map(|t| parse_syscall_sp(&t))
        .collect()
}

/// Maps an I/O error on a `/proc/PID/…` file to the crate's error.
fn proc_error(pid: i32, path: &Path, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::NoSuchProcess { pid },
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
            pid,
            what: format!("reading {}", path.display()),
        },
        _ => Error::io(path, e),
    }
}

fn read_proc(pid: i32, file: &str) -> Result<String, Error> {
    let path = Path::new("/proc").join(pid.to_string()).join(file);
    std::fs::read_to_string(&path).map_err(|e| proc_error(pid, &path, e))
}

/// Reads a file of `/proc/PID/` that shows the address space (`smaps`,
/// `smaps_rollup`): the main thread's is empty once it called
/// pthread_exit, so then it is read through a live thread.
fn read_address_space(pid: i32, file: &str) -> Result<String, Error> {
    let text = read_proc(pid, file)?;
    if !text.is_empty() {
        return Ok(text);
    }
    match address_space_thread(pid) {
        Some(tid) if tid != pid => read_proc(tid, file),
        _ => Ok(text),
    }
}

/// The thread whose `/proc/TID/` files show the address space of process
/// `pid`: `pid` itself, or, when the main thread called pthread_exit and
/// is a zombie while others run on, the first live thread. `None` when no
/// thread is alive (a zombie process) or the process is gone.
pub(crate) fn address_space_thread(pid: i32) -> Option<i32> {
    let alive = |stat: &str| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        !matches!(state, None | Some('Z') | Some('X'))
    };
    if alive(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?) {
        return Some(pid);
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|t| {
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        alive(&stat).then(|| t.file_name().to_str()?.parse().ok())?
    })
}

/// Reads and parses `/proc/PID/stat`.
pub fn read_stat(pid: i32) -> Result<Stat, Error> {
    let text = read_proc(pid, "stat")?;
    parse_stat(&text).map_err(|ParseError(why)| Error::Malformed {
        path: format!("/proc/{pid}/stat").into(),
        why,
    })
}

/// Reads `/proc/PID/cmdline` as its arguments (empty for kernel threads and
/// zombies).
pub fn read_cmdline(pid: i32) -> Result<Vec<String>, Error> {
    let path = Path::new("/proc").join(pid.to_string()).join("cmdline");
    let bytes = std::fs::read(&path).map_err(|e| proc_error(pid, &path, e))?;
    Ok(bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// What one sample of a process's memory could find.
#[derive(Debug)]
pub enum Reading<T> {
    /// The process is there and we read it.
    Present(T),
    /// The process has exited (it is gone, or a zombie without memory).
    Gone,
}

/// Turns "the process is gone" into `None`.
fn gone_or(r: Result<String, Error>) -> Result<Option<String>, Error> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(Error::NoSuchProcess { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `/proc/PID/smaps_rollup`. A process that exited (or is a zombie,
/// whose rollup is empty) reads as [`Reading::Gone`].
///
/// Kernels before 4.14 have no `smaps_rollup`; there we sum `smaps` (the
/// same numbers, at the full read's cost).
pub fn read_rollup(pid: i32) -> Result<Reading<Rollup>, Error> {
    let text = match read_address_space(pid, "smaps_rollup") {
        Err(Error::NoSuchProcess { .. })
            if Path::new("/proc")
                .join(pid.to_string())
                .join("smaps")
                .exists() =>
        {
            return Ok(match read_smaps(pid)? {
                Reading::Present(maps) => Reading::Present(rollup_of(&maps)),
                Reading::Gone => Reading::Gone,
            });
        }
        r => r,
    };
    let Some(text) = gone_or(text)? else {
        return Ok(Reading::Gone);
    };
    match parse_rollup(&text) {
        Ok(r) => Ok(Reading::Present(r)),
        Err(_) if text.trim().is_empty() => Ok(Reading::Gone),
        Err(ParseError(why)) => Err(Error::Malformed {
            path: format!("/proc/{pid}/smaps_rollup").into(),
            why,
        }),
    }
}

/// The totals of a list of mappings, as `smaps_rollup` would give them
/// (without the `Pss_*` split).
pub fn rollup_of(mappings: &[Mapping]) -> Rollup {
    let mut r = Rollup::default();
    for m in mappings {
        r.rss += m.rss;
        r.pss += m.pss;
        r.anonymous += m.anonymous;
        r.swap += m.swap;
    }
    r
}

/// Reads, parses and classifies `/proc/PID/smaps`. This is O(mappings) work
/// in the kernel under the target's mmap lock: call it less often than
/// [`read_rollup`].
pub fn read_smaps(pid: i32) -> Result<Reading<Vec<Mapping>>, Error> {
    let Some(text) = gone_or(read_address_space(pid, "smaps"))? else {
        return Ok(Reading::Gone);
    };
    if text.is_empty() {
        return Ok(Reading::Gone);
    }
    let mut maps = parse_smaps(&text).map_err(|ParseError(why)| Error::Malformed {
        path: format!("/proc/{pid}/smaps").into(),
        why,
    })?;
    classify(&mut maps, &thread_stack_pointers(pid));
    Ok(Reading::Present(maps))
}

/// Parses `MemTotal` out of `/proc/meminfo`.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(parse_field)
        .find(|(k, _)| *k == "MemTotal")
        .map(|(_, v)| v)
}

/// Parses a cgroup limit file: a number, or `max` (none).
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The memory limit of `pid`: its cgroup's limit when one is set and below
/// physical memory, else physical memory. A cgroup limit covers every
/// process of the cgroup and its page cache, so the time to reach it is an
/// upper bound.
pub fn memory_limit(pid: i32) -> Option<MemoryLimit> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo_total(&t));
    let mut best = physical.map(|bytes| MemoryLimit {
        bytes,
        source: LimitSource::Physical,
    });
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let candidates: Vec<(String, LimitSource)> = if controllers.is_empty() {
            ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .iter()
                .map(|root| (format!("{root}/{path}/memory.max"), LimitSource::CgroupV2))
                .collect()
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![(
                format!("/sys/fs/cgroup/memory/{path}/memory.limit_in_bytes"),
                LimitSource::CgroupV1,
            )]
        } else {
            continue;
        };
        for (file, source) in candidates {
            let Some(bytes) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| parse_cgroup_limit(&t))
            else {
                continue;
            };
            if best.is_none_or(|b| bytes < b.bytes) {
                best = Some(MemoryLimit { bytes, source });
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrail_recording::Region;

    #[test]
    fn stat_with_ugly_comm() {
        let tail = " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
        for comm in ["cat", "a b", "(sd-pam)", "x) S 1 (y", ")", "", "tab\there"] {
            let text = format!("1234 ({comm}){tail}\n");
            let s = parse_stat(&text).unwrap();
            assert_eq!(s.pid, 1234);
            assert_eq!(s.comm, comm, "{text}");
            assert_eq!(s.state, 'S');
            assert_eq!(s.start_time, 424242);
        }
    }

    #[test]
    fn stat_errors() {
        for text in [
            "",
            "1234",
            "1234 (cat",
            "x (cat) S",
            "1234 (cat) S 1 2",
            "1234 (cat) ",
        ] {
            assert!(parse_stat(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn rollup() {
        let text =
            "56520dac9000-7ffef6e33000 ---p 00000000 00:00 0                          [rollup]
Rss:                1776 kB
Pss:                 534 kB
Pss_Anon:            112 kB
Pss_File:            422 kB
Pss_Shmem:             0 kB
Anonymous:           112 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";
        let r = parse_rollup(text).unwrap();
        assert_eq!(r.rss, 1776 * 1024);
        assert_eq!(r.pss_anon, 112 * 1024);
        assert_eq!(r.anonymous, 112 * 1024);
        // Cut short mid-line and mid-file.
        let r = parse_rollup("x-y ---p 0 0:0 0 [rollup]\nRss:  10 kB\nPss: 4").unwrap();
        assert_eq!((r.rss, r.pss), (10240, 4));
        assert!(parse_rollup("").is_err());
        assert!(parse_rollup("Rss: lots kB\n").is_err());
    }

    /// Our own threads, blocked on a barrier: each one's stack must be
    /// `stack` (by its stack pointer, and by the guard shape alone), and a
    /// small allocation made on it must be `heap` (its glibc arena).
    #[test]
    fn classifies_real_thread_stacks_and_arenas() {
        use std::sync::{mpsc, Arc, Barrier};
        let barrier = Arc::new(Barrier::new(4));
        let (tx, rx) = mpsc::channel();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (barrier, tx) = (barrier.clone(), tx.clone());
                std::thread::spawn(move || {
                    let local = 0u8;
                    let boxed = Box::new([7u8; 64]);
                    let addrs = (
                        std::hint::black_box(&local) as *const u8 as u64,
                        boxed.as_ptr() as u64,
                    );
                    tx.send(addrs).unwrap();
                    barrier.wait();
                    drop(boxed);
                })
            })
            .collect();
        let addrs: Vec<(u64, u64)> = (0..3).map(|_| rx.recv().unwrap()).collect();
        let pid = std::process::id() as i32;
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
        let sps = thread_stack_pointers(pid);
        let mut by_sp = parse_smaps(&text).unwrap();
        classify(&mut by_sp, &sps);
        let mut by_shape = parse_smaps(&text).unwrap();
        classify(&mut by_shape, &[]);
        barrier.wait();
        for t in threads {
            t.join().unwrap();
        }
        let region_of = |maps: &[Mapping], addr: u64| {
            maps.iter()
                .find(|m| m.start <= addr && addr < m.end)
                .map(|m| m.region)
        };
        for (stack, heap) in addrs {
            assert_eq!(region_of(&by_sp, stack), Some(Region::Stack), "{text}");
            assert_eq!(region_of(&by_shape, stack), Some(Region::Stack), "{text}");
            assert_eq!(
                region_of(&by_sp, heap),
                Some(Region::Heap),
                "{heap:#x}\n{text}"
            );
        }
    }

    #[test]
    fn syscall_sp() {
        assert_eq!(
            parse_syscall_sp(
                "270 0xfb 0x7ffd2cf5d2b0 0x0 0x0 0x7ffd 0x7ffd 0x7ffd2cf5d190 0x7f526d4baaec\n"
            ),
            Some(0x7ffd2cf5d190)
        );
        assert_eq!(
            parse_syscall_sp("-1 0x7ffd2cf5d190 0x7f526d4baaec\n"),
            Some(0x7ffd2cf5d190)
        );
        assert_eq!(parse_syscall_sp("running\n"), None);
        assert_eq!(parse_syscall_sp(""), None);
    }

    #[test]
    fn limits() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(
            parse_meminfo_total("MemTotal:       24684088 kB\nMemFree: 1 kB\n"),
            Some(24684088 * 1024)
        );
    }
}
