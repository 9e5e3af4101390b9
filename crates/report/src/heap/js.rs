//! `jsobjects` and `jsprint` as text: JS objects by constructor, with V8's
//! own numbers per space, and one object with its members.

use std::fmt::Write;

use leaktrail_analysis::v8::{Census, JsValue};

use super::count;
use crate::text::bytes;

/// `jsobjects`: the constructors with the most bytes first (`top` of
/// them; 0 for all), then V8's spaces.
pub fn census(c: &Census, top: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "JS heap: {} objects, {} in {} constructors (of {} heap objects, {}); {} unreachable JS objects ({}) not yet collected, not counted",
        count(c.objects),
        bytes(c.bytes as f64),
        count(c.constructors.len() as u64),
        count(c.heap_objects),
        bytes(c.heap_object_bytes as f64),
        count(c.unreachable_objects),
        bytes(c.unreachable_bytes as f64),
    );
    let _ = writeln!(o, "{:>12} {:>12}  constructor", "objects", "bytes");
    let shown = if top == 0 { c.constructors.len() } else { top };
    for k in c.constructors.iter().take(shown) {
        let _ = writeln!(
            o,
            "{:>12} {:>12}  {}",
            count(k.count),
            count(k.bytes),
            k.constructor
        );
    }
    if c.constructors.len() > shown {
        let _ = writeln!(
            o,
            "{:>12} more constructors (--top 0 lists them all)",
            count((c.constructors.len() - shown) as u64)
        );
    }
    spaces(&mut o, c);
    handles(&mut o, c);
    o
}

/// Why V8's traced handles are not counted beside its global handles.
pub const TRACED_HANDLES: &str = "not available (TracedReference, which embedders use for \
     wrapper objects, lives in V8 11's TracedHandles, apart from the global handles and \
     behind a pointer in the Isolate that no v8dbg_ symbol locates and nothing checks)";

/// V8's handles and the external strings' bytes, one line each.
pub fn handles(o: &mut String, c: &Census) {
    let h = &c.handles;
    match h.global {
        Some(g) => {
            let _ = writeln!(
                o,
                "\nV8 global handles: {} in use ({} strong, {} weak) in {} blocks",
                count(g.in_use),
                count(g.strong),
                count(g.weak),
                count(g.blocks)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "\nV8 global handles: not available (V8's GlobalHandles not found near its heap)"
            );
        }
    }
    let _ = writeln!(o, "V8 traced handles: {TRACED_HANDLES}");
    match h.scopes {
        Some(s) => {
            let _ = writeln!(
                o,
                "handle scopes: {} local handles in {} blocks",
                count(s.handles),
                count(s.blocks)
            );
        }
        None => {
            let _ = writeln!(o, "handle scopes: not available");
        }
    }
    let _ = writeln!(
        o,
        "external strings: {} strings, {} of characters off the JS heap",
        count(c.external_strings),
        bytes(c.external_string_bytes as f64)
    );
}

