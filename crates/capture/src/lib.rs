//! Live processes: launching, sampling, stopping and reading them.
//!
//! * [`procfs`] reads what `/proc/PID/…` says of a live process: `stat`,
//!   `smaps` (parsed and classified by `leaktrail_recording::maps`),
//!   `smaps_rollup`, the threads' stack pointers, the memory limit.
//! * [`watch`] samples a process over time into a recording directory
//!   (`leaktrail_recording::dir`).
//! * [`launch`] starts a target; [`supervise`] starts it under the tracer
//!   and answers the tracer's hand-overs; [`node`] adds Node.js's flags.
//! * [`attach`] injects the tracer into a running process (ptrace, its own
//!   `dlopen`) and records it as `run` does; `detach` takes it out again.
//! * [`snapshot`] stops the world and writes an ELF core with leaktrail's
//!   note (the encoders are `leaktrail_recording::snapshot`'s).
//! * [`memory`] reads a live process's memory as a
//!   `leaktrail_recording::Memory`.
//!
//! This crate gathers; it does not analyse (that is `leaktrail-analysis`),
//! and what it writes is defined in `leaktrail-recording`.
#![deny(missing_docs)]

pub mod attach;
pub mod error;
pub(crate) mod inject;
pub mod launch;
pub mod memory;
pub mod node;
pub mod procfs;
pub mod snapshot;
pub mod supervise;
pub mod watch;

pub use error::Error;
