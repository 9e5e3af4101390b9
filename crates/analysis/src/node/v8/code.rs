//! What TurboFan inlined, read from an optimized code object in the
//! snapshot: the whole chain of calls at each position, which V8's
//! jitdump cuts to the innermost one.
//!
//! V8 11.3 keeps a code object's instructions in an `InstructionStream`
//! (its map, then the tagged `Code` it belongs to, then the instructions)
//! and the rest in the `Code`: its source position table (a ByteArray of
//! `(code offset, SourcePosition)` deltas) and, for optimized code, its
//! DeoptimizationData (a FixedArray). A SourcePosition holds a script
//! offset and an inlining id; the id indexes the deoptimization data's
//! InliningPositions, each the position of the inlined call in its caller
//! (with the caller's own inlining id) and the index of the inlined
//! function's SharedFunctionInfo in the literal array. Following the ids
//! from a position to "not inlined" gives the stack innermost first; the
//! last frame is the code's own function.

use std::cell::RefCell;
use std::collections::HashMap;

use super::JsHeap;

/// One call in an inlining stack: the function it is in, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlinedCall {
    /// The function's name (empty when anonymous).
    pub function: String,
    /// Its script's name, when V8 keeps one.
    pub script: Option<String>,
    /// 1-based line of the position in the script, as V8's jitdump and
    /// stack traces count them.
    pub line: u32,
    /// 1-based column, likewise.
    pub column: u32,
}

/// The inlining stacks of one optimized code object: per code offset (a
/// source position table entry, ascending), the calls innermost first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeInlining {
    /// (code offset, stack), by offset.
    pub positions: Vec<(u64, Vec<InlinedCall>)>,
}

/// Sparkplug's (baseline) code: which bytecode each stretch of its
/// machine code runs, so that a return address in it has its function's
/// bytecode offset, and through the bytecode's source positions its line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaselineCode {
    /// (end offset of its machine code, bytecode offset), in order; the
    /// prologue first, at bytecode offset -1. A return address at offset
    /// `r` is in the first whose end is at or after `r` (V8's
    /// `BytecodeOffsetIterator::AdvanceToPCOffset`).
    pub bytecodes: Vec<(u64, i64)>,
    /// The code offsets of each source position table its BytecodeArray
    /// may hold (the tables among its fields that decode as one; no
    /// `v8dbg_` symbol says which field it is): what tells that the
    /// jitdump's positions are this bytecode's.
    pub position_offsets: Vec<Vec<u64>>,
}

/// An interpreted function's bytecode, for its frames: the tracer notes
/// an interpreted frame's bytecode-offset slot, which holds the offset
/// of the bytecode that made the call, plus [`InterpretedCode::slot_base`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterpretedCode {
    /// Its function's name (empty when anonymous).
    pub function: String,
    /// Its script's name, when V8 keeps one.
    pub script: Option<String>,
    /// What the frame's slot adds to the bytecode offset: the offset of
    /// the first bytecode from the BytecodeArray's tagged pointer.
    pub slot_base: u64,
    /// (1-based line, 1-based column) of the function's entry (the
    /// table's position at bytecode offset -1): where the jitdump says
    /// the function starts, when this is its bytecode.
    pub start: (u32, u32),
    /// Where each of its bytecodes starts, in order.
    pub bytecodes: Vec<u32>,
    /// (bytecode offset, 1-based line, 1-based column) of each source
    /// position, by offset.
    pub positions: Vec<(u64, u32, u32)>,
}

impl InterpretedCode {
    /// The line and column of the call a frame whose slot holds `slot`
    /// is making: the last position at or before its bytecode. `None`
    /// unless the slot names one of the function's bytecodes (a slot read
    /// from another kind of frame, or bytecode V8 has since replaced).
    pub fn call_at(&self, slot: u64) -> Option<(u32, u32)> {
        let offset = slot.checked_sub(self.slot_base)?;
        let bytecode = u32::try_from(offset).ok()?;
        self.bytecodes.binary_search(&bytecode).ok()?;
        let i = self.positions.partition_point(|&(o, _, _)| o <= offset);
        let &(_, line, column) = self.positions.get(i.checked_sub(1)?)?;
        Some((line, column))
    }
}

