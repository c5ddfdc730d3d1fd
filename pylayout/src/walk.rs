//! Walking an interpreter's thread states and each thread's Python frames.

use crate::{Layout, Memory};

/// Threads beyond this many are not walked (guards against cycles in corrupt lists).
pub const MAX_THREADS_WALKED: usize = 100_000;
/// Frames beyond this many are not walked (guards against cycles).
pub const MAX_FRAMES_WALKED: usize = 1_000_000;

/// One Python frame: its code object and where in it execution is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyFrame {
    /// Address of the frame (`PyFrameObject` or `_PyInterpreterFrame`).
    pub frame: u64,
    /// Address of the code object (0 if unreadable or not a code object).
    pub code: u64,
    /// Byte offset of the current instruction, as `PyCode_Addr2Line()` takes it;
    /// negative when the frame has not started.
    pub addr: i64,
}

/// How a frame walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// Reached the outermost frame (or the callback asked to stop).
    Complete,
    /// The thread has no Python frame.
    NoFrame,
    /// A frame or pointer could not be read.
    Unreadable,
}

/// Calls `f` with each thread state of `interp`, newest first (the interpreter's own
/// order), until `f` returns `false`. Returns `false` if the list could not be read.
pub fn for_each_thread(
    mem: &dyn Memory,
    layout: &Layout,
    interp: u64,
    f: &mut dyn FnMut(u64) -> bool,
) -> bool {
    let (Some(head_off), Some(next_off)) = (layout.interp_threads_head, layout.tstate_next) else {
        return false;
    };
    let Some(mut tstate) = mem.ptr_at(interp, head_off) else {
        return false;
    };
    let mut n = 0;
    while tstate != 0 && n < MAX_THREADS_WALKED {
        if !f(tstate) {
            return true;
        }
        match mem.ptr_at(tstate, next_off) {
            Some(next) => tstate = next,
            None => return false,
        }
        n += 1;
    }
    true
}

/// `tstate->thread_id`: the thread's `pthread_t`.
pub fn thread_id(mem: &dyn Memory, layout: &Layout, tstate: u64) -> Option<u64> {
    mem.ptr_at(tstate, layout.tstate_thread_id?)
}

/// `tstate->native_thread_id` (3.11+): the OS thread id.
pub fn native_thread_id(mem: &dyn Memory, layout: &Layout, tstate: u64) -> Option<u64> {
    mem.ptr_at(tstate, layout.tstate_native_thread_id?)
}

/// `interp->gc.collecting`.
pub fn gc_collecting(mem: &dyn Memory, layout: &Layout, interp: u64) -> Option<bool> {
    mem.read_i32(interp.wrapping_add(layout.interp_gc_collecting? as u64)).map(|v| v != 0)
}

/// The thread state holding the GIL of `interp` (None when the GIL is free or unknown).
/// `runtime`: `&_PyRuntime`, where the GIL lives up to 3.11.
pub fn gil_holder(mem: &dyn Memory, layout: &Layout, runtime: u64, interp: u64) -> Option<u64> {
    let gil = match (layout.interp_ceval_gil, layout.runtime_ceval_gil) {
        (Some(ptr_off), _) => mem.ptr_at(interp, ptr_off)?,
        (None, Some(off)) if runtime != 0 => runtime.wrapping_add(off as u64),
        _ => return None,
    };
    // `gil` may be any value read from a dump: the address wraps (and reads nothing).
    let locked = mem.read_i32(gil.wrapping_add(layout.gil_locked? as u64))?;
    let holder = mem.ptr_at(gil, layout.gil_last_holder?)?;
    (locked != 0 && holder != 0).then_some(holder)
}

/// Where a thread state keeps its innermost frame: a pointer at `in_tstate`, or (3.12) a
/// pointer there to the C-stack structure whose `through` field points to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSlot {
    pub in_tstate: u32,
    pub through: Option<u32>,
}

/// The one place that decides which thread-state field leads to the innermost frame.
pub fn current_frame_slot(layout: &Layout) -> Option<FrameSlot> {
    match (layout.tstate_current_frame, layout.tstate_cframe, layout.cframe_current_frame) {
        (Some(off), _, _) => Some(FrameSlot { in_tstate: off, through: None }),
        (None, Some(cframe), Some(off)) => Some(FrameSlot { in_tstate: cframe, through: Some(off) }),
        _ => Some(FrameSlot { in_tstate: layout.tstate_frame?, through: None }),
    }
}

