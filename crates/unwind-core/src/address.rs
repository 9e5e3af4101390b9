//! Code addresses that are looked up differently.
//!
//! The innermost frame of a stack executes at an instruction address: the
//! instruction there is the one to look up. Every other frame is known by
//! its return address, which points *after* its call; the call itself is
//! one byte before. The call may be the last instruction of its function
//! (a call to a `noreturn` function), so looking up the return address
//! itself would name, and unwind with the rules of, whatever follows.
//! [`ReturnAddress::lookup_address`] is the one place that rule is written.

/// The address of an instruction being executed: a thread's PC, or an
/// address that is not a return address (a function's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstructionAddress(pub u64);

/// A return address: where a call returns to, one past the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReturnAddress(pub u64);

impl InstructionAddress {
    /// The address to look up unwind rules and symbols at: itself.
    #[inline]
    pub fn lookup_address(self) -> u64 {
        self.0
    }
}

impl ReturnAddress {
    /// The address to look up unwind rules and symbols at: one byte
    /// before, inside the call instruction.
    #[inline]
    pub fn lookup_address(self) -> u64 {
        self.0.saturating_sub(1)
    }
}

/// The address a frame is known by: the innermost frame's instruction
/// address, or a caller's return address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameAddress {
    /// The innermost frame, or an address that is not a return address.
    Instruction(InstructionAddress),
    /// A caller's frame.
    Return(ReturnAddress),
}

impl FrameAddress {
    /// A frame address of the given kind (for callers that carry the kind
    /// as a flag, like a symbolizer's API).
    #[inline]
    pub fn new(address: u64, is_return_address: bool) -> FrameAddress {
        if is_return_address {
            FrameAddress::Return(ReturnAddress(address))
        } else {
            FrameAddress::Instruction(InstructionAddress(address))
        }
    }

    /// The address itself, as it is on the stack or in the PC.
    #[inline]
    pub fn address(self) -> u64 {
        match self {
            FrameAddress::Instruction(a) => a.0,
            FrameAddress::Return(a) => a.0,
        }
    }

    /// The address to look up unwind rules and symbols at.
    #[inline]
    pub fn lookup_address(self) -> u64 {
        match self {
            FrameAddress::Instruction(a) => a.lookup_address(),
            FrameAddress::Return(a) => a.lookup_address(),
        }
    }

    /// Whether this is a return address.
    #[inline]
    pub fn is_return_address(self) -> bool {
        matches!(self, FrameAddress::Return(_))
    }
}

impl From<InstructionAddress> for FrameAddress {
    #[inline]
    fn from(a: InstructionAddress) -> Self {
        FrameAddress::Instruction(a)
    }
}

impl From<ReturnAddress> for FrameAddress {
    #[inline]
    fn from(a: ReturnAddress) -> Self {
        FrameAddress::Return(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_addresses_are_looked_up_one_byte_before() {
        assert_eq!(ReturnAddress(0x1000).lookup_address(), 0xfff);
        assert_eq!(InstructionAddress(0x1000).lookup_address(), 0x1000);
        assert_eq!(FrameAddress::new(0x1000, true).lookup_address(), 0xfff);
        assert_eq!(FrameAddress::new(0x1000, false).lookup_address(), 0x1000);
        assert_eq!(FrameAddress::new(0x1000, true).address(), 0x1000);
        assert!(FrameAddress::from(ReturnAddress(1)).is_return_address());
        assert!(!FrameAddress::from(InstructionAddress(1)).is_return_address());
        // Never wraps round to the top of the address space.
        assert_eq!(ReturnAddress(0).lookup_address(), 0);
    }
}
