//! `jsobjects --json` and `jsprint --json`: the JS heap of a snapshot.

use leaktrail_analysis::v8::{
    Census, ConstructorCount, GlobalHandleCount, HandleScopeCount, JsValue, SpaceUse,
};
use serde::Serialize;

use super::SCHEMA_VERSION;

/// What `leaktrail jsobjects --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct JsObjectsDocument<'a> {
    schema_version: u32,
    objects: u64,
    bytes: u64,
    unreachable_objects: u64,
    unreachable_bytes: u64,
    heap_objects: u64,
    heap_object_bytes: u64,
    constructors: Vec<ConstructorRecord<'a>>,
    spaces: Vec<SpaceRecord<'a>>,
    global_handles: Option<GlobalHandlesRecord>,
    handle_scopes: Option<HandleScopesRecord>,
    external_strings: ExternalStringsRecord,
}

/// V8's global handles (null when not found).
#[derive(Clone, Debug, Serialize)]
pub struct GlobalHandlesRecord {
    in_use: u64,
    strong: u64,
    weak: u64,
    blocks: u64,
}

impl From<GlobalHandleCount> for GlobalHandlesRecord {
    fn from(g: GlobalHandleCount) -> Self {
        GlobalHandlesRecord {
            in_use: g.in_use,
            strong: g.strong,
            weak: g.weak,
            blocks: g.blocks,
        }
    }
}

/// The handle-scope blocks (null when not found).
#[derive(Clone, Debug, Serialize)]
pub struct HandleScopesRecord {
    blocks: u64,
    handles: u64,
}

impl From<HandleScopeCount> for HandleScopesRecord {
    fn from(h: HandleScopeCount) -> Self {
        HandleScopesRecord {
            blocks: h.blocks,
            handles: h.handles,
        }
    }
}

/// External strings: their characters are off the JS heap.
#[derive(Clone, Debug, Serialize)]
pub struct ExternalStringsRecord {
    count: u64,
    bytes: u64,
}

/// JS objects of one constructor.
#[derive(Clone, Debug, Serialize)]
pub struct ConstructorRecord<'a> {
    constructor: &'a str,
    count: u64,
    bytes: u64,
    addresses: &'a [u64],
}

/// One of V8's spaces.
#[derive(Clone, Debug, Serialize)]
pub struct SpaceRecord<'a> {
    name: &'a str,
    used: u64,
    committed: u64,
    pages: u64,
}

impl<'a> From<&'a SpaceUse> for SpaceRecord<'a> {
    fn from(s: &'a SpaceUse) -> Self {
        SpaceRecord {
            name: s.name,
            used: s.used,
            committed: s.committed,
            pages: s.pages,
        }
    }
}

impl<'a> JsObjectsDocument<'a> {
    /// The document; with `with_addresses` false, `addresses` are empty
    /// lists (they are the bulk of the document).
    pub fn new(c: &'a Census, with_addresses: bool) -> Self {
        let record = |k: &'a ConstructorCount| ConstructorRecord {
            constructor: &k.constructor,
            count: k.count,
            bytes: k.bytes,
            addresses: if with_addresses { &k.addrs } else { &[] },
        };
        JsObjectsDocument {
            schema_version: SCHEMA_VERSION,
            objects: c.objects,
            bytes: c.bytes,
            unreachable_objects: c.unreachable_objects,
            unreachable_bytes: c.unreachable_bytes,
            heap_objects: c.heap_objects,
            heap_object_bytes: c.heap_object_bytes,
            constructors: c.constructors.iter().map(record).collect(),
            spaces: c.spaces.iter().map(SpaceRecord::from).collect(),
            global_handles: c.handles.global.map(Into::into),
            handle_scopes: c.handles.scopes.map(Into::into),
            external_strings: ExternalStringsRecord {
                count: c.external_strings,
                bytes: c.external_string_bytes,
            },
        }
    }
}

/// What `leaktrail jsprint --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct JsPrintDocument<'a> {
    schema_version: u32,
    value: ValueRecord<'a>,
}

impl<'a> From<&'a JsValue> for JsPrintDocument<'a> {
    fn from(v: &'a JsValue) -> Self {
        JsPrintDocument {
            schema_version: SCHEMA_VERSION,
            value: ValueRecord::from(v),
        }
    }
}

/// A JS value, as the `kind` field names it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ValueRecord<'a> {
    /// A small integer.
    Smi {
        /// Its value.
        value: i64,
    },
    /// A heap number.
    Number {
        /// Its value.
        value: f64,
    },
    /// A string.
    String {
        /// Its characters (the start, when truncated).
        value: &'a str,
        /// Its length.
        length: u64,
        /// Whether `value` is only the start.
        truncated: bool,
    },
    /// `undefined`, `null`, `true`, `false`, the hole.
    Oddball {
        /// Its name.
        value: &'a str,
    },
    /// A symbol.
    Symbol {
        /// Its description.
        description: Option<&'a str>,
    },
    /// A function.
    Function {
        /// Its address.
        address: u64,
        /// Its name.
        name: &'a str,
    },
    /// An object or array.
    Object {
        /// Its address.
        address: u64,
        /// Its constructor.
        constructor: &'a str,
        /// Its named properties (null past the depth).
        properties: Option<Vec<PropertyRecord<'a>>>,
        /// Its elements (null past the depth).
        elements: Option<Vec<ValueRecord<'a>>>,
        /// An array's length.
        length: Option<u64>,
        /// Members left out.
        omitted: u64,
    },
    /// Another heap object.
    Other {
        /// Its address.
        address: u64,
        /// V8's instance type name.
        #[serde(rename = "type")]
        type_name: &'a str,
    },
    /// A word that does not decode.
    Unreadable {
        /// The word.
        word: u64,
    },
}

/// A named property.
#[derive(Clone, Debug, Serialize)]
pub struct PropertyRecord<'a> {
    name: &'a str,
    value: ValueRecord<'a>,
}

impl<'a> From<&'a JsValue> for ValueRecord<'a> {
    fn from(v: &'a JsValue) -> Self {
        match v {
            JsValue::Smi(n) => ValueRecord::Smi { value: *n },
            JsValue::Number(x) => ValueRecord::Number { value: *x },
            JsValue::String {
                text,
                length,
                truncated,
            } => ValueRecord::String {
                value: text,
                length: *length,
                truncated: *truncated,
            },
            JsValue::Oddball(n) => ValueRecord::Oddball { value: n },
            JsValue::Symbol(d) => ValueRecord::Symbol {
                description: d.as_deref(),
            },
            JsValue::Function { addr, name } => ValueRecord::Function {
                address: *addr,
                name,
            },
            JsValue::Object {
                addr,
                constructor,
                properties,
                elements,
                length,
                omitted,
            } => ValueRecord::Object {
                address: *addr,
                constructor,
                properties: properties.as_ref().map(|p| {
                    p.iter()
                        .map(|(k, v)| PropertyRecord {
                            name: k,
                            value: ValueRecord::from(v),
                        })
                        .collect()
                }),
                elements: elements
                    .as_ref()
                    .map(|e| e.iter().map(ValueRecord::from).collect()),
                length: *length,
                omitted: *omitted,
            },
            JsValue::Other { addr, type_name } => ValueRecord::Other {
                address: *addr,
                type_name,
            },
            JsValue::Unreadable(w) => ValueRecord::Unreadable { word: *w },
        }
    }
}
