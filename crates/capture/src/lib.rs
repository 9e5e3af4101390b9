//! Launching, attaching to and sampling Linux processes.
//!
//! * [`procfs`] parses what `/proc/PID/…` says: `stat`, `maps`, `smaps`,
//!   `smaps_rollup`, and classifies mappings into [`procfs::Region`]s.
//! * [`watch`] samples a process over time into a [`recording`] directory.
//! * [`duration`] parses and prints time spans (`250ms`, `10m`).
//! * [`launch`] starts a target (optionally with the tracer preloaded).
//! * [`snapshot`] stops the world and writes an ELF core with leaktrail's
//!   note.
//!
//! This crate gathers; it does not analyse (that is `leaktrail-analysis`).
#![deny(missing_docs)]

pub mod duration;
pub mod error;
pub mod launch;
pub mod node;
pub mod procfs;
pub mod recording;
pub mod snapshot;
pub mod supervise;
pub mod watch;

pub use error::Error;
