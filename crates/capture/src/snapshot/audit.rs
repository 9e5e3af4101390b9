//! Finding the tracer's audit region in a stopped target, so that
//! `--memory tables` captures all of it and nothing else.
//!
//! A header is found by its page-aligned [`MAGIC`]; what else belongs to the
//! region (live tables, the mapped-memory table, the stack index and arena
//! chunks) is read from the descriptors in that header.
//!
//! The seam: [`AuditLocator`]. `leaktrail-analysis` depends on this crate,
//! so this crate cannot call `analysis::audit`; a caller that knows more
//! (for instance a locator built on the full decoder, which can also wait
//! out a shard whose sequence counter is odd) passes its own locator in
//! [`super::Options::locator`]. [`HeaderLocator`] is the default and needs
//! nothing beyond `leaktrail-format`.

use std::mem::offset_of;

use leaktrail_format::{
    ChunkDesc, Header, ShardDesc, HEADER_MAPPING_BYTES, LIVE_ENTRY_BYTES, LIVE_SHARDS, MAGIC,
    STACK_CHUNKS, STACK_CHUNK_WORDS, STACK_INDEX_ENTRY_BYTES, STACK_SHARDS, VERSION,
};

/// Reads `buf.len()` bytes of the stopped target at an address; `false` if
/// they are not all readable.
pub type ReadFn<'a> = dyn FnMut(u64, &mut [u8]) -> bool + 'a;

/// Says which address ranges make up the audit region whose header is at
/// `header`. The snapshot captures every mapping that any range touches.
pub trait AuditLocator {
    /// The ranges `[start, end)` of the region, header included.
    fn locate(&self, header: u64, read: &mut ReadFn<'_>) -> Vec<(u64, u64)>;
}

/// The default [`AuditLocator`]: follows the descriptors of a
/// [`Header`] of this crate's [`VERSION`]. For a header of another version
/// it returns the header mapping alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderLocator;

/// Whether `bytes` (a mapping's first bytes) start an audit header.
pub fn is_header(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] == MAGIC
}

impl AuditLocator for HeaderLocator {
    fn locate(&self, header: u64, read: &mut ReadFn<'_>) -> Vec<(u64, u64)> {
        let mut out = vec![(header, header + HEADER_MAPPING_BYTES)];
        let mut h = vec![0u8; std::mem::size_of::<Header>()];
        if !read(header, &mut h) || !is_header(&h) {
            return out;
        }
        let word = |off: usize| u64::from_le_bytes(h[off..off + 8].try_into().unwrap_or([0; 8]));
        let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or([0; 4]));
        if version != VERSION || word(offset_of!(Header, self_addr)) != header {
            return out;
        }
        // A table bigger than this is a corrupt descriptor, not a table.
        const MAX_TABLE: u64 = 1 << 40;
        let shard = |base: usize, entry: u64, out: &mut Vec<(u64, u64)>| {
            let table = word(base + offset_of!(ShardDesc, table));
            let cap = word(base + offset_of!(ShardDesc, capacity));
            if table != 0 && cap != 0 && cap.saturating_mul(entry) <= MAX_TABLE {
                out.push((table, table + cap * entry));
            }
        };
        let desc = std::mem::size_of::<ShardDesc>();
        for i in 0..LIVE_SHARDS {
            shard(
                offset_of!(Header, live) + i * desc,
                LIVE_ENTRY_BYTES,
                &mut out,
            );
        }
        shard(offset_of!(Header, maps), LIVE_ENTRY_BYTES, &mut out);
        for i in 0..STACK_SHARDS {
            shard(
                offset_of!(Header, stack_index) + i * desc,
                STACK_INDEX_ENTRY_BYTES,
                &mut out,
            );
        }
        for i in 0..STACK_CHUNKS {
            let addr = word(offset_of!(Header, chunks) + i * std::mem::size_of::<ChunkDesc>());
            if addr != 0 {
                out.push((addr, addr + STACK_CHUNK_WORDS * 8));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_descriptors_of_a_current_header() {
        let mut h = vec![0u8; std::mem::size_of::<Header>()];
        let at = 0x7000_0000_0000u64;
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let put =
            |h: &mut Vec<u8>, off: usize, v: u64| h[off..off + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut h, offset_of!(Header, self_addr), at);
        let live3 = offset_of!(Header, live) + 3 * std::mem::size_of::<ShardDesc>();
        put(&mut h, live3 + offset_of!(ShardDesc, table), 0x5000);
        put(&mut h, live3 + offset_of!(ShardDesc, capacity), 16);
        put(&mut h, offset_of!(Header, chunks), 0x9000);
        let mut read = |addr: u64, buf: &mut [u8]| {
            if addr != at {
                return false;
            }
            buf.copy_from_slice(&h[..buf.len()]);
            true
        };
        let r = HeaderLocator.locate(at, &mut read);
        assert_eq!(r[0], (at, at + HEADER_MAPPING_BYTES));
        assert!(r.contains(&(0x5000, 0x5000 + 16 * LIVE_ENTRY_BYTES)));
        assert!(r.contains(&(0x9000, 0x9000 + STACK_CHUNK_WORDS * 8)));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn a_foreign_header_yields_only_itself() {
        let mut read = |_: u64, buf: &mut [u8]| {
            buf.fill(0);
            buf[..8].copy_from_slice(&MAGIC);
            true
        };
        assert_eq!(HeaderLocator.locate(0x1000, &mut read).len(), 1);
    }
}
