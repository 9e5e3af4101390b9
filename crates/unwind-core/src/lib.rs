//! The x86_64 unwind rules that leaktrail's two unwinders share: the
//! tracer's, which walks the stack inside every `malloc` of the traced
//! program, and the snapshot unwinder, which walks a stopped thread's
//! stack in a core file. Both reduce DWARF CFI and step frames through
//! this crate, so they agree by construction on where the return address
//! is, on when to fall back to frame pointers, and on which frame is the
//! outermost.
//!
//! The pieces:
//!
//! * [`Rule`]: what x86_64 code needs to unwind one frame (CFA = rsp or
//!   rbp plus an offset, the return address at CFA−8, rbp saved at
//!   CFA+n, unchanged or clobbered; or "end of stack"; or "unknown"),
//!   packed in one `u64` so the tracer can cache it in a lock-free slot.
//! * [`reduce`] turns a row of gimli's unwind table into a [`Rule`];
//!   [`Cfi::rule_at`] finds and evaluates the row for an address in a
//!   module's `.eh_frame` (through `.eh_frame_hdr` when there is one).
//! * [`step`] unwinds one frame from its [`Regs`] and rule, reading stack
//!   words through the caller's closure; an unknown rule falls back to
//!   [`step_frame_pointer`].
//! * [`InstructionAddress`], [`ReturnAddress`] and [`FrameAddress`] keep
//!   apart the innermost frame's PC and its callers' return addresses,
//!   which are looked up one byte apart ([`ReturnAddress::lookup_address`]).
//!
//! # Constraints
//!
//! The tracer runs this code inside `malloc`, so the crate is `no_std` and
//! never allocates, locks or panics on any input: gimli evaluates CFI in a
//! small context on the stack (about 2 KiB), and memory is read only
//! through the caller's closure, which decides what is safe to read (the
//! tracer bounds reads to the thread's stack; the snapshot unwinder reads
//! the core). [`Cfi::rule_at`] costs about a microsecond; the tracer
//! caches its rules. [`step`] is a handful of instructions and inlined.
//!
//! # Example
//!
//! ```
//! use leaktrail_unwind_core::{step, CfaBase, FpRule, FrameAddress, Regs, Rule, Step};
//!
//! // A stack of three words at 0x1000: a return address, then the
//! // caller's saved rbp and its return address.
//! let stack = [0x40_1005u64, 0, 0x40_2008];
//! let read = |addr: u64| {
//!     let i = addr.checked_sub(0x1000)? / 8;
//!     stack.get(usize::try_from(i).ok()?).copied()
//! };
//! let mut regs = Regs { pc: 0x40_3000, sp: 0x1000, fp: 0x1008 };
//! let mut frames = vec![FrameAddress::new(regs.pc, false)];
//! loop {
//!     // A real unwinder looks the rule up at `lookup_address()` of the
//!     // frame's address (see `Cfi::rule_at`); here the innermost frame
//!     // has no frame of its own and the next keeps a frame pointer.
//!     let rule = if frames.len() == 1 {
//!         Rule::cfa(CfaBase::Sp, 8, FpRule::Unchanged)
//!     } else {
//!         Rule::UNKNOWN
//!     };
//!     match step(rule, regs, read) {
//!         Step::Caller(caller) => {
//!             frames.push(caller.return_address().into());
//!             regs = caller.regs;
//!         }
//!         Step::End | Step::Unknown => break,
//!     }
//! }
//! let pcs: Vec<u64> = frames.iter().map(|f| f.address()).collect();
//! assert_eq!(pcs, [0x40_3000, 0x40_1005, 0x40_2008]);
//! assert_eq!(frames[1].lookup_address(), 0x40_1004);
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

mod address;
mod cfi;
mod rule;
mod step;

pub use address::{FrameAddress, InstructionAddress, ReturnAddress};
pub use cfi::{Cfi, Section};
pub use rule::{reduce, return_address_slot, CfaBase, FpRule, Kind, Rule, RETURN_ADDRESS_OFFSET};
pub use step::{step, step_frame_pointer, Caller, Regs, Step, MIN_CODE_ADDRESS};