impl BaselineCode {
    /// The bytecode offset a return address `ret_offset` (from the
    /// code's first instruction) is at; -1 in the prologue.
    pub fn bytecode_at(&self, ret_offset: u64) -> Option<i64> {
        let i = self.bytecodes.partition_point(|&(end, _)| end < ret_offset);
        self.bytecodes.get(i).map(|&(_, b)| b)
    }

    /// Whether `offset` is where a bytecode starts.
    pub fn starts_bytecode(&self, offset: u64) -> bool {
        // Bytecode offsets ascend with the machine code.
        let offset = offset as i64;
        let i = self.bytecodes.partition_point(|&(_, b)| b < offset);
        self.bytecodes.get(i).is_some_and(|&(_, b)| b == offset)
    }
}

/// The bytecodes V8 numbers first: the operand-scaling prefixes (`Wide`,
/// `ExtraWide`, and their debug-break forms), each followed by the
/// bytecode it widens.
const WIDE: [u8; 2] = [0, 2];
const EXTRA_WIDE: [u8; 2] = [1, 3];

/// The offsets of the bytecodes in `code`, walked with V8's table of
/// bytecode sizes (three rows, for operand scales 1, 2 and 4).
fn bytecode_offsets(code: &[u8], sizes: &[u8]) -> Option<Vec<u64>> {
    let count = sizes.len() / 3;
    // The prefixes have no operands of their own.
    if count < 4
        || WIDE
            .iter()
            .chain(&EXTRA_WIDE)
            .any(|&b| sizes[b as usize] != 1)
    {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < code.len() {
        let b = code[at];
        let (prefix, scale, bytecode) = if WIDE.contains(&b) {
            (1, 1, *code.get(at + 1)?)
        } else if EXTRA_WIDE.contains(&b) {
            (1, 2, *code.get(at + 1)?)
        } else {
            (0, 0, b)
        };
        let size = *sizes
            .get(scale * count + bytecode as usize)
            .filter(|_| (bytecode as usize) < count)?;
        if size == 0 {
            return None;
        }
        out.push(at as u64);
        at += prefix + size as usize;
    }
    (at == code.len()).then_some(out)
}

/// V8's unsigned variable-length integer: 7 bits a byte, least
/// significant first, the top bit saying more follow.
fn read_unsigned_vlq(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*at)?;
        *at += 1;
        if shift >= 64 {
            return None;
        }
        value |= ((b & 0x7f) as u64) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
}

/// The machine code's end offset per bytecode, from Sparkplug's offset
/// table (the prologue's end, then one pc delta per bytecode): `None`
/// unless it has exactly one entry per bytecode.
fn baseline_ranges(table: &[u8], offsets: &[u64]) -> Option<Vec<(u64, i64)>> {
    let mut at = 0;
    let mut end = read_unsigned_vlq(table, &mut at)?;
    let mut out = vec![(end, -1)];
    for &b in offsets {
        end = end.checked_add(read_unsigned_vlq(table, &mut at)?)?;
        out.push((end, b as i64));
    }
    (at == table.len()).then_some(out)
}

/// An InstructionStream's Code field: right after its map (V8 11.3's
/// layout, which `stream_header` = 16 confirms: the two words before the
/// instructions).
const STREAM_CODE: u64 = 8;
/// An InterpreterData's BytecodeArray: its first field, after the map.
const INTERPRETER_DATA_BYTECODE: u64 = 8;
/// An InterpreterData's copy of the interpreter's entry trampoline (a
/// `Code`): its second field.
const INTERPRETER_DATA_TRAMPOLINE: u64 = 16;
/// How many of a Code's first words may hold the pointer back to its
/// InstructionStream (no `v8dbg_` symbol gives its offset; it is the
/// fifth in V8 11.3, after the map and three tables).
const CODE_BACK_POINTER_WORDS: u64 = 8;
/// The longest string V8 makes (`String::kMaxLength`), which bounds a
/// script's source and its line count.
const MAX_SOURCE_UNITS: usize = (1 << 29) - 24;

/// Bounds on what one code object may claim, against garbage.
const MAX_TABLE_BYTES: usize = 1 << 20;
const MAX_INLINING_DEPTH: usize = 64;
const NOT_INLINED: i64 = -1;
/// One InliningPosition: an 8-byte SourcePosition, a 4-byte function
/// index, padding.
const INLINING_POSITION_SIZE: u64 = 16;

/// A decoded SourcePosition (V8's bit layout: bit 0 external, bits 1..31
/// script offset + 1, bits 31..47 inlining id + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SourcePosition {
    external: bool,
    script_offset: i64,
    inlining_id: i64,
}

