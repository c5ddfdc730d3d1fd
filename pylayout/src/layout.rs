//! Per-version CPython structure offsets.
//!
//! The table lives in `data/layouts.json` (generated; never edit by hand). Each field of
//! [`Layout`] is named after its key in that file with `.` replaced by `_`; a field is `None`
//! when the structure member does not exist in that version.

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::collections::HashMap;

/// The generated table, compiled in so the collector needs no data file at run time.
pub const LAYOUTS_JSON: &str = include_str!("../data/layouts.json");

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "no CPython {0}.{1} layout in crashcatch's table (it knows {2}); \
         regenerate it with tools/layouts/gen_layouts.py from that interpreter"
    )]
    UnknownVersion(u8, u8, String),
    #[error("CPython {0}.{1} layout lacks required field `{2}`: the table is corrupt")]
    MissingField(u8, u8, &'static str),
    #[error("layout table is not valid JSON: {0}")]
    BadTable(#[from] serde_json::Error),
    #[error("free-threaded and trace-refs builds are not supported yet")]
    UnsupportedBuild,
}

/// The entries of version `key` ("3.13") of a table in the generator's format (None when it
/// has none), and every version the table has. Only that version's entries are built: the
/// others are checked as JSON and skipped (building all of them was most of the time it took
/// to read the table, on every symbolizer run).
pub(crate) fn table_version(json: &str, key: &str) -> Result<OneVersionFound, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_str(json);
    let found = OneVersion(key).deserialize(&mut reader)?;
    reader.end()?;
    Ok(found)
}

/// One version's entries of a table (key → value).
pub(crate) type VersionEntries = HashMap<String, serde_json::Value>;
/// What [`table_version`] finds: the version's entries, if any, and every version listed.
pub(crate) type OneVersionFound = (Option<VersionEntries>, Vec<String>);

/// Reads a table's top-level map, keeping the entries of one version.
struct OneVersion<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for OneVersion<'_> {
    type Value = OneVersionFound;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneVersion<'_> {
    type Value = OneVersionFound;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map of CPython versions to their layouts")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut versions: A) -> Result<Self::Value, A::Error> {
        let (mut found, mut known) = (None, Vec::new());
        while let Some(version) = versions.next_key::<String>()? {
            if version == self.0 {
                found = Some(versions.next_value()?);
            } else {
                versions.next_value::<IgnoredAny>()?;
            }
            known.push(version);
        }
        Ok((found, known))
    }
}

macro_rules! layout_struct {
    ($( $field:ident = $key:literal ),* $(,)?) => {
        /// Offsets (bytes) for one CPython minor version; see the module docs.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Layout {
            /// Minor version (the `X` of 3.X).
            pub minor: u8,
            $( pub $field: Option<u32>, )*
        }

        impl Layout {
            fn from_map(minor: u8, map: &HashMap<String, serde_json::Value>) -> Layout {
                let get = |k: &str| map.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
                Layout { minor, $( $field: get($key), )* }
            }

            /// The field named `key` in the table (e.g. "tstate.next").
            pub fn field_mut(&mut self, key: &str) -> Option<&mut Option<u32>> {
                match key {
                    $( $key => Some(&mut self.$field), )*
                    _ => None,
                }
            }
        }
    };
}

