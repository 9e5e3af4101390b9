//! Unwind rules reduced to what x86_64 code uses, packed in one word so a
//! cache slot can hold one and a torn slot can be detected.
//!
//! Compilers describe an x86_64 frame with very few of DWARF's rules: the
//! CFA is rsp or rbp plus a constant, the return address sits just below
//! the CFA (the `call` pushed it), and rbp is either untouched or saved at
//! a constant offset from the CFA. Anything else (CFA expressions, the
//! return address in a register) we call unknown and leave to the
//! frame-pointer fallback; a return address that DWARF says is undefined
//! marks the outermost frame (`_start`, `clone`'s child).
//!
//! Layout of a [`Rule`]:
//! bits 0-1 kind (0 unknown, 1 CFA rule, 2 end of stack); bit 2 CFA is
//! based on rbp (else rsp); bits 3-4 rbp rule (0 unchanged, 1 saved at
//! CFA+offset, 2 clobbered); bit 5 the caller's tag
//! ([`Rule::with_tag`]); bit 6 the caller's JIT mark ([`Rule::with_jit`]);
//! bits 16-31 rbp offset (i16); bits 32-63 CFA offset (i32).

use gimli::{CfaRule, RegisterRule, UnwindContextStorage, UnwindTableRow, X86_64};

/// Where the return address sits, relative to the CFA: the `call` pushed
/// it just below the caller's stack pointer.
pub const RETURN_ADDRESS_OFFSET: i64 = -8;

/// The stack slot holding the return address of the frame whose CFA is
/// `cfa` (the caller's stack pointer).
#[inline]
pub fn return_address_slot(cfa: u64) -> u64 {
    cfa.wrapping_add_signed(RETURN_ADDRESS_OFFSET)
}

/// A packed unwind rule for one instruction address. Every word decodes
/// to some rule, so a word from a cache is always safe to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule(u64);

/// What a rule tells the unwinder to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No usable CFI: try frame pointers.
    Unknown,
    /// Compute the CFA and read the return address below it.
    Cfa,
    /// The outermost frame: stop.
    End,
}

/// The register the CFA is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfaBase {
    /// rsp.
    Sp,
    /// rbp.
    Fp,
}

/// How to recover the caller's rbp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpRule {
    /// The frame did not change it.
    Unchanged,
    /// Saved at CFA + this offset.
    Saved(i16),
    /// Not recoverable (described by a rule we do not evaluate).
    Clobbered,
}

impl Rule {
    /// No usable CFI.
    pub const UNKNOWN: Rule = Rule(0);
    /// The outermost frame.
    pub const END: Rule = Rule(2);

    const TAG: u64 = 1 << 5;
    const JIT: u64 = 1 << 6;

    /// A rule that computes the CFA as `base + cfa_offset`.
    #[inline]
    pub const fn cfa(base: CfaBase, cfa_offset: i32, fp: FpRule) -> Rule {
        let (fp_bits, fp_off) = match fp {
            FpRule::Unchanged => (0u64, 0i16),
            FpRule::Saved(o) => (1, o),
            FpRule::Clobbered => (2, 0),
        };
        let from_fp = matches!(base, CfaBase::Fp) as u64;
        Rule(
            1 | from_fp << 2
                | fp_bits << 3
                | ((fp_off as u16) as u64) << 16
                | ((cfa_offset as u32) as u64) << 32,
        )
    }

    /// The rule a packed word holds (from [`Rule::to_bits`]).
    #[inline]
    pub const fn from_bits(bits: u64) -> Rule {
        Rule(bits)
    }

    /// The packed word.
    #[inline]
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// The same rule with the caller's tag bit set. The tracer
    /// marks its own code with it (its frames are unwound, not recorded).
    #[inline]
    pub const fn with_tag(self) -> Rule {
        Rule(self.0 | Self::TAG)
    }

    /// Whether [`Rule::with_tag`] set the caller's bit.
    #[inline]
    pub const fn tagged(self) -> bool {
        self.0 & Self::TAG != 0
    }

    /// The same rule, marked as one for code outside every loaded
    /// module (JIT code): the tracer notes such frames' interpreter slot.
    #[inline]
    pub const fn with_jit(self) -> Rule {
        Rule(self.0 | Self::JIT)
    }

    /// Whether [`Rule::with_jit`] marked it.
    #[inline]
    pub const fn jit(self) -> bool {
        self.0 & Self::JIT != 0
    }

    /// The rule's kind.
    #[inline]
    pub const fn kind(self) -> Kind {
        match self.0 & 3 {
            1 => Kind::Cfa,
            2 => Kind::End,
            _ => Kind::Unknown,
        }
    }

