//! Detours for an allocator linked into the executable itself (issue 16,
//! item 2): a program built with `-Wl,-Bstatic -ljemalloc`, or any that
//! defines `malloc` in its own image.
//!
//! Such an executable exports `malloc`, `free`, … (libc refers to them);
//! it comes before `LD_PRELOAD` in the loader's search order, and its own
//! calls are direct, through no GOT, so no call ever reaches a symbol of
//! ours. We rewrite the entry of each of its functions instead:
//!
//! * The instructions that cover the entry's first [`JMP_REL32`] bytes
//!   are copied to a *trampoline* in an [`Island`] page near the
//!   executable, their RIP-relative displacements adjusted, followed by a
//!   jump back to the instruction after them. The function's `next` slot
//!   becomes the trampoline: our hook forwards to the allocator's code as
//!   it was.
//! * The entry becomes `jmp rel32` to a thunk in the island, which jumps
//!   on to our hook (`jmp [rip]`, any distance). A jump, not a call: the
//!   caller's return address is what the hook finds on the stack, so the
//!   stack it records is the one a call through the PLT would have given.
//!
//! A function is left alone, and the tracer then records nothing and says
//! why (as it did for every such program before), when its entry cannot
//! be moved safely: an instruction there that transfers control in a way
//! we cannot re-aim (`loop`, `jrcxz`), one the decoder does not know, a
//! branch anywhere in the function (the symbol's size bounds it) that
//! lands inside the moved bytes, a displacement that does not reach from
//! the island, or a text page that cannot be made writable. An indirect jump into the moved bytes (a jump table) cannot
//! be seen; compilers do not emit one into a function's first
//! instructions.
//!
//! Runs once, where the allocator is first resolved: at init (the
//! loader's constructors, before `main`), or at a hooked call before it
//! (a function the allocator lacks, such as jemalloc's `reallocarray`),
//! which then waits for it once. The jump is written with one aligned
//! 8-byte store when the entry's 5 bytes fit in one (functions are
//! 16-byte aligned), so a thread that enters the function meanwhile runs
//! the old entry or the new one; one already past the entry's first
//! instruction and before the moved bytes' end would not survive, which
//! before `main` no thread is.

use core::sync::atomic::{AtomicU64, Ordering};

mod instruction;

use instruction::{decode, Flow};

use crate::sys;

/// `jmp rel32`: what the entry becomes.
pub const JMP_REL32: usize = 5;
/// `jmp [rip+0]` followed by the 8-byte target: a jump to anywhere.
const JMP_ABS: usize = 14;
/// At most the moved bytes: instructions starting before byte 5, each at
/// most 15 bytes long.
const MAX_MOVED: usize = JMP_REL32 - 1 + 15;
/// One function's share of the island: its trampoline, then its thunk. A
/// trampoline is at most 5 moved pieces of at most 16 bytes each (a
/// branch becomes a jump around a jump), then the jump back.
const SLOT_BYTES: usize = 144;
/// Where the thunk starts within a slot.
const THUNK_AT: usize = 5 * 16 + JMP_ABS;
/// The thunk: `test rsp, 8; jz +14`, then a jump to the hook, then one to
/// the trampoline (see [`write_thunk`]).
const THUNK_BYTES: usize = 7 + 2 + 2 * JMP_ABS;
const _: () = assert!(MAX_MOVED + JMP_ABS <= THUNK_AT && THUNK_AT + THUNK_BYTES <= SLOT_BYTES);
// An operator island holds all 28 of them.
const _: () = assert!(28 * SLOT_BYTES <= PAGE as usize);
const PAGE: u64 = 4096;

/// Why a function's entry cannot be moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An instruction the decoder does not know, or the function ends
    /// before its entry's bytes do.
    Undecodable,
    /// An instruction of the entry transfers control in a way that cannot
    /// be re-aimed from the trampoline (`loop`, `jrcxz`, a far jump).
    /// Relative jumps, calls and conditional branches are re-aimed.
    ControlFlow,
    /// A branch of the function lands inside the moved bytes, which the
    /// jump overwrites.
    BranchIntoEntry,
    /// A displacement or the jump does not reach between the function and
    /// the island (±2 GiB).
    OutOfReach,
    /// No island page could be mapped near the function, or it is full.
    NoIsland,
    /// The function's text page could not be made writable.
    Unwritable,
}

/// An instruction copied as it is: its bytes `start..end` in the entry,
/// with, if it has a RIP-relative operand, the displacement's offset in the
/// entry and the address it designates.
#[derive(Clone, Copy, Debug)]
struct Copied {
    start: usize,
    end: usize,
    rip: Option<(usize, u64)>,
}

