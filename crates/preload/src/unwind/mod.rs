//! Stack capture on the hook path.
//!
//! A hybrid unwinder for x86_64: DWARF CFI from each module's in-memory
//! `.eh_frame` where the code has it (Debian's glibc and libstdc++ are
//! built without frame pointers), frame pointers where it has none (JIT
//! code: V8 keeps `rbp`). CFI is evaluated with gimli on a stack-allocated
//! context and the result, reduced to the few rules x86_64 code actually
//! uses, is cached per thread by instruction address, so a warmed-up
//! program unwinds each frame with a cache probe and two loads.
//!
//! Every memory read is bounded to the current thread's stack; nothing here
//! allocates or locks.

pub mod modules;
mod rule;

use leaktrail_format::UnwindMode;

use crate::thread::{RuleSlot, ThreadState, RULE_CACHE_SLOTS};
use modules::{Module, TableHold};
pub use rule::Rule;

/// Registers the unwinder tracks.
#[derive(Clone, Copy, Debug)]
struct Regs {
    pc: u64,
    sp: u64,
    fp: u64,
}

/// Result of one capture.
pub struct Captured {
    /// Frames written.
    pub len: usize,
    /// Whether the stack went deeper than the buffer.
    pub truncated: bool,
}

/// Captures the calling thread's stack into `out`, innermost first,
/// starting at the first frame outside the tracer: `out[0]` is where the
/// program's allocation call returns to.
#[inline(never)]
pub fn capture(state: &ThreadState, mode: UnwindMode, out: &mut [u64]) -> Captured {
    let none = Captured {
        len: 0,
        truncated: false,
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
    let Some(top) = state.stack_top(sp) else {
        return none;
    };
    let hold = TableHold::take();
    let Some(table) = hold.table() else {
        return none;
    };
    let cache_generation = modules::generation();
    if state.rules_generation.get() != cache_generation {
        // SAFETY: the cache belongs to this thread and no reference to it
        // is live.
        unsafe { (*state.rules.get()).fill(RuleSlot { pc: 0, rule: 0 }) };
        state.rules_generation.set(cache_generation);
    }
    let stack = Stack { low: sp, top };
    let mut regs = Regs { pc, sp, fp };
    let mut first = true;
    let mut len = 0usize;
    loop {
        let module = table.find(regs.pc);
        let in_tracer = module.is_some_and(|m| m.is_tracer);
        if !in_tracer {
            if len == out.len() {
                return Captured {
                    len,
                    truncated: true,
                };
            }
            out[len] = regs.pc;
            len += 1;
        }
        // A return address points after the call; the call itself, whose
        // unwind rule we want, is one byte before (it may be the last
        // instruction of its function).
        let lookup = if first { regs.pc } else { regs.pc - 1 };
        let rule = if mode == UnwindMode::Dwarf || in_tracer {
            match module {
                Some(m) => cached_rule(state, m, lookup),
                None => Rule::UNKNOWN,
            }
        } else {
            Rule::UNKNOWN
        };
        let next = match rule.kind() {
            rule::Kind::End => break,
            rule::Kind::Unknown => step_frame_pointer(&stack, regs),
            rule::Kind::Cfa => step_cfi(&stack, regs, rule),
        };
        match next {
            Some(n) if n.pc >= 4096 => regs = n,
            _ => break,
        }
        first = false;
    }
    Captured {
        len,
        truncated: false,
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

#[inline]
fn step_cfi(stack: &Stack, r: Regs, rule: Rule) -> Option<Regs> {
    let base = if rule.cfa_from_fp() { r.fp } else { r.sp };
    let cfa = base.checked_add_signed(rule.cfa_offset())?;
    if cfa <= r.sp {
        return None;
    }
    let pc = stack.read(cfa - 8)?;
    let fp = match rule.fp_offset() {
        Some(off) => stack.read(cfa.checked_add_signed(off)?)?,
        None if rule.fp_clobbered() => 0,
        None => r.fp,
    };
    Some(Regs { pc, sp: cfa, fp })
}

#[inline]
fn step_frame_pointer(stack: &Stack, r: Regs) -> Option<Regs> {
    if r.fp < r.sp {
        return None;
    }
    let pc = stack.read(r.fp + 8)?;
    let fp = stack.read(r.fp)?;
    Some(Regs {
        pc,
        sp: r.fp + 16,
        fp,
    })
}

#[inline]
fn cached_rule(state: &ThreadState, module: &Module, pc: u64) -> Rule {
    let h = (pc ^ (pc >> 11) ^ (pc >> 23)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let i = (h >> 54) as usize & (RULE_CACHE_SLOTS - 1);
    // SAFETY: this thread's own cache; no other reference is live (the
    // tracer is not re-entered while unwinding).
    let cache = unsafe { &mut *state.rules.get() };
    if cache[i].pc == pc {
        return Rule(cache[i].rule);
    }
    let rule = rule::compute(module, pc);
    cache[i] = RuleSlot { pc, rule: rule.0 };
    rule
}
