//! Walking a stopped thread's stack in a snapshot, so that an address on a
//! stack can be named by the frame that owns it.
//!
//! Each step uses the call frame information (`.eh_frame`, through
//! `.eh_frame_hdr`'s sorted table when present) of the module holding the
//! PC, read from the file on disk the way [`crate::symbolize`] finds it; where
//! a module has none, or the PC is in no module (JIT code), it follows the
//! frame-pointer chain instead. The rules and the step are
//! `leaktrail-unwind-core`'s, the tracer's own, so a walked stack ends
//! where a recorded one would.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use leaktrail_unwind_core::{step, FrameAddress, InstructionAddress, Regs, Rule, Section, Step};
use object::{Object, ObjectSection};

use leaktrail_recording::snapshot::note::FileRange;
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
    /// `.eh_frame` and its address.
    eh_frame: (Vec<u8>, u64),
    /// `.eh_frame_hdr` and its address.
    hdr: Option<(Vec<u8>, u64)>,
    text: Option<u64>,
    /// (file offset, virtual address, file size) of each loadable segment.
    loads: super::LoadTable,
}

impl Cfi {
    fn open(path: &str) -> Option<Cfi> {
        // We copy the two sections we need out of the mapping before it
        // is dropped.
        let map = super::symbolize::map_file(path)?;
        let obj = object::File::parse(&*map).ok()?;
        let eh = obj.section_by_name(".eh_frame")?;
        let hdr = obj
            .section_by_name(".eh_frame_hdr")
            .and_then(|h| Some((h.data().ok()?.to_vec(), h.address())));
        let text = obj.section_by_name(".text").map(|t| t.address());
        let loads = super::LoadTable::of(&obj);
        Some(Cfi {
            eh_frame: (eh.data().ok()?.to_vec(), eh.address()),
            hdr,
            text,
            loads,
        })
    }

    fn vaddr_of_offset(&self, off: u64) -> Option<u64> {
        self.loads.vaddr_of_offset(off)
    }

    /// The unwind rule at file virtual address `vaddr`.
    fn rule_at(&self, vaddr: u64) -> Rule {
        fn section((data, address): &(Vec<u8>, u64)) -> Section<'_> {
            Section {
                data,
                address: *address,
            }
        }
        leaktrail_unwind_core::Cfi {
            eh_frame: section(&self.eh_frame),
            eh_frame_hdr: self.hdr.as_ref().map(section),
            text_address: self.text,
        }
        .rule_at(vaddr)
    }
}

/// Walks stacks of one process image. Opens each module's CFI once; build
/// once, reuse.
pub struct Unwinder {
    mappings: Vec<FileRange>,
    modules: RefCell<HashMap<String, Option<Rc<Cfi>>>>,
}

impl Unwinder {
    /// An unwinder over these file mappings (see
    /// [`crate::symbolize::Symbolizer::mappings`]).
    pub fn new(mut mappings: Vec<FileRange>) -> Self {
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

    fn mapping(&self, addr: u64) -> Option<&FileRange> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some(m)
    }

    /// The rule at lookup address `lookup`: unknown (so frame pointers)
    /// outside every module with CFI.
    fn rule_at(&self, lookup: u64) -> Rule {
        self.mapping(lookup)
            .and_then(|m| {
                let cfi = self.cfi(&m.path)?;
                let v = cfi.vaddr_of_offset(lookup - m.start + m.offset)?;
                Some(cfi.rule_at(v))
            })
            .unwrap_or(Rule::UNKNOWN)
    }

    /// The frames of a thread whose registers (`user_regs_struct` words)
    /// are `regs`, innermost first, at most `max`.
    pub fn walk(&self, mem: &(impl Memory + ?Sized), regs: &[u64], max: usize) -> Vec<StackFrame> {
        let reg = |i: usize| regs.get(i).copied().unwrap_or(0);
        let mut regs = Regs {
            pc: reg(REG_RIP),
            sp: reg(REG_RSP),
            fp: reg(REG_RBP),
        };
        let mut address = FrameAddress::from(InstructionAddress(regs.pc));
        let mut out: Vec<StackFrame> = Vec::new();
        while out.len() < max && regs.pc != 0 {
            let rule = self.rule_at(address.lookup_address());
            match step(rule, regs, |a| mem.read_u64(a).ok()) {
                Step::Caller(caller) => {
                    out.push(StackFrame {
                        pc: regs.pc,
                        sp: regs.sp,
                        cfa: caller.regs.sp,
                    });
                    address = caller.return_address().into();
                    regs = caller.regs;
                }
                Step::End | Step::Unknown => {
                    out.push(StackFrame {
                        pc: regs.pc,
                        sp: regs.sp,
                        cfa: 0,
                    });
                    break;
                }
            }
        }
        out
    }
}
