//! Exit statuses and how errors reach the user.
//!
//! 0 success, 1 the command failed, 2 bad usage or input, 3 `leaks
//! --fail-on` found leaks, 128+N interrupted by signal N after cleaning up
//! (130 for SIGINT, 143 for SIGTERM: what a shell reports for a process the
//! signal killed, so scripts see the same status as before we caught it). Errors print as one line: the whole context chain,
//! joined by ": ".

use std::process::ExitCode;

/// Marks an error as the user's input (exit 2) rather than our failure.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Returns early with a [`BadInput`] error.
#[macro_export]
macro_rules! bad_input {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::exit::BadInput(format!($($arg)*))))
    };
}

/// The status of a command that signal `signal` interrupted and that
/// cleaned up before exiting: 128 + its number.
pub fn interrupted(signal: i32) -> ExitCode {
    ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
}

/// Whether any error in the chain is the user's input.
fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<BadInput>()
            || e.downcast_ref::<leaktrail_recording::Error>()
                .is_some_and(|e| e.is_bad_input())
            || e.downcast_ref::<leaktrail_capture::Error>()
                .is_some_and(|e| e.is_bad_input())
            || e.downcast_ref::<leaktrail_analysis::Error>()
                .is_some_and(|e| e.is_bad_input())
            || e.downcast_ref::<leaktrail_export::Error>()
                .is_some_and(|e| e.is_bad_input())
            || e.downcast_ref::<leaktrail_store::Error>()
                .is_some_and(|e| e.is_bad_input())
    })
}

/// Turns a command's result into the process's exit status.
pub fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            // Library errors often print their source too (`{path}: {source}`);
            // skip a cause whose text its parent already ends with.
            let mut parts: Vec<String> = Vec::new();
            for e in err.chain() {
                let text = e.to_string();
                if !parts.last().is_some_and(|p| p.ends_with(&text)) {
                    parts.push(text);
                }
            }
            let line = parts.join(": ");
            eprintln!("leaktrail: {line}");
            if is_bad_input(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
