//! The ELF64 container of a core file, written by hand.
//!
//! Layout (all little endian, x86_64):
//!
//! ```text
//! 0                ELF header (64 bytes)
//! 64               program headers: PT_NOTE, then one PT_LOAD per segment
//! page-aligned     the PT_LOAD data, in address order, each page-aligned
//! after the data   the PT_NOTE data
//! ```
//!
//! The notes come last because one of them (ours) records the pause, which
//! is only known once the memory has been copied and the threads released.
//! Readers find everything through the program headers, so the order in the
//! file does not matter to gdb, the kernel's tools or ours.

/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `ET_CORE`.
pub const ET_CORE: u16 = 4;
/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_NOTE`.
pub const PT_NOTE: u32 = 4;
/// Segment flags.
pub const PF_X: u32 = 1;
/// Segment flags.
pub const PF_W: u32 = 2;
/// Segment flags.
pub const PF_R: u32 = 4;
/// `e_phnum` value meaning "the real count is in section header 0".
pub const PN_XNUM: u16 = 0xffff;
/// Alignment of PT_LOAD data in the file.
pub const PAGE: u64 = 4096;

const EHDR_BYTES: u64 = 64;
const PHDR_BYTES: u64 = 56;
const SHDR_BYTES: u64 = 64;

/// One program header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramHeader {
    /// `p_type`.
    pub kind: u32,
    /// `p_flags`.
    pub flags: u32,
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_align`.
    pub align: u64,
}

impl ProgramHeader {
    /// The PT_NOTE header of `len` bytes of notes at file `offset`.
    pub fn notes(offset: u64, len: u64) -> ProgramHeader {
        ProgramHeader {
            kind: PT_NOTE,
            flags: PF_R,
            offset,
            vaddr: 0,
            filesz: len,
            memsz: 0,
            align: 4,
        }
    }
}

/// Where things go in the file, computed from the program header count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Program headers, PT_NOTE included.
    pub phnum: u64,
    /// Offset of the first PT_LOAD's data (page-aligned).
    pub data_offset: u64,
}

impl Layout {
    /// The layout for `loads` PT_LOAD segments plus one PT_NOTE.
    pub fn new(loads: usize) -> Layout {
        let phnum = loads as u64 + 1;
        let mut end = EHDR_BYTES + phnum * PHDR_BYTES;
        if phnum >= PN_XNUM as u64 {
            end += SHDR_BYTES;
        }
        Layout {
            phnum,
            data_offset: end.div_ceil(PAGE) * PAGE,
        }
    }

    /// Offset of the section header that carries an overflowing
    /// program header count, if one is needed.
    fn shoff(&self) -> Option<u64> {
        (self.phnum >= PN_XNUM as u64).then_some(EHDR_BYTES + self.phnum * PHDR_BYTES)
    }

    /// The file's first bytes: ELF header, program headers and, with more
    /// than 65534 of them, the one section header that counts them.
    pub fn headers(&self, phdrs: &[ProgramHeader]) -> Vec<u8> {
        debug_assert_eq!(phdrs.len() as u64, self.phnum);
        let mut b = Vec::with_capacity(self.data_offset as usize);
        b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&ET_CORE.to_le_bytes());
        b.extend_from_slice(&EM_X86_64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes()); // e_version
        b.extend_from_slice(&0u64.to_le_bytes()); // e_entry
        b.extend_from_slice(&EHDR_BYTES.to_le_bytes()); // e_phoff
        b.extend_from_slice(&self.shoff().unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        b.extend_from_slice(&(EHDR_BYTES as u16).to_le_bytes());
        b.extend_from_slice(&(PHDR_BYTES as u16).to_le_bytes());
        let phnum = self.phnum.min(PN_XNUM as u64) as u16;
        b.extend_from_slice(&phnum.to_le_bytes());
        let with_sh = self.shoff().is_some();
        b.extend_from_slice(&(if with_sh { SHDR_BYTES as u16 } else { 0 }).to_le_bytes());
        b.extend_from_slice(&(with_sh as u16).to_le_bytes()); // e_shnum
        b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        for p in phdrs {
            b.extend_from_slice(&p.kind.to_le_bytes());
            b.extend_from_slice(&p.flags.to_le_bytes());
            b.extend_from_slice(&p.offset.to_le_bytes());
            b.extend_from_slice(&p.vaddr.to_le_bytes());
            b.extend_from_slice(&0u64.to_le_bytes()); // p_paddr
            b.extend_from_slice(&p.filesz.to_le_bytes());
            b.extend_from_slice(&p.memsz.to_le_bytes());
            b.extend_from_slice(&p.align.to_le_bytes());
        }
        if with_sh {
            // Section header 0: only sh_info (the real e_phnum) is set.
            let mut sh = [0u8; SHDR_BYTES as usize];
            sh[44..48].copy_from_slice(&(self.phnum as u32).to_le_bytes());
            b.extend_from_slice(&sh);
        }
        b.resize(self.data_offset as usize, 0);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_fill_up_to_the_data_and_count_phdrs() {
        let l = Layout::new(2);
        assert_eq!(l.phnum, 3);
        assert_eq!(l.data_offset, PAGE);
        let b = l.headers(&[ProgramHeader::default(); 3]);
        assert_eq!(b.len() as u64, PAGE);
        assert_eq!(&b[0..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([b[16], b[17]]), ET_CORE);
        assert_eq!(u16::from_le_bytes([b[56], b[57]]), 3);
    }

    #[test]
    fn many_segments_use_pn_xnum() {
        let l = Layout::new(70_000);
        let b = l.headers(&vec![ProgramHeader::default(); 70_001]);
        assert_eq!(u16::from_le_bytes([b[56], b[57]]), PN_XNUM);
        let shoff = u64::from_le_bytes(b[40..48].try_into().unwrap()) as usize;
        assert_eq!(
            u32::from_le_bytes(b[shoff + 44..shoff + 48].try_into().unwrap()),
            70_001
        );
        assert_eq!(l.data_offset % PAGE, 0);
    }
}
