//! `dump --json`.

use leaktrail_analysis::dump::{Meaning, Word};
use serde::Serialize;

use super::SCHEMA_VERSION;

/// What `leaktrail dump --json` prints.
///
/// Before documents had a `schema_version`, `dump` printed the bare list of
/// words; it is now the `words` field.
#[derive(Clone, Debug, Serialize)]
pub struct DumpDocument<'a> {
    schema_version: u32,
    words: Vec<WordRecord<'a>>,
}

/// One annotated word.
#[derive(Clone, Debug, Serialize)]
pub struct WordRecord<'a> {
    addr: u64,
    value: u64,
    meaning: MeaningRecord<'a>,
}

/// What a word looks like, as the `kind` field names it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind")]
pub enum MeaningRecord<'a> {
    /// Points into a live buffer.
    #[serde(rename = "buffer")]
    Buffer {
        /// The buffer.
        addr: u64,
        /// Its size.
        size: u64,
        /// Offset of the pointer into it.
        offset: u64,
    },
    /// Points into a live buffer once its low tag bits are cleared.
    #[serde(rename = "tagged")]
    Tagged {
        /// The buffer.
        addr: u64,
        /// Offset of the untagged pointer into it.
        offset: u64,
        /// The tag bits.
        tag: u64,
    },
    /// A module symbol.
    #[serde(rename = "symbol")]
    Symbol {
        /// Its name.
        name: &'a str,
        /// Offset into it.
        offset: u64,
    },
    /// JIT code.
    #[serde(rename = "jit")]
    Jit {
        /// The frame it names.
        function: &'a str,
    },
    /// Somewhere else in mapped memory.
    #[serde(rename = "mapped")]
    Mapped {
        /// The kind of area.
        area: &'a str,
    },
    /// Zero.
    #[serde(rename = "zero")]
    Zero,
    /// An integer below 2^32.
    #[serde(rename = "small-int")]
    SmallInt,
    /// Eight printable bytes.
    #[serde(rename = "text")]
    Text {
        /// They, as text.
        text: &'a str,
    },
    /// Nothing recognisable.
    #[serde(rename = "other")]
    Other,
}

impl<'a> From<&'a Meaning> for MeaningRecord<'a> {
    fn from(m: &'a Meaning) -> Self {
        match m {
            &Meaning::Buffer { addr, size, offset } => MeaningRecord::Buffer { addr, size, offset },
            &Meaning::Tagged { addr, offset, tag } => MeaningRecord::Tagged { addr, offset, tag },
            Meaning::Symbol { name, offset } => MeaningRecord::Symbol {
                name,
                offset: *offset,
            },
            Meaning::Jit { function } => MeaningRecord::Jit { function },
            Meaning::Mapped { area } => MeaningRecord::Mapped { area },
            Meaning::Zero => MeaningRecord::Zero,
            Meaning::SmallInt => MeaningRecord::SmallInt,
            Meaning::Text { text } => MeaningRecord::Text { text },
            Meaning::Other => MeaningRecord::Other,
        }
    }
}

impl<'a> From<&'a Word> for WordRecord<'a> {
    fn from(w: &'a Word) -> Self {
        WordRecord {
            addr: w.addr,
            value: w.value,
            meaning: (&w.meaning).into(),
        }
    }
}

impl<'a> DumpDocument<'a> {
    /// The document of `words`, as `dump::dump` returns them.
    pub fn new(words: &'a [Word]) -> Self {
        DumpDocument {
            schema_version: SCHEMA_VERSION,
            words: words.iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::golden::assert_json;

    #[test]
    fn dump_document_fields() {
        let words = [
            Word {
                addr: 8,
                value: 0x1001,
                meaning: Meaning::Tagged {
                    addr: 0x1000,
                    offset: 0,
                    tag: 1,
                },
            },
            Word {
                addr: 16,
                value: 0,
                meaning: Meaning::Zero,
            },
        ];
        assert_json(
            &DumpDocument::new(&words),
            r#"
{
  "schema_version": 1,
  "words": [
    {
      "addr": 8,
      "value": 4097,
      "meaning": {
        "kind": "tagged",
        "addr": 4096,
        "offset": 0,
        "tag": 1
      }
    },
    {
      "addr": 16,
      "value": 0,
      "meaning": {
        "kind": "zero"
      }
    }
  ]
}"#,
        );
    }

    #[test]
    fn meanings_as_spelled() {
        let cases = [
            (
                Meaning::Buffer {
                    addr: 1,
                    size: 2,
                    offset: 3,
                },
                r#"{"kind":"buffer","addr":1,"size":2,"offset":3}"#,
            ),
            (
                Meaning::Symbol {
                    name: "g".into(),
                    offset: 4,
                },
                r#"{"kind":"symbol","name":"g","offset":4}"#,
            ),
            (
                Meaning::Jit {
                    function: "f".into(),
                },
                r#"{"kind":"jit","function":"f"}"#,
            ),
            (
                Meaning::Mapped {
                    area: "anon".into(),
                },
                r#"{"kind":"mapped","area":"anon"}"#,
            ),
            (Meaning::SmallInt, r#"{"kind":"small-int"}"#),
            (
                Meaning::Text {
                    text: "abcdefgh".into(),
                },
                r#"{"kind":"text","text":"abcdefgh"}"#,
            ),
            (Meaning::Other, r#"{"kind":"other"}"#),
        ];
        for (m, expected) in &cases {
            let got = serde_json::to_string(&MeaningRecord::from(m)).unwrap();
            assert_eq!(got, *expected);
        }
    }
}
