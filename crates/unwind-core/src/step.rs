//! One unwind step: from a frame's registers and its rule to its caller's.

use crate::address::ReturnAddress;
use crate::rule::{return_address_slot, CfaBase, FpRule, Kind, Rule};

/// No code lives in the first page; a "return address" there ends a
/// frame-pointer chain (`_start` pushes 0) rather than naming a caller.
pub const MIN_CODE_ADDRESS: u64 = 4096;

/// The registers an x86_64 unwind tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regs {
    /// rip: the instruction address for the innermost frame, a return
    /// address for every other.
    pub pc: u64,
    /// rsp.
    pub sp: u64,
    /// rbp.
    pub fp: u64,
}

/// A caller's frame, as one step recovered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Its registers; `sp` is the callee's CFA.
    pub regs: Regs,
    /// The stack word its `fp` was read from, when it was restored rather
    /// than carried over (a caller that memoises stacks re-checks it).
    pub fp_slot: Option<u64>,
}

impl Caller {
    /// Where it resumes: a return address.
    #[inline]
    pub fn return_address(&self) -> ReturnAddress {
        ReturnAddress(self.regs.pc)
    }

    /// The stack word its return address was read from.
    #[inline]
    pub fn return_address_slot(&self) -> u64 {
        return_address_slot(self.regs.sp)
    }
}

/// The outcome of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The caller's frame.
    Caller(Caller),
    /// This is the outermost frame: the CFI says its return address is
    /// undefined, or the return address is not a code address.
    End,
    /// The caller cannot be found: a stack word could not be read, the CFA
    /// does not move up the stack, or there is no frame-pointer chain.
    Unknown,
}

/// Unwinds one frame with `rule` (the rule at the frame's lookup address:
/// see [`crate::FrameAddress::lookup_address`]), reading stack words
/// through `read`, which returns `None` for a word it cannot or must not
/// read. An unknown rule falls back to [`step_frame_pointer`].
///
/// Allocates nothing; `read` is called at most twice.
#[inline]
pub fn step(rule: Rule, regs: Regs, read: impl FnMut(u64) -> Option<u64>) -> Step {
    match rule.kind() {
        Kind::End => Step::End,
        Kind::Unknown => step_frame_pointer(regs, read),
        Kind::Cfa => step_cfa(rule, regs, read),
    }
}

#[inline]
fn step_cfa(rule: Rule, r: Regs, mut read: impl FnMut(u64) -> Option<u64>) -> Step {
    let base = match rule.cfa_base() {
        CfaBase::Sp => r.sp,
        CfaBase::Fp => r.fp,
    };
    let Some(cfa) = base.checked_add_signed(rule.cfa_offset()) else {
        return Step::Unknown;
    };
    // The caller's frame is above ours; a CFA that does not move up (a
    // stale rbp, a wrong rule) would loop or walk into garbage.
    if cfa <= r.sp || cfa & 7 != 0 {
        return Step::Unknown;
    }
    let Some(pc) = read(return_address_slot(cfa)) else {
        return Step::Unknown;
    };
    let (fp, fp_slot) = match rule.fp_rule() {
        FpRule::Unchanged => (r.fp, None),
        FpRule::Saved(off) => {
            let Some(slot) = cfa.checked_add_signed(i64::from(off)) else {
                return Step::Unknown;
            };
            let Some(fp) = read(slot) else {
                return Step::Unknown;
            };
            (fp, Some(slot))
        }
        FpRule::Clobbered => (0, None),
    };
    caller(pc, cfa, fp, fp_slot)
}

/// Unwinds one frame by the frame-pointer chain, for code without CFI
/// (JIT code keeps rbp): the caller's rbp at `[rbp]`, the return address
/// at `[rbp + 8]`, the CFA at `rbp + 16`.
#[inline]
pub fn step_frame_pointer(r: Regs, mut read: impl FnMut(u64) -> Option<u64>) -> Step {
    if r.fp < r.sp || r.fp & 7 != 0 {
        return Step::Unknown;
    }
    let Some(cfa) = r.fp.checked_add(16) else {
        return Step::Unknown;
    };
    let Some(pc) = read(return_address_slot(cfa)) else {
        return Step::Unknown;
    };
    let Some(fp) = read(r.fp) else {
        return Step::Unknown;
    };
    caller(pc, cfa, fp, Some(r.fp))
}

