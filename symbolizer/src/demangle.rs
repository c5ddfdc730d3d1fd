//! Symbol names as people read them: Rust's by rustc-demangle, C++'s by the GNU demangler
//! when the machine has one, so that names are c++filt's, gdb's and addr2line's.
//!
//! The GNU demangler (libiberty's, which c++filt, gdb and addr2line use) is also the C++
//! runtime's `__cxa_demangle`, found in `libstdc++.so.6` wherever C++ programs run. It is
//! loaded when first needed, never linked: the symbolizer still runs where there is no
//! libstdc++, with `cpp_demangle`, which gets some C++ wrong (a pack of `const T&`
//! parameters loses its `const&`: `pybind11::name const, pybind11::scope&` where c++filt
//! gives `pybind11::name const&, pybind11::scope const&`; empty packs print as `<T, >`).
//!
//! One difference with c++filt remains: c++filt asks libiberty for the long forms of the
//! standard abbreviations (`std::basic_ostream<char, std::char_traits<char> >` where the
//! runtime, like addr2line and nm, writes `std::ostream`).

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::OnceLock;

/// `abi::__cxa_demangle(mangled, buffer, length, status)`.
type CxaDemangle = unsafe extern "C" fn(*const c_char, *mut c_char, *mut usize, *mut c_int) -> *mut c_char;

/// `name` demangled, or as it is when it is not a mangled name (C, or a DWARF name).
pub fn demangle(name: &str) -> String {
    if let Some(rust) = addr2line::demangle(name, gimli::DW_LANG_Rust) {
        return rust;
    }
    if !name.starts_with("_Z") {
        return name.to_string();
    }
    gnu(name)
        .or_else(|| addr2line::demangle(name, gimli::DW_LANG_C_plus_plus))
        .unwrap_or_else(|| name.to_string())
}

/// The C++ runtime's demangler, loaded once; None where there is no libstdc++.so.6.
fn runtime_demangler() -> Option<CxaDemangle> {
    static FOUND: OnceLock<Option<CxaDemangle>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlopen and dlsym get NUL-terminated constant names. The library is never
        // closed, so the function pointer stays valid for the life of the process.
        // `__cxa_demangle` has had this signature in every libstdc++ (the Itanium C++ ABI).
        unsafe {
            let library = libc::dlopen(c"libstdc++.so.6".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if library.is_null() {
                return None;
            }
            let symbol = libc::dlsym(library, c"__cxa_demangle".as_ptr());
            (!symbol.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, CxaDemangle>(symbol))
        }
    })
}

/// `name` demangled by the GNU demangler, if the machine has it and it knows the name.
fn gnu(name: &str) -> Option<String> {
    let demangler = runtime_demangler()?;
    let mangled = CString::new(name).ok()?;
    let mut status: c_int = 0;
    // SAFETY: `mangled` is NUL-terminated and outlives the call; a null buffer and length
    // ask the demangler to malloc the result, which it returns (or null, with `status`
    // saying why). The result is a NUL-terminated string we own and free below.
    unsafe {
        let out = demangler(mangled.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), &mut status);
        if out.is_null() {
            return None;
        }
        let text = (status == 0).then(|| CStr::from_ptr(out).to_string_lossy().into_owned());
        libc::free(out.cast());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_cxxfilt_writes_them() {
        assert!(runtime_demangler().is_some(), "these tests need libstdc++.so.6 (install g++)");
        // pybind11's dispatch lambda: its pack of `const T&` extras is where cpp_demangle drops
        // the `const&`.
        let dispatch = "_ZZN8pybind1112cpp_function10initializeIZL23pybind11_init_pybindextRNS_7module_EEUlmiE_iJmiEJNS_\
                        4nameENS_5scopeENS_7siblingEEEEvOT_PFT0_DpT1_EDpRKT2_ENUlRNS_6detail13function_callEE1_4_FUNESL_";
        assert_eq!(
            demangle(dispatch),
            "pybind11::cpp_function::initialize<pybind11_init_pybindext(pybind11::module_&)::{lambda(unsigned long, \
             int)#1}, int, unsigned long, int, pybind11::name, pybind11::scope, pybind11::sibling>(pybind11_init_\
             pybindext(pybind11::module_&)::{lambda(unsigned long, int)#1}&&, int (*)(unsigned long, int), \
             pybind11::name const&, pybind11::scope const&, pybind11::sibling const&)::{lambda(pybind11::detail::\
             function_call&)#3}::_FUN(pybind11::detail::function_call&)"
        );
        assert_eq!(
            demangle("_ZN6shapes4Grid4pokeEii.isra.0"),
            "shapes::Grid::poke(int, int) [clone .isra.0]"
        );
        assert_eq!(demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"), "core::ptr::drop_in_place");
        assert_eq!(demangle("deref_null"), "deref_null");
        assert_eq!(demangle("operator()"), "operator()");
        assert_eq!(demangle("_Znot a name"), "_Znot a name");
    }
}
