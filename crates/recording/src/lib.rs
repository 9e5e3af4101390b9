//! Everything leaktrail records, and reads back.
//!
//! This crate is the one home of leaktrail's files and of the data types
//! they carry, so that the crates that gather (`leaktrail-capture`) and the
//! crates that analyse and render (`leaktrail-analysis`, `leaktrail-report`)
//! share types without depending on each other:
//!
//! * [`dir`]: the recording directory — [`Meta`], [`Sample`], [`Detail`],
//!   [`RecordingWriter`] and [`Recording`], and its snapshots
//!   ([`dir::snapshots`]).
//! * [`snapshot`]: snapshot cores, both directions — the ELF container and
//!   notes a writer encodes ([`snapshot::elf`], [`snapshot::note`],
//!   [`snapshot::metadata`]) next to the reader, [`Snapshot`], which maps a
//!   core (ours, `gcore`'s or the kernel's) without copying it.
//! * [`maps`]: the one [`Mapping`] type, the one `maps`/`smaps` parser and
//!   the one classifier of mappings into [`Region`]s.
//! * [`memory`]: the [`Memory`] trait every reader of an address space goes
//!   through (a core, a live process, our own memory in tests).
//! * [`audit`]: decoding the tracer's audit region from any [`Memory`].
//! * [`output`]: the one rule for writing an output over what is there.
//! * [`duration`]: `250ms`/`10m` parsing and printing.
//!
//! Nothing here touches a live process: reading one is
//! `leaktrail-capture`'s (which implements [`Memory`] for it).
//!
//! ```no_run
//! use leaktrail_recording::{audit, Recording, Snapshot};
//! let rec = Recording::open("leaktrail-app-42-20260101T000000Z".as_ref())?;
//! println!("{} samples of pid {}", rec.samples.len(), rec.meta.pid);
//! for path in leaktrail_recording::dir::snapshots::list(&rec.dir)? {
//!     let snap = Snapshot::open(&path)?;
//!     if let Some(a) = audit::find(&snap, snap.pid().map(|p| p as u32))? {
//!         println!("{}: {} live bytes", path.display(), a.live_bytes());
//!     }
//! }
//! # Ok::<(), leaktrail_recording::Error>(())
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod dir;
pub mod duration;
mod error;
pub mod maps;
pub mod memory;
pub mod output;
pub mod snapshot;

pub use audit::{Audit, Block, HeapPeak, SiteStats};
pub use dir::{Detail, Meta, Recording, RecordingWriter, Sample};
pub use error::Error;
pub use maps::{Mapping, Region, RegionBytes};
pub use memory::{LocalMemory, Memory};
pub use snapshot::metadata::{is_node, Metadata, Module};
pub use snapshot::Snapshot;
