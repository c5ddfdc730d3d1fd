//! Stacks the helper unwinds itself (requests with `"unwind": true`, which lldb's side
//! sends): lldb's own unwinder stops early on some targets (lldb-19 at pyenv 3.12's
//! `_PyObject_MakeTpCall`), so each thread is unwound from its registers with crashcatch's
//! CFI unwinder (`crate::unwind`, the one `crashcatch symbolize` uses), reading the target's
//! memory through the debugger. The debugger's frames then only give levels: which of its
//! frames is one of ours, for `py-up` to select.

use super::ops::GdbFrame;
use crate::native::{LoadedModule, NativeFrame};
use crate::unwind::Space;
use serde::Deserialize;

/// A thread's registers, as the debugger reads them from its innermost frame.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Regs {
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
}

/// A module as the debugger lists it (lldb has no `info auxv` to start the link_map walk).
#[derive(Clone, Debug, Deserialize)]
pub struct DebuggerModule {
    pub path: String,
    pub base: u64,
    pub size: u64,
    /// Hex, in any case and with any dashes (lldb's UUID string is `ABCD1234-…`).
    pub build_id: Option<String>,
}

impl DebuggerModule {
    pub fn loaded(&self) -> LoadedModule {
        let build_id = self
            .build_id
            .as_deref()
            .map(|id| id.chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase())
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()));
        LoadedModule { path: self.path.clone(), base: self.base, size: self.size, build_id }
    }
}

/// What the unwinder may trust: the debugger's memory regions (`[start, end, perms]`) when
/// it sent them, else every module's range as code and no stack bounds.
pub fn space(regions: &[(u64, u64, String)], modules: &[LoadedModule]) -> Space {
    if regions.is_empty() {
        let code = modules.iter().map(|m| (m.base, m.base.saturating_add(m.size))).collect();
        return Space::new(code, None);
    }
    let with = |flag: char| -> Vec<(u64, u64)> {
        regions.iter().filter(|(_, _, p)| p.contains(flag)).map(|&(lo, hi, _)| (lo, hi)).collect()
    };
    let writable = regions
        .iter()
        .filter(|(_, _, p)| p.contains('r') && p.contains('w'))
        .map(|&(lo, hi, _)| (lo, hi))
        .collect();
    Space::new(with('x'), Some(writable))
}

/// The debugger's level of each of `ours` (None where its unwind did not get there). A
/// physical frame is matched by its stack pointer, which both unwinders agree on; within
/// it, the frames (inlined calls, then the function) are paired from the outermost.
pub fn levels(ours: &[NativeFrame], theirs: &[GdbFrame]) -> Vec<Option<u32>> {
    let our_groups = groups(ours.iter().map(|f| (f.sp, f.inlined)));
    let their_groups = groups(theirs.iter().map(|f| (f.sp, f.inline)));
    let mut out = vec![None; ours.len()];
    for (sp, range) in our_groups {
        let Some((_, their)) = their_groups.iter().find(|(s, _)| *s == sp) else { continue };
        for (mine, other) in range.rev().zip(their.clone().rev()) {
            out[mine] = theirs.get(other).map(|f| f.level);
        }
    }
    out
}

/// Runs of frames of one physical frame: inlined calls end at the function they are
/// inlined into (the first non-inlined frame), all with one stack pointer.
fn groups(frames: impl Iterator<Item = (u64, bool)>) -> Vec<(u64, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, (sp, inlined)) in frames.enumerate() {
        if !inlined {
            out.push((sp, start..i + 1));
            start = i + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(sp: u64, inlined: bool) -> NativeFrame {
        NativeFrame {
            address: 0,
            module: None,
            module_offset: 0,
            function: None,
            file: None,
            line: None,
            inlined,
            trust: "cfi",
            sp,
            symbol_source: None,
        }
    }

    fn theirs(level: u32, sp: u64, inline: bool) -> GdbFrame {
        GdbFrame { level, pc: 0, sp, inline, caller: level > 0, name: None, module: None }
    }

    #[test]
    fn frames_pair_by_stack_pointer_and_inlining() {
        // Ours: f (sp 10), an inlined g inside h (sp 20), k (sp 30), e (sp 40).
        let mine = [ours(10, false), ours(20, true), ours(20, false), ours(30, false), ours(40, false)];
        // The debugger's: f, g inlined in h, then it stopped before k... and found e
        // (its unwind skipped a frame).
        let other = [theirs(0, 10, false), theirs(1, 20, true), theirs(2, 20, false), theirs(3, 40, false)];
        assert_eq!(levels(&mine, &other), vec![Some(0), Some(1), Some(2), None, Some(3)]);
        // A debugger that does not see the inlined call: the function still pairs.
        let other = [theirs(0, 10, false), theirs(1, 20, false)];
        assert_eq!(levels(&mine, &other), vec![Some(0), None, Some(1), None, None]);
    }

    #[test]
    fn build_ids_are_normalised_and_bad_ones_dropped() {
        let m = |id: &str| DebuggerModule { path: "/x".into(), base: 0, size: 1, build_id: Some(id.into()) };
        assert_eq!(m("ABCD1234-0011").loaded().build_id.as_deref(), Some("abcd12340011"));
        assert_eq!(m("").loaded().build_id, None);
        assert_eq!(m("not hex").loaded().build_id, None);
    }

    #[test]
    fn regions_give_code_and_stacks() {
        let s = space(&[(0x1000, 0x2000, "r-x".into()), (0x8000, 0x9000, "rw-".into())], &[]);
        assert!(s.is_code(0x1800) && !s.is_code(0x8800));
        assert_eq!(s.stack_of(0x8800), (0x8000, 0x9000));
    }
}
