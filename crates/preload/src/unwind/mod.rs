//! Stack capture on the hook path.
//!
//! A hybrid unwinder for x86_64: DWARF CFI from each module's in-memory
//! `.eh_frame` where the code has it (Debian's glibc and libstdc++ are
//! built without frame pointers), frame pointers where it has none (JIT
//! code: V8 keeps `rbp`). The rules, their evaluation and the step itself
//! are `leaktrail-unwind-core`'s, shared with the snapshot unwinder; this
//! module adds what only the tracer needs: the process-wide rule cache
//! ([`shared`]), the module table ([`modules`]), reads bounded to the
//! thread's stack, and the memo of the previous stack. A warmed-up program
//! unwinds each frame with a cache probe and two loads.
//!
//! Every memory read is bounded to the current thread's stack; nothing here
//! allocates or locks.

pub mod modules;
pub mod shared;

use core::mem::MaybeUninit;

use leaktrail_format::{frame_word, StackId, UnwindMode, FRAME_ADDRESS_MASK};
use leaktrail_unwind_core::{
    return_address_slot, step, CfaBase, FpRule, FrameAddress, InstructionAddress, Kind, Regs,
    ReturnAddress, Rule, Step,
};

use crate::thread::ThreadState;
use modules::TableHold;

/// Result of one capture.
pub struct Captured {
    /// Frames written.
    pub len: usize,
    /// Whether the stack went deeper than the buffer.
    pub truncated: bool,
    /// The interned id of exactly these frames, when the thread's memo
    /// knows it (the stack is the same as the last one captured).
    pub known_id: StackId,
    /// Skipped: too little stack left to unwind safely.
    pub shallow: bool,
}

/// Stack the capture needs below the hook (its frames, the CFI
/// evaluation, gimli's parsers), with room to spare.
pub const STACK_NEEDED: u64 = 16 * 1024;

/// Stack a capture takes from where [`room_to_capture`] is asked: the
/// caller's frames buffer (2 KiB), `capture`'s own frame (2.2 KiB), then
/// [`STACK_NEEDED`].
pub const CAPTURE_NEEDED: u64 = STACK_NEEDED + 8 * 1024;

