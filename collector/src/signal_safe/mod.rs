//! Everything that runs inside a signal handler (or the timeout watchdog) lives here.
//!
//! # Contract
//! Code in this module may run on a thread that crashed anywhere — inside `malloc`, with the
//! heap scribbled over, holding any lock, on a small alternate stack. Therefore it:
//! * never allocates (no `Box`, `Vec`, `String`, `format!`) and never frees;
//! * never takes a lock (no `Mutex`, no stdio, no `println!`), only atomics;
//! * calls only async-signal-safe libc functions or raw syscalls (`write`, `sigaction`,
//!   `raise`, `process_vm_readv`, `nanosleep`, `prctl`, `gettid`…);
//! * reads memory it does not own only through [`memory::SelfMemory`], which cannot fault;
//! * formats numbers and text itself into fixed buffers ([`out::Out`]);
//! * runs its reports on the report stack mapped at `enable()` ([`stack`]), never on
//!   whatever small alternate stack it was entered on, and keeps its use well under it;
//! * never panics: no indexing that can go out of bounds, no `unwrap`.
//!
//! Everything it needs (fds, layouts, module paths, alternate stacks) is prepared by the
//! rest of the crate at `enable()`/`register()` time and published through the atomics in
//! [`config`]; published data is never freed, so a handler can never see it disappear.

pub mod config;
pub mod cstack;
pub mod deferred;
pub mod demangle;
pub mod dump;
pub mod elf;
pub mod extmods;
pub mod handler;
pub mod lines;
pub mod maps;
pub mod memory;
pub mod mounts;
pub mod note;
pub mod out;
pub mod pagecache;
pub mod peers;
pub mod pyfatal;
pub mod pytrace;
pub mod resume;
pub mod stack;
pub mod symbols;
pub mod unwind;