/// One moved instruction, as the trampoline runs it.
#[derive(Clone, Copy, Debug)]
enum Piece {
    /// Copied as it is.
    Copy(Copied),
    /// A direct jump to `target`, or a return, or an indirect jump (then
    /// copied): the trampoline ends with it.
    Last { copy: Option<Copied>, target: u64 },
    /// A direct call to `target`: `call [rip+2]; jmp +8; .quad target`.
    Call { target: u64 },
    /// A conditional branch (`cc`, the condition's code) to `target`: the
    /// inverse condition jumps over a jump to it.
    Branch { cc: u8, target: u64 },
}

const NO_PIECE: Piece = Piece::Call { target: 0 };

/// A function's entry, planned for moving: the instructions covering its
/// first [`JMP_REL32`] bytes.
#[derive(Debug)]
pub struct Entry {
    /// The function's address.
    ip: u64,
    /// The entry's bytes, as they are at `ip`.
    bytes: [u8; MAX_MOVED],
    /// How many bytes the moved instructions take.
    len: usize,
    pieces: [Piece; JMP_REL32],
    piece_count: usize,
    /// Whether the last piece ends the trampoline (no jump back).
    ends: bool,
}

impl Entry {
    /// Plans the move of the function whose whole code is `code`, at `ip`.
    pub fn plan(code: &[u8], ip: u64) -> Result<Entry, Refusal> {
        let mut entry = Entry {
            ip,
            bytes: [0; MAX_MOVED],
            len: 0,
            pieces: [NO_PIECE; JMP_REL32],
            piece_count: 0,
            ends: false,
        };
        let target_of =
            |end: usize, rel: Option<i64>| (ip + end as u64).wrapping_add_signed(rel.unwrap_or(0));
        while entry.len < JMP_REL32 {
            let start = entry.len;
            let d = decode(&code[start..]).ok_or(Refusal::Undecodable)?;
            let end = start + d.len;
            entry.bytes[start..end].copy_from_slice(&code[start..end]);
            entry.len = end;
            if entry.ends {
                // Past a jump: only branches reach these bytes, which the
                // scan below refuses.
                continue;
            }
            let rip = d.rip_displacement.map(|at| {
                let disp = &code[start + at..start + at + 4];
                let disp = i32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]]);
                (
                    start + at,
                    (ip + end as u64).wrapping_add_signed(disp as i64),
                )
            });
            let piece = match d.flow {
                Flow::Next | Flow::IndirectCall => Piece::Copy(Copied { start, end, rip }),
                Flow::Leave => {
                    entry.ends = true;
                    Piece::Last {
                        copy: Some(Copied { start, end, rip }),
                        target: 0,
                    }
                }
                Flow::Jump => {
                    entry.ends = true;
                    Piece::Last {
                        copy: None,
                        target: target_of(end, d.relative),
                    }
                }
                Flow::Call => Piece::Call {
                    target: target_of(end, d.relative),
                },
                Flow::Branch(cc) => Piece::Branch {
                    cc,
                    target: target_of(end, d.relative),
                },
                Flow::Other => return Err(Refusal::ControlFlow),
            };
            entry.pieces[entry.piece_count] = piece;
            entry.piece_count += 1;
        }
        // The whole function: nothing may branch into the moved bytes (to
        // their first one is fine: that is the new jump).
        let inside = ip + 1..ip + entry.len as u64;
        let mut at = 0;
        while at < code.len() {
            let d = decode(&code[at..]).ok_or(Refusal::Undecodable)?;
            at += d.len;
            if d.relative.is_some() && inside.contains(&target_of(at, d.relative)) {
                return Err(Refusal::BranchIntoEntry);
            }
        }
        Ok(entry)
    }

    /// How many bytes of the function the move takes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is moved (never, for a planned entry).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the trampoline for running the moved instructions at `at`
    /// into `out`: them, displacements and branches adjusted, then a jump
    /// back to the function after them. Returns its length.
    pub fn trampoline(&self, at: u64, out: &mut [u8]) -> Result<usize, Refusal> {
        let mut n = 0;
        let mut jmp_abs = [0u8; JMP_ABS];
        for piece in &self.pieces[..self.piece_count] {
            let copy = match *piece {
                Piece::Copy(copied) => Some(copied),
                Piece::Last { copy, target } => {
                    if copy.is_none() {
                        write_jmp_abs(&mut jmp_abs, target);
                        put(out, &mut n, &jmp_abs)?;
                    }
                    copy
                }
                Piece::Call { target } => {
                    put(out, &mut n, &[0xff, 0x15, 2, 0, 0, 0, 0xeb, 8])?;
                    put(out, &mut n, &target.to_le_bytes())?;
                    None
                }
                Piece::Branch { cc, target } => {
                    put(out, &mut n, &[0x70 | (cc ^ 1), JMP_ABS as u8])?;
                    write_jmp_abs(&mut jmp_abs, target);
                    put(out, &mut n, &jmp_abs)?;
                    None
                }
            };
            if let Some(Copied { start, end, rip }) = copy {
                let here = n;
                put(out, &mut n, &self.bytes[start..end])?;
                if let Some((disp, target)) = rip {
                    let next_ip = at + (here + end - start) as u64;
                    let moved = i32::try_from(target.wrapping_sub(next_ip) as i64)
                        .map_err(|_| Refusal::OutOfReach)?;
                    let at_disp = here + disp - start;
                    put_at(out, at_disp, &moved.to_le_bytes());
                }
            }
        }
        if !self.ends {
            write_jmp_abs(&mut jmp_abs, self.ip + self.len as u64);
            put(out, &mut n, &jmp_abs)?;
        }
        Ok(n)
    }
}

