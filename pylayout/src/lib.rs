//! CPython knowledge shared by every crashcatch reader.
//!
//! * [`layout`]: per-version structure offsets, loaded from `data/layouts.json`, which
//!   `tools/layouts/gen_layouts.py` generates from real interpreters.
//! * [`Memory`]: where bytes come from — the live process (collector), a minidump
//!   (symbolizer) or a ptrace'd process (dump helper).
//! * [`debug_offsets`]: the layout a 3.13+ runtime records for itself, preferred to the table.
//! * Readers over a `Memory`: [`walk`] (threads and frames), [`lines`] (line tables),
//!   [`text`] (str objects), [`dict`] (dict and set iteration).
//! * For debuggers and dump readers: [`objects`] (any object's value as `repr()`-like text,
//!   bounded; instance attributes), [`locals`] (a frame's local variables, globals and
//!   builtins by name) and [`thread_names`] (`threading.Thread.name` of each thread).
//!
//! Everything except [`layout::Layout::for_version`], [`objects`], [`locals`] and
//! [`thread_names`] is
//! allocation-free and lock-free, so the collector can run it inside a signal handler:
//! results are passed to callbacks and bytes are read through small fixed buffers.

pub mod debug_offsets;
pub mod dict;
pub mod layout;
pub mod lines;
pub mod locals;
pub mod objects;
pub mod text;
pub mod thread_names;
pub mod version;
pub mod walk;

pub use layout::{Layout, LayoutError};

/// A source of another process's (or our own) memory. Reads never fault: an unreadable
/// range returns `false`.
pub trait Memory {
    /// Fills `buf` from `addr`; `false` if any byte is unreadable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;

    fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }
    fn read_u32(&self, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b).then(|| u32::from_le_bytes(b))
    }
    fn read_i32(&self, addr: u64) -> Option<i32> {
        self.read_u32(addr).map(|v| v as i32)
    }
    fn read_u16(&self, addr: u64) -> Option<u16> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b).then(|| u16::from_le_bytes(b))
    }
    fn read_u8(&self, addr: u64) -> Option<u8> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b).then_some(b[0])
    }
    /// Reads a pointer-sized field at `base + offset`.
    fn ptr_at(&self, base: u64, offset: u32) -> Option<u64> {
        self.read_u64(base.checked_add(offset as u64)?)
    }
    /// A hint that the bytes at each of `addrs` are about to be read: a source that can
    /// fetch many places at once (another process's memory, in one system call) does so
    /// now. Reads return the same either way; by default this does nothing.
    fn prefetch(&self, _addrs: &[u64]) {}
}

/// Addresses of the builtin type objects needed to recognise objects by type.
/// The collector takes them from the running interpreter (`id(str)` …) and hands them to
/// the dump helper inside its `handoff::Request` (hence `repr(C)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TypeAddrs {
    pub str_type: u64,
    pub code_type: u64,
    pub module_type: u64,
    pub dict_type: u64,
    pub frozenset_type: u64,
    pub frame_type: u64,
}

/// `_PyMem_IsPtrFreed()`: NULL or one of the debug allocators' fill patterns.
pub fn is_freed_pattern(ptr: u64) -> bool {
    matches!(ptr, 0 | 0xCDCD_CDCD_CDCD_CDCD | 0xDDDD_DDDD_DDDD_DDDD | 0xFDFD_FDFD_FDFD_FDFD)
}
