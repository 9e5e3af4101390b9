//! `::dump` with meaning: the words at an address, each annotated as a
//! pointer into a live buffer (with offset), a symbol, JIT code, a tagged
//! pointer, a small integer or text.

use crate::heap::model::Heap;
use crate::symbolize::Symbolizer;
use crate::Error;

/// What a word looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// Points into a live buffer.
    Buffer {
        /// The buffer.
        addr: u64,
        /// Its size.
        size: u64,
        /// Offset of the pointer into it.
        offset: u64,
    },
    /// Points into a live buffer once its low tag bits are cleared.
    Tagged {
        /// The buffer.
        addr: u64,
        /// Offset of the untagged pointer into it.
        offset: u64,
        /// The tag bits.
        tag: u64,
    },
    /// A module symbol (a global or a function).
    Symbol {
        /// Its name.
        name: String,
        /// Offset into it.
        offset: u64,
    },
    /// JIT code.
    Jit {
        /// The frame it names.
        function: String,
    },
    /// Somewhere else in mapped memory.
    Mapped {
        /// The kind of area.
        area: String,
    },
    /// Zero.
    Zero,
    /// An integer below 2^32.
    SmallInt,
    /// Eight printable bytes.
    Text {
        /// They, as text.
        text: String,
    },
    /// Nothing recognisable.
    Other,
}

/// One annotated word.
#[derive(Clone, Debug)]
pub struct Word {
    /// Its address.
    pub addr: u64,
    /// Its value.
    pub value: u64,
    /// What it looks like.
    pub meaning: Meaning,
}

/// The words of `[addr, addr + len)` (aligned down to 8).
pub fn dump(
    heap: &Heap<'_>,
    symbolizer: &Symbolizer,
    addr: u64,
    len: u64,
) -> Result<Vec<Word>, Error> {
    let start = addr & !7;
    // At the top of the address space the last word stops short of 2^64.
    let end = addr
        .saturating_add(len.max(1))
        .checked_next_multiple_of(8)
        .unwrap_or(!7);
    let mut bytes = vec![0u8; (end - start) as usize];
    heap.memory.read(start, &mut bytes)?;
    Ok(bytes
        .chunks_exact(8)
        .enumerate()
        .map(|(k, w)| {
            let value = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            Word {
                addr: start + 8 * k as u64,
                value,
                meaning: meaning(heap, symbolizer, value, w),
            }
        })
        .collect())
}

fn meaning(heap: &Heap<'_>, symbolizer: &Symbolizer, v: u64, raw: &[u8]) -> Meaning {
    if v == 0 {
        return Meaning::Zero;
    }
    // Low bits set on a value whose aligned form is in a buffer: a tagged
    // pointer (V8's heap objects, pointer-packing) more often than a
    // char pointer.
    if v & 7 != 0 {
        if let Some(b) = heap.block_at(v & !7) {
            return Meaning::Tagged {
                addr: b.addr,
                offset: (v & !7) - b.addr,
                tag: v & 7,
            };
        }
    }
    if let Some(b) = heap.block_at(v) {
        return Meaning::Buffer {
            addr: b.addr,
            size: b.size,
            offset: v - b.addr,
        };
    }
    if let Some(area) = heap.area_of(v) {
        if let Some((name, offset)) = symbolizer.symbol(v) {
            return Meaning::Symbol { name, offset };
        }
        if let Some(f) = symbolizer.jit(v) {
            return Meaning::Jit {
                function: f.to_string(),
            };
        }
        return Meaning::Mapped {
            area: area.kind.name().to_string(),
        };
    }
    if let Some(f) = symbolizer.jit(v) {
        return Meaning::Jit {
            function: f.to_string(),
        };
    }
    if v < 1 << 32 {
        return Meaning::SmallInt;
    }
    if raw.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        return Meaning::Text {
            text: String::from_utf8_lossy(raw).into_owned(),
        };
    }
    Meaning::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, HeapBuilder, ANON, SP};

    #[test]
    fn each_word_says_what_it_looks_like() {
        let mut b = HeapBuilder::new();
        let t = b.block(64);
        let at = ANON + 0x100;
        let words: [u64; 8] = [
            0,
            t + 8,
            t | 3,
            SP + 8,
            42,
            u64::from_le_bytes(*b"leaktrai"),
            0xdead_beef_dead_beef,
            t + 64,
        ];
        for (k, &w) in words.iter().enumerate() {
            b.write(at + 8 * k as u64, w);
        }
        let s = b.build();
        let heap = s.heap();
        // Unaligned start and length: whole words around them.
        let got = dump(&heap, &synthetic::symbolizer(), at + 3, 60).unwrap();
        assert_eq!(got.len(), 8);
        assert_eq!(got[0].addr, at);
        let meanings: Vec<Meaning> = got.into_iter().map(|w| w.meaning).collect();
        assert_eq!(
            meanings,
            [
                Meaning::Zero,
                Meaning::Buffer {
                    addr: t,
                    size: 64,
                    offset: 8
                },
                Meaning::Tagged {
                    addr: t,
                    offset: 0,
                    tag: 3
                },
                Meaning::Mapped {
                    area: "stack".into()
                },
                Meaning::SmallInt,
                Meaning::Text {
                    text: "leaktrai".into()
                },
                Meaning::Other,
                // One past the end: just more of the [heap] mapping.
                Meaning::Mapped {
                    area: "heap".into()
                },
            ]
        );
    }

    #[test]
    fn dumping_unmapped_memory_fails() {
        let s = HeapBuilder::new().build();
        let heap = s.heap();
        assert!(matches!(
            dump(&heap, &synthetic::symbolizer(), 0x10, 8),
            Err(Error::Recording(
                leaktrail_recording::Error::Unmapped { .. }
            ))
        ));
    }
}
