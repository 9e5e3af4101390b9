//! Copying the target's memory: `process_vm_readv` in big batches, with
//! `/proc/PID/mem` for what it refuses and where it would copy shared
//! pages ([`Pinning`]: a fork's image, a preforking server's shared heap),
//! into a staging buffer or straight into the output file.
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

pub(crate) use crate::memory::Pinning;
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
    /// Where `process_vm_readv` may read.
    pinning: Pinning,
    /// Bytes we could read by neither means (written as zeros).
    pub unreadable: u64,
}

impl Copier {
    /// A copier of `pid` that reads with `process_vm_readv` where
    /// `pinning` allows it, else through `/proc/PID/mem`.
    pub fn new(pid: i32, pinning: Pinning) -> Copier {
        Copier {
            pid,
            mem: None,
            pinning,
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
        // Runs of pieces read the same way: one run unless some piece is
        // in a range `process_vm_readv` must not pin.
        let mut i = 0;
        let mut at = 0usize;
        while i < pieces.len() {
            let pinned = self.pinning.allows(pieces[i].addr, pieces[i].len);
            let mut j = i;
            let mut len = 0usize;
            while j < pieces.len() && self.pinning.allows(pieces[j].addr, pieces[j].len) == pinned {
                len += pieces[j].len as usize;
                j += 1;
            }
            let run = &mut dst[at..at + len];
            if pinned {
                self.read_pinned(&pieces[i..j], run)?;
            } else {
                self.read_unpinned(&pieces[i..j], run)?;
            }
            at += len;
            i = j;
        }
        Ok(())
    }

    /// [`Copier::read`] through `/proc/PID/mem`: a piece at a time, in
    /// batches (so an interrupt is seen), page by page where a batch fails.
    fn read_unpinned(&mut self, pieces: &[Piece], dst: &mut [u8]) -> Result<(), Error> {
        let mut at = 0usize;
        for p in pieces {
            let mut done = 0u64;
            while done < p.len {
                super::interrupt::check(self.pid)?;
                let n = (p.len - done).min(STREAM_BATCH);
                let slot = &mut dst[at..at + n as usize];
                if self.read_mem(p.addr + done, slot).is_err() {
                    self.read_pages(p.addr + done, slot)?;
                }
                at += n as usize;
                done += n;
            }
        }
        Ok(())
    }

    /// `addr..addr + dst.len()` through `/proc/PID/mem` page by page:
    /// zeros, counted, where a page cannot be read.
    fn read_pages(&mut self, addr: u64, dst: &mut [u8]) -> Result<(), Error> {
        let mut pos = 0usize;
        while pos < dst.len() {
            let a = addr + pos as u64;
            let n = ((((a / PAGE) + 1) * PAGE - a) as usize).min(dst.len() - pos);
            let slot = &mut dst[pos..pos + n];
            if self.read_mem(a, slot).is_err() {
                if !alive(self.pid) {
                    return Err(Error::Exited { pid: self.pid });
                }
                slot.fill(0);
                self.unreadable += n as u64;
            }
            pos += n;
        }
        Ok(())
    }

    /// [`Copier::read`] with `process_vm_readv`, 1,024 ranges a call.
    fn read_pinned(&mut self, pieces: &[Piece], dst: &mut [u8]) -> Result<(), Error> {
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
            self.read_pages(addr, &mut dst[pos..pos + n])?;
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
pub(crate) fn read_parallel(
    pid: i32,
    pinning: &Pinning,
    pieces: &[Piece],
    dst: &mut [u8],
) -> Result<u64, Error> {
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
        let mut c = Copier::new(pid, pinning.clone());
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
                    let mut c = Copier::new(pid, pinning.clone());
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
        for pinning in [Pinning::Anywhere, Pinning::Nowhere] {
            let mut c = Copier::new(std::process::id() as i32, pinning);
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
        }
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
        let me = std::process::id() as i32;
        // The second piece's range is not to be pinned: the copy mixes the
        // two ways and must still match.
        let mixed = Pinning::Except(vec![(a + 6 * PAGE, a + 7 * PAGE)]);
        for pinning in [Pinning::Anywhere, mixed, Pinning::Nowhere] {
            let mut par = vec![0u8; total as usize];
            assert_eq!(read_parallel(me, &pinning, &pieces, &mut par).unwrap(), 0);
            let mut plain = vec![0u8; total as usize];
            Copier::new(me, Pinning::Anywhere)
                .read(&pieces, &mut plain)
                .unwrap();
            assert!(par == plain);
            assert_eq!(&par[..8], &data[..8]);
            assert_eq!(par[5 * PAGE as usize], data[6 * PAGE as usize]);
        }
    }

    /// `Pss` bytes of the mapping at `addr` in `pid`'s smaps: half its
    /// pages while they are shared with us, all once they are copied (a
    /// page an unsharing pin copies is clean, so `Private_Dirty` misses it).
    fn pss(pid: i32, addr: u64) -> u64 {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
        let maps = leaktrail_recording::maps::parse_smaps(&smaps).unwrap();
        maps.iter()
            .find(|m| m.start <= addr && addr < m.end)
            .map_or(0, |m| m.pss)
    }

    /// The bug this guards against: `process_vm_readv` of a fork's pages
    /// made the kernel copy each one (a read-only pin of a shared anonymous
    /// page unshares it), so the 16 GiB copy-on-write snapshot needed 32.
    #[test]
    fn reading_a_forks_image_does_not_copy_its_pages() {
        let len = 16 << 20;
        let base = test_mapping(len);
        // SAFETY: filling the mapping we own.
        unsafe { std::ptr::write_bytes(base, 0x5a, len) };
        let mut fds = [0; 2];
        // SAFETY: a pipe into our own array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only reads the pipe and exits, both
        // async-signal-safe, so forking a threaded test process is sound.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let mut b = 0u8;
            // SAFETY: reading one byte into our own variable, then leaving.
            unsafe {
                libc::close(fds[1]);
                libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        assert!(child > 0);
        let addr = base as u64;
        // The policy a stop-and-copy snapshot of the child would take.
        let smaps = std::fs::read_to_string(format!("/proc/{child}/smaps")).unwrap();
        let maps = leaktrail_recording::maps::parse_smaps(&smaps).unwrap();
        assert!(!Pinning::for_maps(&maps).allows(addr, len as u64));
        let shared_before = pss(child, addr);
        let mut dst = vec![0u8; len];
        Copier::new(child, Pinning::Nowhere)
            .read(
                &[Piece {
                    addr,
                    len: len as u64,
                }],
                &mut dst,
            )
            .unwrap();
        let after = pss(child, addr);
        assert!(dst.iter().all(|&b| b == 0x5a));
        // Pinned, the child would now own copies of all 16 MiB (its Pss 16
        // MiB, not 8).
        assert!(
            after < shared_before + (1 << 20),
            "reading the fork raised its share of the mapping by {} bytes: its pages were copied",
            after - shared_before
        );
        // SAFETY: closing our pipe end lets the child exit; we reap it and
        // unmap what we mapped.
        unsafe {
            libc::close(fds[1]);
            libc::close(fds[0]);
            libc::waitpid(child, std::ptr::null_mut(), 0);
            libc::munmap(base.cast(), len);
        }
    }

    #[test]
    fn staging_is_writable() {
        let mut s = Staging::new(10).unwrap();
        assert!(s.capacity() >= 10);
        s.slice(10).fill(7);
        assert_eq!(s.slice(10)[9], 7);
    }
}
