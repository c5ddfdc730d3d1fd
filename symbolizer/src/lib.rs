//! Reading crashcatch minidumps: what happened, every thread, and every Python stack decoded
//! from the dump's memory (CPython 3.9–3.15, with pylayout's tables).
//!
//! Native frames are unwound with the module files' CFI and symbolized from their DWARF
//! (`native`), then merged with the Python frames by the eval-loop calls that ran them
//! (`merge`).

pub mod crash;
pub mod memory;
pub mod merge;
pub mod native;
pub mod python;
pub mod render;

pub use crash::{Crash, LoadError, Options};
