//! Finding the rule for an address in a module's `.eh_frame`, without
//! allocating.

use gimli::{
    BaseAddresses, EhFrame, EhFrameHdr, LittleEndian, Register, RegisterRule, UnwindContext,
    UnwindContextStorage, UnwindSection, UnwindTableRow,
};

use crate::rule::{reduce, Rule};

/// One section's bytes and the address they are at (in the same address
/// space as the addresses looked up: runtime addresses for a loaded
/// module, file virtual addresses for a file on disk).
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    /// The section's contents.
    pub data: &'a [u8],
    /// Its address.
    pub address: u64,
}

/// A module's call frame information: `.eh_frame`, with `.eh_frame_hdr`'s
/// sorted search table when there is one. Cheap to make: it only holds
/// slices, and every lookup parses what it needs.
#[derive(Clone, Copy, Debug)]
pub struct Cfi<'a> {
    /// `.eh_frame`.
    pub eh_frame: Section<'a>,
    /// `.eh_frame_hdr`, if present. Without it a lookup scans every FDE.
    pub eh_frame_hdr: Option<Section<'a>>,
    /// Where `.text` is, for the rare pointers encoded relative to it.
    pub text_address: Option<u64>,
}

/// gimli's unwind context on the stack instead of the heap, kept small
/// (about 2 KiB) because the tracer's hook may run on a thread with a
/// 16 KiB stack. Sixteen register rules cover x86_64's general registers
/// (compilers describe at most the return address, the frame pointer and
/// the six callee-saved ones); two rows cover `DW_CFA_remember_state`
/// nesting as compilers emit it. An FDE that needs more fails to evaluate,
/// its rule is unknown, and the unwinder falls back to frame pointers.
struct StoreOnStack;

impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for StoreOnStack {
    type Rules = [(Register, RegisterRule<T>); 16];
    type Stack = [UnwindTableRow<T, Self>; 2];
}

impl Cfi<'_> {
    /// The rule for instruction address `address` (a lookup address: see
    /// [`crate::FrameAddress::lookup_address`]); unknown where the CFI has
    /// no entry for it or one we cannot use.
    ///
    /// Costs a binary search of the header's table and the evaluation of
    /// one FDE (about a microsecond); callers on a hot path cache the
    /// result. Does not allocate.
    pub fn rule_at(&self, address: u64) -> Rule {
        let mut bases = BaseAddresses::default().set_eh_frame(self.eh_frame.address);
        if let Some(hdr) = self.eh_frame_hdr {
            bases = bases.set_eh_frame_hdr(hdr.address);
        }
        if let Some(text) = self.text_address {
            bases = bases.set_text(text);
        }
        let mut eh_frame = EhFrame::new(self.eh_frame.data, LittleEndian);
        eh_frame.set_address_size(8);
        let mut ctx = UnwindContext::<usize, StoreOnStack>::new_in();
        let row = match self.eh_frame_hdr {
            Some(hdr) => {
                let Ok(hdr) = EhFrameHdr::new(hdr.data, LittleEndian).parse(&bases, 8) else {
                    return Rule::UNKNOWN;
                };
                let Some(table) = hdr.table() else {
                    return Rule::UNKNOWN;
                };
                table.unwind_info_for_address(
                    &eh_frame,
                    &bases,
                    &mut ctx,
                    address,
                    EhFrame::cie_from_offset,
                )
            }
            None => eh_frame.unwind_info_for_address(
                &bases,
                &mut ctx,
                address,
                EhFrame::cie_from_offset,
            ),
        };
        match row {
            Ok(row) => reduce(row),
            Err(_) => Rule::UNKNOWN,
        }
    }
}

#[cfg(test)]
mod tests {
    use gimli::write::{
        Address, CallFrameInstruction, CommonInformationEntry, EhFrame as WriteEhFrame, EndianVec,
        Expression, FrameDescriptionEntry, FrameTable,
    };
    use gimli::{Encoding, Format, X86_64};

    use super::*;
    use crate::rule::{CfaBase, FpRule, Kind};

    const TEXT: u64 = 0x40_1000;
    const EH_FRAME: u64 = 0x40_8000;