/// Whether the calling thread's stack has [`CAPTURE_NEEDED`] bytes left
/// below here. Asked before the frames buffer and `capture`'s frame are
/// allocated: `capture`'s own check comes after them, and on a 16 KiB
/// thread stack under jemalloc (whose first `mmap` in a new thread comes
/// from deep in its own frames) allocating them overflowed the stack.
#[inline(always)]
pub fn room_to_capture(state: &ThreadState) -> bool {
    let sp: u64;
    // SAFETY: reads the stack pointer into a register; touches no memory.
    unsafe {
        core::arch::asm!("mov {sp}, rsp", sp = out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    match state.stack_bounds(sp) {
        Some((low, _)) => low == 0 || sp - low >= CAPTURE_NEEDED,
        // `capture` finds no stack either and records none.
        None => true,
    }
}

/// Captures the calling thread's stack into `out`, innermost first,
/// starting at the first frame outside the tracer: `out[0]` is where the
/// program's allocation call returns to.
///
/// The thread's [`Memo`] of its previous stack short-cuts the work: once a
/// frame has the same registers as a frame of the previous capture, the
/// rest of the unwind is a pure function of the stack words it read last
/// time; if each of those still holds the same value, the rest of the stack
/// is the same, and checking them costs one independent load per frame
/// instead of a rule lookup and a dependent chain of loads.
#[inline(never)]
pub fn capture(state: &ThreadState, mode: UnwindMode, out: &mut [MaybeUninit<u64>]) -> Captured {
    let none = Captured {
        len: 0,
        truncated: false,
        known_id: StackId::NONE,
        shallow: false,
    };
    if mode == UnwindMode::None || out.is_empty() {
        return none;
    }
    let (pc, sp, fp): (u64, u64, u64);
    // SAFETY: reads the instruction pointer, stack pointer and frame pointer
    // into registers; touches no memory.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {fp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            fp = out(reg) fp,
            options(nomem, nostack, preserves_flags)
        );
    }
    let Some((low, top)) = state.stack_bounds(sp) else {
        return none;
    };
    if low != 0 && sp - low < STACK_NEEDED {
        // Too close to the end of a small thread stack for our own frames
        // (the CFI evaluation alone takes 2.5 KiB): record no stack rather
        // than overflow it.
        return Captured {
            len: 0,
            truncated: false,
            known_id: StackId::NONE,
            shallow: true,
        };
    }
    let cache_generation = modules::generation();
    // SAFETY: the memo belongs to this thread and no other reference to it
    // is live (the tracer is not re-entered while unwinding).
    let memo = unsafe { &mut *state.memo.get() };
    if state.generation.get() != cache_generation {
        memo.len = 0;
        memo.id = StackId::NONE;
        state.generation.set(cache_generation);
    }
    let stack = Stack { low: sp, top };
    let mut regs = Regs { pc, sp, fp };
    // Where `regs.fp` was restored from (0 if it was carried over).
    let mut fp_slot = 0u64;
    let mut first = true;
    let mut len = 0usize;
    // Frames of this capture, for the next one's memo.
    let mut fresh = [MaybeUninit::<MemoFrame>::uninit(); MEMO_FRAMES];
    let mut cursor = 0usize;
    loop {
        let address = if first {
            FrameAddress::from(InstructionAddress(regs.pc))
        } else {
            FrameAddress::from(ReturnAddress(regs.pc))
        };
        let rule = cached_rule(state, mode, address.lookup_address());
        // Tagged: the tracer's own frame, unwound but not recorded.
        if !rule.tagged() {
            if let Some(j) = memo.find(&mut cursor, regs) {
                if let Some(n) = memo.replay(&stack, j, len, out) {
                    // The same frames as last time (only registers that no
                    // later frame used may differ): the same interned id.
                    let same = j == len
                        && (0..len).all(|i| {
                            // SAFETY: frames below `len` were written.
                            let pc = unsafe { out[i].assume_init() };
                            pc == memo.frames[i].word()
                        });
                    let known_id = if same { memo.id } else { StackId::NONE };
                    memo.adopt(&fresh, len, j);
                    if known_id.is_none() {
                        memo.id = StackId::NONE;
                    }
                    return Captured {
                        len: n,
                        truncated: false,
                        known_id,
                        shallow: false,
                    };
                }
            }
            if regs.pc > FRAME_ADDRESS_MASK {
                // Not a user-space return address (a frame-pointer walk
                // read garbage): the stack ends here, and a frame word
                // could not tell its top bits from a note.
                break;
            }
            if len == out.len() {
                memo.len = 0;
                return Captured {
                    len,
                    truncated: true,
                    known_id: StackId::NONE,
                    shallow: false,
                };
            }
            let word = if rule.jit() {
                frame_word(regs.pc, interpreter_note(&stack, regs.fp))
            } else {
                regs.pc
            };
            out[len] = MaybeUninit::new(word);
            if len < MEMO_FRAMES {
                fresh[len] = MaybeUninit::new(MemoFrame::of(regs, word, fp_slot, rule));
            }
            len += 1;
        }
        match step(rule, regs, |addr| stack.read(addr)) {
            Step::Caller(caller) => {
                regs = caller.regs;
                fp_slot = caller.fp_slot.unwrap_or(0);
            }
            Step::End | Step::Unknown => break,
        }
        first = false;
    }
    memo.store(&fresh, len);
    Captured {
        len,
        truncated: false,
        known_id: StackId::NONE,
        shallow: false,
    }
}

/// Where V8 keeps an interpreted frame's bytecode offset, from its frame
/// pointer (`v8dbg_off_fp_bytecode_offset`: -40 in the V8 of Node 18 to
/// 22). The interpreter stores it there before every call out of a
/// bytecode and reloads it on return, so at an allocation it names the
/// calling bytecode, and through the function's source positions the
/// line of the call; the return address alone names only the function.
const BYTECODE_OFFSET_SLOT: u64 = 40;

/// Where V8 keeps an interpreted frame's BytecodeArray
/// (`v8dbg_off_fp_bytecode_array`), just above the offset.
const BYTECODE_ARRAY_SLOT: u64 = 32;

/// The note a frame of JIT code at frame pointer `fp` gets: the small
/// integer in V8's bytecode-offset slot, when that slot holds a Smi
/// (V8 without pointer compression: the value in the upper half, the
/// lower half zero) and the slot above it a tagged heap pointer, as an
/// interpreted frame's do. Sparkplug's frames keep a heap pointer in the
/// offset's slot; optimized code's spill slots and other JITs' frames
/// seldom pass both tests, and a note on one is ignored by the analysis,
/// which uses it only for frames it knows to be interpreted. Two reads
/// of one or two cache lines, bounded to the thread's stack.
#[inline]
fn interpreter_note(stack: &Stack, fp: u64) -> Option<u64> {
    let slot = stack.read(fp.checked_sub(BYTECODE_OFFSET_SLOT)?)?;
    let array = stack.read(fp.checked_sub(BYTECODE_ARRAY_SLOT)?)?;
    let smi = slot & 0xffff_ffff == 0 && slot >> 63 == 0;
    (smi && array & 3 == 1).then_some(slot >> 32)
}

/// Frames a thread's memo keeps; deeper stacks are unwound in full.
pub const MEMO_FRAMES: usize = 64;