layout_struct! {
    free_threaded = "free_threaded",
    trace_refs = "trace_refs",
    runtime_interpreters_head = "runtime.interpreters_head",
    runtime_interpreters_main = "runtime.interpreters_main",
    runtime_gilstate_tstate_current = "runtime.gilstate_tstate_current",
    runtime_ceval_gil = "runtime.ceval_gil",
    gil_last_holder = "gil.last_holder",
    gil_locked = "gil.locked",
    interp_next = "interp.next",
    interp_threads_head = "interp.threads_head",
    interp_gc_collecting = "interp.gc_collecting",
    interp_sysdict = "interp.sysdict",
    interp_modules = "interp.modules",
    interp_ceval_gil = "interp.ceval_gil",
    tstate_next = "tstate.next",
    tstate_interp = "tstate.interp",
    tstate_thread_id = "tstate.thread_id",
    tstate_native_thread_id = "tstate.native_thread_id",
    tstate_datastack_chunk = "tstate.datastack_chunk",
    tstate_datastack_top = "tstate.datastack_top",
    tstate_current_frame = "tstate.current_frame",
    tstate_cframe = "tstate.cframe",
    cframe_current_frame = "cframe.current_frame",
    tstate_frame = "tstate.frame",
    iframe_previous = "iframe.previous",
    iframe_executable = "iframe.executable",
    iframe_executable_tag_mask = "iframe.executable_tag_mask",
    iframe_instr_ptr = "iframe.instr_ptr",
    iframe_prev_instr = "iframe.prev_instr",
    iframe_owner = "iframe.owner",
    iframe_owner_size = "iframe.owner_size",
    iframe_is_entry = "iframe.is_entry",
    iframe_plumbing_owner_min = "iframe.plumbing_owner_min",
    frame_back = "frame.back",
    frame_code = "frame.code",
    frame_lasti = "frame.lasti",
    frame_lineno = "frame.lineno",
    frame_trace = "frame.trace",
    code_filename = "code.filename",
    code_name = "code.name",
    code_qualname = "code.qualname",
    code_code_adaptive = "code.code_adaptive",
    code_code = "code.code",
    code_firstlineno = "code.firstlineno",
    code_linetable = "code.linetable",
    object_ob_type = "object.ob_type",
    varobject_ob_size = "varobject.ob_size",
    type_tp_flags = "type.tp_flags",
    type_tp_base = "type.tp_base",
    bytes_ob_sval = "bytes.ob_sval",
    unicode_length = "unicode.length",
    unicode_state = "unicode.state",
    unicode_hash = "unicode.hash",
    unicode_ascii_size = "unicode.ascii_size",
    unicode_compact_size = "unicode.compact_size",
    unicode_data_any = "unicode.data_any",
    unicode_state_kind_mask = "unicode.state_kind_mask",
    unicode_state_compact_mask = "unicode.state_compact_mask",
    unicode_state_ascii_mask = "unicode.state_ascii_mask",
    dict_ma_keys = "dict.ma_keys",
    dict_ma_values = "dict.ma_values",
    dictkeys_size = "dictkeys.size",
    dictkeys_log2_size = "dictkeys.log2_size",
    dictkeys_log2_index_bytes = "dictkeys.log2_index_bytes",
    dictkeys_kind = "dictkeys.kind",
    dictkeys_nentries = "dictkeys.nentries",
    dictkeys_indices = "dictkeys.indices",
    dictkeys_entry_size = "dictkeys.entry_size",
    dictkeys_entry_key = "dictkeys.entry_key",
    dictkeys_entry_value = "dictkeys.entry_value",
    dictkeys_unicode_entry_size = "dictkeys.unicode_entry_size",
    dictkeys_unicode_entry_key = "dictkeys.unicode_entry_key",
    dictkeys_unicode_entry_value = "dictkeys.unicode_entry_value",
    set_mask = "set.mask",
    set_table = "set.table",
    set_entry_size = "set.entry_size",
    set_entry_key = "set.entry_key",
    set_entry_hash = "set.entry_hash",
    module_md_def = "module.md_def",
    module_md_token = "module.md_token",
    module_md_token_is_def = "module.md_token_is_def",
    moduledef_m_methods = "moduledef.m_methods",
    // Object values and frame locals (objects.rs, locals.rs).
    type_tp_name = "type.tp_name",
    type_tp_repr = "type.tp_repr",
    float_ob_fval = "float.ob_fval",
    tuple_ob_item = "tuple.ob_item",
    list_ob_item = "list.ob_item",
    cell_ob_ref = "cell.ob_ref",
    dict_ma_used = "dict.ma_used",
    set_used = "set.used",
    long_shift = "long.shift",
    long_digit_size = "long.digit_size",
    long_digits = "long.digits",
    long_lv_tag = "long.lv_tag",
    long_non_size_bits = "long.non_size_bits",
    long_sign_mask = "long.sign_mask",
    iframe_globals = "iframe.globals",
    iframe_builtins = "iframe.builtins",
    iframe_localsplus = "iframe.localsplus",
    iframe_localsplus_tag_mask = "iframe.localsplus_tag_mask",
    code_localsplusnames = "code.localsplusnames",
    code_localspluskinds = "code.localspluskinds",
    code_nlocalsplus = "code.nlocalsplus",
    code_fast_local = "code.fast_local",
    code_fast_cell = "code.fast_cell",
    code_fast_free = "code.fast_free",
    code_fast_hidden = "code.fast_hidden",
    frame_globals = "frame.globals",
    frame_builtins = "frame.builtins",
    frame_localsplus = "frame.localsplus",
    code_varnames = "code.varnames",
    code_cellvars = "code.cellvars",
    code_freevars = "code.freevars",
    code_nlocals = "code.nlocals",
    // Instance attributes (objects::instance_attr, dict.rs split tables).
    type_tp_basicsize = "type.tp_basicsize",
    type_tp_itemsize = "type.tp_itemsize",
    type_tp_dictoffset = "type.tp_dictoffset",
    heaptype_ht_cached_keys = "heaptype.ht_cached_keys",
    type_managed_dict_flag = "type.managed_dict_flag",
    type_inline_values_flag = "type.inline_values_flag",
    object_managed_dict_before = "object.managed_dict_before",
    object_values_before = "object.values_before",
    object_tagged_values_add = "object.tagged_values_add",
    dictvalues_values = "dictvalues.values",
    dictvalues_valid = "dictvalues.valid",
    dictvalues_capacity = "dictvalues.capacity",
    dictvalues_size = "dictvalues.size",
    dictvalues_order_size_before = "dictvalues.order_size_before",
    dictvalues_order_before = "dictvalues.order_before",
}

