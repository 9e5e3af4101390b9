//! Reading JS values off the heap: strings, numbers, oddballs, objects
//! with their named properties and elements, functions by name, and the
//! constructor name of a map (what `jsobjects` groups by).

use super::heap::JsHeap;

/// The longest string we read whole; longer ones are cut with a note.
const STRING_LIMIT: usize = 4096;
/// The most properties or elements printed of one object.
const MEMBER_LIMIT: usize = 256;

/// A JS value as decoded from a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum JsValue {
    /// A small integer.
    Smi(i64),
    /// A heap number.
    Number(f64),
    /// A string; `truncated` when longer than we read.
    String {
        /// The characters read.
        text: String,
        /// Its length in UTF-16 units.
        length: u64,
        /// Whether `text` is only the start.
        truncated: bool,
    },
    /// `undefined`, `null`, `true`, `false`, the hole.
    Oddball(&'static str),
    /// A symbol, with its description if it has one.
    Symbol(Option<String>),
    /// A function, by name.
    Function {
        /// Its address.
        addr: u64,
        /// Its name (empty for an anonymous function).
        name: String,
    },
    /// An object (arrays included) with its members.
    Object {
        /// Its address.
        addr: u64,
        /// Its constructor's name.
        constructor: String,
        /// Named properties in the map's order, or `None` past the depth.
        properties: Option<Vec<(String, JsValue)>>,
        /// Indexed elements, or `None` past the depth.
        elements: Option<Vec<JsValue>>,
        /// An array's length.
        length: Option<u64>,
        /// Members left out (past the limit of what we print).
        omitted: u64,
    },
    /// A heap object of another kind, by V8's instance type name.
    Other {
        /// Its address.
        addr: u64,
        /// `FIXED_ARRAY_TYPE`, `JS_MAP_TYPE`, ...
        type_name: String,
    },
    /// A word that does not decode (not a known object, or not captured).
    Unreadable(u64),
}

