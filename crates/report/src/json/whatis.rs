//! `whatis --json`, and the records it shares with `refs`: a mapping
//! ([`AreaRecord`]) and a live buffer ([`BufferHitRecord`]).

use leaktrail_analysis::whatis::{BufferHit, StackHit, Whatis};
use leaktrail_analysis::{Area, AreaKind};
use serde::Serialize;

use super::frame::{self, FrameRecord};
use super::SCHEMA_VERSION;

/// What `leaktrail whatis --json` prints: [`WhatisRecord`]'s fields after
/// `schema_version`.
#[derive(Clone, Debug, Serialize)]
pub struct WhatisDocument<'a> {
    schema_version: u32,
    #[serde(flatten)]
    whatis: WhatisRecord<'a>,
}

/// What an address is.
#[derive(Clone, Debug, Serialize)]
pub struct WhatisRecord<'a> {
    address: u64,
    area: AreaRecord<'a>,
    buffer: Option<BufferHitRecord<'a>>,
    symbol: Option<(&'a str, u64)>,
    code: Option<FrameRecord<'a>>,
    stack: Option<StackHitRecord<'a>>,
    jit: Option<FrameRecord<'a>>,
    audit: bool,
}

/// A mapping: `{start, end, perms, path, kind}` and the kind's own fields.
#[derive(Clone, Debug, Serialize)]
pub struct AreaRecord<'a> {
    start: u64,
    end: u64,
    perms: &'a str,
    path: &'a str,
    #[serde(flatten)]
    kind: AreaKindRecord,
}

/// What a mapping holds, as the `kind` field names it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind")]
pub enum AreaKindRecord {
    /// A thread's stack.
    #[serde(rename = "stack")]
    Stack {
        /// The thread.
        tid: i32,
        /// Its stack pointer.
        sp: u64,
    },
    /// Writable data or bss of a module.
    #[serde(rename = "module-data")]
    ModuleData,
    /// Static TLS.
    #[serde(rename = "tls")]
    Tls {
        /// The thread.
        tid: i32,
    },
    /// The brk heap.
    #[serde(rename = "heap")]
    Heap,
    /// A malloc arena.
    #[serde(rename = "arena")]
    Arena,
    /// mmap'd malloc chunks.
    #[serde(rename = "chunks")]
    Chunks,
    /// Other anonymous memory.
    #[serde(rename = "anon")]
    Anon,
    /// A finished thread's stack glibc keeps for reuse.
    #[serde(rename = "cached-stack")]
    CachedStack,
    /// The tracer's audit region.
    #[serde(rename = "audit")]
    Audit,
    /// A read-only or executable file mapping.
    #[serde(rename = "file")]
    File,
    /// `[vdso]` and the like.
    #[serde(rename = "special")]
    Special,
}

/// A live buffer that contains an address.
#[derive(Clone, Debug, Serialize)]
pub struct BufferHitRecord<'a> {
    addr: u64,
    size: u64,
    offset: u64,
    time_ns: u64,
    tid: u32,
    stack_id: u32,
    stack: Vec<FrameRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_name: Option<&'a str>,
}

/// A place on a thread's stack.
#[derive(Clone, Debug, Serialize)]
pub struct StackHitRecord<'a> {
    tid: i32,
    sp_offset: i64,
    frame: Option<FrameRecord<'a>>,
}

impl From<&AreaKind> for AreaKindRecord {
    fn from(k: &AreaKind) -> Self {
        match *k {
            AreaKind::Stack { tid, sp } => AreaKindRecord::Stack { tid, sp },
            AreaKind::ModuleData => AreaKindRecord::ModuleData,
            AreaKind::Tls { tid } => AreaKindRecord::Tls { tid },
            AreaKind::Heap => AreaKindRecord::Heap,
            AreaKind::Arena => AreaKindRecord::Arena,
            AreaKind::Chunks => AreaKindRecord::Chunks,
            AreaKind::Anon => AreaKindRecord::Anon,
            AreaKind::CachedStack => AreaKindRecord::CachedStack,
            AreaKind::Audit => AreaKindRecord::Audit,
            AreaKind::File => AreaKindRecord::File,
            AreaKind::Special => AreaKindRecord::Special,
        }
    }
}

impl<'a> From<&'a Area> for AreaRecord<'a> {
    fn from(a: &'a Area) -> Self {
        AreaRecord {
            start: a.start,
            end: a.end,
            perms: &a.perms,
            path: &a.path,
            kind: (&a.kind).into(),
        }
    }
}