    /// A function's start, length and CFI instructions at offsets into it.
    type Fde<'a> = (u64, u32, &'a [(u32, CallFrameInstruction)]);

    /// An `.eh_frame` with the CIE compilers emit for x86_64 (CFA = rsp+8,
    /// return address at CFA-8) and the given FDEs, each a function start,
    /// length and instructions at offsets into it.
    fn eh_frame(fdes: &[Fde<'_>]) -> Vec<u8> {
        let encoding = Encoding {
            format: Format::Dwarf32,
            version: 1,
            address_size: 8,
        };
        let mut cie = CommonInformationEntry::new(encoding, 1, -8, X86_64::RA);
        cie.add_instruction(CallFrameInstruction::Cfa(X86_64::RSP, 8));
        cie.add_instruction(CallFrameInstruction::Offset(X86_64::RA, -8));
        let mut table = FrameTable::default();
        let cie = table.add_cie(cie);
        for (start, len, instructions) in fdes {
            let mut fde = FrameDescriptionEntry::new(Address::Constant(*start), *len);
            for (at, i) in instructions.iter() {
                fde.add_instruction(*at, i.clone());
            }
            table.add_fde(cie, fde);
        }
        let mut out = WriteEhFrame(EndianVec::new(gimli::LittleEndian));
        table.write_eh_frame(&mut out).unwrap();
        out.0.into_vec()
    }

    fn cfi(data: &[u8]) -> Cfi<'_> {
        Cfi {
            eh_frame: Section {
                data,
                address: EH_FRAME,
            },
            eh_frame_hdr: None,
            text_address: Some(TEXT),
        }
    }

    /// A function as gcc -O0 compiles it: push rbp (1 byte), mov rbp, rsp
    /// (3 bytes), then CFA = rbp+16 with rbp saved at CFA-16.
    fn frame_pointer_function() -> Vec<(u32, CallFrameInstruction)> {
        vec![
            (1, CallFrameInstruction::CfaOffset(16)),
            (1, CallFrameInstruction::Offset(X86_64::RBP, -16)),
            (4, CallFrameInstruction::CfaRegister(X86_64::RBP)),
        ]
    }

    #[test]
    fn reduces_a_frame_pointer_prologue() {
        let data = eh_frame(&[(TEXT, 0x40, &frame_pointer_function())]);
        let cfi = cfi(&data);
        assert_eq!(
            cfi.rule_at(TEXT),
            Rule::cfa(CfaBase::Sp, 8, FpRule::Unchanged)
        );
        assert_eq!(
            cfi.rule_at(TEXT + 1),
            Rule::cfa(CfaBase::Sp, 16, FpRule::Saved(-16))
        );
        assert_eq!(
            cfi.rule_at(TEXT + 0x3f),
            Rule::cfa(CfaBase::Fp, 16, FpRule::Saved(-16))
        );
        // Outside every FDE.
        assert_eq!(cfi.rule_at(TEXT + 0x40), Rule::UNKNOWN);
        assert_eq!(cfi.rule_at(TEXT - 1), Rule::UNKNOWN);
    }

    #[test]
    fn an_undefined_return_address_is_the_end_of_the_stack() {
        let start: &[_] = &[(0, CallFrameInstruction::Undefined(X86_64::RA))];
        let data = eh_frame(&[(TEXT, 0x10, start)]);
        assert_eq!(cfi(&data).rule_at(TEXT + 4), Rule::END);
        assert_eq!(cfi(&data).rule_at(TEXT + 4).kind(), Kind::End);
    }

    #[test]
    fn rules_we_do_not_evaluate_are_unknown_or_clobber_rbp() {
        let ra_in_register: &[_] = &[(0, CallFrameInstruction::Register(X86_64::RA, X86_64::RBX))];
        let ra_elsewhere: &[_] = &[(0, CallFrameInstruction::Offset(X86_64::RA, -16))];
        let cfa_from_rbx: &[_] = &[(0, CallFrameInstruction::CfaRegister(X86_64::RBX))];
        let cfa_expression: &[_] = &[(0, CallFrameInstruction::CfaExpression(Expression::new()))];
        let rbp_in_register: &[_] =
            &[(0, CallFrameInstruction::Register(X86_64::RBP, X86_64::RBX))];
        let rbp_far: &[_] = &[(0, CallFrameInstruction::Offset(X86_64::RBP, -(1 << 20)))];
        let rbp_same: &[_] = &[
            (0, CallFrameInstruction::Offset(X86_64::RBP, -16)),
            (2, CallFrameInstruction::SameValue(X86_64::RBP)),
        ];
        let data = eh_frame(&[
            (TEXT, 0x10, ra_in_register),
            (TEXT + 0x10, 0x10, ra_elsewhere),
            (TEXT + 0x20, 0x10, cfa_from_rbx),
            (TEXT + 0x30, 0x10, cfa_expression),
            (TEXT + 0x40, 0x10, rbp_in_register),
            (TEXT + 0x50, 0x10, rbp_far),
            (TEXT + 0x60, 0x10, rbp_same),
        ]);
        let cfi = cfi(&data);
        assert_eq!(cfi.rule_at(TEXT + 1), Rule::UNKNOWN);
        assert_eq!(cfi.rule_at(TEXT + 0x11), Rule::UNKNOWN);
        assert_eq!(cfi.rule_at(TEXT + 0x21), Rule::UNKNOWN);
        assert_eq!(cfi.rule_at(TEXT + 0x31), Rule::UNKNOWN);
        assert_eq!(
            cfi.rule_at(TEXT + 0x41),
            Rule::cfa(CfaBase::Sp, 8, FpRule::Clobbered)
        );
        assert_eq!(
            cfi.rule_at(TEXT + 0x51),
            Rule::cfa(CfaBase::Sp, 8, FpRule::Clobbered)
        );
        assert_eq!(
            cfi.rule_at(TEXT + 0x61),
            Rule::cfa(CfaBase::Sp, 8, FpRule::Saved(-16))
        );
        assert_eq!(
            cfi.rule_at(TEXT + 0x63),
            Rule::cfa(CfaBase::Sp, 8, FpRule::Unchanged)
        );
    }

    /// The `.eh_frame_hdr` a linker would write for `eh_frame` at
    /// `hdr_address`: a pc-relative pointer to `.eh_frame`, then the FDEs
    /// sorted by start, each entry relative to the header.
    fn eh_frame_hdr(eh_frame: &[u8], hdr_address: u64) -> Vec<u8> {
        use gimli::{CieOrFde, EhFrame, UnwindSection};
        let bases = BaseAddresses::default().set_eh_frame(EH_FRAME);
        let section = EhFrame::new(eh_frame, LittleEndian);
        let mut entries = section.entries(&bases);
        let mut table = Vec::new();
        while let Some(entry) = entries.next().unwrap() {
            if let CieOrFde::Fde(partial) = entry {
                let fde = partial.parse(EhFrame::cie_from_offset).unwrap();
                table.push((fde.initial_address(), EH_FRAME + fde.offset() as u64));
            }
        }
        table.sort();
        let rel = |a: u64| (a.wrapping_sub(hdr_address) as i32).to_le_bytes();
        // version 1; pcrel|sdata4, udata4, datarel|sdata4.
        let mut out = vec![1u8, 0x1b, 0x03, 0x3b];
        out.extend(((EH_FRAME - (hdr_address + 4)) as i32).to_le_bytes());
        out.extend((table.len() as u32).to_le_bytes());
        for (start, fde) in table {
            out.extend(rel(start));
            out.extend(rel(fde));
        }
        out
    }

    #[test]
    fn the_header_table_finds_the_same_rules_as_a_scan() {
        let end: &[_] = &[(0, CallFrameInstruction::Undefined(X86_64::RA))];
        // Out of address order, as the header's table must not be.
        let data = eh_frame(&[
            (TEXT + 0x100, 0x40, &frame_pointer_function()),
            (TEXT, 0x10, end),
            (TEXT + 0x40, 0x40, &frame_pointer_function()),
        ]);
        let hdr_address = EH_FRAME - 0x100;
        let hdr = eh_frame_hdr(&data, hdr_address);
        let scan = cfi(&data);
        let indexed = Cfi {
            eh_frame_hdr: Some(Section {
                data: &hdr,
                address: hdr_address,
            }),
            ..scan
        };
        for at in [
            0, 4, 0x10, 0x40, 0x41, 0x7f, 0x80, 0x100, 0x104, 0x13f, 0x140,
        ] {
            assert_eq!(
                indexed.rule_at(TEXT + at),
                scan.rule_at(TEXT + at),
                "{at:#x}"
            );
        }
        assert_eq!(indexed.rule_at(TEXT + 4), Rule::END);
        assert_eq!(
            indexed.rule_at(TEXT + 0x104),
            Rule::cfa(CfaBase::Fp, 16, FpRule::Saved(-16))
        );
        assert_eq!(indexed.rule_at(TEXT + 0x140), Rule::UNKNOWN);
    }

    #[test]
    fn garbage_is_unknown() {
        let junk = [0xffu8; 64];
        assert_eq!(cfi(&junk).rule_at(TEXT), Rule::UNKNOWN);
        assert_eq!(cfi(&[]).rule_at(TEXT), Rule::UNKNOWN);
        let with_bad_hdr = Cfi {
            eh_frame_hdr: Some(Section {
                data: &junk,
                address: EH_FRAME - 0x100,
            }),
            ..cfi(&junk)
        };
        assert_eq!(with_bad_hdr.rule_at(TEXT), Rule::UNKNOWN);
    }
}
