//! glibc's malloc seen from its own state in a snapshot or core: where its
//! structures are ([`locate`]: libc's symbols and debug info, else the
//! layout of the glibc version in the core, checked by walking) and every
//! chunk in use ([`walk`]: each arena's heaps chunk by chunk, mmapped
//! chunks, minus the per-thread caches, the fastbins, the bins and the top
//! chunk). [`walk::compare`] checks a walk against the tracer's audit.
//!
//! The layout is x86_64 glibc 2.35 to 2.39 with tcache and safe-linking
//! (Debian 12's 2.36 here): [`layout`] names every offset once.

pub mod layout;
pub mod locate;
pub mod walk;
