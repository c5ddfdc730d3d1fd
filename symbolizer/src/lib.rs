//! Reading crashcatch minidumps: what happened, every thread, and every Python stack decoded
//! from the dump's memory (CPython 3.9–3.15, with pylayout's tables).
//!
//! Native frames (CFI unwinding, DWARF symbols, debuginfod) and their merge with the
//! Python frames are the next step; see the project's issue tracker.

pub mod crash;
pub mod memory;
pub mod render;

pub use crash::{Crash, LoadError};
