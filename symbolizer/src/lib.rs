//! Reading crashcatch minidumps: what happened, every thread, and every Python stack decoded
//! from the dump's memory (CPython 3.9–3.15, with pylayout's tables).
//!
//! Native frames are unwound with the module files' CFI, every step checked (`unwind`), and
//! symbolized from their DWARF (`native`), found in the module file or a separate debug file
//! (`debuginfo`, `debuginfod`), then merged with the Python frames (`python`) by the eval-loop calls that ran them (`merge`).

pub mod compressed;
pub mod core;
pub mod crash;
pub mod debugger;
pub mod debuginfo;
pub mod debuginfod;
pub mod demangle;
pub mod dwarf;
pub mod dwarf_cache;
pub mod elf;
pub mod from_core;
pub mod from_live;
pub mod line_table;
pub mod link_map;
pub mod list;
pub mod memory;
pub mod merge;
pub mod native;
pub mod pylines;
pub mod python;
pub mod render;
pub mod sources;
pub mod symbols;
pub mod terminal;
pub mod unwind;

pub use crash::{Crash, LoadError, Options};
