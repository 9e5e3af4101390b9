//! Analyses over time: the trend verdict of a watch series ([`trend`]) and
//! which allocation sites grow across snapshots ([`growth`]), both on the
//! shared robust statistics of [`stats`]; [`fleet`] is growth over many
//! processes' recordings.

pub mod fleet;
pub mod growth;
pub mod stats;
pub mod trend;