impl Layout {
    /// The layout of CPython `3.minor`, from the compiled-in table.
    pub fn for_version(major: u8, minor: u8) -> Result<Layout, LayoutError> {
        Self::from_table(LAYOUTS_JSON, major, minor)
    }

    /// The layout of CPython `major.minor` from a table in the generator's JSON format.
    pub fn from_table(json: &str, major: u8, minor: u8) -> Result<Layout, LayoutError> {
        let (map, mut known) = table_version(json, &format!("{major}.{minor}"))?;
        let Some(map) = map.filter(|_| major == 3) else {
            known.sort();
            known.dedup();
            return Err(LayoutError::UnknownVersion(major, minor, known.join(", ")));
        };
        let layout = Layout::from_map(minor, &map);
        if layout.free_threaded == Some(1) || layout.trace_refs == Some(1) {
            return Err(LayoutError::UnsupportedBuild);
        }
        layout.check_required(major)?;
        Ok(layout)
    }

    fn check_required(&self, major: u8) -> Result<(), LayoutError> {
        let required: [(&'static str, Option<u32>); 10] = [
            ("interp.threads_head", self.interp_threads_head),
            ("tstate.next", self.tstate_next),
            ("tstate.thread_id", self.tstate_thread_id),
            ("code.filename", self.code_filename),
            ("code.name", self.code_name),
            ("code.firstlineno", self.code_firstlineno),
            ("code.linetable", self.code_linetable),
            ("unicode.length", self.unicode_length),
            ("unicode.state", self.unicode_state),
            ("bytes.ob_sval", self.bytes_ob_sval),
        ];
        for (name, value) in required {
            if value.is_none() {
                return Err(LayoutError::MissingField(major, self.minor, name));
            }
        }
        Ok(())
    }

    /// Frames are `_PyInterpreterFrame`s on a per-thread data stack (3.11+), not heap
    /// `PyFrameObject`s.
    pub fn has_interpreter_frames(&self) -> bool {
        self.minor >= 11
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_entry_loads() {
        for minor in 9..=15 {
            let l = Layout::for_version(3, minor).expect("layout");
            assert_eq!(l.minor, minor);
            assert_eq!(l.has_interpreter_frames(), minor >= 11);
            if minor >= 11 {
                assert!(l.iframe_previous.is_some() && l.iframe_executable.is_some());
                assert!(l.iframe_localsplus.is_some() && l.code_localspluskinds.is_some());
                assert_eq!(l.iframe_localsplus_tag_mask.is_some(), minor >= 14);
            } else {
                assert!(l.frame_back.is_some() && l.frame_code.is_some());
                assert!(l.frame_localsplus.is_some() && l.code_varnames.is_some());
            }
            // What objects.rs needs on every version (3.9's dict internals come from DWARF).
            let objects = [l.type_tp_name, l.type_tp_repr, l.long_digits, l.tuple_ob_item, l.dict_ma_keys];
            assert!(objects.iter().all(Option::is_some), "3.{minor}");
            assert_eq!(l.long_lv_tag.is_some(), minor >= 12);
        }
    }

    #[test]
    fn unknown_version_names_known_ones() {
        let err = Layout::for_version(3, 99).unwrap_err().to_string();
        assert!(err.contains("3.99") && err.contains("3.12"), "{err}");
    }

    #[test]
    fn unsupported_builds_are_refused() {
        let json = LAYOUTS_JSON.replacen("\"free_threaded\": 0", "\"free_threaded\": 1", 1);
        assert!(Layout::from_table(&json, 3, 10).is_err());
    }
}