impl SourcePosition {
    fn from_raw(raw: i64) -> SourcePosition {
        let raw = raw as u64;
        SourcePosition {
            external: raw & 1 == 1,
            script_offset: ((raw >> 1) & ((1 << 30) - 1)) as i64 - 1,
            inlining_id: ((raw >> 31) & 0xffff) as i64 - 1,
        }
    }
}

/// V8's variable-length zig-zag integer: an unsigned one whose lowest
/// bit is the sign.
fn read_vlq(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let value = read_unsigned_vlq(bytes, at)?;
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// The entries of a source position table: (code offset, raw position).
/// The code offset's sign carries "is statement", which we do not need.
/// Deltas start from V8's `kFunctionEntryBytecodeOffset`, -1, which is
/// where a BytecodeArray's table puts its function's entry (decoded from
/// 0, every offset came out one too high).
fn position_table(bytes: &[u8]) -> Option<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    let (mut offset, mut position) = (FUNCTION_ENTRY, 0i64);
    let mut at = 0;
    while at < bytes.len() {
        let delta = read_vlq(bytes, &mut at)?;
        let delta = if delta >= 0 { delta } else { -(delta + 1) };
        offset = offset.checked_add(delta)?;
        position = position.checked_add(read_vlq(bytes, &mut at)?)?;
        if position < 0 {
            return None;
        }
        out.push((offset, position));
    }
    Some(out)
}

/// V8's `kFunctionEntryBytecodeOffset`: the offset a source position
/// table's deltas start from, and its function's entry's.
const FUNCTION_ENTRY: i64 = -1;

/// A table's entries at code offsets, without the function's entry.
fn code_entries(table: Vec<(i64, i64)>) -> Vec<(u64, i64)> {
    table
        .into_iter()
        .filter_map(|(o, raw)| Some((u64::try_from(o).ok()?, raw)))
        .collect()
}

/// Where lines end in UTF-16 source, as V8 counts them: at `\n`, U+2028
/// and U+2029, and at a `\r` not followed by `\n` (a `\r\n` ends at
/// its `\n`).
fn line_terminators(units: &[u16]) -> Vec<i64> {
    const LF: u16 = 0x0a;
    const CR: u16 = 0x0d;
    units
        .iter()
        .enumerate()
        .filter(|&(i, &u)| match u {
            LF | 0x2028 | 0x2029 => true,
            CR => units.get(i + 1) != Some(&LF),
            _ => false,
        })
        .map(|(i, _)| i as i64)
        .collect()
}

/// 0-based line and column of a script offset, from the offsets of the
/// script's line ends (as V8's `Script::GetPositionInfo`).
fn line_and_column(line_ends: &[i64], offset: i64) -> (u32, u32) {
    let line = line_ends.partition_point(|&end| end < offset);
    let start = match line {
        0 => 0,
        n => line_ends[n - 1] + 1,
    };
    (
        u32::try_from(line).unwrap_or(u32::MAX - 1),
        u32::try_from((offset - start).max(0)).unwrap_or(u32::MAX - 1),
    )
}

