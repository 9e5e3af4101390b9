//! Unwind rules reduced to what x86_64 code uses, packed in one word for
//! the per-thread cache, and their computation from in-memory CFI.
//!
//! Layout of a [`Rule`]:
//! bits 0-1 kind (0 unknown, 1 CFA rule, 2 end of stack); bit 2 CFA is
//! based on rbp (else rsp); bits 3-4 rbp rule (0 unchanged, 1 saved at
//! CFA+offset, 2 clobbered); bit 5 the address is in the tracer itself;
//! bits 16-31 rbp offset (i16); bits 32-63 CFA offset (i32).

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow, X86_64,
};

use super::modules::Module;

/// A packed unwind rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule(pub u64);

/// What a rule tells the unwinder to do.
pub enum Kind {
    /// No usable CFI: try frame pointers.
    Unknown,
    /// Compute the CFA and read the return address below it.
    Cfa,
    /// The outermost frame: stop.
    End,
}

impl Rule {
    /// No CFI.
    pub const UNKNOWN: Rule = Rule(0);
    const END: Rule = Rule(2);

    fn cfa(from_fp: bool, cfa_offset: i32, fp: FpRule) -> Rule {
        let (fp_bits, fp_off) = match fp {
            FpRule::Unchanged => (0u64, 0i16),
            FpRule::Saved(o) => (1, o),
            FpRule::Clobbered => (2, 0),
        };
        Rule(
            1 | (from_fp as u64) << 2
                | fp_bits << 3
                | ((fp_off as u16) as u64) << 16
                | ((cfa_offset as u32) as u64) << 32,
        )
    }

    /// The same rule, marked as belonging to the tracer's own code (whose
    /// frames are unwound but not recorded).
    pub fn with_in_tracer(self) -> Rule {
        Rule(self.0 | 1 << 5)
    }

    /// Whether the address is in the tracer's own code.
    #[inline]
    pub fn in_tracer(self) -> bool {
        self.0 & 1 << 5 != 0
    }

    /// The rule's kind.
    #[inline]
    pub fn kind(self) -> Kind {
        match self.0 & 3 {
            1 => Kind::Cfa,
            2 => Kind::End,
            _ => Kind::Unknown,
        }
    }

    /// Whether the CFA is computed from rbp.
    #[inline]
    pub fn cfa_from_fp(self) -> bool {
        self.0 & 4 != 0
    }

    /// Offset added to the base register to get the CFA.
    #[inline]
    pub fn cfa_offset(self) -> i64 {
        (self.0 >> 32) as u32 as i32 as i64
    }

    /// Where the caller's rbp was saved, relative to the CFA.
    #[inline]
    pub fn fp_offset(self) -> Option<i64> {
        ((self.0 >> 3) & 3 == 1).then_some(((self.0 >> 16) as u16 as i16) as i64)
    }

    /// Whether the caller's rbp cannot be recovered.
    #[inline]
    pub fn fp_clobbered(self) -> bool {
        (self.0 >> 3) & 3 == 2
    }
}

enum FpRule {
    Unchanged,
    Saved(i16),
    Clobbered,
}

/// gimli's unwind context on the stack instead of the heap, kept small
/// (about 2 KiB) because the hook may run on a thread with a 16 KiB stack.
/// Sixteen register rules cover x86_64's general registers (compilers
/// describe at most the return address, the frame pointer and the six
/// callee-saved ones); two rows cover `DW_CFA_remember_state` nesting as
/// compilers emit it. An FDE that needs more fails to evaluate and the
/// unwinder falls back to frame pointers.
struct StoreOnStack;

impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for StoreOnStack {
    type Rules = [(Register, RegisterRule<T>); 16];
    type Stack = [UnwindTableRow<T, Self>; 2];
}

/// Computes the rule for instruction address `pc` in `module`. Does not
/// allocate: gimli parses the in-memory sections through slices and keeps
/// its state in a [`StoreOnStack`] context.
pub fn compute(module: &Module, pc: u64) -> Rule {
    if module.eh_frame_hdr == 0 || module.eh_frame == 0 {
        return Rule::UNKNOWN;
    }
    // SAFETY: the module table holds only loaded objects, and the caller's
    // `TableHold` keeps `dlclose` from unmapping them while we read.
    let (hdr_bytes, frame_bytes) = unsafe {
        (
            core::slice::from_raw_parts(
                module.eh_frame_hdr as *const u8,
                module.eh_frame_hdr_len as usize,
            ),
            core::slice::from_raw_parts(module.eh_frame as *const u8, module.eh_frame_len as usize),
        )
    };
    let bases = BaseAddresses::default()
        .set_eh_frame_hdr(module.eh_frame_hdr)
        .set_eh_frame(module.eh_frame)
        .set_text(module.start);
    let Ok(hdr) = EhFrameHdr::new(hdr_bytes, LittleEndian).parse(&bases, 8) else {
        return Rule::UNKNOWN;
    };
    let Some(table) = hdr.table() else {
        return Rule::UNKNOWN;
    };
    let mut eh_frame = EhFrame::new(frame_bytes, LittleEndian);
    eh_frame.set_address_size(8);
    let mut ctx = UnwindContext::<usize, StoreOnStack>::new_in();
    let Ok(row) =
        table.unwind_info_for_address(&eh_frame, &bases, &mut ctx, pc, EhFrame::cie_from_offset)
    else {
        return Rule::UNKNOWN;
    };
    reduce(row)
}

fn reduce<S: UnwindContextStorage<usize>>(row: &UnwindTableRow<usize, S>) -> Rule {
    match row.register(X86_64::RA) {
        RegisterRule::Undefined => return Rule::END,
        RegisterRule::Offset(-8) => {}
        _ => return Rule::UNKNOWN,
    }
    let (from_fp, offset) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RSP => {
            (false, *offset)
        }
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RBP => {
            (true, *offset)
        }
        _ => return Rule::UNKNOWN,
    };
    let Ok(offset) = i32::try_from(offset) else {
        return Rule::UNKNOWN;
    };
    let fp = match row.register(X86_64::RBP) {
        RegisterRule::Undefined | RegisterRule::SameValue => FpRule::Unchanged,
        RegisterRule::Offset(o) => match i16::try_from(o) {
            Ok(o) => FpRule::Saved(o),
            Err(_) => FpRule::Clobbered,
        },
        _ => FpRule::Clobbered,
    };
    Rule::cfa(from_fp, offset, fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip() {
        let r = Rule::cfa(true, -40, FpRule::Saved(-16));
        assert!(matches!(r.kind(), Kind::Cfa));
        assert!(r.cfa_from_fp());
        assert_eq!(r.cfa_offset(), -40);
        assert_eq!(r.fp_offset(), Some(-16));
        let r = Rule::cfa(false, 1 << 20, FpRule::Clobbered);
        assert_eq!(r.cfa_offset(), 1 << 20);
        assert!(r.fp_clobbered());
        assert_eq!(r.fp_offset(), None);
        assert!(matches!(Rule::END.kind(), Kind::End));
        assert!(matches!(Rule::UNKNOWN.kind(), Kind::Unknown));
    }
}
