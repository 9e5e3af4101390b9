//! Views of one snapshot as a whole: what it holds (`info`, [`summary`]),
//! its mappings compared with another's ([`maps_diff`]) and the audit with
//! symbolized stacks ([`audit_dump`]). Opening the core itself is
//! `leaktrail_recording::Snapshot`'s.

pub mod audit_dump;
pub mod maps_diff;
pub mod summary;