impl JsHeap<'_> {
    /// The inlining stacks of the optimized code whose first instruction
    /// is at `instruction_start`, if the snapshot holds such code there
    /// and the binary's metadata describes it. `None` for unoptimized
    /// code (no deoptimization data), or anything that does not check
    /// out as V8's objects.
    pub fn inlining(&self, instruction_start: u64, lines: &LineEnds) -> Option<CodeInlining> {
        let l = &self.layout;
        let c = l.code.as_ref()?;
        let code = self.code_of(instruction_start)?;
        let deopt = self.read_word(code - 1 + c.code_deoptimization_data)?;
        let element = |array: u64, i: u64| -> Option<u64> {
            // A heap object's tagged pointer (not a Smi, not a weak one).
            if array & 3 != 1 {
                return None;
            }
            let n = self.smi_at(array - 1 + l.fixed_array_length)?;
            (i < n.max(0) as u64).then_some(())?;
            self.read_word(array - 1 + l.fixed_array_data + 8 * i)
        };
        if self.type_of(deopt) != Some(l.types.fixed_array) {
            return None;
        }
        let own = element(deopt, c.deopt_shared)?;
        let literals = element(deopt, c.deopt_literals)?;
        let inlining_positions = element(deopt, c.deopt_inlining_positions)?;
        let table = self.read_word(code - 1 + c.code_source_positions)?;
        let table = self.byte_array(table)?;
        let positions = self.byte_array(inlining_positions)?;
        let entries = code_entries(position_table(&table)?);
        // A function of the literal array, which holds weak references.
        let inlined_function = |id: i64| -> Option<u64> {
            let at = (id as u64).checked_mul(INLINING_POSITION_SIZE)? as usize;
            let raw = positions.get(at..at + 12)?;
            let index = i32::from_le_bytes(raw[8..12].try_into().ok()?);
            // -1: the function inlined into itself (recursion).
            if index == -1 {
                return Some(own);
            }
            let shared = element(literals, u64::try_from(index).ok()?)?;
            Some(shared & !2)
        };
        let caller_position = |id: i64| -> Option<SourcePosition> {
            let at = (id as u64).checked_mul(INLINING_POSITION_SIZE)? as usize;
            let raw = positions.get(at..at + 8)?;
            Some(SourcePosition::from_raw(i64::from_le_bytes(
                raw.try_into().ok()?,
            )))
        };
        let mut out = CodeInlining::default();
        for (offset, raw) in entries {
            let mut position = SourcePosition::from_raw(raw);
            let mut stack = Vec::new();
            while !position.external && stack.len() < MAX_INLINING_DEPTH {
                let shared = if position.inlining_id == NOT_INLINED {
                    own
                } else {
                    inlined_function(position.inlining_id)?
                };
                stack.push(self.call_at(shared, position.script_offset, lines)?);
                if position.inlining_id == NOT_INLINED {
                    break;
                }
                position = caller_position(position.inlining_id)?;
            }
            if !stack.is_empty() {
                out.positions.push((offset, stack));
            }
        }
        Some(out)
    }

    /// Sparkplug's code whose first instruction is at `instruction_start`,
    /// if the snapshot holds such code there: its machine code per
    /// bytecode ([`BaselineCode`]), which must cover its BytecodeArray
    /// exactly.
    pub fn baseline_code(&self, instruction_start: u64) -> Option<BaselineCode> {
        let c = self.layout.code.as_ref()?;
        let code = self.code_of(instruction_start)?;
        let mut bytecode = self.read_word(code - 1 + c.code_bytecode_or_interpreter_data)?;
        if self.type_of(bytecode) == Some(c.interpreter_data_type) {
            bytecode = self.read_word(bytecode - 1 + INTERPRETER_DATA_BYTECODE)?;
        }
        let offsets = self.bytecode_starts(bytecode)?;
        let table = self.byte_array(self.read_word(code - 1 + c.code_bytecode_offsets)?)?;
        // The fields between the array's length and its bytecodes.
        let position_offsets = (2..c.bytecode_array_data / 8)
            .filter_map(|i| self.read_word(bytecode - 1 + 8 * i))
            .filter_map(|field| position_table(&self.byte_array(field)?))
            .map(code_entries)
            .filter(|t| !t.is_empty())
            .map(|t| t.into_iter().map(|(o, _)| o).collect())
            .collect();
        Some(BaselineCode {
            bytecodes: baseline_ranges(&table, &offsets)?,
            position_offsets,
        })
    }

    /// Every interpreted function the snapshot holds the bytecode of, by
    /// the first instruction of its own copy of the interpreter's entry
    /// trampoline (what `--interpreted-frames-native-stack` gives each,
    /// and the jitdump names `JS:~`): from each SharedFunctionInfo whose
    /// function data is an InterpreterData (or Sparkplug's code holding
    /// one), its BytecodeArray's source positions. Needs the heap's
    /// objects ([`JsHeap::open`]).
    pub fn interpreted_code(&self, lines: &LineEnds) -> HashMap<u64, InterpretedCode> {
        let mut out = HashMap::new();
        let l = &self.layout;
        let Some(c) = l.code.as_ref() else {
            return out;
        };
        let Some(function_data) = c.shared_function_data else {
            return out;
        };
        for o in self.objects() {
            let shared = o.addr + 1;
            if self.map_info(o.map).map(|m| m.instance_type) != Some(l.types.shared_function_info) {
                continue;
            }
            let Some(mut data) = self.read_word(shared - 1 + function_data) else {
                continue;
            };
            if self.type_of(data) == Some(c.code_type) {
                match self.read_word(data - 1 + c.code_bytecode_or_interpreter_data) {
                    Some(d) => data = d,
                    None => continue,
                }
            }
            if self.type_of(data) != Some(c.interpreter_data_type) {
                continue;
            }
            let (Some(bytecode), Some(trampoline)) = (
                self.read_word(data - 1 + INTERPRETER_DATA_BYTECODE),
                self.read_word(data - 1 + INTERPRETER_DATA_TRAMPOLINE),
            ) else {
                continue;
            };
            let Some(start) = self.instruction_start_of(trampoline) else {
                continue;
            };
            if let Some(code) = self.interpreted(shared, bytecode, lines) {
                out.insert(start, code);
            }
        }
        out
    }

    /// The offset of every bytecode in the BytecodeArray `bytecode`
    /// (tagged), walked with V8's bytecode sizes; `None` if it is not one
    /// or its bytecodes do not end at its length.
    fn bytecode_starts(&self, bytecode: u64) -> Option<Vec<u64>> {
        let l = &self.layout;
        let c = l.code.as_ref()?;
        if self.type_of(bytecode) != Some(c.bytecode_array_type) {
            return None;
        }
        let sizes = c.bytecode_sizes.as_deref()?;
        let n = self.smi_at(bytecode - 1 + l.fixed_array_length)?;
        let n = usize::try_from(n).ok().filter(|&n| n <= MAX_TABLE_BYTES)?;
        let mut code_bytes = vec![0u8; n];
        self.mem
            .read(bytecode - 1 + c.bytecode_array_data, &mut code_bytes)
            .ok()?;
        bytecode_offsets(&code_bytes, sizes)
    }

    /// The bytecode of `shared` (tagged), from its BytecodeArray
    /// `bytecode`.
    fn interpreted(&self, shared: u64, bytecode: u64, lines: &LineEnds) -> Option<InterpretedCode> {
        let c = self.layout.code.as_ref()?;
        let starts = self.bytecode_starts(bytecode)?;
        let script = self.shared_script(shared)?;
        let ends = lines.of(self, script)?;
        // The source position table among the fields between the array's
        // length and its bytecodes (no `v8dbg_` symbol says which): the
        // one that starts at the function's entry and has every other
        // entry at one of the bytecodes, within the script.
        let source_length = ends.last().copied().unwrap_or(0);
        let plausible = |t: &Vec<(i64, i64)>| {
            t.first().is_some_and(|&(o, _)| o == FUNCTION_ENTRY)
                && t.iter().all(|&(o, raw)| {
                    let p = SourcePosition::from_raw(raw);
                    (o == FUNCTION_ENTRY
                        || u64::try_from(o).is_ok_and(|o| starts.binary_search(&o).is_ok()))
                        && !p.external
                        && p.inlining_id == NOT_INLINED
                        && (0..=source_length).contains(&p.script_offset)
                })
        };
        let table = (2..c.bytecode_array_data / 8)
            .filter_map(|i| self.read_word(bytecode - 1 + 8 * i))
            .filter_map(|field| position_table(&self.byte_array(field)?))
            .find(plausible)?;
        let at = |raw: i64| {
            let (line, column) =
                line_and_column(&ends, SourcePosition::from_raw(raw).script_offset);
            (line + 1, column + 1)
        };
        let start = at(table[0].1);
        let positions = code_entries(table)
            .into_iter()
            .map(|(offset, raw)| {
                let (line, column) = at(raw);
                (offset, line, column)
            })
            .collect();
        Some(InterpretedCode {
            function: self.shared_name(shared),
            script: self.script_name(script),
            slot_base: c.bytecode_array_data - 1,
            start,
            bytecodes: starts
                .iter()
                .filter_map(|&o| u32::try_from(o).ok())
                .collect(),
            positions,
        })
    }

    /// The first instruction of the `Code` (tagged) `code`: its
    /// InstructionStream's, which must point back at it.
    fn instruction_start_of(&self, code: u64) -> Option<u64> {
        let c = self.layout.code.as_ref()?;
        if self.type_of(code) != Some(c.code_type) || c.stream_header != 16 {
            return None;
        }
        (1..CODE_BACK_POINTER_WORDS)
            .filter_map(|i| self.read_word(code - 1 + 8 * i))
            .find(|&stream| {
                self.type_of(stream) == Some(c.stream_type)
                    && self.read_word(stream - 1 + STREAM_CODE) == Some(code)
            })
            .map(|stream| stream - 1 + c.stream_header)
    }

    /// The tagged `Code` of the InstructionStream whose first instruction
    /// is at `instruction_start`, when both check out and point at each
    /// other.
    fn code_of(&self, instruction_start: u64) -> Option<u64> {
        let c = self.layout.code.as_ref()?;
        // The stream's header is its map and its Code.
        if c.stream_header != 16 {
            return None;
        }
        let stream = instruction_start.checked_sub(c.stream_header)? + 1;
        if self.type_of(stream) != Some(c.stream_type) {
            return None;
        }
        let code = self.read_word(stream - 1 + STREAM_CODE)?;
        if self.type_of(code) != Some(c.code_type) {
            return None;
        }
        // The Code must point back at this stream (a stale one may not).
        (1..CODE_BACK_POINTER_WORDS)
            .any(|i| self.read_word(code - 1 + 8 * i) == Some(stream))
            .then_some(code)
    }

    /// The bytes of the ByteArray `tagged`.
    fn byte_array(&self, tagged: u64) -> Option<Vec<u8>> {
        let l = &self.layout;
        if self.type_of(tagged) != Some(l.types.byte_array) {
            return None;
        }
        let n = self.smi_at(tagged - 1 + l.fixed_array_length)?;
        let n = usize::try_from(n).ok().filter(|&n| n <= MAX_TABLE_BYTES)?;
        let mut bytes = vec![0u8; n];
        self.mem
            .read(tagged - 1 + l.fixed_array_data, &mut bytes)
            .ok()?;
        Some(bytes)
    }

    /// The call at `offset` of the script of the SharedFunctionInfo
    /// `shared`.
    fn call_at(&self, shared: u64, offset: i64, lines: &LineEnds) -> Option<InlinedCall> {
        let function = self.shared_name(shared);
        let script = self.shared_script(shared);
        let (line, column) = match script.and_then(|s| lines.of(self, s)) {
            Some(ends) if offset >= 0 => line_and_column(&ends, offset),
            _ => return None,
        };
        Some(InlinedCall {
            function,
            script: script.and_then(|s| self.script_name(s)),
            line: line + 1,
            column: column + 1,
        })
    }

    /// The offsets of a Script's line ends: V8's own, when it computed
    /// them (a FixedArray of Smis), else counted in its source.
    fn line_ends(&self, script: u64) -> Option<Vec<i64>> {
        let l = &self.layout;
        let c = l.code.as_ref()?;
        let ends = self.read_word(script - 1 + c.script_line_ends)?;
        if self.type_of(ends) == Some(l.types.fixed_array) {
            let n = self.smi_at(ends - 1 + l.fixed_array_length)?;
            let n = usize::try_from(n).ok().filter(|&n| n <= MAX_SOURCE_UNITS)?;
            let mut words = vec![0u8; 8 * n];
            self.mem
                .read(ends - 1 + l.fixed_array_data, &mut words)
                .ok()?;
            // Smis: the value in the upper half, the tag bit clear.
            return words
                .chunks_exact(8)
                .map(|w| {
                    let w = u64::from_le_bytes(w.try_into().ok()?);
                    (w & 1 == 0).then_some((w as i64) >> 32)
                })
                .collect();
        }
        let source = self.read_word(script - 1 + c.script_source)?;
        if !l.is_string(self.type_of(source)?) {
            return None;
        }
        let length = self.u32_at(source - 1 + l.string_length)? as usize;
        if length > MAX_SOURCE_UNITS {
            return None;
        }
        let mut units = Vec::new();
        self.string_units(source, 0, length, &mut units, 0)?;
        if units.len() < length {
            return None;
        }
        let mut ends = line_terminators(&units);
        // V8 ends the last line at the source's end.
        ends.push(length as i64);
        Some(ends)
    }
}