#[inline]
fn caller(pc: u64, sp: u64, fp: u64, fp_slot: Option<u64>) -> Step {
    if pc < MIN_CODE_ADDRESS {
        return Step::End;
    }
    Step::Caller(Caller {
        regs: Regs { pc, sp, fp },
        fp_slot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack of words from `BASE` up, read as an unwinder would: aligned
    /// words inside it, nothing else.
    const BASE: u64 = 0x7ffd_0000;

    struct Stack(Vec<u64>);

    impl Stack {
        fn read(&self, addr: u64) -> Option<u64> {
            if addr < BASE || addr % 8 != 0 {
                return None;
            }
            self.0.get(((addr - BASE) / 8) as usize).copied()
        }
        fn at(i: usize) -> u64 {
            BASE + 8 * i as u64
        }
    }

    const MAIN: u64 = 0x40_1234;
    const LIBC: u64 = 0x7f00_0000_2000;

    #[test]
    fn steps_through_cfa_rules() {
        // leaf: no frame of its own (CFA = rsp+8); mid: rbp-based frame
        // with rbp saved at CFA-16; main: rsp-based, 32 bytes of locals.
        let mut words = vec![0u64; 16];
        words[0] = LIBC + 5; // leaf's return address into mid
        words[1] = 0xdead; // mid's locals
        words[2] = Stack::at(9); // mid saved main's rbp
        words[3] = MAIN + 1; // mid's return address into main
        words[8] = MAIN + 0x100; // main's return address into __libc_start_call_main
        let stack = Stack(words);
        let read = |a| stack.read(a);

        let leaf = Regs {
            pc: 0x40_2000,
            sp: Stack::at(0),
            fp: Stack::at(2),
        };
        let Step::Caller(mid) = step(Rule::cfa(CfaBase::Sp, 8, FpRule::Unchanged), leaf, read)
        else {
            panic!("leaf did not step");
        };
        assert_eq!(
            mid,
            Caller {
                regs: Regs {
                    pc: LIBC + 5,
                    sp: Stack::at(1),
                    fp: Stack::at(2),
                },
                fp_slot: None,
            }
        );
        assert_eq!(mid.return_address(), ReturnAddress(LIBC + 5));
        assert_eq!(mid.return_address_slot(), Stack::at(0));

        let Step::Caller(main) = step(
            Rule::cfa(CfaBase::Fp, 16, FpRule::Saved(-16)),
            mid.regs,
            read,
        ) else {
            panic!("mid did not step");
        };
        assert_eq!(
            main,
            Caller {
                regs: Regs {
                    pc: MAIN + 1,
                    sp: Stack::at(4),
                    fp: Stack::at(9),
                },
                fp_slot: Some(Stack::at(2)),
            }
        );

        let Step::Caller(top) = step(
            Rule::cfa(CfaBase::Sp, 40, FpRule::Clobbered),
            main.regs,
            read,
        ) else {
            panic!("main did not step");
        };
        assert_eq!(top.regs.pc, MAIN + 0x100);
        assert_eq!(top.regs.sp, Stack::at(9));
        assert_eq!(top.regs.fp, 0);
        assert_eq!(step(Rule::END, top.regs, read), Step::End);
    }

    #[test]
    fn stops_where_the_stack_cannot_be_trusted() {
        let stack = Stack(vec![MAIN; 8]);
        let read = |a| stack.read(a);
        let r = Regs {
            pc: MAIN,
            sp: Stack::at(2),
            fp: Stack::at(1),
        };
        // A CFA that does not move up.
        assert_eq!(
            step(Rule::cfa(CfaBase::Sp, 0, FpRule::Unchanged), r, read),
            Step::Unknown
        );
        assert_eq!(
            step(Rule::cfa(CfaBase::Fp, 8, FpRule::Unchanged), r, read),
            Step::Unknown
        );
        // Misaligned, past the top, overflowing.
        assert_eq!(
            step(Rule::cfa(CfaBase::Sp, 12, FpRule::Unchanged), r, read),
            Step::Unknown
        );
        assert_eq!(
            step(Rule::cfa(CfaBase::Sp, 0x1000, FpRule::Unchanged), r, read),
            Step::Unknown
        );
        let high = Regs {
            sp: u64::MAX - 7,
            ..r
        };
        assert_eq!(
            step(
                Rule::cfa(CfaBase::Sp, i32::MAX, FpRule::Unchanged),
                high,
                read
            ),
            Step::Unknown
        );
        // rbp saved where it cannot be read.
        assert_eq!(
            step(Rule::cfa(CfaBase::Sp, 8, FpRule::Saved(i16::MAX)), r, read),
            Step::Unknown
        );
        // A frame with no CFI and rbp below the stack pointer: no chain.
        assert_eq!(step(Rule::UNKNOWN, r, read), Step::Unknown);
    }

    #[test]
    fn a_return_address_in_the_first_page_ends_the_stack() {
        let stack = Stack(vec![0, 0, 0]);
        let r = Regs {
            pc: MAIN,
            sp: Stack::at(0),
            fp: Stack::at(1),
        };
        assert_eq!(
            step(Rule::cfa(CfaBase::Sp, 8, FpRule::Unchanged), r, |a| stack
                .read(a)),
            Step::End
        );
        assert_eq!(step_frame_pointer(r, |a| stack.read(a)), Step::End);
    }

    #[test]
    fn follows_the_frame_pointer_chain() {
        // Two JIT frames linked by rbp, then a chain that ends in rbp = 0.
        let mut words = vec![0u64; 12];
        words[2] = Stack::at(6); // frame 0's saved rbp
        words[3] = 0x1_0000_0040; // frame 0's return address
        words[6] = 0; // frame 1's saved rbp: the end of the chain
        words[7] = 0x1_0000_0080;
        let stack = Stack(words);
        let read = |a| stack.read(a);
        let r = Regs {
            pc: 0x1_0000_0010,
            sp: Stack::at(0),
            fp: Stack::at(2),
        };
        let Step::Caller(c) = step(Rule::UNKNOWN, r, read) else {
            panic!("no caller");
        };
        assert_eq!(step_frame_pointer(r, read), Step::Caller(c));
        assert_eq!(
            c,
            Caller {
                regs: Regs {
                    pc: 0x1_0000_0040,
                    sp: Stack::at(4),
                    fp: Stack::at(6),
                },
                fp_slot: Some(Stack::at(2)),
            }
        );
        let Step::Caller(c2) = step_frame_pointer(c.regs, read) else {
            panic!("no second caller");
        };
        assert_eq!(c2.regs.pc, 0x1_0000_0080);
        assert_eq!(c2.regs.fp, 0);
        assert_eq!(step_frame_pointer(c2.regs, read), Step::Unknown);
        // A misaligned rbp is no chain.
        let odd = Regs {
            fp: Stack::at(2) + 4,
            ..r
        };
        assert_eq!(step_frame_pointer(odd, read), Step::Unknown);
    }
}
