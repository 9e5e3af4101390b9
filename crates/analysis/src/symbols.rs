//! Naming and walking code offline: addresses to functions, files and lines
//! from the ELF files and JIT maps a process had ([`symbolize`]), and
//! stopped threads' stacks walked in a snapshot ([`unwind`]).

pub(crate) mod debuginfo;
pub mod plumbing;
pub mod symbolize;
pub mod unwind;

use object::{Object, ObjectSegment};

/// Where an ELF file's loadable segments go: `(file offset, virtual
/// address, file size)` each, to turn a runtime mapping's file offset into
/// the file's own addresses (symbols, DWARF and CFI are by those).
#[derive(Clone, Debug, Default)]
pub(crate) struct LoadTable(Vec<(u64, u64, u64)>);

impl LoadTable {
    /// The loadable segments of `obj`.
    pub(crate) fn of<'d>(obj: &impl Object<'d>) -> LoadTable {
        LoadTable(
            obj.segments()
                .map(|s| {
                    let (off, size) = s.file_range();
                    (off, s.address(), size)
                })
                .collect(),
        )
    }

    /// The file virtual address of file offset `off`.
    pub(crate) fn vaddr_of_offset(&self, off: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|(o, _, size)| *o <= off && off < o + size)
            .map(|(o, v, _)| v + (off - o))
    }
}
