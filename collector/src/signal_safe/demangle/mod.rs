//! Symbol names as people read them, demangled at crash time into a fixed buffer:
//! Itanium C++ (`_Z…`) in c++filt's form, Rust legacy (`_ZN…17h<hash>E`) and v0 (`_R…`)
//! in rustc-demangle's alternate (`{:#}`, hash-free) form.
//!
//! Same contract as the rest of [`super`]: no allocation (parse trees live in fixed arrays
//! on the stack), no formatting machinery, bounded recursion and work, no panics. Whatever
//! is not supported, malformed, or would need more than the fixed tables gives `None`, and
//! the caller prints the mangled name: the output is either what the reference demangler
//! prints or nothing at all, never a guess.

mod itanium;
mod rust_legacy;
mod rust_v0;
mod sink;

pub use sink::Demangled;
use sink::Sink;

/// Longest mangled name looked at; longer ones are left mangled.
pub const MAX_MANGLED: usize = 1024;

/// Demangles `mangled` into `out`. On success the first `len` bytes of `out` hold the name
/// (UTF-8), cut at a character boundary and marked `truncated` when it did not fit.
pub fn demangle(mangled: &[u8], out: &mut [u8]) -> Option<Demangled> {
    if mangled.len() > MAX_MANGLED || mangled.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
        return None;
    }
    let mut sink = Sink::new(out);
    let ok = if mangled.starts_with(b"_R") {
        rust_v0::demangle(mangled, &mut sink)
    } else if rust_legacy::is_legacy(mangled) {
        rust_legacy::demangle(mangled, &mut sink)
    } else if mangled.starts_with(b"_Z") {
        itanium::demangle(mangled, &mut sink)
    } else {
        false
    };
    if ok {
        sink.finish()
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