/// One recorded frame of the previous capture.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoFrame {
    /// The recorded word (the return address and its note), with
    /// [`JIT_FRAME`] in its top bit.
    word_and_jit: u64,
    sp: u64,
    /// `rbp` XORed with [`HIDE`]: see there.
    hidden_fp: u64,
    /// Where `rbp` was restored from (0: carried over), 8-aligned, with
    /// [`FP_READ`], [`FP_PASSED`] and [`FP_MATTERS`] in its low bits.
    slot_and_flags: u64,
}

/// The memo lives in the thread's TLS, which a leak check scans as a root;
/// in code without frame pointers `rbp` is an ordinary register and may
/// hold a pointer to one of the program's blocks, which the memo would keep
/// "reachable" after the program dropped it (issue 11). Stored XORed with
/// this, the value is a non-canonical address, never a pointer into
/// anything; comparing costs one XOR.
const HIDE: u64 = 0xa5a5_0000_0000_0000;
/// The frame's rule reads its `rbp` (a CFA from `rbp`, or a frame-pointer
/// step).
const FP_READ: u64 = 1;
/// The frame's caller gets its `rbp` unchanged.
const FP_PASSED: u64 = 2;
/// The walk from this frame on depends on its `rbp`: it reads it, or
/// passes it to a caller whose walk does. In code built without frame
/// pointers `rbp` is an ordinary register (a loop counter, a pointer) that
/// differs on every call while every rule is `rsp`-based; comparing it
/// anyway made the memo miss on every stack that was re-entered from the
/// top (issue 13's changing workload: a full unwind per allocation).
const FP_MATTERS: u64 = 4;
const FLAGS: u64 = FP_READ | FP_PASSED | FP_MATTERS;
/// The frame is in JIT code: its word's note comes from its frame, and a
/// replay reads it again (the interpreter moves on through a function
/// without changing the return addresses).
const JIT_FRAME: u64 = 1 << 63;

impl MemoFrame {
    fn of(r: Regs, word: u64, fp_slot: u64, rule: Rule) -> Self {
        let reads = match rule.kind() {
            Kind::Unknown => true,
            Kind::Cfa => rule.cfa_base() == CfaBase::Fp,
            Kind::End => false,
        };
        let passes = rule.kind() == Kind::Cfa && rule.fp_rule() == FpRule::Unchanged;
        MemoFrame {
            word_and_jit: word | if rule.jit() { JIT_FRAME } else { 0 },
            sp: r.sp,
            hidden_fp: r.fp ^ HIDE,
            slot_and_flags: (fp_slot & !FLAGS)
                | if reads { FP_READ } else { 0 }
                | if passes { FP_PASSED } else { 0 },
        }
    }

    fn fp(&self) -> u64 {
        self.hidden_fp ^ HIDE
    }

    /// The word recorded for the frame.
    fn word(&self) -> u64 {
        self.word_and_jit & !JIT_FRAME
    }

    /// The frame's return address.
    fn pc(&self) -> u64 {
        self.word_and_jit & FRAME_ADDRESS_MASK
    }

    /// Whether the frame's note, read again now, is the one recorded.
    #[inline]
    fn note_holds(&self, stack: &Stack) -> bool {
        self.word_and_jit & JIT_FRAME == 0
            || frame_word(self.pc(), interpreter_note(stack, self.fp())) == self.word()
    }

    fn fp_slot(&self) -> u64 {
        self.slot_and_flags & !FLAGS
    }

    fn fp_matters(&self) -> bool {
        self.slot_and_flags & FP_MATTERS != 0
    }

    /// Sets [`FP_MATTERS`] from the frame's own flags and whether its
    /// caller's walk depends on the `rbp` it is passed; returns it.
    fn settle(&mut self, caller_matters: bool) -> bool {
        let f = self.slot_and_flags;
        let matters = f & FP_READ != 0 || (f & FP_PASSED != 0 && caller_matters);
        self.slot_and_flags = (f & !FP_MATTERS) | if matters { FP_MATTERS } else { 0 };
        matters
    }
}

impl Default for Memo {
    fn default() -> Self {
        Memo::new()
    }
}

/// A thread's previous stack, innermost first, and its interned id.
pub struct Memo {
    frames: [MemoFrame; MEMO_FRAMES],
    len: usize,
    /// Stack id of exactly `frames[..len]`, 0 if not known.
    pub id: StackId,
}

impl Memo {
    /// An empty memo.
    pub const fn new() -> Self {
        Memo {
            frames: [MemoFrame {
                word_and_jit: 0,
                sp: 0,
                hidden_fp: HIDE,
                slot_and_flags: 0,
            }; MEMO_FRAMES],
            len: 0,
            id: StackId::NONE,
        }
    }

