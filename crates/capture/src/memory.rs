//! A live process's memory, read with `process_vm_readv` (or
//! `/proc/PID/mem` where that would copy the process's pages: see
//! [`Pinning`]), as a [`Memory`] that the audit decoder and the analyses
//! read through.

use std::fs::File;
use std::os::unix::fs::FileExt;

use leaktrail_recording::{Error, Mapping, Memory};

use crate::procfs::{self, Reading};

/// A live process's readable memory with its mappings, as read now.
pub struct LiveProcess {
    /// Its memory, limited to its readable mappings.
    pub memory: ProcessMemory,
    /// Its mappings, classified.
    pub mappings: Vec<Mapping>,
}

impl LiveProcess {
    /// Reads the mappings of `pid`. The caller keeps it stopped (or
    /// paused in a hand-over) if it wants a consistent picture.
    pub fn open(pid: i32) -> Result<LiveProcess, crate::Error> {
        let mappings = match procfs::read_smaps(pid)? {
            Reading::Present(m) => m,
            Reading::Gone => return Err(crate::Error::Exited { pid }),
        };
        let ranges = mappings
            .iter()
            .filter(|m| m.is_readable())
            .map(|m| (m.start, m.end))
            .collect();
        // A main thread that called pthread_exit has no memory to read.
        let thread = procfs::address_space_thread(pid).unwrap_or(pid);
        Ok(LiveProcess {
            memory: ProcessMemory::new(thread, ranges).with_pinning(Pinning::for_maps(&mappings)),
            mappings,
        })
    }
}

/// Where `process_vm_readv` may read a process's memory without changing it.
///
/// `process_vm_readv` pins each page it reads, and the kernel (Linux 5.19's
/// exclusive-anonymous-page rework) copies an anonymous page that is shared
/// with another process before it lets a read-only pin take it: reading a
/// fork's memory that way duplicates every page read. Measured on 6.18:
/// reading 1 GiB of a fork's memory added 1 GiB of anonymous memory
/// (what OOM-killed the 16 GiB copy-on-write benchmark, whose image is a
/// fork), through `/proc/PID/mem`, which does not pin, nothing. So a fork's
/// image is read only through `/proc/PID/mem`, and so are a process's
/// mappings that share anonymous pages (a preforking server's, after its
/// workers forked): a snapshot must not grow what it looks at. Elsewhere
/// `process_vm_readv` is the faster: 0.27 s against 0.44 s per GiB here,
/// and it takes 1,024 ranges a call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// Nothing read is shared: `process_vm_readv` everywhere.
    #[default]
    Anywhere,
    /// A fork's image: every page is shared with the process it copies.
    Nowhere,
    /// Everywhere but these ranges (start, end; sorted, disjoint).
    Except(Vec<(u64, u64)>),
}

impl Pinning {
    /// The policy for a process with these mappings (from `smaps`): not in
    /// a private mapping that holds anonymous memory and whose proportional
    /// share is below its resident size (some of its pages are another
    /// process's too; in a file mapping that may be file pages, which pins
    /// leave alone, and then the cost is only a slower read).
    pub fn for_maps(maps: &[Mapping]) -> Pinning {
        let mut shared: Vec<(u64, u64)> = maps
            .iter()
            .filter(|m| !m.is_shared() && m.anonymous > 0 && m.pss < m.rss)
            .map(|m| (m.start, m.end))
            .collect();
        if shared.is_empty() {
            return Pinning::Anywhere;
        }
        shared.sort_unstable();
        Pinning::Except(shared)
    }

    /// Whether `process_vm_readv` may read `addr..addr + len`.
    pub fn allows(&self, addr: u64, len: u64) -> bool {
        match self {
            Pinning::Anywhere => true,
            Pinning::Nowhere => false,
            Pinning::Except(ranges) => {
                let end = addr.saturating_add(len);
                // The first range that ends after `addr`: the only one that
                // can overlap, unless it starts past `end`.
                let i = ranges.partition_point(|&(_, e)| e <= addr);
                ranges.get(i).is_none_or(|&(s, _)| s >= end)
            }
        }
    }
}

/// A live process, read with `process_vm_readv` (where [`Pinning`] allows,
/// else through `/proc/PID/mem`). The caller keeps it stopped while
/// reading if it wants a consistent picture.
pub struct ProcessMemory {
    pid: i32,
    ranges: Vec<(u64, u64)>,
    pinning: Pinning,
    /// `/proc/PID/mem`, opened on first need.
    mem: std::sync::OnceLock<Option<File>>,
}

impl ProcessMemory {
    /// Memory of `pid`, limited to `ranges` (from its maps).
    pub fn new(pid: i32, mut ranges: Vec<(u64, u64)>) -> Self {
        ranges.sort_unstable();
        ProcessMemory {
            pid,
            ranges,
            pinning: Pinning::Anywhere,
            mem: std::sync::OnceLock::new(),
        }
    }

    /// The same, read only where `pinning` allows `process_vm_readv`.
    pub fn with_pinning(mut self, pinning: Pinning) -> Self {
        self.pinning = pinning;
        self
    }
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        if !self.pinning.allows(addr, buf.len() as u64) {
            let mem = self
                .mem
                .get_or_init(|| File::open(format!("/proc/{}/mem", self.pid)).ok());
            return match mem {
                Some(f) => f
                    .read_exact_at(buf, addr)
                    .map_err(|_| Error::Unmapped { addr }),
                None => Err(Error::Unmapped { addr }),
            };
        }
        let mut done = 0usize;
        while done < buf.len() {
            let local = libc::iovec {
                iov_base: buf[done..].as_mut_ptr().cast(),
                iov_len: buf.len() - done,
            };
            let remote = libc::iovec {
                iov_base: (addr + done as u64) as *mut libc::c_void,
                iov_len: buf.len() - done,
            };
            // SAFETY: `local` describes our own writable buffer; the kernel
            // checks `remote` against the target's address space.
            let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
            if n <= 0 {
                return Err(Error::Unmapped {
                    addr: addr + done as u64,
                });
            }
            done += n as usize;
        }
        Ok(())
    }

    fn ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_memory_reads_ourselves() {
        let data: Vec<u64> = vec![7, 8];
        let start = data.as_ptr() as u64;
        let mem = ProcessMemory::new(std::process::id() as i32, vec![(start, start + 16)]);
        assert_eq!(mem.read_u64(start + 8).unwrap(), 8);
        let unpinned = ProcessMemory::new(std::process::id() as i32, vec![(start, start + 16)])
            .with_pinning(Pinning::Nowhere);
        assert_eq!(unpinned.read_u64(start + 8).unwrap(), 8);
    }

    #[test]
    fn pinning_is_refused_wherever_a_piece_touches_a_shared_range() {
        let p = Pinning::Except(vec![(0x1000, 0x2000), (0x5000, 0x6000)]);
        assert!(p.allows(0, 0x1000));
        assert!(!p.allows(0x800, 0x1000));
        assert!(!p.allows(0x1fff, 1));
        assert!(p.allows(0x2000, 0x3000));
        assert!(!p.allows(0x2000, 0x3001));
        assert!(p.allows(0x6000, 0x10000));
        assert!(!Pinning::Nowhere.allows(0, 1));
        assert!(Pinning::Anywhere.allows(0, u64::MAX));
    }
}
