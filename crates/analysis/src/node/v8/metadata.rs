//! V8's postmortem metadata: the `v8dbg_*` symbols a node binary exports
//! for debuggers (mdb_v8, llnode). Each is a small integer in the binary's
//! data (or zero, in `.bss`): an instance type's number, a field's offset,
//! a bit field's mask and shift. We read them from the binary on disk, not
//! from the snapshot, so a `--memory tables` snapshot names them too.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol};

use crate::Error;

/// The `v8dbg_*` values of one node binary, by name without the prefix.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    values: HashMap<String, i64>,
    /// V8's `Bytecodes::kBytecodeSizes`: each bytecode's size in bytes at
    /// operand scales 1, 2 and 4, one row of each, when the binary has
    /// the table (not postmortem metadata, but a named constant of its
    /// own): what walks a BytecodeArray.
    bytecode_sizes: Option<Vec<u8>>,
}

/// The mangled name of `v8::internal::interpreter::Bytecodes::kBytecodeSizes`.
const BYTECODE_SIZES: &str = "_ZN2v88internal11interpreter9Bytecodes14kBytecodeSizesE";

impl Metadata {
    /// Reads the symbols of the ELF file at `path`. Fails when the file
    /// cannot be read or has no `v8dbg_` symbol (not a node binary, or one
    /// built without postmortem support).
    pub fn from_binary(path: &str) -> Result<Metadata, Error> {
        let map = crate::symbols::symbolize::map_file(path).ok_or_else(|| {
            Error::Insufficient(format!(
                "cannot read {path}, the node binary the snapshot names: its V8 metadata (v8dbg_* symbols) is needed to decode the JS heap"
            ))
        })?;
        let obj = object::File::parse(&*map).map_err(|e| {
            Error::Insufficient(format!("{path} is not an ELF file ({e}): no V8 metadata"))
        })?;
        let mut values = HashMap::new();
        let mut bytecode_sizes = None;
        for sym in obj.dynamic_symbols().chain(obj.symbols()) {
            let Ok(name) = sym.name() else { continue };
            if name == BYTECODE_SIZES && bytecode_sizes.is_none() {
                bytecode_sizes =
                    symbol_bytes(&obj, &sym).filter(|b| !b.is_empty() && b.len() % 3 == 0);
                continue;
            }
            let Some(key) = name.strip_prefix("v8dbg_") else {
                continue;
            };
            if values.contains_key(key) {
                continue;
            }
            values.insert(key.to_string(), symbol_value(&obj, &sym));
        }
        if values.is_empty() {
            return Err(Error::Insufficient(format!(
                "{path} has no v8dbg_* symbols: not a node binary, or one built without V8's postmortem metadata"
            )));
        }
        Ok(Metadata {
            values,
            bytecode_sizes,
        })
    }

    /// V8's table of bytecode sizes (see the field), if the binary has it.
    pub(crate) fn bytecode_sizes(&self) -> Option<&[u8]> {
        self.bytecode_sizes.as_deref()
    }

    /// The value of `v8dbg_NAME`, if the binary has it.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }

    /// The value of `v8dbg_NAME`, which the decoder cannot do without.
    pub fn need(&self, name: &str) -> Result<i64, Error> {
        self.get(name).ok_or_else(|| {
            Error::Insufficient(format!(
                "the node binary has no v8dbg_{name}: this V8 version's layout is not one leaktrail knows"
            ))
        })
    }

    /// The number of the instance type whose symbol ends in `__TYPE_NAME`
    /// (`v8dbg_type_Class__TYPE_NAME`).
    pub fn instance_type(&self, type_name: &str) -> Option<i64> {
        let suffix = format!("__{type_name}");
        self.values
            .iter()
            .find(|(k, _)| k.starts_with("type_") && k.ends_with(&suffix))
            .map(|(_, &v)| v)
    }

    /// Every instance type's name by number (`JS_OBJECT_TYPE`, ...).
    pub fn type_names(&self) -> HashMap<i64, String> {
        self.values
            .iter()
            .filter_map(|(k, &v)| {
                let rest = k.strip_prefix("type_")?;
                let (_, name) = rest.split_once("__")?;
                Some((v, name.to_string()))
            })
            .collect()
    }
}

/// The bytes of a data symbol, from the file.
fn symbol_bytes(obj: &object::File<'_>, sym: &object::Symbol<'_, '_>) -> Option<Vec<u8>> {
    let section = obj.section_by_index(sym.section_index()?).ok()?;
    let bytes = section.data_range(sym.address(), sym.size()).ok()??;
    Some(bytes.to_vec())
}

/// The integer a `v8dbg_` symbol holds: its bytes in the file, or zero
/// when it lives in a section without file data (`.bss`).
fn symbol_value(obj: &object::File<'_>, sym: &object::Symbol<'_, '_>) -> i64 {
    let size = sym.size().clamp(1, 8);
    let section = match sym
        .section_index()
        .and_then(|i| obj.section_by_index(i).ok())
    {
        Some(s) => s,
        None => return 0,
    };
    let Ok(Some(bytes)) = section.data_range(sym.address(), size) else {
        return 0;
    };
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    let raw = i64::from_le_bytes(b);
    // Sign-extend from the symbol's width (offsets such as off_fp_context
    // are negative ints).
    let shift = 64 - 8 * bytes.len() as u32;
    (raw << shift) >> shift
}
