//! Walking a stopped thread's stack in a snapshot, so that an address on a
//! stack can be named by the frame that owns it.
//!
//! Each step uses the call frame information (`.eh_frame`, through
//! `.eh_frame_hdr`'s sorted table when present) of the module holding the
//! PC, read from the file on disk the way [`crate::symbolize`] finds it; where
//! a module has none, or the PC is in no module (JIT code), it follows the
//! frame-pointer chain instead, as the tracer does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, RegisterRule, UnwindContext,
    UnwindSection, X86_64,
};
use object::{Object, ObjectSection, ObjectSegment};

use crate::symbolize::FileMapping;
use leaktrail_recording::Memory;

/// `user_regs_struct` indices.
const REG_RBP: usize = 4;
const REG_RIP: usize = 16;
const REG_RSP: usize = 19;

/// One frame of a walked stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackFrame {
    /// Where the frame executes (a return address for every frame but the
    /// first).
    pub pc: u64,
    /// Its stack pointer: the lowest address of its part of the stack.
    pub sp: u64,
    /// Its canonical frame address: one past its part of the stack (the
    /// caller's SP). 0 when the walk stopped here.
    pub cfa: u64,
}

struct Cfi {
    eh_frame: Vec<u8>,
    hdr: Option<Vec<u8>>,
    bases: BaseAddresses,
    /// (file offset, virtual address, file size) of each loadable segment.
    loads: Vec<(u64, u64, u64)>,
}

impl Cfi {
    fn open(path: &str) -> Option<Cfi> {
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: a read-only mapping; we copy the two sections we need
        // out of it before it is dropped. A file truncated meanwhile could
        // fault, as for every reader that maps binaries.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let obj = object::File::parse(&*map).ok()?;
        let eh = obj.section_by_name(".eh_frame")?;
        let mut bases = BaseAddresses::default().set_eh_frame(eh.address());
        let hdr = obj.section_by_name(".eh_frame_hdr").and_then(|h| {
            bases = bases.clone().set_eh_frame_hdr(h.address());
            h.data().ok().map(<[u8]>::to_vec)
        });
        if let Some(t) = obj.section_by_name(".text") {
            bases = bases.set_text(t.address());
        }
        let loads = obj
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, s.address(), size)
            })
            .collect();
        Some(Cfi {
            eh_frame: eh.data().ok()?.to_vec(),
            hdr,
            bases,
            loads,
        })
    }

    fn vaddr_of_offset(&self, off: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|(o, _, size)| *o <= off && off < o + size)
            .map(|(o, v, _)| v + (off - o))
    }

    /// The CFA rule as (register, offset) and the saved RA and RBP offsets
    /// from the CFA at `vaddr`.
    fn rules(&self, vaddr: u64) -> Option<((u16, i64), i64, Option<i64>)> {
        let eh = EhFrame::new(&self.eh_frame, LittleEndian);
        let mut ctx = UnwindContext::new();
        let row = match &self.hdr {
            Some(h) => {
                let parsed = EhFrameHdr::new(h, LittleEndian)
                    .parse(&self.bases, 8)
                    .ok()?;
                let table = parsed.table()?;
                table
                    .unwind_info_for_address(
                        &eh,
                        &self.bases,
                        &mut ctx,
                        vaddr,
                        EhFrame::cie_from_offset,
                    )
                    .ok()?
                    .clone()
            }
            None => eh
                .unwind_info_for_address(&self.bases, &mut ctx, vaddr, EhFrame::cie_from_offset)
                .ok()?
                .clone(),
        };
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => (register.0, *offset),
            CfaRule::Expression(_) => return None,
        };
        let ra = match row.register(X86_64::RA) {
            RegisterRule::Offset(o) => o,
            _ => return None,
        };
        let rbp = match row.register(X86_64::RBP) {
            RegisterRule::Offset(o) => Some(o),
            _ => None,
        };
        Some((cfa, ra, rbp))
    }
}

/// Walks stacks of one process image. Opens each module's CFI once; build
/// once, reuse.
pub struct Unwinder {
    mappings: Vec<FileMapping>,
    modules: RefCell<HashMap<String, Option<Rc<Cfi>>>>,
}

impl Unwinder {
    /// An unwinder over these file mappings (see
    /// [`crate::symbolize::Symbolizer::mappings`]).
    pub fn new(mut mappings: Vec<FileMapping>) -> Self {
        mappings.sort_by_key(|m| m.start);
        Unwinder {
            mappings,
            modules: RefCell::new(HashMap::new()),
        }
    }

    fn cfi(&self, path: &str) -> Option<Rc<Cfi>> {
        self.modules
            .borrow_mut()
            .entry(path.to_string())
            .or_insert_with(|| Cfi::open(path).map(Rc::new))
            .clone()
    }

    fn mapping(&self, addr: u64) -> Option<&FileMapping> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }

    /// The frames of a thread whose registers (`user_regs_struct` words)
    /// are `regs`, innermost first, at most `max`.
    pub fn walk(&self, mem: &(impl Memory + ?Sized), regs: &[u64], max: usize) -> Vec<StackFrame> {
        let reg = |i: usize| regs.get(i).copied().unwrap_or(0);
        let (mut pc, mut sp, mut rbp) = (reg(REG_RIP), reg(REG_RSP), reg(REG_RBP));
        let mut out: Vec<StackFrame> = Vec::new();
        while out.len() < max && pc != 0 {
            let lookup = if out.is_empty() { pc } else { pc - 1 };
            let rules = self.mapping(lookup).and_then(|m| {
                let cfi = self.cfi(&m.path)?;
                let v = cfi.vaddr_of_offset(lookup - m.start + m.offset)?;
                cfi.rules(v)
            });
            let (cfa, ra, saved_rbp) = match rules {
                Some(((reg_no, off), ra_off, rbp_off)) => {
                    let base = match reg_no {
                        7 => sp,
                        6 => rbp,
                        _ => break,
                    };
                    let cfa = base.wrapping_add(off as u64);
                    let Ok(ra) = mem.read_u64(cfa.wrapping_add(ra_off as u64)) else {
                        break;
                    };
                    let saved = match rbp_off {
                        Some(o) => mem.read_u64(cfa.wrapping_add(o as u64)).unwrap_or(rbp),
                        None => rbp,
                    };
                    (cfa, ra, saved)
                }
                None => {
                    // No CFI: the frame-pointer chain, if it is one.
                    if rbp < sp || rbp % 8 != 0 {
                        break;
                    }
                    let (Ok(ra), Ok(saved)) = (mem.read_u64(rbp + 8), mem.read_u64(rbp)) else {
                        break;
                    };
                    (rbp + 16, ra, saved)
                }
            };
            if cfa <= sp {
                break;
            }
            out.push(StackFrame { pc, sp, cfa });
            pc = ra;
            sp = cfa;
            rbp = saved_rbp;
        }
        if out.len() < max && pc != 0 {
            out.push(StackFrame { pc, sp, cfa: 0 });
        }
        out
    }
}