impl<'a> From<&'a BufferHit> for BufferHitRecord<'a> {
    fn from(b: &'a BufferHit) -> Self {
        BufferHitRecord {
            addr: b.addr,
            size: b.size,
            offset: b.offset,
            time_ns: b.time_ns,
            tid: b.tid,
            stack_id: b.stack_id.0,
            stack: frame::stack(&b.stack),
            type_name: b.type_name.as_deref(),
        }
    }
}

impl<'a> From<&'a StackHit> for StackHitRecord<'a> {
    fn from(s: &'a StackHit) -> Self {
        StackHitRecord {
            tid: s.tid,
            sp_offset: s.sp_offset,
            frame: s.frame.as_ref().map(Into::into),
        }
    }
}

impl<'a> From<&'a Whatis> for WhatisRecord<'a> {
    fn from(w: &'a Whatis) -> Self {
        WhatisRecord {
            address: w.address,
            area: (&w.area).into(),
            buffer: w.buffer.as_ref().map(Into::into),
            symbol: w.symbol.as_ref().map(|(name, off)| (name.as_str(), *off)),
            code: w.code.as_ref().map(Into::into),
            stack: w.stack.as_ref().map(Into::into),
            jit: w.jit.as_ref().map(Into::into),
            audit: w.audit,
        }
    }
}

impl<'a> From<&'a Whatis> for WhatisDocument<'a> {
    fn from(w: &'a Whatis) -> Self {
        WhatisDocument {
            schema_version: SCHEMA_VERSION,
            whatis: w.into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::json::frame::tests::full_frame;
    use crate::json::golden::assert_json;

    /// An address inside a live buffer on the heap, in a global too.
    pub fn whatis() -> Whatis {
        Whatis {
            address: 0x1010,
            area: Area {
                start: 0x1000,
                end: 0x2000,
                perms: "rw-p".into(),
                path: "[heap]".into(),
                kind: AreaKind::Heap,
            },
            buffer: Some(BufferHit {
                addr: 0x1000,
                size: 32,
                offset: 16,
                time_ns: 5,
                tid: 7,
                stack_id: leaktrail_format::StackId(3),
                stack: vec![],
                type_name: None,
            }),
            symbol: Some(("g_table".into(), 8)),
            code: None,
            stack: None,
            jit: None,
            audit: false,
        }
    }

    #[test]
    fn whatis_document_fields() {
        assert_json(
            &WhatisDocument::from(&whatis()),
            r#"
{
  "schema_version": 1,
  "address": 4112,
  "area": {
    "start": 4096,
    "end": 8192,
    "perms": "rw-p",
    "path": "[heap]",
    "kind": "heap"
  },
  "buffer": {
    "addr": 4096,
    "size": 32,
    "offset": 16,
    "time_ns": 5,
    "tid": 7,
    "stack_id": 3,
    "stack": []
  },
  "symbol": [
    "g_table",
    8
  ],
  "code": null,
  "stack": null,
  "jit": null,
  "audit": false
}"#,
        );
    }

    #[test]
    fn whatis_on_a_stack() {
        let mut w = whatis();
        w.area.kind = AreaKind::Stack { tid: 9, sp: 0x1800 };
        w.buffer = None;
        w.symbol = None;
        w.stack = Some(StackHit {
            tid: 9,
            sp_offset: -8,
            frame: Some(full_frame()),
        });
        w.audit = true;
        let json = serde_json::to_string(&WhatisDocument::from(&w)).unwrap();
        assert!(
            json.contains(r#""area":{"start":4096,"end":8192,"perms":"rw-p","path":"[heap]","kind":"stack","tid":9,"sp":6144}"#),
            "{json}"
        );
        assert!(
            json.contains(r#""stack":{"tid":9,"sp_offset":-8,"frame":{"address":4096,"#),
            "{json}"
        );
        assert!(json.ends_with(r#""jit":null,"audit":true}"#), "{json}");
    }

    #[test]
    fn area_kinds_as_spelled() {
        let kinds = [
            (AreaKind::ModuleData, r#"{"kind":"module-data"}"#),
            (AreaKind::Tls { tid: 1 }, r#"{"kind":"tls","tid":1}"#),
            (AreaKind::Arena, r#"{"kind":"arena"}"#),
            (AreaKind::Chunks, r#"{"kind":"chunks"}"#),
            (AreaKind::Anon, r#"{"kind":"anon"}"#),
            (AreaKind::Audit, r#"{"kind":"audit"}"#),
            (AreaKind::File, r#"{"kind":"file"}"#),
            (AreaKind::Special, r#"{"kind":"special"}"#),
        ];
        for (k, expected) in kinds {
            let got = serde_json::to_string(&AreaKindRecord::from(&k)).unwrap();
            assert_eq!(got, expected);
        }
    }
}
