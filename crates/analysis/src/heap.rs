//! Heap analyses of one snapshot: the heap model ([`model`]: live blocks
//! indexed, memory divided into areas, roots) and what is asked of it —
//! reachability ([`leaks`]), size classes ([`caches`]), filtered buffers
//! ([`bufs`]), what an address is ([`whatis`]), who points at it
//! ([`refs`]), the words at it ([`dump`]), live memory by allocation site
//! ([`profile`]) and what the tracer counted per site ([`sites`]).

pub mod bufs;
pub mod caches;
pub mod dump;
pub mod exit_roots;
pub mod leaks;
pub mod libc_residue;
pub mod model;
pub mod profile;
pub mod refs;
pub mod sites;
pub mod suppressions;
pub mod types;
pub mod whatis;
