//! Copying the target's memory: `process_vm_readv` in big batches, with
//! `/proc/PID/mem` for what it refuses, into a staging buffer or straight
//! into the output file.
//!
//! The pause is what the target pays for a snapshot, so the copy while it is
//! stopped goes, when memory allows, into a staging area that was mapped and
//! faulted in *before* the stop (huge pages where the kernel gives them);
//! the file is written after the threads are released. When the capture is
//! bigger than half of the machine's available memory we stream instead:
//! read a batch, write it, while the target waits.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::Error;

/// One contiguous piece of the target's memory, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub addr: u64,
    pub len: u64,
}

impl Piece {
    /// Cuts the first `n` bytes off this piece and returns them.
    pub fn take_front(&mut self, n: u64) -> Piece {
        let front = Piece {
            addr: self.addr,
            len: n,
        };
        self.addr += n;
        self.len -= n;
        front
    }
}

/// A fresh private read-write anonymous mapping of `len` bytes in our own
/// process, for tests that read themselves; the caller unmaps it.
#[cfg(test)]
pub(crate) fn test_mapping(len: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous mapping, owned by the caller from here.
    unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .cast()
}

const PAGE: u64 = 4096;
/// Remote iovecs per `process_vm_readv` call (the kernel's `UIO_MAXIOV`).
const MAX_IOV: usize = 1024;
/// Bytes per streamed batch.
pub(crate) const STREAM_BATCH: u64 = 32 << 20;

/// Reads memory of a stopped process.
pub(crate) struct Copier {
    pid: i32,
    mem: Option<File>,
    /// Bytes we could read by neither means (written as zeros).
    pub unreadable: u64,
}

impl Copier {
    pub fn new(pid: i32) -> Copier {
        Copier {
            pid,
            mem: None,
            unreadable: 0,
        }
    }

    /// Small probes (headers, magics): `N` bytes at each of `addrs`, in as
    /// few system calls as [`Copier::read`] makes (one per 1024 probes):
    /// zeros where unreadable, never counted as unreadable. Hundreds of
    /// probes (one per mapping) are one call instead of hundreds, inside
    /// the pause.
    pub fn probe_many<const N: usize>(&mut self, addrs: &[u64]) -> Vec<[u8; N]> {
        let pieces: Vec<Piece> = addrs
            .iter()
            .map(|&addr| Piece {
                addr,
                len: N as u64,
            })
            .collect();
        let mut buf = vec![0u8; addrs.len() * N];
        let counted = self.unreadable;
        if self.read(&pieces, &mut buf).is_err() {
            buf.fill(0);
        }
        self.unreadable = counted;
        buf.chunks_exact(N)
            .map(|c| c.try_into().unwrap_or([0; N]))
            .collect()
    }