/// The innermost frame of a thread (0 when it runs no Python code).
pub fn current_frame(mem: &dyn Memory, layout: &Layout, tstate: u64) -> Option<u64> {
    let slot = current_frame_slot(layout)?;
    let at = mem.ptr_at(tstate, slot.in_tstate)?;
    match slot.through {
        Some(off) if at != 0 => mem.ptr_at(at, off),
        _ => Some(at),
    }
}

/// Calls `f` with each Python frame of `tstate`, innermost first, skipping the
/// interpreter's plumbing frames the way faulthandler does, until `f` returns `false`.
/// `frame_type` (`PyFrame_Type`, ≤3.10) ends the walk at a non-frame object, as
/// faulthandler's `PyFrame_Check()` does; pass 0 to skip that check.
pub fn for_each_frame(
    mem: &dyn Memory,
    layout: &Layout,
    tstate: u64,
    frame_type: u64,
    f: &mut dyn FnMut(PyFrame) -> bool,
) -> WalkEnd {
    for_each_raw_frame(mem, layout, tstate, frame_type, &mut |_, shown| shown.is_none_or(&mut *f))
}

/// Like [`for_each_frame`], but `f` sees every frame in the chain, plumbing included: its
/// address, and the Python frame to show (None for plumbing).
pub fn for_each_raw_frame(
    mem: &dyn Memory,
    layout: &Layout,
    tstate: u64,
    frame_type: u64,
    f: &mut dyn FnMut(u64, Option<PyFrame>) -> bool,
) -> WalkEnd {
    let Some(mut frame) = current_frame(mem, layout, tstate) else {
        return WalkEnd::Unreadable;
    };
    if frame == 0 {
        return WalkEnd::NoFrame;
    }
    for _ in 0..MAX_FRAMES_WALKED {
        let Some((shown, previous)) = frame_step(mem, layout, frame, frame_type) else {
            return WalkEnd::Unreadable;
        };
        if !f(frame, shown) || previous == 0 {
            return WalkEnd::Complete;
        }
        frame = previous;
    }
    WalkEnd::Complete
}

/// Decodes the frame at `frame`: the Python frame to show (None for interpreter plumbing
/// or, with `frame_type` set, a non-frame object) and the address of the next outer frame.
pub fn frame_step(
    mem: &dyn Memory,
    layout: &Layout,
    frame: u64,
    frame_type: u64,
) -> Option<(Option<PyFrame>, u64)> {
    if layout.has_interpreter_frames() {
        interpreter_frame(mem, layout, frame)
    } else {
        frame_object(mem, layout, frame, frame_type)
    }
}

/// ≤3.10: a heap `PyFrameObject`. Returns (frame to show, f_back).
fn frame_object(
    mem: &dyn Memory,
    layout: &Layout,
    frame: u64,
    frame_type: u64,
) -> Option<(Option<PyFrame>, u64)> {
    if frame_type != 0 && mem.ptr_at(frame, layout.object_ob_type?)? != frame_type {
        return Some((None, 0));
    }
    let code = mem.ptr_at(frame, layout.frame_code?)?;
    let lasti = mem.read_i32(frame.wrapping_add(layout.frame_lasti? as u64))? as i64;
    // 3.10 counts f_lasti in 2-byte code units, 3.9 in bytes.
    let addr = if layout.minor >= 10 { lasti.saturating_mul(2) } else { lasti };
    let back = mem.ptr_at(frame, layout.frame_back?)?;
    Some((Some(PyFrame { frame, code, addr }), back))
}

/// 3.11+: a `_PyInterpreterFrame`. Returns (frame to show unless plumbing, previous).
fn interpreter_frame(mem: &dyn Memory, layout: &Layout, frame: u64) -> Option<(Option<PyFrame>, u64)> {
    let previous = mem.ptr_at(frame, layout.iframe_previous?)?;
    if let (Some(owner_off), Some(min)) = (layout.iframe_owner, layout.iframe_plumbing_owner_min) {
        let owner = mem.read_u8(frame.wrapping_add(owner_off as u64))? as u32;
        if owner >= min {
            return Some((None, previous));
        }
    }
    let raw = mem.ptr_at(frame, layout.iframe_executable?)?;
    let code = raw & !(layout.iframe_executable_tag_mask.unwrap_or(0) as u64);
    let instr_off = layout.iframe_instr_ptr.or(layout.iframe_prev_instr)?;
    let instr = mem.ptr_at(frame, instr_off)?;
    let start = code.wrapping_add(layout.code_code_adaptive? as u64);
    let addr = if instr < start { -2 } else { ((instr - start) & !1).min(i64::MAX as u64) as i64 };
    Some((Some(PyFrame { frame, code, addr }), previous))
}

