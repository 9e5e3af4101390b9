//! The object layouts the decoder uses, resolved once from [`Metadata`]:
//! field offsets, instance types and bit fields, checked to be present.

use super::metadata::Metadata;
use crate::Error;

/// Offsets (bytes from an object's untagged start), instance types and
/// bit fields of V8's heap objects, from one binary's metadata.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) map: u64,
    pub(crate) map_instance_type: u64,
    pub(crate) map_instance_size_words: u64,
    pub(crate) map_inobject_start_words: u64,
    pub(crate) map_bit_field3: u64,
    pub(crate) map_constructor: u64,
    pub(crate) map_descriptors: u64,
    pub(crate) dictionary_map_shift: u64,
    pub(crate) own_descriptors_mask: u64,
    pub(crate) own_descriptors_shift: u64,
    pub(crate) receiver_properties: u64,
    pub(crate) object_elements: u64,
    /// Where a JSObject's own fields end: a JSArray's length follows.
    pub(crate) object_header: u64,
    pub(crate) function_shared: u64,
    pub(crate) shared_name: u64,
    /// A SharedFunctionInfo's Script (or DebugInfo), and a Script's name,
    /// and the Script instance type: where an anonymous function is
    /// from. Optional: only the census's names need them.
    pub(crate) shared_script: Option<(u64, u64, u64)>,
    pub(crate) fixed_array_length: u64,
    pub(crate) fixed_array_data: u64,
    pub(crate) string_length: u64,
    pub(crate) seq_chars: u64,
    pub(crate) cons_first: u64,
    pub(crate) cons_second: u64,
    pub(crate) sliced_parent: u64,
    pub(crate) sliced_offset: u64,
    pub(crate) thin_actual: u64,
    /// An external string's resource pointer; V8 caches the resource's
    /// data pointer in the next word (all but the "uncached" types).
    pub(crate) external_resource: u64,
    pub(crate) heap_number_value: u64,
    pub(crate) oddball_kind: u64,
    pub(crate) descriptors_header: u64,
    pub(crate) desc_size: u64,
    pub(crate) desc_key: u64,
    pub(crate) desc_details: u64,
    pub(crate) desc_value: u64,
    pub(crate) prop_location_mask: u64,
    pub(crate) prop_location_shift: u64,
    pub(crate) prop_location_field: u64,
    pub(crate) prop_index_mask: u64,
    pub(crate) prop_index_shift: u64,
    pub(crate) dict_prefix_start: u64,
    pub(crate) dict_prefix_size: u64,
    pub(crate) dict_entry_size: u64,
    pub(crate) first_nonstring_type: u64,
    pub(crate) first_context_type: u64,
    pub(crate) last_context_type: u64,
    pub(crate) string_representation_mask: u64,
    pub(crate) string_encoding_mask: u64,
    pub(crate) one_byte_tag: u64,
    pub(crate) seq_tag: u64,
    pub(crate) cons_tag: u64,
    pub(crate) sliced_tag: u64,
    pub(crate) thin_tag: u64,
    pub(crate) external_tag: u64,
    pub(crate) oddballs: Vec<(i64, &'static str)>,
    pub(crate) types: Types,
    /// Optimized code's metadata, when the binary describes it.
    pub(crate) code: Option<CodeLayout>,
}

/// Where JIT code keeps its metadata (V8 11.3's InstructionStream/Code
/// split): optimized code's source positions and what it inlined,
/// Sparkplug's bytecode. Only [`super::JsHeap::inlining`] and
/// [`super::JsHeap::baseline_code`] need it; offsets past a few words
/// are taken as a binary we do not know.
#[derive(Clone, Debug)]
pub(crate) struct CodeLayout {
    /// Bytes from an InstructionStream's start to its first instruction.
    pub(crate) stream_header: u64,
    pub(crate) stream_type: u64,
    pub(crate) code_type: u64,
    pub(crate) code_deoptimization_data: u64,
    pub(crate) code_source_positions: u64,
    /// Indices into the DeoptimizationData FixedArray.
    pub(crate) deopt_literals: u64,
    pub(crate) deopt_shared: u64,
    pub(crate) deopt_inlining_positions: u64,
    pub(crate) script_line_ends: u64,
    pub(crate) script_source: u64,
    /// Sparkplug's code: its BytecodeArray (or InterpreterData, whose
    /// first field is one) and its table of machine code per bytecode.
    pub(crate) code_bytecode_or_interpreter_data: u64,
    pub(crate) code_bytecode_offsets: u64,
    pub(crate) bytecode_array_type: u64,
    pub(crate) interpreter_data_type: u64,
    pub(crate) bytecode_array_data: u64,
    /// `Bytecodes::kBytecodeSizes` (three rows: operand scales 1, 2, 4),
    /// if the binary has it.
    pub(crate) bytecode_sizes: Option<Vec<u8>>,
    /// A SharedFunctionInfo's function data (its BytecodeArray, its
    /// InterpreterData or its Sparkplug code), for interpreted frames.
    pub(crate) shared_function_data: Option<u64>,
}

