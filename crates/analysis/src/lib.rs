//! Pure analyses over leaktrail recordings and snapshots.
//!
//! The crate is six rooms, private, and this root is its interface:
//!
//! * **snapshot views**: [`summary`] (`info`), [`maps_diff`] (the `pmap -x`
//!   diff of two samples or snapshots), [`audit_dump`] (the audit with
//!   symbolized stacks).
//! * **symbols**: [`symbolize`] (ELF, DWARF, JIT perf maps) and
//!   [`unwind`] (stopped threads' stacks walked).
//! * **heap analyses** of one snapshot, all over the heap model [`Heap`]:
//!   [`leaks`] (reachability), [`caches`] (size classes), [`bufs`],
//!   [`whatis`], [`refs`] (referrers and chains to a root), [`dump`], and
//!   [`profile`] (live memory by allocation site).
//! * **glibc**: [`heap_walk`], every malloc chunk in use from glibc's own
//!   state (the blocks of an untraced process, and `info`'s check of an
//!   audit); [`types`] says what a block holds.
//! * **series** over time: [`trend`] (robust growth verdicts over a watch
//!   series) and [`growth`] (which sites and size classes grow across
//!   snapshots, ranked), on shared statistics; [`owner`] splits a Node.js
//!   process's memory by owner.
//!
//! [`investigation`] ties them together for `demo` and `report`.
//!
//! What is analysed comes from `leaktrail-recording` (snapshots, recording
//! directories, the audit decoder, [`leaktrail_recording::Memory`]); this
//! crate never touches a live process except through that trait, and
//! nothing here prints: renderers live in `leaktrail-report`.
//!
//! ```no_run
//! use leaktrail_analysis::leaks::{self, LeaksOptions};
//! use leaktrail_analysis::{Heap, Symbolizer};
//! use leaktrail_recording::Snapshot;
//! let snap = Snapshot::open("app.core".as_ref())?;
//! let heap = Heap::open(&snap)?; // fails if the process was not traced
//! let found = leaks::find(&heap, &LeaksOptions::default(), &Symbolizer::for_snapshot(&snap));
//! println!("{} bytes definitely lost", found.definite.bytes);
//! # Ok::<(), leaktrail_analysis::Error>(())
//! ```
#![deny(missing_docs)]

mod error;
mod glibc;
mod heap;
pub mod investigation;
mod node;
mod series;
mod snapshot;
mod symbols;
#[cfg(test)]
mod synthetic;

pub use error::Error;
pub use glibc::locate::ProgramAllocator;
pub use glibc::walk as heap_walk;
pub use heap::model::{Area, AreaKind, BlockIndex, Heap, RootRange, Roots};
pub use heap::{
    bufs, caches, dump, exit_roots, leaks, libc_residue, profile, refs, sites, suppressions, types,
    whatis,
};
pub use node::{jitdump, owner, v8};
pub use series::{fleet, growth, trend};
pub use snapshot::summary::Summary;
pub use snapshot::{audit_dump, maps_diff, summary};
pub use symbols::symbolize::{Frame, FrameKind, Symbolizer};
pub use symbols::{plumbing, symbolize, unwind};