/// Whether the frame at `frame` closes one C-level call of the eval loop
/// (`_PyEval_EvalFrameDefault`), walking innermost first: the frames since the previous
/// such boundary are the ones that call ran. This is what lines Python frames up with the
/// native stack's eval frames.
/// - ≤3.10: every frame object has its own eval call.
/// - 3.11: the call's outermost frame has `is_entry` set (and is shown).
/// - 3.12+: each call pushes an entry frame, a local variable of the eval function: an
///   interpreter-owned frame (owner ≥ the plumbing minimum, never shown) that lives on the
///   C stack. Other interpreter-owned frames (3.14+ `__init__` cleanup shims, the thread's
///   base frame) live in the interpreter's own memory, so `on_c_stack` tells them apart —
///   the owner values alone do not (3.14 builds use FRAME_OWNED_BY_INTERPRETER for entry
///   frames although the enum still has FRAME_OWNED_BY_CSTACK).
pub fn ends_eval_call(
    mem: &dyn Memory,
    layout: &Layout,
    frame: u64,
    on_c_stack: &dyn Fn(u64) -> bool,
) -> Option<bool> {
    if !layout.has_interpreter_frames() {
        return Some(true);
    }
    if let Some(off) = layout.iframe_is_entry {
        return mem.read_u8(frame.wrapping_add(off as u64)).map(|v| v != 0);
    }
    let owner = mem.read_u8(frame.wrapping_add(layout.iframe_owner? as u64))? as u32;
    Some(owner >= layout.iframe_plumbing_owner_min? && on_c_stack(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory where every word reads as all ones (a hostile dump's pointers).
    struct AllOnes;

    impl Memory for AllOnes {
        fn read(&self, _addr: u64, buf: &mut [u8]) -> bool {
            buf.fill(0xff);
            true
        }
    }

    #[test]
    fn pointers_at_the_top_of_the_address_space_wrap_instead_of_panicking() {
        for minor in 9..=15 {
            let Ok(l) = Layout::for_version(3, minor) else { continue };
            let _ = gil_holder(&AllOnes, &l, u64::MAX, u64::MAX);
            let _ = gc_collecting(&AllOnes, &l, u64::MAX);
        }
    }

    #[test]
    fn the_frame_slot_follows_the_version() {
        for minor in 9..=15 {
            let Ok(l) = Layout::for_version(3, minor) else { continue };
            let slot = current_frame_slot(&l).expect("every supported version has a frame slot");
            let expected = match minor {
                9 | 10 => (l.tstate_frame, None),
                11 | 12 => (l.tstate_cframe, l.cframe_current_frame),
                _ => (l.tstate_current_frame, None),
            };
            assert_eq!((Some(slot.in_tstate), slot.through), expected, "3.{minor}");
        }
    }

    /// Memory holding the words given, by address; everything else unreadable.
    struct Words(Vec<(u64, u64)>);

    impl Memory for Words {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            match self.0.iter().find(|&&(a, _)| a == addr) {
                Some(&(_, w)) if buf.len() == 8 => {
                    buf.copy_from_slice(&w.to_le_bytes());
                    true
                }
                _ => false,
            }
        }
    }

    #[test]
    fn the_current_frame_is_read_through_the_slot() {
        let l = Layout::for_version(3, 12).unwrap();
        let (cf, off) = (l.tstate_cframe.unwrap() as u64, l.cframe_current_frame.unwrap() as u64);
        let mem = Words(vec![(0x1000 + cf, 0x2000), (0x2000 + off, 0x3000)]);
        assert_eq!(current_frame(&mem, &l, 0x1000), Some(0x3000));
        // A thread with no C-stack structure runs no Python code.
        let idle = Words(vec![(0x1000 + cf, 0)]);
        assert_eq!(current_frame(&idle, &l, 0x1000), Some(0));
        assert_eq!(current_frame(&Words(vec![]), &l, 0x1000), None);
    }
}
