//! Just enough of x86-64 decoding to move a function's first instructions:
//! each instruction's length, whether it transfers control and where, and
//! where its RIP-relative displacement is. General-purpose, x87 and the
//! legacy-encoded SSE instructions are known; VEX and EVEX encodings (and
//! the few one-byte opcodes that are invalid in 64-bit mode) are not, and
//! an entry holding one is left alone.
//!
//! Our own rather than a disassembler library's: the one we tried builds
//! its tables on the heap at first use, and this runs inside the traced
//! program, whose heap is what we report. Its lengths are checked against
//! that library over all of libc's code in the tests.

/// What an instruction does to the flow of control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// On to the next instruction (or a trap).
    Next,
    /// `jcc rel8`/`jcc rel32`, with the condition's code (0–15).
    Branch(u8),
    /// `jmp rel8`/`jmp rel32`.
    Jump,
    /// `call rel32`.
    Call,
    /// `ret`, or an indirect jump (`jmp r/m`): nothing after it runs.
    Leave,
    /// An indirect call (`call r/m`): returns to the next instruction.
    IndirectCall,
    /// `loop`, `jrcxz`, a far transfer: not movable.
    Other,
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Its length in bytes.
    pub len: usize,
    /// What it does to the flow of control.
    pub flow: Flow,
    /// For a relative branch, jump or call: its target's offset from the
    /// instruction's end.
    pub relative: Option<i64>,
    /// Where its RIP-relative 32-bit displacement is, from its start.
    pub rip_displacement: Option<usize>,
}

