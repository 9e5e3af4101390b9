//! A live process's memory, read with `process_vm_readv`, as a
//! [`Memory`] that the audit decoder and the analyses read through.

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
            memory: ProcessMemory::new(thread, ranges),
            mappings,
        })
    }
}

/// A live process, read with `process_vm_readv`. The caller keeps it
/// stopped while reading if it wants a consistent picture.
pub struct ProcessMemory {
    pid: i32,
    ranges: Vec<(u64, u64)>,
}

impl ProcessMemory {
    /// Memory of `pid`, limited to `ranges` (from its maps).
    pub fn new(pid: i32, mut ranges: Vec<(u64, u64)>) -> Self {
        ranges.sort_unstable();
        ProcessMemory { pid, ranges }
    }
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
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
    }
}