impl JsHeap<'_> {
    /// The value the tagged word `tagged` holds, members `depth` levels down.
    pub fn value(&self, tagged: u64, depth: u32) -> JsValue {
        if tagged & 1 == 0 {
            return JsValue::Smi((tagged as i64) >> 32);
        }
        let Some((map, info)) = self.object_map(tagged) else {
            return JsValue::Unreadable(tagged);
        };
        let addr = tagged - 1;
        let l = &self.layout;
        let t = &l.types;
        let ty = info.instance_type;
        if l.is_string(ty) {
            return self.string(tagged).unwrap_or(JsValue::Unreadable(tagged));
        }
        if ty == t.heap_number {
            let bits = self.read_word(addr + l.heap_number_value).unwrap_or(0);
            return JsValue::Number(f64::from_bits(bits));
        }
        if ty == t.oddball {
            return JsValue::Oddball(self.oddball_name(addr));
        }
        if ty == t.symbol {
            let desc = self
                .read_word(addr + 16)
                .and_then(|d| self.string_text(d))
                .map(|(s, _, _)| s);
            return JsValue::Symbol(desc);
        }
        if self.is_function(ty) {
            return JsValue::Function {
                addr,
                name: self.function_name(addr),
            };
        }
        if self.is_js_object(ty) {
            let constructor = self.constructor_name(map);
            let length = (ty == t.js_array)
                .then(|| self.smi_at(addr + l.object_header))
                .flatten()
                .map(|n| n.max(0) as u64);
            let mut omitted = 0;
            let (properties, elements) = if depth == 0 {
                (None, None)
            } else {
                let mut props = self.properties(addr, map);
                let mut elems = self.elements(addr, length);
                omitted += props.len().saturating_sub(MEMBER_LIMIT) as u64;
                omitted += elems.len().saturating_sub(MEMBER_LIMIT) as u64;
                props.truncate(MEMBER_LIMIT);
                elems.truncate(MEMBER_LIMIT);
                let props = props
                    .into_iter()
                    .map(|(k, v)| (k, self.value(v, depth - 1)))
                    .collect();
                let elems = elems
                    .into_iter()
                    .map(|v| match v {
                        Element::Tagged(w) => self.value(w, depth - 1),
                        Element::Double(d) => JsValue::Number(d),
                        Element::Hole => JsValue::Oddball("<the hole>"),
                    })
                    .collect();
                (Some(props), Some(elems))
            };
            return JsValue::Object {
                addr,
                constructor,
                properties,
                elements,
                length,
                omitted,
            };
        }
        JsValue::Other {
            addr,
            type_name: self.type_name(ty),
        }
    }

    /// V8's name of an instance type (`JS_OBJECT_TYPE`), or its number.
    pub fn type_name(&self, ty: u64) -> String {
        self.type_names
            .get(&(ty as i64))
            .cloned()
            .unwrap_or_else(|| format!("instance type {ty}"))
    }

    fn oddball_name(&self, addr: u64) -> &'static str {
        let kind = self.smi_at(addr + self.layout.oddball_kind).unwrap_or(-1);
        self.layout
            .oddballs
            .iter()
            .find(|&&(k, _)| k == kind)
            .map(|&(_, n)| n)
            .unwrap_or("<oddball>")
    }

    /// The string at tagged `tagged`, as a value.
    fn string(&self, tagged: u64) -> Option<JsValue> {
        let (text, length, truncated) = self.string_text(tagged)?;
        Some(JsValue::String {
            text,
            length,
            truncated,
        })
    }

    /// The characters of the string at `tagged` (up to [`STRING_LIMIT`]),
    /// its length, and whether the text was cut.
    pub(crate) fn string_text(&self, tagged: u64) -> Option<(String, u64, bool)> {
        let ty = self.type_of(tagged)?;
        if !self.layout.is_string(ty) {
            return None;
        }
        let length = self.u32_at(tagged - 1 + self.layout.string_length)? as u64;
        let mut units = Vec::new();
        self.string_units(tagged, 0, STRING_LIMIT, &mut units, 0)?;
        let truncated = (units.len() as u64) < length;
        Some((String::from_utf16_lossy(&units), length, truncated))
    }

    /// Appends up to `limit` UTF-16 units of the string at `tagged`,
    /// starting at unit `skip`.
    pub(crate) fn string_units(
        &self,
        tagged: u64,
        skip: usize,
        limit: usize,
        out: &mut Vec<u16>,
        nesting: u32,
    ) -> Option<()> {
        if out.len() >= limit || nesting > 64 {
            return Some(());
        }
        let l = &self.layout;
        let ty = self.type_of(tagged)?;
        let addr = tagged - 1;
        let len = self.u32_at(addr + l.string_length)? as usize;
        let repr = ty & l.string_representation_mask;
        let one_byte = ty & l.string_encoding_mask == l.one_byte_tag;
        if repr == l.seq_tag {
            let n = len.saturating_sub(skip).min(limit - out.len());
            let width = if one_byte { 1 } else { 2 };
            let mut bytes = vec![0u8; n * width];
            self.mem
                .read(addr + l.seq_chars + (skip * width) as u64, &mut bytes)
                .ok()?;
            push_units(out, &bytes, one_byte);
        } else if repr == l.cons_tag {
            let first = self.read_word(addr + l.cons_first)?;
            let second = self.read_word(addr + l.cons_second)?;
            let first_len = self.u32_at(first - 1 + l.string_length)? as usize;
            if skip < first_len {
                self.string_units(first, skip, limit, out, nesting + 1)?;
            }
            self.string_units(
                second,
                skip.saturating_sub(first_len),
                limit,
                out,
                nesting + 1,
            )?;
        } else if repr == l.sliced_tag {
            let parent = self.read_word(addr + l.sliced_parent)?;
            let offset = self.smi_at(addr + l.sliced_offset)?.max(0) as usize;
            let end = (limit - out.len()).min(len.saturating_sub(skip));
            let mut part = Vec::new();
            self.string_units(parent, offset + skip, end, &mut part, nesting + 1)?;
            out.extend(part);
        } else if repr == l.thin_tag {
            let actual = self.read_word(addr + l.thin_actual)?;
            self.string_units(actual, skip, limit, out, nesting + 1)?;
        } else if repr == l.external_tag {
            // The characters live outside the heap, where the resource's
            // cached data pointer says.
            let n = len.saturating_sub(skip).min(limit - out.len());
            let width = if one_byte { 1 } else { 2 };
            let mut bytes = vec![0u8; n * width];
            let read = self
                .external_data(addr, ty)
                .filter(|&d| self.mem.read(d + (skip * width) as u64, &mut bytes).is_ok());
            if read.is_none() {
                out.extend("<external string, characters not captured>".encode_utf16());
                return Some(());
            }
            push_units(out, &bytes, one_byte);
        }
        Some(())
    }

    /// Where the characters of the external string at `addr` (of instance
    /// type `ty`) are: the resource's data as V8 cached it, or `None` for
    /// an uncached one (only the resource's virtual `data()` knows).
    fn external_data(&self, addr: u64, ty: u64) -> Option<u64> {
        if self.type_name(ty).contains("UNCACHED") {
            return None;
        }
        self.read_word(addr + self.layout.external_resource + 8)
            .filter(|&d| d != 0)
    }

    /// The characters' bytes of the string `o` if it is external (they
    /// live off the JS heap): its length times its width.
    pub(crate) fn external_bytes(&self, o: &super::HeapObject, ty: u64) -> Option<u64> {
        let l = &self.layout;
        if !l.is_string(ty) || ty & l.string_representation_mask != l.external_tag {
            return None;
        }
        let len = self.u32_at(o.addr + l.string_length)? as u64;
        let one_byte = ty & l.string_encoding_mask == l.one_byte_tag;
        Some(if one_byte { len } else { 2 * len })
    }

    /// The name of the constructor of objects with map `map`: the map's
    /// constructor (following back pointers through transitioned maps),
    /// by its function's name; else a name for the instance type.
    pub fn constructor_name(&self, map: u64) -> String {
        let l = &self.layout;
        let mut c = self.read_word(map + l.map_constructor).unwrap_or(0);
        for _ in 0..256 {
            match self.object_map(c) {
                Some((_, info)) if info.instance_type == l.types.map => {
                    c = self.read_word(c - 1 + l.map_constructor).unwrap_or(0);
                }
                _ => break,
            }
        }
        if let Some(ty) = self.type_of(c) {
            if self.is_function(ty) {
                let name = self.function_name(c - 1);
                if !name.is_empty() {
                    return name;
                }
            }
        }
        let ty = self
            .map_info(map)
            .map(|i| i.instance_type)
            .unwrap_or(u64::MAX);
        let t = &l.types;
        match ty {
            _ if ty == t.js_array => "Array".into(),
            _ if ty == t.js_object => "Object".into(),
            _ if self.is_function(ty) => "Function".into(),
            _ => self.type_name(ty),
        }
    }

    /// The name of the JS function at `addr` (empty when anonymous).
    pub fn function_name(&self, addr: u64) -> String {
        let l = &self.layout;
        let Some(shared) = self.read_word(addr + l.function_shared) else {
            return String::new();
        };
        self.shared_name(shared)
    }

    /// The name a SharedFunctionInfo (`shared`, tagged) keeps for its
    /// function (empty when anonymous).
    pub(crate) fn shared_name(&self, shared: u64) -> String {
        let l = &self.layout;
        if self.type_of(shared) != Some(l.types.shared_function_info) {
            return String::new();
        }
        let Some(name) = self.read_word(shared - 1 + l.shared_name) else {
            return String::new();
        };
        if let Some((s, _, _)) = self.string_text(name) {
            return s;
        }
        if self.type_of(name) == Some(l.types.scope_info) {
            return self.scope_info_name(name - 1).unwrap_or_default();
        }
        String::new()
    }

    /// The name of the script the JS function at `addr` comes from (a file
    /// name, or `node:events` for Node's own), when V8 keeps one: what an
    /// anonymous function is told apart by. Stable across snapshots, and
    /// across the function's compilation (its SharedFunctionInfo keeps
    /// the Script from parsing on).
    pub fn function_script(&self, addr: u64) -> Option<String> {
        let shared = self.read_word(addr + self.layout.function_shared)?;
        self.script_name(self.shared_script(shared)?)
    }

    /// The Script (tagged) a SharedFunctionInfo (`shared`, tagged) is from.
    pub(crate) fn shared_script(&self, shared: u64) -> Option<u64> {
        let l = &self.layout;
        let (shared_script, _, script_type) = l.shared_script?;
        if self.type_of(shared) != Some(l.types.shared_function_info) {
            return None;
        }
        let script = self.read_word(shared - 1 + shared_script)?;
        (self.type_of(script) == Some(script_type)).then_some(script)
    }

    /// The name of the Script `script` (tagged), when it has one.
    pub(crate) fn script_name(&self, script: u64) -> Option<String> {
        let (_, script_name, _) = self.layout.shared_script?;
        let name = self.read_word(script - 1 + script_name)?;
        self.string_text(name)
            .map(|(s, _, _)| s)
            .filter(|s| !s.is_empty())
    }

    /// The SharedFunctionInfo of the JS function at `addr`: one per
    /// function in the source, shared by all its closures.
    pub fn function_shared(&self, addr: u64) -> Option<u64> {
        self.read_word(addr + self.layout.function_shared)
    }

    /// The function name a `ScopeInfo` keeps. The metadata gives its
    /// first slots (flags, parameter count, context local count, then the
    /// locals' names and infos); after them come up to two Smi slots the
    /// flags choose (a saved class variable, the receiver), then the
    /// function variable's name (or, failing that, the inferred name), so
    /// we take the first string among the next four slots rather than
    /// decode flag bits whose layout changes between V8 versions.
    fn scope_info_name(&self, addr: u64) -> Option<String> {
        let slot = |i: u64| addr + 8 + 8 * i;
        let locals = self.smi_at(slot(2))?.max(0) as u64;
        // kScopeInfoMaxInlinedLocalNamesSize: more names go to a hash table.
        let names = if locals < 75 { locals } else { 1 };
        let first = 3 + names + locals;
        (first..first + 4).find_map(|i| {
            let w = self.read_word(slot(i))?;
            self.string_text(w).map(|(s, _, _)| s)
        })
    }

    /// Named properties of the object at `addr`: (name, tagged value).
    fn properties(&self, addr: u64, map: u64) -> Vec<(String, u64)> {
        let l = &self.layout;
        let Some(bf3) = self.u32_at(map + l.map_bit_field3) else {
            return Vec::new();
        };
        let props = self.read_word(addr + l.receiver_properties).unwrap_or(0);
        if (bf3 as u64 >> l.dictionary_map_shift) & 1 == 1 {
            return self.dictionary_properties(props);
        }
        let own = (bf3 as u64 & l.own_descriptors_mask) >> l.own_descriptors_shift;
        let Some(descs) = self.read_word(map + l.map_descriptors) else {
            return Vec::new();
        };
        let size_words = self.u8_at(map + l.map_instance_size_words).unwrap_or(0) as u64;
        let inobject_start = self.u8_at(map + l.map_inobject_start_words).unwrap_or(0) as u64;
        let inobject = size_words.saturating_sub(inobject_start);
        let mut out = Vec::new();
        for i in 0..own.min(1024) {
            let base = descs - 1 + l.descriptors_header + 8 * l.desc_size * i;
            let (Some(key), Some(details)) = (
                self.read_word(base + 8 * l.desc_key),
                self.smi_at(base + 8 * l.desc_details),
            ) else {
                break;
            };
            let details = details as u64;
            let location = (details & l.prop_location_mask) >> l.prop_location_shift;
            let value = if location == l.prop_location_field {
                let index = (details & l.prop_index_mask) >> l.prop_index_shift;
                if index < inobject {
                    self.read_word(addr + 8 * (inobject_start + index))
                } else {
                    self.read_word(props - 1 + l.fixed_array_data + 8 * (index - inobject))
                }
            } else {
                self.read_word(base + 8 * l.desc_value)
            };
            let value = value.unwrap_or(0);
            // V8's native accessors (an array's length, a function's name)
            // are not data: the value they stand for is elsewhere.
            if self.type_name(self.type_of(value).unwrap_or(u64::MAX)) == "ACCESSOR_INFO_TYPE" {
                continue;
            }
            out.push((self.key_name(key), value));
        }
        out
    }

    fn dictionary_properties(&self, dict: u64) -> Vec<(String, u64)> {
        let l = &self.layout;
        if self.type_of(dict).is_none() {
            return Vec::new();
        }
        let data = dict - 1 + l.fixed_array_data;
        let Some(capacity) = self.smi_at(data + 16) else {
            return Vec::new();
        };
        let first = l.dict_prefix_start + l.dict_prefix_size;
        let mut out = Vec::new();
        for e in 0..(capacity.max(0) as u64).min(1 << 16) {
            let at = data + 8 * (first + e * l.dict_entry_size);
            let Some(key) = self.read_word(at) else { break };
            let Some(ty) = self.type_of(key) else {
                continue;
            };
            if !self.layout.is_string(ty) && ty != l.types.symbol {
                continue;
            }
            let value = self.read_word(at + 8).unwrap_or(0);
            out.push((self.key_name(key), value));
        }
        out
    }

    fn key_name(&self, key: u64) -> String {
        if let Some((s, _, _)) = self.string_text(key) {
            return s;
        }
        if let JsValue::Symbol(d) = self.value(key, 0) {
            return format!("Symbol({})", d.unwrap_or_default());
        }
        "<key>".into()
    }

    fn elements(&self, addr: u64, length: Option<u64>) -> Vec<Element> {
        let l = &self.layout;
        let Some(elems) = self.read_word(addr + l.object_elements) else {
            return Vec::new();
        };
        let Some(ty) = self.type_of(elems) else {
            return Vec::new();
        };
        let base = elems - 1;
        let n = self.smi_at(base + l.fixed_array_length).unwrap_or(0).max(0) as u64;
        let n = length.map_or(n, |len| len.min(n)).min(1 << 20);
        if ty == l.types.fixed_double_array {
            // The hole is a signalling NaN with this pattern.
            const HOLE: u64 = 0xfff7_ffff_fff7_ffff;
            return (0..n)
                .map(
                    |i| match self.read_word(base + l.fixed_array_data + 8 * i) {
                        Some(HOLE) | None => Element::Hole,
                        Some(bits) => Element::Double(f64::from_bits(bits)),
                    },
                )
                .collect();
        }
        if ty != l.types.fixed_array {
            // Dictionary elements and the like: not printed element-wise.
            return Vec::new();
        }
        (0..n)
            .map(|i| {
                self.read_word(base + l.fixed_array_data + 8 * i)
                    .map_or(Element::Hole, Element::Tagged)
            })
            .collect()
    }
}

/// Appends string characters stored one or two bytes each.
fn push_units(out: &mut Vec<u16>, bytes: &[u8], one_byte: bool) {
    if one_byte {
        out.extend(bytes.iter().map(|&b| b as u16));
    } else {
        out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        );
    }
}

enum Element {
    Tagged(u64),
    Double(f64),
    Hole,
}
