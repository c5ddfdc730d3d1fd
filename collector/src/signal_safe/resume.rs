//! Where an unwind of a capped stack can go on below the cut.
//!
//! The dump helper keeps only the two ends of a very deep crashing stack (an overflow:
//! dumper/src/shrink.rs). An unwinder reading the dump stops where the kept top ends; to go
//! on near the thread's start it needs the registers of a frame there, which only an unwind
//! of the whole stack finds. The requester makes that unwind before the helper starts: this
//! finds the outermost frames' registers, and the helper keeps the stack from that frame to
//! the thread's start.

use super::config::ProcessFacts;
use super::maps;
use super::memory::SelfMemory;
use super::unwind::{End, Regs, Trust, Unwinder};
use pylayout::Memory;

/// A stack using less than this (from its pointer to its end) is never capped (the helper
/// caps above 1 MiB): no walk.
const SHALLOW: u64 = 512 * 1024;
/// The frame to go on from: the innermost one whose stack pointer lies within this of the
/// outermost frame's (the thread's start and the Python frames under the deep part).
const BOTTOM: u64 = 48 * 1024;
/// Candidates are the first frame in each 16 KiB of stack; the last eight are kept.
const STEP: u64 = 16 * 1024;
const KEPT: usize = 8;
/// Frames walked at most (as the report does).
const MAX_FRAMES: u64 = 1 << 20;

/// A frame's registers and its distance from the innermost frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
    /// Frames above it (the innermost frame is 0).
    pub depth: u64,
}

/// The resume point of the stack that `regs` are on, if it is deep enough to be capped and
/// its unwind reaches the thread's start.
pub fn find(mem: &SelfMemory, facts: &ProcessFacts, regs: Regs) -> Option<Resume> {
    let sp = regs.sp();
    // A stack is one mapping from its pointer to its end: if the byte SHALLOW above the
    // pointer cannot be read, the stack ends below it. That proof costs one read; the maps
    // cost milliseconds with thousands of threads' mappings, and the helper waits for this.
    let unreadable = |addr: u64| !mem.read(addr, &mut [0u8; 1]);
    if sp.checked_add(SHALLOW).is_none_or(unreadable)
        || maps::stack_bounds(sp).is_some_and(|(_, hi)| hi.saturating_sub(sp) <= SHALLOW)
    {
        return None;
    }
    let mut walk = Unwinder::new(mem, facts, regs);
    // The first frame of each STEP of stack, in a ring of the last KEPT.
    let mut ring = [None::<Resume>; KEPT];
    let (mut taken, mut depth, mut last_sp, mut last_step) = (0usize, 0u64, sp, u64::MAX);
    while depth < MAX_FRAMES {
        let at = *walk.regs();
        let Some(frame) = walk.next() else { break };
        last_sp = at.sp();
        // A frame reached by CFI has exact registers: the dump's unwinder can go on from it.
        if frame.trust == Trust::Cfi && last_sp / STEP != last_step {
            last_step = last_sp / STEP;
            if let Some(slot) = ring.get_mut(taken % KEPT) {
                *slot = Some(Resume { rip: at.pc(), rsp: last_sp, rbp: at.fp().unwrap_or(0), depth });
            }
            taken += 1;
        }
        depth += 1;
    }
    if walk.end != End::ThreadStart {
        return None;
    }
    let floor = last_sp.saturating_sub(BOTTOM);
    ring.iter().flatten().filter(|r| r.rsp >= floor).min_by_key(|r| r.depth).copied()
}
