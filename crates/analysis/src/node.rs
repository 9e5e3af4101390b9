//! What is particular to Node.js processes: which owner (V8's heap,
//! ArrayBuffer backing stores, handles, other native memory) holds the
//! memory ([`owner`]).

pub mod owner;
