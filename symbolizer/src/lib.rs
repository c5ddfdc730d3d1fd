//! Reading crashcatch minidumps: what happened, every thread, and every Python stack decoded
//! from the dump's memory (CPython 3.9–3.15, with pylayout's tables).
//!
//! Native frames are unwound with the module files' CFI and symbolized from their DWARF
//! (`native`); their merge with the Python frames, and debug-info lookup beyond the module's
//! own file (build-id directories, debuglink, debuginfod), are the next steps.

pub mod crash;
pub mod memory;
pub mod native;
pub mod render;

pub use crash::{Crash, LoadError};
