//! What is particular to Node.js processes: which owner (V8's heap,
//! ArrayBuffer backing stores, handles, other native memory) holds the
//! memory ([`owner`]); V8's jitdump, which names JS frames as they were
//! when a block was allocated, with lines and inlined calls ([`jitdump`]);
//! the JS heap itself, decoded with V8's postmortem metadata ([`v8`]).

pub mod jitdump;
pub mod owner;
pub mod v8;
