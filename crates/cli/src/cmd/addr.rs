//! Parsing addresses and numbers the way debuggers print them.

use crate::bad_input;

/// `0x7f..`, `7f..` with a hex letter, or decimal digits.
pub fn parse(what: &str, text: &str) -> anyhow::Result<u64> {
    let t = text.trim().replace('_', "");
    let parsed = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if t.chars().any(|c| c.is_ascii_alphabetic()) {
        u64::from_str_radix(&t, 16).ok()
    } else {
        t.parse().ok()
    };
    match parsed {
        Some(v) => Ok(v),
        None => {
            bad_input!("{what} {text:?} is not a number (expected hex like 0x7f3a10 or decimal)")
        }
    }
}