    /// Fills `dst` with `pieces` back to back (`dst.len()` must be their
    /// total). Pages that cannot be read are left zero and counted.
    pub fn read(&mut self, pieces: &[Piece], dst: &mut [u8]) -> Result<(), Error> {
        let mut remote: Vec<libc::iovec> = Vec::with_capacity(MAX_IOV);
        let mut at = 0usize;
        let mut i = 0;
        // `skip`: bytes of pieces[i] already done (after a short read).
        let mut skip = 0u64;
        while i < pieces.len() {
            super::interrupt::check(self.pid)?;
            remote.clear();
            let start = at;
            let mut j = i;
            let mut first_skip = skip;
            while j < pieces.len() && remote.len() < MAX_IOV {
                let p = pieces[j];
                remote.push(libc::iovec {
                    iov_base: (p.addr + first_skip) as *mut libc::c_void,
                    iov_len: (p.len - first_skip) as usize,
                });
                at += (p.len - first_skip) as usize;
                first_skip = 0;
                j += 1;
            }
            let want = at - start;
            let local = libc::iovec {
                iov_base: dst[start..at].as_mut_ptr().cast(),
                iov_len: want,
            };
            // SAFETY: `local` covers `dst[start..at]`, which we own; the
            // kernel checks every remote iovec against the target.
            let n = unsafe {
                libc::process_vm_readv(self.pid, &local, 1, remote.as_ptr(), remote.len() as u64, 0)
            };
            let got = if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ESRCH) => return Err(Error::Exited { pid: self.pid }),
                    Some(libc::EPERM) => {
                        return Err(Error::PermissionDenied {
                            pid: self.pid,
                            what: "reading its memory (process_vm_readv)".into(),
                        })
                    }
                    // EFAULT: the first page already failed; ENOSYS/EINVAL:
                    // fall through to /proc/PID/mem page by page.
                    _ => 0usize,
                }
            } else {
                n as usize
            };
            if got == want {
                i = j;
                skip = 0;
                continue;
            }
            // A short read stops at the first page it could not read. Find
            // the piece and offset, rescue that page through /proc/PID/mem
            // (which can read some mappings process_vm_readv cannot), and
            // go on after it.
            let mut pos = start + got;
            let mut k = i;
            let mut off = skip + got as u64;
            while k < pieces.len() && off >= pieces[k].len {
                off -= pieces[k].len;
                k += 1;
            }
            if k >= pieces.len() {
                break;
            }
            let p = pieces[k];
            let addr = p.addr + off;
            let page_end = ((addr / PAGE) + 1) * PAGE;
            let n = (page_end.min(p.addr + p.len) - addr) as usize;
            let slot = &mut dst[pos..pos + n];
            if self.read_mem(addr, slot).is_err() {
                if !alive(self.pid) {
                    return Err(Error::Exited { pid: self.pid });
                }
                slot.fill(0);
                self.unreadable += n as u64;
            }
            pos += n;
            at = pos;
            i = k;
            skip = off + n as u64;
            if skip >= p.len {
                i += 1;
                skip = 0;
            }
        }
        Ok(())
    }

    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.mem.is_none() {
            self.mem = Some(File::open(format!("/proc/{}/mem", self.pid))?);
        }
        match &self.mem {
            Some(f) => f.read_exact_at(buf, addr),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
}

/// Below this, one thread copies: spawning more costs more than it saves.
const PARALLEL_MIN: u64 = 64 << 20;

/// [`Copier::read`] split over up to four threads (one per core), each
/// copying a contiguous share of the bytes. The copy is bound by page
/// walking and memcpy, so on an idle machine it scales with cores; the
/// target is stopped either way, so its own threads lose nothing.
/// Returns the bytes that could not be read.
pub(crate) fn read_parallel(pid: i32, pieces: &[Piece], dst: &mut [u8]) -> Result<u64, Error> {
    let total: u64 = pieces.iter().map(|p| p.len).sum();
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4) as u64;
    let workers = if total < PARALLEL_MIN {
        1
    } else {
        cores.max(1)
    };
    if workers == 1 {
        let mut c = Copier::new(pid);
        c.read(pieces, dst)?;
        return Ok(c.unreadable);
    }
    // Cut the piece list into `workers` runs of about equal bytes,
    // splitting pieces at page boundaries where a cut falls inside one.
    let share = (total / workers).div_ceil(PAGE) * PAGE;
    let mut runs: Vec<Vec<Piece>> = vec![Vec::new()];
    let mut filled = 0u64;
    for p in pieces {
        let mut p = *p;
        while p.len > 0 {
            if filled == share && runs.len() < workers as usize {
                runs.push(Vec::new());
                filled = 0;
            }
            let room = if runs.len() < workers as usize {
                share - filled
            } else {
                u64::MAX
            };
            let n = p.len.min(room);
            let front = p.take_front(n);
            if let Some(run) = runs.last_mut() {
                run.push(front);
            }
            filled += n;
        }
    }
    let mut rest = dst;
    let mut jobs = Vec::with_capacity(runs.len());
    for run in &runs {
        let len: u64 = run.iter().map(|p| p.len).sum();
        let (mine, tail) = rest.split_at_mut(len as usize);
        rest = tail;
        jobs.push((run.as_slice(), mine));
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(run, buf)| {
                scope.spawn(move || {
                    let mut c = Copier::new(pid);
                    c.read(run, buf).map(|()| c.unreadable)
                })
            })
            .collect();
        let mut unreadable = 0;
        for h in handles {
            match h.join() {
                Ok(r) => unreadable += r?,
                Err(_) => {
                    return Err(Error::Sys {
                        what: "copying memory".into(),
                        source: io::Error::other("a copy thread panicked"),
                    })
                }
            }
        }
        Ok(unreadable)
    })
}

