//! One module per subcommand: its flags, and the one library call it makes.

pub mod demo;
pub mod growth;
pub mod info;
pub mod maps;
pub mod run;
pub mod snapshot;
pub mod trend;
pub mod watch;