/// Decodes the instruction at the start of `code`; `None` if it is not
/// one we know (or `code` ends inside it).
pub fn decode(code: &[u8]) -> Option<Decoded> {
    let mut at = 0;
    let mut operand_16 = false;
    let mut address_32 = false;
    // Legacy prefixes, then at most one REX.
    loop {
        match *code.get(at)? {
            0x66 => operand_16 = true,
            0x67 => address_32 = true,
            0xf0 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => {}
            _ => break,
        }
        at += 1;
        if at > 14 {
            return None;
        }
    }
    let mut rex_w = false;
    if let 0x40..=0x4f = *code.get(at)? {
        rex_w = code[at] & 8 != 0;
        at += 1;
    }
    // REX.W wins over the 0x66 prefix.
    let imm_z = if operand_16 && !rex_w { 2 } else { 4 };
    let op = *code.get(at)?;
    at += 1;
    let mut flow = Flow::Next;
    let mut relative_size = 0;
    let (modrm, imm) = if op == 0x0f {
        let op2 = *code.get(at)?;
        at += 1;
        match op2 {
            // Three-byte maps.
            0x38 => {
                at += 1;
                (true, 0)
            }
            0x3a => {
                at += 1;
                (true, 1)
            }
            0x80..=0x8f => {
                if operand_16 {
                    return None;
                }
                flow = Flow::Branch(op2 & 0xf);
                relative_size = 4;
                (false, 0)
            }
            0x05
            | 0x06
            | 0x07
            | 0x08
            | 0x09
            | 0x0b
            | 0x0e
            | 0x30..=0x37
            | 0x77
            | 0xa0
            | 0xa1
            | 0xa2
            | 0xa8
            | 0xa9
            | 0xaa
            | 0xc8..=0xcf => (false, 0),
            0x04
            | 0x0a
            | 0x0c
            | 0x0f
            | 0x24..=0x27
            | 0x39
            | 0x3b..=0x3f
            // extrq/insertq carry two immediates.
            | 0x78
            | 0x7a
            | 0x7b
            | 0xa6
            | 0xa7 => return None,
            0x70..=0x73 | 0xa4 | 0xac | 0xba | 0xc2 | 0xc4..=0xc6 => (true, 1),
            _ => (true, 0),
        }
    } else {
        match op {
            // Invalid in 64-bit mode, VEX/EVEX, and segment prefixes after
            // a REX (which must come last).
            0x06
            | 0x07
            | 0x0e
            | 0x16
            | 0x17
            | 0x1e
            | 0x1f
            | 0x26
            | 0x27
            | 0x2e
            | 0x2f
            | 0x36
            | 0x37
            | 0x3e
            | 0x3f
            | 0x60..=0x62
            | 0x82
            | 0x9a
            | 0xc4
            | 0xc5
            | 0xce
            | 0xd4..=0xd6
            | 0xea => {
                return None;
            }
            0x00..=0x3f => match op & 7 {
                0..=3 => (true, 0),
                4 => (false, 1),
                _ => (false, imm_z),
            },
            0x50..=0x5f
            | 0x6c..=0x6f
            | 0x90..=0x99
            | 0x9b..=0x9f
            | 0xa4..=0xa7
            | 0xaa..=0xaf
            | 0xc9
            | 0xcc
            | 0xd7
            | 0xec..=0xef
            | 0xf1
            | 0xf4
            | 0xf5
            | 0xf8..=0xfd => (false, 0),
            0xc3 | 0xcb | 0xcf => {
                flow = Flow::Leave;
                (false, 0)
            }
            0xc2 | 0xca => {
                flow = Flow::Leave;
                (false, 2)
            }
            0x63 | 0x84..=0x8f | 0xd0..=0xd3 | 0xd8..=0xdf | 0xfe => (true, 0),
            0x68 => (false, imm_z),
            // xbegin (`c7 f8 rel32`) and xabort (`c6 f8 ib`).
            0xc6 | 0xc7 if code.get(at) == Some(&0xf8) => {
                flow = Flow::Other;
                (true, if op == 0xc6 { 1 } else { imm_z })
            }
            0x69 | 0x81 | 0xc7 => (true, imm_z),
            0x6a | 0xa8 | 0xb0..=0xb7 | 0xcd | 0xe4..=0xe7 => (false, 1),
            0x6b | 0x80 | 0x83 | 0xc0 | 0xc1 | 0xc6 => (true, 1),
            0x70..=0x7f => {
                flow = Flow::Branch(op & 0xf);
                relative_size = 1;
                (false, 0)
            }
            0xa0..=0xa3 => (false, if address_32 { 4 } else { 8 }),
            0xa9 => (false, imm_z),
            0xb8..=0xbf => (false, if rex_w { 8 } else { imm_z }),
            0xc8 => (false, 3),
            0xe0..=0xe3 => {
                flow = Flow::Other;
                relative_size = 1;
                (false, 0)
            }
            0xe8 | 0xe9 => {
                if operand_16 {
                    return None;
                }
                flow = if op == 0xe8 { Flow::Call } else { Flow::Jump };
                relative_size = 4;
                (false, 0)
            }
            0xeb => {
                flow = Flow::Jump;
                relative_size = 1;
                (false, 0)
            }
            // `test r/m, imm` (/0, /1) has an immediate; the rest of the
            // group none.
            0xf6 | 0xf7 => {
                let reg = (*code.get(at)? >> 3) & 7;
                let imm = if reg <= 1 {
                    if op == 0xf6 {
                        1
                    } else {
                        imm_z
                    }
                } else {
                    0
                };
                (true, imm)
            }
            0xff => {
                flow = match (*code.get(at)? >> 3) & 7 {
                    2 => Flow::IndirectCall,
                    4 => Flow::Leave,
                    3 | 5 | 7 => Flow::Other,
                    _ => Flow::Next,
                };
                (true, 0)
            }
            // Prefixes in the wrong place (a REX before a legacy prefix).
            _ => return None,
        }
    };
    let mut rip_displacement = None;
    if modrm {
        let m = *code.get(at)?;
        at += 1;
        let (mode, rm) = (m >> 6, m & 7);
        if mode != 3 {
            let mut displacement = match mode {
                1 => 1,
                2 => 4,
                _ => 0,
            };
            if rm == 4 {
                let sib = *code.get(at)?;
                at += 1;
                if mode == 0 && sib & 7 == 5 {
                    displacement = 4;
                }
            } else if mode == 0 && rm == 5 {
                rip_displacement = Some(at);
                displacement = 4;
            }
            at += displacement;
        }
    }
    let relative = if relative_size > 0 {
        let bytes = code.get(at..at + relative_size)?;
        at += relative_size;
        Some(match relative_size {
            1 => bytes[0] as i8 as i64,
            _ => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i64,
        })
    } else {
        None
    };
    at += imm;
    if at > code.len() || at > 15 {
        return None;
    }
    Some(Decoded {
        len: at,
        flow,
        relative,
        rip_displacement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, FlowControl};
    use object::{Object, ObjectSymbol};

    /// Every instruction of every function in libc: where ours knows it,
    /// the length, the branch target and the RIP-relative displacement's
    /// place agree with iced's; ours knows nearly all of them.
    #[test]
    fn agrees_with_a_full_decoder_over_libc() {
        let data = std::fs::read("/usr/lib/x86_64-linux-gnu/libc.so.6").expect("libc");
        let file = object::File::parse(&*data).expect("an ELF file");
        let (mut known, mut total) = (0usize, 0usize);
        for symbol in file.dynamic_symbols() {
            if symbol.kind() != object::SymbolKind::Text || symbol.size() == 0 {
                continue;
            }
            let Some(code) = file.sections().find_map(|s| {
                use object::ObjectSection;
                let (start, len) = (s.address(), s.size());
                (start <= symbol.address() && symbol.address() + symbol.size() <= start + len)
                    .then(|| {
                        let bytes = s.data().ok()?;
                        let from = (symbol.address() - start) as usize;
                        Some(bytes[from..from + symbol.size() as usize].to_vec())
                    })
                    .flatten()
            }) else {
                continue;
            };
            let ip = symbol.address();
            let mut decoder = Decoder::with_ip(64, &code, ip, DecoderOptions::NONE);
            let mut instruction = iced_x86::Instruction::default();
            while decoder.can_decode() {
                let at = decoder.position();
                decoder.decode_out(&mut instruction);
                if instruction.is_invalid() {
                    break;
                }
                total += 1;
                let Some(ours) = decode(&code[at..]) else {
                    continue;
                };
                known += 1;
                let here = format!(
                    "{} +{at}: {:02x?}",
                    symbol.name().unwrap_or("?"),
                    &code[at..at + instruction.len()]
                );
                assert_eq!(ours.len, instruction.len(), "{here}");
                let end = instruction.next_ip() as i64;
                if let Some(rel) = ours.relative {
                    assert_eq!(
                        (end + rel) as u64,
                        instruction.near_branch_target(),
                        "{here}"
                    );
                }
                if instruction.is_ip_rel_memory_operand() {
                    let offsets = decoder.get_constant_offsets(&instruction);
                    assert_eq!(
                        ours.rip_displacement,
                        Some(offsets.displacement_offset()),
                        "{here}"
                    );
                } else {
                    assert_eq!(ours.rip_displacement, None, "{here}");
                }
                let expected = match instruction.flow_control() {
                    FlowControl::ConditionalBranch if ours.relative.is_some() => {
                        matches!(ours.flow, Flow::Branch(_) | Flow::Other)
                    }
                    FlowControl::UnconditionalBranch => ours.flow == Flow::Jump,
                    // syscall, sysenter: a "call" without a target, which
                    // runs as well from elsewhere.
                    FlowControl::Call if instruction.near_branch_target() == 0 => {
                        ours.flow == Flow::Next
                    }
                    FlowControl::Call => ours.flow == Flow::Call,
                    FlowControl::Return | FlowControl::IndirectBranch => ours.flow == Flow::Leave,
                    FlowControl::IndirectCall => ours.flow == Flow::IndirectCall,
                    FlowControl::Next | FlowControl::Interrupt | FlowControl::Exception => {
                        ours.flow == Flow::Next
                    }
                    _ => ours.flow == Flow::Other,
                };
                assert!(
                    expected,
                    "{here}: {:?} vs {:?}",
                    ours.flow,
                    instruction.flow_control()
                );
            }
        }
        assert!(total > 100_000, "{total} instructions");
        assert!(
            known as f64 > 0.97 * total as f64,
            "ours knows {known} of {total}"
        );
    }

    #[test]
    fn rex_w_overrides_the_operand_size_prefix() {
        // add rax, imm32 with a 0x66 prefix that REX.W overrides.
        let code = [0x66, 0x48, 0x81, 0xc0, 1, 0, 0, 0];
        assert_eq!(decode(&code).map(|d| d.len), Some(8));
        // add ax, imm16.
        assert_eq!(decode(&[0x66, 0x81, 0xc0, 1, 0]).map(|d| d.len), Some(5));
        // A segment prefix after a REX is not an opcode.
        assert_eq!(decode(&[0x48, 0x2e, 0x8b, 0x00]), None);
    }

    #[test]
    fn an_instruction_cut_short_is_not_decoded() {
        // mov rdx, imm32 without its last byte.
        assert_eq!(decode(&[0x48, 0xc7, 0xc2, 0xb8, 0xf5, 0xff]), None);
        assert_eq!(
            decode(&[0x48, 0xc7, 0xc2, 0xb8, 0xf5, 0xff, 0xff]).map(|d| d.len),
            Some(7)
        );
    }
}
