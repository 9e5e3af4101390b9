//! leaktrail's integration suite: one test binary, one module per capability.
//!
//! Tests compile the C fixtures under `fixtures/` with gcc, run them (under
//! the tracer where it matters) and check what leaktrail reports against
//! what each fixture is known by construction to do.

mod analyses;
mod attach;
mod core_edit;
mod cow;
mod debug_files;
mod diagnosis;
mod docs;
mod fleet;
mod growth;
mod hostile;
mod install;
mod jsheap;
mod node;
mod node_workloads;
mod recording;
mod sampling;
mod sites;
mod snapshot;
mod support;
mod symbols;
mod terminal;
mod tracer;
mod valgrind;
mod walker;
mod watch;