    /// The register the CFA is computed from (meaningful for
    /// [`Kind::Cfa`]).
    #[inline]
    pub const fn cfa_base(self) -> CfaBase {
        if self.0 & 4 != 0 {
            CfaBase::Fp
        } else {
            CfaBase::Sp
        }
    }

    /// Offset added to the base register to get the CFA.
    #[inline]
    pub const fn cfa_offset(self) -> i64 {
        (self.0 >> 32) as u32 as i32 as i64
    }

    /// How to recover the caller's rbp.
    #[inline]
    pub const fn fp_rule(self) -> FpRule {
        match (self.0 >> 3) & 3 {
            1 => FpRule::Saved((self.0 >> 16) as u16 as i16),
            2 => FpRule::Clobbered,
            _ => FpRule::Unchanged,
        }
    }
}

/// Reduces a row of an unwind table (gimli's evaluation of CFI at one
/// address) to a [`Rule`]. Both unwinders reduce through here, so they
/// agree on where the outermost frame is and on which rows they can use.
pub fn reduce<T, S>(row: &UnwindTableRow<T, S>) -> Rule
where
    T: gimli::ReaderOffset,
    S: UnwindContextStorage<T>,
{
    match row.register(X86_64::RA) {
        RegisterRule::Undefined => return Rule::END,
        RegisterRule::Offset(RETURN_ADDRESS_OFFSET) => {}
        _ => return Rule::UNKNOWN,
    }
    let (base, offset) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RSP => {
            (CfaBase::Sp, *offset)
        }
        CfaRule::RegisterAndOffset { register, offset } if *register == X86_64::RBP => {
            (CfaBase::Fp, *offset)
        }
        _ => return Rule::UNKNOWN,
    };
    let Ok(offset) = i32::try_from(offset) else {
        return Rule::UNKNOWN;
    };
    let fp = match row.register(X86_64::RBP) {
        // gimli reports a register no rule mentions as undefined; callee
        // code that never touches rbp leaves it as the caller had it.
        RegisterRule::Undefined | RegisterRule::SameValue => FpRule::Unchanged,
        RegisterRule::Offset(o) => match i16::try_from(o) {
            Ok(o) => FpRule::Saved(o),
            // No compiler saves rbp 32 KiB away from the CFA; not worth a
            // wider field.
            Err(_) => FpRule::Clobbered,
        },
        _ => FpRule::Clobbered,
    };
    Rule::cfa(base, offset, fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip() {
        let cases = [
            (CfaBase::Fp, -40, FpRule::Saved(-16)),
            (CfaBase::Sp, 1 << 20, FpRule::Clobbered),
            (CfaBase::Sp, 8, FpRule::Unchanged),
            (CfaBase::Sp, i32::MAX, FpRule::Saved(i16::MAX)),
            (CfaBase::Fp, i32::MIN, FpRule::Saved(i16::MIN)),
            (CfaBase::Sp, -1, FpRule::Saved(-1)),
            (CfaBase::Fp, 0, FpRule::Saved(0)),
        ];
        for (base, offset, fp) in cases {
            let r = Rule::cfa(base, offset, fp);
            for r in [r, r.with_tag(), r.with_jit(), Rule::from_bits(r.to_bits())] {
                assert_eq!(r.kind(), Kind::Cfa, "{base:?} {offset} {fp:?}");
                assert_eq!(r.cfa_base(), base, "{base:?} {offset} {fp:?}");
                assert_eq!(
                    r.cfa_offset(),
                    i64::from(offset),
                    "{base:?} {offset} {fp:?}"
                );
                assert_eq!(r.fp_rule(), fp, "{base:?} {offset} {fp:?}");
            }
            assert!(!r.tagged());
            assert!(r.with_tag().tagged());
        }
        assert_eq!(Rule::END.kind(), Kind::End);
        assert_eq!(Rule::END.with_tag().kind(), Kind::End);
        assert_eq!(Rule::UNKNOWN.kind(), Kind::Unknown);
        assert!(Rule::UNKNOWN.with_tag().tagged());
        let jit = Rule::UNKNOWN.with_jit();
        assert!(jit.jit() && !jit.tagged() && !Rule::UNKNOWN.jit());
        assert_eq!(jit.kind(), Kind::Unknown);
        // Kind 3 is unused and reads as unknown, so any word is a rule.
        assert_eq!(Rule::from_bits(3).kind(), Kind::Unknown);
        assert_eq!(Rule::from_bits(u64::MAX).kind(), Kind::Unknown);
    }

    #[test]
    fn the_return_address_is_below_the_cfa() {
        assert_eq!(return_address_slot(0x7fff_0010), 0x7fff_0008);
    }
}