/// Appends `bytes` to `out[..*n]`, if they fit.
fn put(out: &mut [u8], n: &mut usize, bytes: &[u8]) -> Result<(), Refusal> {
    let dst = out.get_mut(*n..*n + bytes.len()).ok_or(Refusal::NoIsland)?;
    dst.copy_from_slice(bytes);
    *n += bytes.len();
    Ok(())
}

/// `bytes` into `out` at `at` (in range: written by `trampoline` before).
fn put_at(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Whether the function whose code is `code`, at `ip`, calls or jumps to
/// one of `targets` directly (`call`, `jmp`, `jcc` with a relative
/// target); `None` when an instruction of it is not one we decode.
pub fn calls_any(code: &[u8], ip: u64, targets: &[u64]) -> Option<bool> {
    let mut at = 0;
    while at < code.len() {
        let d = decode(&code[at..])?;
        at += d.len;
        if let Some(rel) = d.relative {
            let target = (ip + at as u64).wrapping_add_signed(rel);
            if targets.contains(&target) {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// `jmp [rip+0]; .quad to` into `out` (at least [`JMP_ABS`] bytes).
fn write_jmp_abs(out: &mut [u8], to: u64) {
    out[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
    out[6..JMP_ABS].copy_from_slice(&to.to_le_bytes());
}

/// The thunk the entry jumps to, into `out`: on to `hook` when the stack
/// is aligned as at a call (`rsp % 16 == 8`), else on to `trampoline`,
/// the function as it was. A misaligned entry is the allocator calling
/// itself (gcc calls a function of the same file without aligning the
/// stack when it knows the callee does not need it: a bump allocator's
/// `malloc` calling its `memalign`); our hook would fault on it (an
/// aligned SSE store), and the outer call records the block already.
fn write_thunk(out: &mut [u8], hook: u64, trampoline: u64) {
    // test rsp, 8; jz +14 (over the first jump)
    out[..9].copy_from_slice(&[0x48, 0xf7, 0xc4, 0x08, 0, 0, 0, 0x74, JMP_ABS as u8]);
    write_jmp_abs(&mut out[9..9 + JMP_ABS], hook);
    write_jmp_abs(&mut out[9 + JMP_ABS..THUNK_BYTES], trampoline);
}

/// `jmp rel32` from `from` to `to`, if it reaches.
fn jmp_rel32(from: u64, to: u64) -> Option<[u8; JMP_REL32]> {
    let rel = i32::try_from(to.wrapping_sub(from + JMP_REL32 as u64) as i64).ok()?;
    let r = rel.to_le_bytes();
    Some([0xe9, r[0], r[1], r[2], r[3]])
}

/// A page of trampolines and thunks within reach (±2 GiB) of the code it
/// serves, named `[anon:leaktrail]` like the tracer's other mappings.
pub struct Island {
    base: u64,
    used: usize,
    sealed: bool,
}

impl Island {
    /// Maps an island in the free gap nearest to `near`, within 1 GiB
    /// (each trampoline's displacements are checked to reach from it), at
    /// the top of a gap, just below a mapping: never just above one, where
    /// the executable's `brk` heap grows, or another mapping would.
    pub fn near(near: u64) -> Option<Island> {
        let mut best: Option<u64> = None;
        let mut consider = |page: u64| {
            let distance = page.abs_diff(near);
            if page >= 1 << 20
                && distance < 1 << 30
                && best.is_none_or(|b| distance < b.abs_diff(near))
            {
                best = Some(page);
            }
        };
        let mut previous_end = 0u64;
        crate::selfmaps::for_each_mapping(|start, end, _| {
            if start >= previous_end + 2 * PAGE {
                // A page of room left above the previous mapping too.
                consider(start - PAGE);
            }
            previous_end = previous_end.max(end);
            true
        });
        let base = sys::map_anonymous_at(best?, PAGE)?;
        // Writable and executable while functions are diverted: after the
        // first one's jump is written, a call may run its trampoline while
        // the next is written. `seal` ends that.
        // SAFETY: our fresh page.
        if !unsafe {
            sys::protect(
                base,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            )
        } {
            sys::unmap(base, PAGE);
            return None;
        }
        Some(Island {
            base,
            used: 0,
            sealed: false,
        })
    }

    /// Makes the island read-only and executable once every function is
    /// diverted; [`Island::divert`] refuses from then on.
    pub fn seal(&mut self) {
        // SAFETY: our page; what runs there is only read.
        unsafe { sys::protect(self.base, PAGE, libc::PROT_READ | libc::PROT_EXEC) };
        self.sealed = true;
    }

    /// Diverts the function at `ip` (whose code is `code`) to `hook`:
    /// writes its trampoline and thunk here, hands the trampoline, through
    /// which the function runs as before, to `publish` (where the hook
    /// will find it), then writes the entry's jump. Returns the
    /// trampoline.
    ///
    /// # Safety
    /// `code` is the function's whole code, at `ip`, in a mapping of this
    /// process; nothing runs the function's entry while it is rewritten
    /// (see the module's docs); `hook` has the function's signature.
    pub unsafe fn divert(
        &mut self,
        code: &[u8],
        ip: u64,
        hook: u64,
        publish: impl FnOnce(u64),
    ) -> Result<u64, Refusal> {
        let entry = Entry::plan(code, ip)?;
        if self.sealed || self.used + SLOT_BYTES > PAGE as usize {
            return Err(Refusal::NoIsland);
        }
        let slot = self.base + self.used as u64;
        let mut bytes = [0xccu8; SLOT_BYTES];
        entry.trampoline(slot, &mut bytes[..THUNK_AT])?;
        write_thunk(&mut bytes[THUNK_AT..], hook, slot);
        let jump = jmp_rel32(ip, slot + THUNK_AT as u64).ok_or(Refusal::OutOfReach)?;
        // SAFETY: `slot` is the island's next unused slot of SLOT_BYTES
        // bytes, inside its page, which is ours, writable until sealed, and
        // not yet run.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), slot as *mut u8, SLOT_BYTES);
        }
        self.used += SLOT_BYTES;
        publish(slot);
        // SAFETY: the caller's contract.
        unsafe { write_code(ip, jump) }?;
        Ok(slot)
    }
}

/// Writes `bytes` over the code at `at`: the text page made writable for
/// the write and given its execute-only-and-read protection back.
///
/// # Safety
/// As [`Island::divert`]'s.
unsafe fn write_code(at: u64, bytes: [u8; JMP_REL32]) -> Result<(), Refusal> {
    let first = at & !(PAGE - 1);
    let last = (at + JMP_REL32 as u64 - 1) & !(PAGE - 1);
    let len = last + PAGE - first;
    let rx = libc::PROT_READ | libc::PROT_EXEC;
    // SAFETY: the function's own pages; they stay executable throughout.
    if !unsafe { sys::protect(first, len, rx | libc::PROT_WRITE) } {
        return Err(Refusal::Unwritable);
    }
    let offset = (at % 8) as usize;
    if offset + JMP_REL32 <= 8 {
        // One aligned store: a thread entering meanwhile sees the old
        // entry or the new one.
        // SAFETY: `at & !7` is 8-byte aligned and inside the function's
        // writable page (the 5 bytes lie within those 8).
        let word = unsafe { AtomicU64::from_ptr((at & !7) as *mut u64) };
        let mut new = word.load(Ordering::Acquire).to_le_bytes();
        new[offset..offset + JMP_REL32].copy_from_slice(&bytes);
        word.store(u64::from_le_bytes(new), Ordering::Release);
    } else {
        // SAFETY: the 5 bytes at `at`, writable now.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, JMP_REL32) };
    }
    // SAFETY: as above. Failing to drop the write permission leaves the
    // code writable, not broken.
    unsafe { sys::protect(first, len, rx) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(bytes: &[u8], ip: u64) -> iced_x86::Instruction {
        iced_x86::Decoder::with_ip(64, bytes, ip, iced_x86::DecoderOptions::NONE).decode()
    }

    /// jemalloc's `free` (Debian, static): `mov rax, rdi; mov rdx, imm32`
    /// covers 10 bytes, none RIP-relative, and the rest of the function
    /// (here a `ret`) branches nowhere inside them.
    #[test]
    fn an_entry_without_rip_operands_moves_as_it_is() {
        let code = [
            0x48, 0x89, 0xf8, 0x48, 0xc7, 0xc2, 0xb8, 0xf5, 0xff, 0xff, 0xc3,
        ];
        let entry = Entry::plan(&code, 0x27120).expect("plannable");
        assert_eq!(entry.len(), 10);
        let mut out = [0u8; 32];
        let n = entry.trampoline(0x7000_0000, &mut out).expect("reachable");
        assert_eq!(n, 10 + JMP_ABS);
        assert_eq!(&out[..10], &code[..10]);
        assert_eq!(&out[10..16], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(
            u64::from_le_bytes(out[16..24].try_into().unwrap()),
            0x27120 + 10
        );
    }

    /// `lea rdx, [rip+0x2c68e8]` moved 64 KiB down must still designate
    /// the same table (jemalloc's `malloc` reads `sz_size2index_tab` so).
    #[test]
    fn a_rip_relative_operand_keeps_its_target_when_moved() {
        let ip = 0x22f51;
        let code = [0x48, 0x8d, 0x15, 0xe8, 0x68, 0x2c, 0x00, 0xc3];
        let target = decode_one(&code, ip).ip_rel_memory_address();
        assert_eq!(target, 0x2e9840);
        let entry = Entry::plan(&code, ip).expect("plannable");
        let at = ip - 0x10000;
        let mut out = [0u8; 32];
        entry.trampoline(at, &mut out).expect("reachable");
        assert_eq!(decode_one(&out, at).ip_rel_memory_address(), target);
        // 3 GiB away, the displacement no longer reaches.
        assert_eq!(
            entry.trampoline(ip + (3 << 30), &mut out).err(),
            Some(Refusal::OutOfReach)
        );
    }

    #[test]
    fn entries_that_cannot_move_are_refused() {
        // xor eax, eax; inc eax; then `jmp` back to the inc, inside the
        // bytes the jump would overwrite.
        let loops_into_entry = [0x31, 0xc0, 0xff, 0xc0, 0x90, 0x90, 0xeb, 0xfa];
        assert_eq!(
            Entry::plan(&loops_into_entry, 0x1000).err(),
            Some(Refusal::BranchIntoEntry)
        );
        // A loop back to the first byte is fine: that is the new jump.
        let loops_to_start = [0x31, 0xc0, 0xff, 0xc0, 0x90, 0x90, 0xeb, 0xf8];
        assert!(Entry::plan(&loops_to_start, 0x1000).is_ok());
        // jrcxz at the entry: no inverse form of it.
        let jrcxz = [0xe3, 0x04, 0x90, 0x90, 0x90, 0x90, 0xc3];
        assert_eq!(
            Entry::plan(&jrcxz, 0x1000).err(),
            Some(Refusal::ControlFlow)
        );
        // A function shorter than the jump.
        assert_eq!(
            Entry::plan(&[0x90, 0x90], 0x1000).err(),
            Some(Refusal::Undecodable)
        );
    }

    /// jemalloc's `rallocx` (Debian, static, -rdynamic) is `xor ecx, ecx;
    /// jmp do_rallocx`: the jump becomes an absolute one to the same
    /// place, and the trampoline ends there.
    #[test]
    fn a_jump_or_a_call_at_the_entry_goes_where_it_went() {
        let ip = 0x2b1c0;
        let code = [0x31, 0xc9, 0xe9, 0xe9, 0x20, 0xff, 0xff];
        let target = decode_one(&code[2..], ip + 2).near_branch_target();
        assert_eq!(target, 0x1d2b0);
        let entry = Entry::plan(&code, ip).expect("plannable");
        assert_eq!(entry.len(), 7);
        let mut out = [0u8; 64];
        let n = entry.trampoline(0x7000_0000, &mut out).expect("fits");
        assert_eq!(&out[..2], &[0x31, 0xc9]);
        assert_eq!(&out[2..8], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(out[8..16].try_into().unwrap()), target);
        assert_eq!(n, 16, "no jump back after a jump");
        // `call f; nop` at the entry: called through a literal, then on.
        let code = [0xe8, 0x10, 0, 0, 0, 0x90, 0xc3];
        let entry = Entry::plan(&code, ip).expect("plannable");
        let n = entry.trampoline(0x7000_0000, &mut out).expect("fits");
        assert_eq!(&out[..8], &[0xff, 0x15, 2, 0, 0, 0, 0xeb, 8]);
        assert_eq!(
            u64::from_le_bytes(out[8..16].try_into().unwrap()),
            ip + 5 + 0x10
        );
        assert_eq!(&out[16..22], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(out[22..30].try_into().unwrap()), ip + 5);
        assert_eq!(n, 30);
    }

    /// `test rdi, rdi; je done; …` (glibc's `free` starts so): the
    /// trampoline's `jne` skips an absolute jump to `done`.
    #[test]
    fn a_conditional_branch_at_the_entry_keeps_its_condition_and_target() {
        let ip = 0x4000;
        let code = [0x48, 0x85, 0xff, 0x74, 0x03, 0x90, 0x90, 0x90, 0xc3];
        let entry = Entry::plan(&code, ip).expect("plannable");
        assert_eq!(entry.len(), 5);
        let mut out = [0u8; 64];
        let n = entry.trampoline(0x7000_0000, &mut out).expect("fits");
        assert_eq!(&out[..3], &[0x48, 0x85, 0xff]);
        assert_eq!(&out[3..5], &[0x75, JMP_ABS as u8], "je became jne over");
        assert_eq!(u64::from_le_bytes(out[11..19].try_into().unwrap()), ip + 8);
        assert_eq!(u64::from_le_bytes(out[25..33].try_into().unwrap()), ip + 5);
        assert_eq!(n, 33);
    }

    #[test]
    fn calls_are_found_by_their_targets() {
        // call +0x10; jmp +0x20; ret
        let code = [0xe8, 0x10, 0, 0, 0, 0xe9, 0x20, 0, 0, 0, 0xc3];
        let ip = 0x1000;
        assert_eq!(calls_any(&code, ip, &[ip + 5 + 0x10]), Some(true));
        assert_eq!(calls_any(&code, ip, &[ip + 10 + 0x20]), Some(true));
        assert_eq!(calls_any(&code, ip, &[ip]), Some(false));
        assert_eq!(calls_any(&[0xc4, 0, 0], ip, &[ip]), None, "VEX is not ours");
    }

    extern "C" fn add_hundred_after(x: u64) -> u64 {
        // SAFETY: the trampoline runs the diverted function unchanged; it
        // has this signature.
        let original: extern "C" fn(u64) -> u64 =
            unsafe { core::mem::transmute(TRAMPOLINE.load(Ordering::Acquire)) };
        original(x) + 100
    }

    static TRAMPOLINE: AtomicU64 = AtomicU64::new(0);

    /// A function made at run time (`lea rax, [rdi+1]; nop; ret`, in a
    /// page of its own) is diverted: calls to it reach the hook, which
    /// calls the original through the trampoline.
    #[test]
    fn a_diverted_function_runs_the_hook_and_the_original() {
        let page = sys::map_anonymous(PAGE).expect("a page");
        let code = [0x48, 0x8d, 0x47, 0x01, 0x90, 0x90, 0xc3];
        // SAFETY: our fresh page, written before it is run.
        unsafe {
            core::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len());
            assert!(sys::protect(page, PAGE, libc::PROT_READ | libc::PROT_EXEC));
        }
        // SAFETY: the page holds a complete function with this signature.
        let f: extern "C" fn(u64) -> u64 = unsafe { core::mem::transmute(page) };
        assert_eq!(f(1), 2);
        let mut island = Island::near(page).expect("an island near the page");
        assert!(island.base.abs_diff(page) < 1 << 30);
        // SAFETY: the code just written; nothing else runs it.
        let trampoline = unsafe {
            island.divert(&code, page, add_hundred_after as *const () as u64, |t| {
                TRAMPOLINE.store(t, Ordering::Release)
            })
        }
        .expect("divertible");
        island.seal();
        assert_eq!(TRAMPOLINE.load(Ordering::Acquire), trampoline);
        assert_eq!(f(1), 102);
        assert_eq!(f(41), 142);
        sys::unmap(page, PAGE);
    }
}