/// The instance types the decoder tells apart.
#[derive(Clone, Debug)]
pub(crate) struct Types {
    pub(crate) map: u64,
    pub(crate) heap_number: u64,
    pub(crate) oddball: u64,
    pub(crate) symbol: u64,
    pub(crate) fixed_array: u64,
    pub(crate) fixed_double_array: u64,
    pub(crate) byte_array: u64,
    pub(crate) weak_fixed_array: u64,
    pub(crate) free_space: u64,
    pub(crate) scope_info: u64,
    pub(crate) shared_function_info: u64,
    pub(crate) descriptor_array: u64,
    pub(crate) property_array: u64,
    pub(crate) first_js_receiver: u64,
    pub(crate) js_object: u64,
    pub(crate) js_array: u64,
    pub(crate) js_function: u64,
}

impl CodeLayout {
    fn new(md: &Metadata) -> Option<CodeLayout> {
        let off = |name: &str| {
            md.get(name)
                .and_then(|v| u64::try_from(v).ok())
                .filter(|&v| v < 4096)
        };
        let ty = |name: &str| md.instance_type(name).map(|v| v as u64);
        Some(CodeLayout {
            stream_header: off("class_InstructionStream__instruction_start__uintptr_t")?,
            stream_type: ty("INSTRUCTION_STREAM_TYPE")?,
            code_type: ty("CODE_TYPE")?,
            code_deoptimization_data: off("class_Code__deoptimization_data__FixedArray")?,
            code_source_positions: off("class_Code__source_position_table__ByteArray")?,
            deopt_literals: off("DeoptimizationDataLiteralArrayIndex")?,
            deopt_shared: off("DeoptimizationDataSharedFunctionInfoIndex")?,
            deopt_inlining_positions: off("DeoptimizationDataInliningPositionsIndex")?,
            script_line_ends: off("class_Script__line_ends__Object")?,
            script_source: off("class_Script__source__Object")?,
            code_bytecode_or_interpreter_data: off(
                "class_Code__bytecode_or_interpreter_data__HeapObject",
            )?,
            code_bytecode_offsets: off("class_Code__bytecode_offset_table__ByteArray")?,
            bytecode_array_type: ty("BYTECODE_ARRAY_TYPE")?,
            interpreter_data_type: ty("INTERPRETER_DATA_TYPE")?,
            bytecode_array_data: off("class_BytecodeArray__data__uintptr_t")?,
            bytecode_sizes: md.bytecode_sizes().map(<[u8]>::to_vec),
            shared_function_data: off("class_SharedFunctionInfo__function_data__Object"),
        })
    }
}

