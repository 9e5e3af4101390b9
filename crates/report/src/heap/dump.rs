//! `leaktrail dump`.

use std::fmt::Write;

use leaktrail_analysis::dump::{Meaning, Word};

use super::count;

/// One word a line: address, value, meaning.
pub fn text(words: &[Word]) -> String {
    let mut o = String::new();
    for w in words {
        let m = match &w.meaning {
            Meaning::Buffer { addr, size, offset } => {
                format!("-> buffer {addr:#x}+{offset:#x} ({} bytes)", count(*size))
            }
            Meaning::Tagged { addr, offset, tag } => {
                format!("-> buffer {addr:#x}+{offset:#x}, tagged |{tag:#x}")
            }
            Meaning::Symbol { name, offset } => format!("-> {name}+{offset:#x}"),
            Meaning::Jit { function } => format!("-> {function}"),
            Meaning::Mapped { area } => format!("-> {area}"),
            Meaning::Zero => String::new(),
            Meaning::SmallInt => format!("{}", w.value),
            Meaning::Text { text } => format!("{text:?}"),
            Meaning::Other => String::new(),
        };
        let _ = writeln!(o, "{:#x}:  {:#018x}  {m}", w.addr, w.value);
    }
    o
}