/// Whether `pid` still exists and is not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

/// An anonymous mapping we copy into while the target is stopped.
pub(crate) struct Staging {
    ptr: *mut u8,
    cap: usize,
}

impl Staging {
    /// Maps `cap` bytes and faults them in now, so the copy during the
    /// pause does not pay for page allocation.
    pub fn new(cap: u64) -> io::Result<Staging> {
        let cap = (cap.max(PAGE) as usize).next_multiple_of(2 << 20);
        // SAFETY: an anonymous private mapping; no pointers are passed in.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ptr..ptr+cap` is the mapping we just made. Huge pages
        // make the faults 512x fewer; the advice may be refused, harmlessly.
        let populated = unsafe {
            libc::madvise(ptr, cap, libc::MADV_HUGEPAGE);
            libc::madvise(ptr, cap, libc::MADV_POPULATE_WRITE) == 0
        };
        if !populated {
            // Kernels before 5.14: touch every page ourselves.
            for off in (0..cap).step_by(PAGE as usize) {
                // SAFETY: `off < cap`, inside our writable mapping.
                unsafe { ptr.cast::<u8>().add(off).write_volatile(0) };
            }
        }
        Ok(Staging {
            ptr: ptr.cast(),
            cap,
        })
    }

    pub fn capacity(&self) -> u64 {
        self.cap as u64
    }

    /// The first `len` bytes (`len <= capacity`).
    pub fn slice(&mut self, len: u64) -> &mut [u8] {
        let len = (len as usize).min(self.cap);
        // SAFETY: the mapping is ours, readable and writable for `cap`
        // bytes until drop, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping `new` made; no slice of it
        // outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), self.cap) };
    }
}

/// Bytes of `MemAvailable` in `/proc/meminfo` (0 if unknown).
pub(crate) fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_ascii_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_memory_and_zeroes_holes() {
        // Three pages, the middle one made unreadable.
        let len = 3 * PAGE as usize;
        let base = test_mapping(len);
        // SAFETY: writing inside the mapping, then protecting its middle.
        unsafe {
            std::ptr::write_bytes(base, 0xab, len);
            libc::mprotect(
                base.add(PAGE as usize).cast(),
                PAGE as usize,
                libc::PROT_NONE,
            );
        }
        let addr = base as u64;
        let mut c = Copier::new(std::process::id() as i32);
        let pieces = [
            Piece { addr, len: 100 },
            Piece {
                addr: addr + 200,
                len: 2 * PAGE,
            },
        ];
        let mut dst = vec![1u8; 100 + 2 * PAGE as usize];
        c.read(&pieces, &mut dst).unwrap();
        assert!(dst[..100].iter().all(|&b| b == 0xab));
        // /proc/self/mem reads PROT_NONE pages too (FOLL_FORCE), so the
        // whole of it is usually recovered; either way nothing is left 1.
        assert!(dst.iter().all(|&b| b == 0xab || b == 0));
        // SAFETY: unmapping what we mapped.
        unsafe { libc::munmap(base.cast(), len) };
    }

    #[test]
    fn parallel_read_matches_a_plain_one() {
        let data: Vec<u8> = (0..(PARALLEL_MIN as usize + 3 * PAGE as usize))
            .map(|i| (i * 7) as u8)
            .collect();
        let a = data.as_ptr() as u64;
        let pieces = [
            Piece {
                addr: a,
                len: 5 * PAGE,
            },
            Piece {
                addr: a + 6 * PAGE,
                len: data.len() as u64 - 6 * PAGE,
            },
        ];
        let total: u64 = pieces.iter().map(|p| p.len).sum();
        let mut par = vec![0u8; total as usize];
        assert_eq!(
            read_parallel(std::process::id() as i32, &pieces, &mut par).unwrap(),
            0
        );
        let mut plain = vec![0u8; total as usize];
        Copier::new(std::process::id() as i32)
            .read(&pieces, &mut plain)
            .unwrap();
        assert!(par == plain);
        assert_eq!(&par[..8], &data[..8]);
    }

    #[test]
    fn staging_is_writable() {
        let mut s = Staging::new(10).unwrap();
        assert!(s.capacity() >= 10);
        s.slice(10).fill(7);
        assert_eq!(s.slice(10)[9], 7);
    }
}
