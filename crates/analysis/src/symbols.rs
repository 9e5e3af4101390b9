//! Naming and walking code offline: addresses to functions, files and lines
//! from the ELF files and JIT maps a process had ([`symbolize`]), and
//! stopped threads' stacks walked in a snapshot ([`unwind`]).

pub mod symbolize;
pub mod unwind;