/// Line ends per Script, read once for all the code objects read from
/// one snapshot (many share a script).
#[derive(Default)]
pub struct LineEnds(RefCell<HashMap<u64, Option<std::rc::Rc<Vec<i64>>>>>);

impl LineEnds {
    fn of(&self, heap: &JsHeap<'_>, script: u64) -> Option<std::rc::Rc<Vec<i64>>> {
        if let Some(known) = self.0.borrow().get(&script) {
            return known.clone();
        }
        let ends = heap.line_ends(script).map(std::rc::Rc::new);
        self.0.borrow_mut().insert(script, ends.clone());
        ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vlq(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let more = v > 0x7f;
            out.push((v & 0x7f) as u8 | if more { 0x80 } else { 0 });
            v >>= 7;
            if !more {
                break;
            }
        }
    }

    fn raw(script_offset: i64, inlining_id: i64) -> i64 {
        ((inlining_id + 1) << 31) | ((script_offset + 1) << 1)
    }

    #[test]
    fn a_position_table_decodes_to_ascending_offsets_with_their_positions() {
        // (offset, statement?, raw position) as V8 encodes them: deltas,
        // a non-statement's code offset delta as -(delta + 1).
        let entries = [
            (0u64, true, raw(10, -1)),
            (7, false, raw(212, 0)),
            (300, true, raw(5, 1)),
        ];
        let mut bytes = Vec::new();
        let (mut o, mut p) = (FUNCTION_ENTRY, 0i64);
        for &(offset, statement, position) in &entries {
            let d = offset as i64 - o;
            vlq(&mut bytes, if statement { d } else { -d - 1 });
            vlq(&mut bytes, position - p);
            (o, p) = (offset as i64, position);
        }
        let table = position_table(&bytes).expect("decodes");
        assert_eq!(
            table,
            entries
                .iter()
                .map(|&(o, _, p)| (o as i64, p))
                .collect::<Vec<_>>()
        );
        let second = SourcePosition::from_raw(table[1].1);
        assert_eq!(
            second,
            SourcePosition {
                external: false,
                script_offset: 212,
                inlining_id: 0
            }
        );
        assert_eq!(
            SourcePosition::from_raw(table[0].1).inlining_id,
            NOT_INLINED
        );
        // A table cut inside an integer is refused, not half-read.
        assert_eq!(position_table(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn bytecodes_are_walked_with_their_sizes_and_prefixes() {
        // Five bytecodes: the four prefixes (size 1), then 4 of 2 bytes
        // (4 at scale 2, 6 at scale 4).
        let count = 5;
        let mut sizes = vec![1u8; 3 * count];
        sizes[4] = 2;
        sizes[count + 4] = 4;
        sizes[2 * count + 4] = 6;
        // 4 (2 bytes), Wide 4 (1 + 4), ExtraWide 4 (1 + 6), 4 (2).
        let code = [4, 9, 0, 4, 9, 9, 9, 1, 4, 9, 9, 9, 9, 9, 4, 9];
        assert_eq!(bytecode_offsets(&code, &sizes), Some(vec![0, 2, 7, 14]));
        // A bytecode cut at the end, or a number past the table: refused.
        assert_eq!(bytecode_offsets(&code[..15], &sizes), None);
        assert_eq!(bytecode_offsets(&[7], &sizes), None);
        // Sparkplug's table: the prologue's end, then a delta a bytecode.
        let table = [10, 4, 0x81, 0x01, 3, 5];
        let ranges = baseline_ranges(&table, &[0, 2, 7, 14]).expect("fits");
        assert_eq!(ranges, [(10, -1), (14, 0), (143, 2), (146, 7), (151, 14)]);
        let code = BaselineCode {
            bytecodes: ranges,
            position_offsets: Vec::new(),
        };
        assert_eq!(code.bytecode_at(10), Some(-1));
        assert_eq!(code.bytecode_at(11), Some(0));
        assert_eq!(code.bytecode_at(144), Some(7));
        assert_eq!(code.bytecode_at(152), None);
        // One delta too many or too few: not this bytecode's table.
        assert_eq!(baseline_ranges(&table, &[0, 2, 7]), None);
        assert_eq!(baseline_ranges(&table[..5], &[0, 2, 7, 14]), None);
    }

    #[test]
    fn lines_end_where_v8_ends_them() {
        let units: Vec<u16> = "a\nb\r\nc\rd\u{2028}e".encode_utf16().collect();
        assert_eq!(line_terminators(&units), [1, 4, 6, 8]);
    }

    #[test]
    fn offsets_are_lines_and_columns_as_v8_counts_them() {
        // "ab\ncd\n\nef": line ends at 2, 5, 6 and the end, 9.
        let ends = [2, 5, 6, 9];
        assert_eq!(line_and_column(&ends, 0), (0, 0));
        assert_eq!(line_and_column(&ends, 2), (0, 2));
        assert_eq!(line_and_column(&ends, 3), (1, 0));
        assert_eq!(line_and_column(&ends, 8), (3, 1));
    }
}
