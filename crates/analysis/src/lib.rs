//! Pure analyses over leaktrail recordings and snapshots.
//!
//! * [`trend`]: robust growth verdicts over a watch series.
//! * [`maps_diff`]: the `pmap -x` diff of two samples or snapshots.
//! * [`audit`]: decoding the tracer's audit region through a [`memory::Memory`].
//! * [`core`]: opening snapshot cores by mmap.
//! * [`profile`]: live memory of one snapshot by allocation site.
//! * [`growth`]: which sites and size classes grow across snapshots, ranked.
//! * [`heap`]: one snapshot as a heap: live buffers indexed, mappings
//!   classified, roots; the start of [`leaks`] (reachability),
//!   [`caches`] (size classes), [`bufs`] (filtered buffers), [`whatis`],
//!   [`refs`] (referrers and chains to a root) and [`dump`].
//! * [`symbolize`] and [`unwind`]: frames named offline (ELF, DWARF, JIT perf
//!   maps) and stopped threads' stacks walked.
//!
//! Nothing here prints; renderers live in `leaktrail-report`.
#![deny(missing_docs)]

pub mod audit;
pub mod audit_dump;
pub mod bufs;
pub mod caches;
pub mod core;
pub mod dump;
pub mod error;
pub mod growth;
pub mod heap;
pub mod investigation;
pub mod leaks;
pub mod maps_diff;
pub mod memory;
pub mod owner;
pub mod profile;
pub mod refs;
pub mod symbolize;
#[cfg(test)]
pub(crate) mod synthetic;
pub mod trend;
pub mod unwind;
pub mod whatis;

pub use error::Error;