impl Layout {
    /// Resolves what the decoder needs; fails naming the first symbol the
    /// binary lacks.
    pub(crate) fn new(md: &Metadata) -> Result<Layout, Error> {
        let off = |name: &str| md.need(name).map(|v| v as u64);
        let ty = |name: &str| {
            md.instance_type(name).map(|v| v as u64).ok_or_else(|| {
                Error::Insufficient(format!(
                    "the node binary's V8 metadata has no instance type {name}"
                ))
            })
        };
        if md.need("TaggedSize")? != 8 || md.need("SmiShiftSize")? != 31 {
            return Err(Error::Insufficient(
                "this node's V8 uses pointer compression (tagged values of 4 bytes); leaktrail decodes 8-byte tagged heaps only".into(),
            ));
        }
        let oddball_names: [(&str, &'static str); 7] = [
            ("OddballTrue", "true"),
            ("OddballFalse", "false"),
            ("OddballNull", "null"),
            ("OddballUndefined", "undefined"),
            ("OddballTheHole", "<the hole>"),
            ("OddballUninitialized", "<uninitialized>"),
            ("OddballException", "<exception>"),
        ];
        let oddballs = oddball_names
            .iter()
            .filter_map(|&(k, v)| Some((md.get(k)?, v)))
            .collect();
        Ok(Layout {
            map: off("class_HeapObject__map__Map")?,
            map_instance_type: off("class_Map__instance_type__uint16_t")?,
            map_instance_size_words: off("class_Map__instance_size_in_words__char")?,
            map_inobject_start_words: off(
                "class_Map__inobject_properties_start_or_constructor_function_index__char",
            )?,
            map_bit_field3: off("class_Map__bit_field3__int")?,
            map_constructor: off("class_Map__constructor_or_back_pointer__Object")?,
            map_descriptors: off("class_Map__instance_descriptors_offset")?,
            dictionary_map_shift: off("bit_field3_is_dictionary_map_shift")?,
            own_descriptors_mask: off("bit_field3_number_of_own_descriptors_mask")?,
            own_descriptors_shift: off("bit_field3_number_of_own_descriptors_shift")?,
            receiver_properties: off("class_JSReceiver__raw_properties_or_hash__Object")?,
            object_elements: off("class_JSObject__elements__Object")?,
            object_header: off("class_JSObject__internal_fields__uintptr_t")?,
            function_shared: off("class_JSFunction__shared__SharedFunctionInfo")?,
            shared_name: off("class_SharedFunctionInfo__name_or_scope_info__Object")?,
            shared_script: off("class_SharedFunctionInfo__script_or_debug_info__HeapObject")
                .ok()
                .zip(off("class_Script__name__Object").ok())
                .zip(ty("SCRIPT_TYPE").ok())
                .map(|((shared, name), ty)| (shared, name, ty)),
            fixed_array_length: off("class_FixedArrayBase__length__SMI")?,
            fixed_array_data: off("class_FixedArray__data__uintptr_t")?,
            string_length: off("class_String__length__int32_t")?,
            seq_chars: off("class_SeqOneByteString__chars__char")?,
            cons_first: off("class_ConsString__first__String")?,
            cons_second: off("class_ConsString__second__String")?,
            sliced_parent: off("class_SlicedString__parent__String")?,
            sliced_offset: off("class_SlicedString__offset__SMI")?,
            thin_actual: off("class_ThinString__actual__String")?,
            external_resource: off("class_ExternalString__resource__Object")?,
            heap_number_value: off("class_HeapNumber__value__double")?,
            oddball_kind: off("class_Oddball__kind_offset__int")?,
            descriptors_header: off("class_DescriptorArray__header_size__uintptr_t")?,
            desc_size: off("prop_desc_size")?,
            desc_key: off("prop_desc_key")?,
            desc_details: off("prop_desc_details")?,
            desc_value: off("prop_desc_value")?,
            prop_location_mask: off("prop_location_mask")?,
            prop_location_shift: off("prop_location_shift")?,
            prop_location_field: off("prop_location_Field")?,
            prop_index_mask: off("prop_index_mask")?,
            prop_index_shift: off("prop_index_shift")?,
            dict_prefix_start: off("namedictionary_prefix_start_index")?,
            dict_prefix_size: off("namedictionaryshape_prefix_size")?,
            dict_entry_size: off("namedictionaryshape_entry_size")?,
            first_nonstring_type: off("FirstNonstringType")?,
            first_context_type: off("FirstContextType")?,
            last_context_type: off("LastContextType")?,
            string_representation_mask: off("StringRepresentationMask")?,
            string_encoding_mask: off("StringEncodingMask")?,
            one_byte_tag: off("OneByteStringTag")?,
            seq_tag: off("SeqStringTag")?,
            cons_tag: off("ConsStringTag")?,
            sliced_tag: off("SlicedStringTag")?,
            thin_tag: off("ThinStringTag")?,
            external_tag: off("ExternalStringTag")?,
            oddballs,
            code: CodeLayout::new(md),
            types: Types {
                map: ty("MAP_TYPE")?,
                heap_number: ty("HEAP_NUMBER_TYPE")?,
                oddball: ty("ODDBALL_TYPE")?,
                symbol: ty("SYMBOL_TYPE")?,
                fixed_array: ty("FIXED_ARRAY_TYPE")?,
                fixed_double_array: ty("FIXED_DOUBLE_ARRAY_TYPE")?,
                byte_array: ty("BYTE_ARRAY_TYPE")?,
                weak_fixed_array: ty("WEAK_FIXED_ARRAY_TYPE")?,
                free_space: ty("FREE_SPACE_TYPE")?,
                scope_info: ty("SCOPE_INFO_TYPE")?,
                shared_function_info: ty("SHARED_FUNCTION_INFO_TYPE")?,
                descriptor_array: ty("DESCRIPTOR_ARRAY_TYPE")?,
                property_array: ty("PROPERTY_ARRAY_TYPE")?,
                // V8 numbers the JS receivers last, proxies first.
                first_js_receiver: ty("JS_PROXY_TYPE")?,
                js_object: ty("JS_OBJECT_TYPE")?,
                js_array: ty("JS_ARRAY_TYPE")?,
                js_function: ty("JS_FUNCTION_TYPE")?,
            },
        })
    }

    /// Whether an instance type is a string's.
    pub(crate) fn is_string(&self, ty: u64) -> bool {
        ty < self.first_nonstring_type
    }
}
