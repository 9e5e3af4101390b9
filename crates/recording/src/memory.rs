//! Reading an address space by address: a core file, a live process
//! (`leaktrail-capture` implements it with `process_vm_readv`), or our own
//! memory in tests.
//!
//! Analyses ask for memory by address through [`Memory`]; where the bytes
//! are already in our address space (an mmap'd core) they borrow them
//! without copying.

use crate::Error;

/// A readable address space.
pub trait Memory {
    /// Fills `buf` with the bytes at `addr`, or fails with
    /// [`Error::Unmapped`] if any of them is not available.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error>;

    /// The bytes at `addr..addr+len` without copying, when the source holds
    /// them contiguously in our address space.
    fn borrow(&self, _addr: u64, _len: u64) -> Option<&[u8]> {
        None
    }

    /// The address ranges `[start, end)` that can be read, sorted.
    fn ranges(&self) -> Vec<(u64, u64)>;

    /// One little-endian word.
    fn read_u64(&self, addr: u64) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Our own address space, restricted to ranges the caller vouches for.
/// Tests use it to decode a region that lives in the test process.
pub struct LocalMemory {
    ranges: Vec<(u64, u64)>,
}

impl LocalMemory {
    /// A view of `ranges` of this process.
    ///
    /// # Safety
    /// Every byte of every range must stay mapped and readable for the
    /// lifetime of the value.
    pub unsafe fn new(mut ranges: Vec<(u64, u64)>) -> Self {
        ranges.sort_unstable();
        LocalMemory { ranges }
    }

    fn covers(&self, addr: u64, len: u64) -> bool {
        let end = match addr.checked_add(len) {
            Some(e) => e,
            None => return false,
        };
        self.ranges.iter().any(|&(s, e)| s <= addr && end <= e)
    }
}

impl Memory for LocalMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Error> {
        let src = self
            .borrow(addr, buf.len() as u64)
            .ok_or(Error::Unmapped { addr })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn borrow(&self, addr: u64, len: u64) -> Option<&[u8]> {
        if !self.covers(addr, len) {
            return None;
        }
        // SAFETY: `new`'s contract: the range is mapped and readable for our
        // lifetime, and `covers` checked the request lies inside one range.
        Some(unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) })
    }

    fn ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_memory_reads_only_declared_ranges() {
        let data: Vec<u64> = vec![1, 2, 3, 4];
        let start = data.as_ptr() as u64;
        // SAFETY: `data` outlives `mem`.
        let mem = unsafe { LocalMemory::new(vec![(start, start + 32)]) };
        assert_eq!(mem.read_u64(start + 8).unwrap(), 2);
        assert!(matches!(
            mem.read_u64(start + 32),
            Err(Error::Unmapped { .. })
        ));
        assert!(mem.read_u64(start + 28).is_err());
    }
}