    /// The index of the remembered frame with exactly these registers.
    /// Frames are ordered by stack address, so `cursor` only moves up.
    #[inline]
    fn find(&self, cursor: &mut usize, r: Regs) -> Option<usize> {
        while *cursor < self.len && self.frames[*cursor].sp < r.sp {
            *cursor += 1;
        }
        let f = self.frames.get(*cursor)?;
        (*cursor < self.len
            && f.sp == r.sp
            && f.pc() == r.pc
            && (!f.fp_matters() || f.fp() == r.fp))
            .then_some(*cursor)
    }

    /// If every stack word the previous unwind read above frame `j` still
    /// holds what it read, writes frames `j..` to `out[at..]` and returns
    /// the new length.
    #[inline]
    fn replay(
        &self,
        stack: &Stack,
        j: usize,
        at: usize,
        out: &mut [MaybeUninit<u64>],
    ) -> Option<usize> {
        let n = at + (self.len - j);
        if n > out.len() {
            return None;
        }
        if !self.frames[j].note_holds(stack) {
            return None;
        }
        for k in j + 1..self.len {
            let f = &self.frames[k];
            if stack.read(return_address_slot(f.sp))? != f.pc() || !f.note_holds(stack) {
                return None;
            }
            if f.fp_matters() && f.fp_slot() != 0 && stack.read(f.fp_slot())? != f.fp() {
                return None;
            }
        }
        for (k, f) in self.frames[j..self.len].iter().enumerate() {
            out[at + k] = MaybeUninit::new(f.word());
        }
        Some(n)
    }

    /// After a replay from `j`: frames `..at` are new, the rest shift to
    /// follow them.
    fn adopt(&mut self, fresh: &[MaybeUninit<MemoFrame>; MEMO_FRAMES], at: usize, j: usize) {
        let tail = self.len - j;
        if at + tail > MEMO_FRAMES {
            self.len = 0;
            return;
        }
        self.frames.copy_within(j..self.len, at);
        let mut matters = self.frames[at].fp_matters();
        for (i, f) in fresh.iter().take(at).enumerate().rev() {
            // SAFETY: the first `at` (< MEMO_FRAMES) fresh frames were written.
            self.frames[i] = unsafe { f.assume_init() };
            matters = self.frames[i].settle(matters);
        }
        self.len = at + tail;
    }

    /// After a full unwind: remember it, if it fits.
    fn store(&mut self, fresh: &[MaybeUninit<MemoFrame>; MEMO_FRAMES], len: usize) {
        self.id = StackId::NONE;
        if len > MEMO_FRAMES {
            self.len = 0;
            return;
        }
        let mut matters = false;
        for (i, f) in fresh.iter().take(len).enumerate().rev() {
            // SAFETY: the first `len` fresh frames were written.
            self.frames[i] = unsafe { f.assume_init() };
            matters = self.frames[i].settle(matters);
        }
        self.len = len;
    }
}

/// The part of the thread's stack that frames can live in.
struct Stack {
    low: u64,
    top: u64,
}

impl Stack {
    #[inline]
    fn read(&self, addr: u64) -> Option<u64> {
        if addr < self.low || addr.checked_add(8)? > self.top || addr & 7 != 0 {
            return None;
        }
        // SAFETY: `[low, top)` is the live part of this thread's stack
        // mapping (see `ThreadState::stack_top`), and the word lies inside.
        Some(unsafe { (addr as *const u64).read() })
    }
}

/// The rule for `pc`, from the process-wide cache or computed (and
/// cached). In frame-pointer mode only the tracer's own frames use CFI.
///
/// Only a miss reads module memory, so only a miss takes a [`TableHold`]
/// (a shared counter every thread would otherwise bounce between cores).
#[inline]
fn cached_rule(state: &ThreadState, mode: UnwindMode, pc: u64) -> Rule {
    let generation = state.generation.get();
    if let Some(rule) = shared::get(pc, generation, mode) {
        return rule;
    }
    let hold = TableHold::take();
    let rule = match hold.module_at(pc) {
        Some(m) if m.is_tracer => m.rule_at(pc).with_tag(),
        Some(m) if mode == UnwindMode::Dwarf => m.rule_at(pc),
        Some(_) => Rule::UNKNOWN,
        // Outside every module: JIT code (or a table being changed).
        None => Rule::UNKNOWN.with_jit(),
    };
    drop(hold);
    shared::put(pc, generation, mode, rule);
    rule
}

/// Tells the thread's memo the interned id of the stack it just captured
/// (of `len` frames), so the next identical stack skips interning.
#[inline]
pub fn remember_id(state: &ThreadState, len: usize, id: StackId) {
    // SAFETY: this thread's own memo; no other reference is live.
    let memo = unsafe { &mut *state.memo.get() };
    if memo.len == len {
        memo.id = id;
    }
}
