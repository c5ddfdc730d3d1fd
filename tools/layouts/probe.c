/* Prints, as JSON, the CPython structure offsets and constants that crashcatch's
 * post-mortem and in-signal-handler readers need. Compiled against the internal
 * headers of the very interpreter being described (see gen_layouts.py), so the
 * numbers come from that build's own pyconfig.h and struct definitions. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#include "internal/pycore_pystate.h"
#include "internal/pycore_code.h"
#include "internal/pycore_object.h"
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#include "internal/pycore_dict.h"
#else
#include "frameobject.h"
#endif
#if PY_VERSION_HEX < 0x030A0000
#include "longintrepr.h" /* 3.10+ include it from Python.h */
#endif
#if __has_include("internal/pycore_moduleobject.h")
#include "internal/pycore_moduleobject.h"
#define HAVE_MODULEOBJECT 1
#endif

static int first = 1;
static void field(const char *name, long value) {
    printf("%s\n    \"%s\": %ld", first ? "" : ",", name, value);
    first = 0;
}
#define OFF(name, type, member) field(name, (long)offsetof(type, member))
#define SIZE(name, type) field(name, (long)sizeof(type))

int main(void) {
    printf("{");
    field("version_hex", PY_VERSION_HEX);
#ifdef Py_GIL_DISABLED
    field("free_threaded", 1);
#else
    field("free_threaded", 0);
#endif
#ifdef Py_TRACE_REFS
    field("trace_refs", 1);
#else
    field("trace_refs", 0);
#endif
    /* runtime */
    OFF("runtime.interpreters_head", _PyRuntimeState, interpreters.head);
    OFF("runtime.interpreters_main", _PyRuntimeState, interpreters.main);
#if PY_VERSION_HEX < 0x030C0000
    OFF("runtime.gilstate_tstate_current", _PyRuntimeState, gilstate.tstate_current);
    /* The GIL itself lives in the runtime up to 3.11 (a pointer in the interpreter after). */
    OFF("runtime.ceval_gil", _PyRuntimeState, ceval.gil);
#endif
    OFF("gil.last_holder", struct _gil_runtime_state, last_holder);
    OFF("gil.locked", struct _gil_runtime_state, locked);
    /* interpreter */
    OFF("interp.next", PyInterpreterState, next);
#if PY_VERSION_HEX >= 0x030B0000
    OFF("interp.threads_head", PyInterpreterState, threads.head);
#else
    OFF("interp.threads_head", PyInterpreterState, tstate_head);
#endif
    OFF("interp.gc_collecting", PyInterpreterState, gc.collecting);
    OFF("interp.sysdict", PyInterpreterState, sysdict);
#if PY_VERSION_HEX >= 0x030C0000
    OFF("interp.modules", PyInterpreterState, imports.modules);
    OFF("interp.ceval_gil", PyInterpreterState, ceval.gil);
#else
    OFF("interp.modules", PyInterpreterState, modules);
#endif
    /* thread state */
    OFF("tstate.next", PyThreadState, next);
    OFF("tstate.interp", PyThreadState, interp);
    OFF("tstate.thread_id", PyThreadState, thread_id);
#if PY_VERSION_HEX >= 0x030B0000
    OFF("tstate.native_thread_id", PyThreadState, native_thread_id);
    OFF("tstate.datastack_chunk", PyThreadState, datastack_chunk);
    OFF("tstate.datastack_top", PyThreadState, datastack_top);
#endif
#if PY_VERSION_HEX >= 0x030D0000
    OFF("tstate.current_frame", PyThreadState, current_frame);
#elif PY_VERSION_HEX >= 0x030B0000
    OFF("tstate.cframe", PyThreadState, cframe);
    OFF("cframe.current_frame", _PyCFrame, current_frame);
#else
    OFF("tstate.frame", PyThreadState, frame);
#endif
    /* frames */
#if PY_VERSION_HEX >= 0x030B0000
    OFF("iframe.previous", _PyInterpreterFrame, previous);
#if PY_VERSION_HEX >= 0x030D0000
    OFF("iframe.executable", _PyInterpreterFrame, f_executable);
    OFF("iframe.instr_ptr", _PyInterpreterFrame, instr_ptr);
#else
    OFF("iframe.executable", _PyInterpreterFrame, f_code);
    OFF("iframe.prev_instr", _PyInterpreterFrame, prev_instr);
#endif
    OFF("iframe.owner", _PyInterpreterFrame, owner);
    field("iframe.owner_size", (long)sizeof(((_PyInterpreterFrame *)0)->owner));
    /* Frames with owner >= this value are interpreter plumbing (C-stack shims and
     * entry frames), never shown in tracebacks. */
#if PY_VERSION_HEX >= 0x030E0000
    field("iframe.plumbing_owner_min", FRAME_OWNED_BY_INTERPRETER);
    /* f_executable is a tagged _PyStackRef: low bits carry reference flags. */
    field("iframe.executable_tag_mask", 3);
#elif PY_VERSION_HEX >= 0x030C0000
    field("iframe.plumbing_owner_min", FRAME_OWNED_BY_CSTACK);
#else
    OFF("iframe.is_entry", _PyInterpreterFrame, is_entry);
#endif
#else
    OFF("frame.back", PyFrameObject, f_back);
    OFF("frame.code", PyFrameObject, f_code);
    OFF("frame.lasti", PyFrameObject, f_lasti);
    OFF("frame.lineno", PyFrameObject, f_lineno);
    OFF("frame.trace", PyFrameObject, f_trace);
#endif
    /* code objects */
    OFF("code.filename", PyCodeObject, co_filename);
    OFF("code.name", PyCodeObject, co_name);
#if PY_VERSION_HEX >= 0x030B0000
    OFF("code.qualname", PyCodeObject, co_qualname);
    OFF("code.code_adaptive", PyCodeObject, co_code_adaptive);
#else
    OFF("code.code", PyCodeObject, co_code);
#endif
    OFF("code.firstlineno", PyCodeObject, co_firstlineno);
#if PY_VERSION_HEX >= 0x030A0000
    OFF("code.linetable", PyCodeObject, co_linetable);
#else
    OFF("code.linetable", PyCodeObject, co_lnotab);
#endif
    /* objects */
    OFF("object.ob_type", PyObject, ob_type);
    OFF("varobject.ob_size", PyVarObject, ob_size);
    OFF("type.tp_flags", PyTypeObject, tp_flags);
    OFF("type.tp_base", PyTypeObject, tp_base);
    OFF("bytes.ob_sval", PyBytesObject, ob_sval);
    /* str */
    OFF("unicode.length", PyASCIIObject, length);
    OFF("unicode.state", PyASCIIObject, state);
    OFF("unicode.hash", PyASCIIObject, hash);
    SIZE("unicode.ascii_size", PyASCIIObject);
    SIZE("unicode.compact_size", PyCompactUnicodeObject);
    OFF("unicode.data_any", PyUnicodeObject, data.any);
    {
        /* Bit-field positions: set each field in a zeroed copy, read back the word. */
        PyASCIIObject o;
        unsigned int word;
        memset(&o, 0, sizeof o); o.state.kind = 7;
        memcpy(&word, &o.state, sizeof word); field("unicode.state_kind_mask", word);
        memset(&o, 0, sizeof o); o.state.compact = 1;
        memcpy(&word, &o.state, sizeof word); field("unicode.state_compact_mask", word);
        memset(&o, 0, sizeof o); o.state.ascii = 1;
        memcpy(&word, &o.state, sizeof word); field("unicode.state_ascii_mask", word);
    }
    /* dict (3.11+; older dict internals are not in installed headers) */
#if PY_VERSION_HEX >= 0x030B0000
    OFF("dict.ma_keys", PyDictObject, ma_keys);
    OFF("dict.ma_values", PyDictObject, ma_values);
    OFF("dictkeys.log2_size", PyDictKeysObject, dk_log2_size);
    OFF("dictkeys.log2_index_bytes", PyDictKeysObject, dk_log2_index_bytes);
    OFF("dictkeys.kind", PyDictKeysObject, dk_kind);
    OFF("dictkeys.nentries", PyDictKeysObject, dk_nentries);
    OFF("dictkeys.indices", PyDictKeysObject, dk_indices);
    SIZE("dictkeys.entry_size", PyDictKeyEntry);
    OFF("dictkeys.entry_key", PyDictKeyEntry, me_key);
    OFF("dictkeys.entry_value", PyDictKeyEntry, me_value);
    SIZE("dictkeys.unicode_entry_size", PyDictUnicodeEntry);
    OFF("dictkeys.unicode_entry_key", PyDictUnicodeEntry, me_key);
    OFF("dictkeys.unicode_entry_value", PyDictUnicodeEntry, me_value);
#endif
    OFF("set.mask", PySetObject, mask);
    OFF("set.table", PySetObject, table);
    SIZE("set.entry_size", setentry);
    OFF("set.entry_key", setentry, key);
    OFF("set.entry_hash", setentry, hash);
#if PY_VERSION_HEX >= 0x030F0000
    OFF("module.md_token", PyModuleObject, md_token);
    OFF("module.md_token_is_def", PyModuleObject, md_token_is_def);
#elif defined(HAVE_MODULEOBJECT)
    OFF("module.md_def", PyModuleObject, md_def);
#endif
    /* _PyModule_IsExtension() also requires a method table in the module's definition. */
    OFF("moduledef.m_methods", PyModuleDef, m_methods);
    /* Values of objects (pylayout::objects: py-locals, py-print). */
    OFF("type.tp_name", PyTypeObject, tp_name);
    /* A subclass shows as its builtin base's value only when it inherits the base's repr. */
    OFF("type.tp_repr", PyTypeObject, tp_repr);
    OFF("float.ob_fval", PyFloatObject, ob_fval);
    OFF("tuple.ob_item", PyTupleObject, ob_item);
    OFF("list.ob_item", PyListObject, ob_item);
    OFF("cell.ob_ref", PyCellObject, ob_ref);
    OFF("dict.ma_used", PyDictObject, ma_used);
    OFF("set.used", PySetObject, used);
    /* Instance attributes (objects::instance_attr: threading.Thread._name for cc-threads).
     * <=3.10 (and types without managed dicts): a dict at tp_dictoffset. 3.11/3.12: a
     * dict or a values array before the object (the pre-header); 3.13+: values inline
     * after tp_basicsize. Split tables take their keys from the type's ht_cached_keys. */
    OFF("type.tp_basicsize", PyTypeObject, tp_basicsize);
    OFF("type.tp_itemsize", PyTypeObject, tp_itemsize);
    OFF("type.tp_dictoffset", PyTypeObject, tp_dictoffset);
    OFF("heaptype.ht_cached_keys", PyHeapTypeObject, ht_cached_keys);
#ifdef Py_TPFLAGS_MANAGED_DICT
    field("type.managed_dict_flag", Py_TPFLAGS_MANAGED_DICT);
#endif
#ifdef Py_TPFLAGS_INLINE_VALUES
    field("type.inline_values_flag", Py_TPFLAGS_INLINE_VALUES);
    OFF("dictvalues.valid", PyDictValues, valid);
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* A split table's insertion order: `size` indices after the `capacity` values. */
    OFF("dictvalues.capacity", PyDictValues, capacity);
    OFF("dictvalues.size", PyDictValues, size);
#elif PY_VERSION_HEX >= 0x030B0000
    {
        /* A split table's insertion order: a count and indices in the bytes before the
         * values, where _PyDictValues_AddToInsertionOrder puts them (asked of a fake
         * array whose prefix is 32 bytes; index 5 added to an empty order). */
        union { PyObject *align; uint8_t bytes[64]; } buf;
        int i;
        memset(&buf, 0, sizeof buf);
        buf.bytes[31] = 32;
        _PyDictValues_AddToInsertionOrder((PyDictValues *)&buf.bytes[32], 5);
        for (i = 0; i < 31; i++) {
            if (buf.bytes[i] == 1)
                field("dictvalues.order_size_before", 32 - i);
            if (buf.bytes[i] == 5)
                field("dictvalues.order_before", 32 - i);
        }
    }
#endif
#if PY_VERSION_HEX >= 0x030B0000
    OFF("dictvalues.values", PyDictValues, values);
    {
        /* The pre-header pointers, as the interpreter's own accessors place them: asked
         * of a fake object whose type has a managed dict (their asserts hold). */
        PyTypeObject fake_type;
        PyObject *fake[8];
        PyObject *obj = (PyObject *)&fake[4];
        memset(&fake_type, 0, sizeof fake_type);
        fake_type.tp_flags = Py_TPFLAGS_MANAGED_DICT;
        memset(fake, 0, sizeof fake);
        Py_SET_TYPE(obj, &fake_type);
#if PY_VERSION_HEX >= 0x030D0000
        field("object.managed_dict_before", -(long)MANAGED_DICT_OFFSET);
#elif PY_VERSION_HEX >= 0x030C0000
        field("object.managed_dict_before", (long)((char *)obj - (char *)_PyObject_DictOrValuesPointer(obj)));
        {
            /* One tagged word: the dict, or (odd) the values while no dict object exists;
             * recorded: what the interpreter adds to an odd word to get the values. */
            PyDictOrValues dorv;
            dorv.values = (char *)0x1001;
            field("object.tagged_values_add", (long)((char *)_PyDictOrValues_GetValues(dorv) - dorv.values));
        }
#else
        field("object.managed_dict_before", (long)((char *)obj - (char *)_PyObject_ManagedDictPointer(obj)));
        field("object.values_before", (long)((char *)obj - (char *)_PyObject_ValuesPointer(obj)));
#endif
    }
#endif
    /* int: PyLong_SHIFT-bit digits; the count and sign are in ob_size up to 3.11, in
     * lv_tag (count << non_size_bits | sign, sign 0 positive / 1 zero / 2 negative) after. */
    field("long.shift", PyLong_SHIFT);
    SIZE("long.digit_size", digit);
#if PY_VERSION_HEX >= 0x030C0000
    OFF("long.lv_tag", PyLongObject, long_value.lv_tag);
    OFF("long.digits", PyLongObject, long_value.ob_digit);
    field("long.non_size_bits", _PyLong_NON_SIZE_BITS);
    field("long.sign_mask", _PyLong_SIGN_MASK);
#else
    OFF("long.digits", PyLongObject, ob_digit);
#endif
    /* Frame locals, globals and builtins. */
#if PY_VERSION_HEX >= 0x030B0000
    OFF("iframe.globals", _PyInterpreterFrame, f_globals);
    OFF("iframe.builtins", _PyInterpreterFrame, f_builtins);
    OFF("iframe.localsplus", _PyInterpreterFrame, localsplus);
#if PY_VERSION_HEX >= 0x030E0000
    /* localsplus holds tagged _PyStackRefs: pointer = bits & ~mask (NULL is tagged too). */
    field("iframe.localsplus_tag_mask", Py_TAG_BITS);
#endif
    OFF("code.localsplusnames", PyCodeObject, co_localsplusnames);
    OFF("code.localspluskinds", PyCodeObject, co_localspluskinds);
    OFF("code.nlocalsplus", PyCodeObject, co_nlocalsplus);
    field("code.fast_local", CO_FAST_LOCAL);
    field("code.fast_cell", CO_FAST_CELL);
    field("code.fast_free", CO_FAST_FREE);
#ifdef CO_FAST_HIDDEN
    field("code.fast_hidden", CO_FAST_HIDDEN);
#endif
#else
    OFF("frame.globals", PyFrameObject, f_globals);
    OFF("frame.builtins", PyFrameObject, f_builtins);
    OFF("frame.localsplus", PyFrameObject, f_localsplus);
    OFF("code.varnames", PyCodeObject, co_varnames);
    OFF("code.cellvars", PyCodeObject, co_cellvars);
    OFF("code.freevars", PyCodeObject, co_freevars);
    OFF("code.nlocals", PyCodeObject, co_nlocals);
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* Where, inside the _Py_DebugOffsets block at the start of _PyRuntime, each build
     * records its own offsets: a dump then carries the layout of the exact build that
     * wrote it, and the symbolizer prefers it to this table (custom builds, new patch
     * releases). Keys are "debug." + the table key they correspond to. */
    OFF("runtime.debug_offsets", _PyRuntimeState, debug_offsets);
#define DBG(key, member) field("debug." key, (long)offsetof(_Py_DebugOffsets, member))
    DBG("runtime.interpreters_head", runtime_state.interpreters_head);
    DBG("interp.next", interpreter_state.next);
    DBG("interp.threads_head", interpreter_state.threads_head);
    DBG("interp.modules", interpreter_state.imports_modules);
    DBG("interp.sysdict", interpreter_state.sysdict);
    DBG("interp.ceval_gil", interpreter_state.ceval_gil);
    DBG("tstate.next", thread_state.next);
    DBG("tstate.interp", thread_state.interp);
    DBG("tstate.current_frame", thread_state.current_frame);
    DBG("tstate.thread_id", thread_state.thread_id);
    DBG("tstate.native_thread_id", thread_state.native_thread_id);
    DBG("tstate.datastack_chunk", thread_state.datastack_chunk);
    DBG("iframe.previous", interpreter_frame.previous);
    DBG("iframe.executable", interpreter_frame.executable);
    DBG("iframe.instr_ptr", interpreter_frame.instr_ptr);
    DBG("iframe.owner", interpreter_frame.owner);
    DBG("code.filename", code_object.filename);
    DBG("code.name", code_object.name);
    DBG("code.qualname", code_object.qualname);
    DBG("code.linetable", code_object.linetable);
    DBG("code.firstlineno", code_object.firstlineno);
    DBG("code.code_adaptive", code_object.co_code_adaptive);
    DBG("object.ob_type", pyobject.ob_type);
    DBG("type.tp_flags", type_object.tp_flags);
    DBG("dict.ma_keys", dict_object.ma_keys);
    DBG("dict.ma_values", dict_object.ma_values);
    DBG("bytes.ob_sval", bytes_object.ob_sval);
    DBG("varobject.ob_size", bytes_object.ob_size);
    DBG("unicode.state", unicode_object.state);
    DBG("unicode.length", unicode_object.length);
    DBG("unicode.ascii_size", unicode_object.asciiobject_size);
    DBG("iframe.localsplus", interpreter_frame.localsplus);
    DBG("code.localsplusnames", code_object.localsplusnames);
    DBG("code.localspluskinds", code_object.localspluskinds);
    DBG("type.tp_name", type_object.tp_name);
    DBG("tuple.ob_item", tuple_object.ob_item);
    DBG("list.ob_item", list_object.ob_item);
    DBG("float.ob_fval", float_object.ob_fval);
    DBG("long.lv_tag", long_object.lv_tag);
    DBG("long.digits", long_object.ob_digit);
#if PY_VERSION_HEX >= 0x030E0000
    DBG("set.used", set_object.used);
#endif
#endif
    printf("\n}\n");
    return 0;
}