/// V8's spaces: used of committed, as V8's own counters say.
pub fn spaces(o: &mut String, c: &Census) {
    if c.spaces.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nV8 spaces (V8's own counters):");
    let _ = writeln!(
        o,
        "  {:<26} {:>12} {:>12} {:>6}",
        "space", "used", "committed", "pages"
    );
    for s in &c.spaces {
        let _ = writeln!(
            o,
            "  {:<26} {:>12} {:>12} {:>6}",
            s.name,
            bytes(s.used as f64),
            bytes(s.committed as f64),
            count(s.pages)
        );
    }
}

/// `jsobjects --constructor NAME`: the addresses of its objects, one a
/// line (for `jsprint`).
pub fn addresses(c: &Census, constructor: &str) -> String {
    let mut o = String::new();
    if let Some(k) = c.get(constructor) {
        for a in &k.addrs {
            let _ = writeln!(o, "{a:#x}");
        }
    }
    o
}

/// `jsprint`: the value, objects spread over lines, arrays of plain
/// values on one.
pub fn value(v: &JsValue) -> String {
    let mut o = String::new();
    if let JsValue::Object { addr, .. }
    | JsValue::Function { addr, .. }
    | JsValue::Other { addr, .. } = v
    {
        let _ = write!(o, "{addr:#x}: ");
    }
    write_value(&mut o, v, 0);
    o.push('\n');
    o
}

fn is_plain(v: &JsValue) -> bool {
    !matches!(
        v,
        JsValue::Object {
            properties: Some(_),
            ..
        }
    )
}

fn write_value(o: &mut String, v: &JsValue, indent: usize) {
    match v {
        JsValue::Smi(n) => {
            let _ = write!(o, "{n}");
        }
        JsValue::Number(x) => {
            let _ = write!(o, "{x}");
        }
        JsValue::String {
            text,
            length,
            truncated,
        } => {
            let _ = write!(o, "{text:?}");
            if *truncated {
                let _ = write!(o, "... ({} chars)", count(*length));
            }
        }
        JsValue::Oddball(name) => o.push_str(name),
        JsValue::Symbol(d) => {
            let _ = write!(o, "Symbol({})", d.as_deref().unwrap_or(""));
        }
        JsValue::Function { name, .. } => {
            let name = if name.is_empty() { "(anonymous)" } else { name };
            let _ = write!(o, "<Function {name}>");
        }
        JsValue::Other { addr, type_name } => {
            let _ = write!(o, "<{type_name} {addr:#x}>");
        }
        JsValue::Unreadable(w) => {
            let _ = write!(o, "<unreadable {w:#x}>");
        }
        JsValue::Object {
            addr,
            constructor,
            properties,
            elements,
            length,
            omitted,
        } => {
            let (Some(props), Some(elems)) = (properties, elements) else {
                let _ = write!(o, "<{constructor} {addr:#x}>");
                return;
            };
            let pad = "    ".repeat(indent + 1);
            let is_array = length.is_some();
            if is_array && props.is_empty() && elems.iter().all(is_plain) {
                o.push('[');
                for (i, e) in elems.iter().enumerate() {
                    if i > 0 {
                        o.push_str(", ");
                    }
                    write_value(o, e, indent + 1);
                }
                if *omitted > 0 {
                    let _ = write!(o, ", ... {} more", count(*omitted));
                }
                o.push(']');
                return;
            }
            let _ = write!(o, "{constructor} {{");
            if let Some(n) = length {
                let _ = write!(o, " length {}", count(*n));
            }
            o.push('\n');
            for (k, v) in props {
                let _ = write!(o, "{pad}{k}: ");
                write_value(o, v, indent + 1);
                o.push_str(",\n");
            }
            for (i, e) in elems.iter().enumerate() {
                let _ = write!(o, "{pad}[{i}]: ");
                write_value(o, e, indent + 1);
                o.push_str(",\n");
            }
            if *omitted > 0 {
                let _ = writeln!(o, "{pad}... {} more members", count(*omitted));
            }
            let _ = write!(o, "{}}}", "    ".repeat(indent));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> JsValue {
        JsValue::String {
            text: t.into(),
            length: t.len() as u64,
            truncated: false,
        }
    }

    #[test]
    fn an_object_prints_its_fields_and_an_array_of_plain_values_on_one_line() {
        let items = JsValue::Object {
            addr: 0x20,
            constructor: "Array".into(),
            properties: Some(vec![]),
            elements: Some(vec![JsValue::Smi(1), s("two"), JsValue::Number(3.25)]),
            length: Some(3),
            omitted: 0,
        };
        let v = JsValue::Object {
            addr: 0x10,
            constructor: "Marker".into(),
            properties: Some(vec![
                ("label".into(), s("m")),
                ("count".into(), JsValue::Number(42.5)),
                ("items".into(), items),
                ("next".into(), JsValue::Oddball("null")),
            ]),
            elements: Some(vec![]),
            length: None,
            omitted: 0,
        };
        assert_eq!(
            value(&v),
            "0x10: Marker {\n    label: \"m\",\n    count: 42.5,\n    items: [1, \"two\", 3.25],\n    next: null,\n}\n"
        );
    }
}
