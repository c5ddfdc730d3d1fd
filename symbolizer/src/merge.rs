//! One stack per thread: Python frames put in place of the native eval-loop frames that ran
//! them, in true call order.
//!
//! Each C-level call of `_PyEval_EvalFrameDefault` runs a known run of Python frames (one
//! frame up to 3.10; from the call's entry frame to the next up from 3.11, see
//! `pylayout::walk::ends_eval_call`). Which native frame is that call:
//! - 3.12+: the one whose stack holds the call's entry frame (a local of the eval function),
//!   exact even for stripped interpreters that do not name the eval function;
//! - up to 3.11: the k-th native frame named `_PyEval_EvalFrameDefault`, innermost first
//!   (the function is exported, so even stripped interpreters name it).
//!
//! When that fails (a truncated native unwind, an eval loop we do not recognise), no merge
//! is guessed: both stacks are shown, with the reason.

use crate::crash::Thread;
use crate::native::NativeFrame;
use crate::python::{EvalCall, PyFrame};
use std::collections::HashSet;

/// One frame of a merged stack.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// A Python frame; `index` is its position in the thread's Python stack (innermost 0).
    Python { frame: &'a PyFrame, index: usize },
    /// A native frame; `plumbing` marks the interpreter's own glue, hidden by default.
    Native { frame: &'a NativeFrame, plumbing: bool },
    /// The middle of an overflowed stack, not in the dump: `frames` native frames, as the
    /// crash-time unwinder counted them (None: unknown).
    Gap { frames: Option<u64> },
}

/// How a thread's stacks came together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Python and native frames interleaved.
    Merged,
    /// No native stack (not unwound, or `--python-only`).
    PythonOnly,
    /// No Python frames on this thread.
    NativeOnly,
    /// Both stacks exist but cannot be lined up; the reason says why.
    Separate(String),
}

/// A thread's merged stack, innermost first (empty when `Status::Separate`).
pub struct Merged<'a> {
    pub status: Status,
    pub entries: Vec<Entry<'a>>,
}

impl Merged<'_> {
    /// Interpreter frames hidden unless the user asks for every native frame.
    pub fn plumbing_count(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e, Entry::Native { plumbing: true, .. })).count()
    }
}

/// The native frame of the eval loop (also its compiler-split parts, `….cold`).
pub fn is_eval_frame(f: &NativeFrame) -> bool {
    !f.inlined
        && f.function.as_deref().is_some_and(|n| {
            n.strip_prefix("_PyEval_EvalFrameDefault")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
}

fn python_entries(t: &Thread) -> Vec<Entry<'_>> {
    t.python.iter().enumerate().map(|(index, frame)| Entry::Python { frame, index }).collect()
}

/// The native frames with the gap of an overflowed stack in its place.
pub fn native_entries(t: &Thread) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry> =
        t.native.iter().map(|frame| Entry::Native { frame, plumbing: false }).collect();
    if let Some(g) = &t.native_gap {
        entries.insert(g.at.min(entries.len()), Entry::Gap { frames: g.frames });
    }
    entries
}

/// `plumbing`: modules known to be glue besides the eval loop's own.
pub fn merge<'a>(t: &'a Thread, plumbing: &Plumbing) -> Merged<'a> {
    if t.python.is_empty() {
        return Merged { status: Status::NativeOnly, entries: native_entries(t) };
    }
    if t.native.is_empty() {
        return Merged { status: Status::PythonOnly, entries: python_entries(t) };
    }
    let eval_frames = match eval_frames(t) {
        Ok(found) => found,
        Err(why) => return Merged { status: Status::Separate(why), entries: Vec::new() },
    };
    let mut entries = Vec::with_capacity(t.native.len() + t.python.len() + 1);
    let mut calls = eval_frames.iter().peekable();
    let mut next_py = 0;
    let gap_at = t.native_gap.as_ref().map(|g| g.at);
    for i in 0..=t.native.len() {
        if gap_at == Some(i) {
            // Python frames whose eval-loop calls lie in the gap go just outside it.
            entries.push(Entry::Gap { frames: t.native_gap.as_ref().and_then(|g| g.frames) });
        }
        let place = if gap_at == Some(i) { Some(Place::Gap) } else { None };
        for place in place.into_iter().chain((i < t.native.len()).then_some(Place::Frame(i))) {
            while let Some((_, call)) = calls.next_if(|(at, _)| *at == place) {
                for index in next_py..next_py + call.frames {
                    entries.push(Entry::Python { frame: &t.python[index], index });
                }
                next_py += call.frames;
            }
        }
        if let Some(frame) = t.native.get(i) {
            entries.push(Entry::Native { frame, plumbing: false });
        }
    }
    let eval_at: Vec<usize> = eval_frames
        .iter()
        .filter_map(|(at, _)| match at {
            Place::Frame(i) => Some(*i),
            Place::Gap => None,
        })
        .collect();
    mark_plumbing(&mut entries, t, &eval_at, plumbing);
    Merged { status: Status::Merged, entries }
}

/// Where an eval-loop call's native frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// `t.native[i]`.
    Frame(usize),
    /// In the middle of an overflowed stack, which is not in the dump.
    Gap,
}

impl Place {
    /// Its position in the native stack, innermost first: the gap lies between frames
    /// `at - 1` and `at`.
    fn key(self, gap_at: usize) -> usize {
        match self {
            Place::Frame(i) => 2 * i + 1,
            Place::Gap => 2 * gap_at,
        }
    }
}

/// For each eval-loop call (innermost first), where its native frame is.
fn eval_frames(t: &Thread) -> Result<Vec<(Place, EvalCall)>, String> {
    let Some(calls) = &t.python_calls else {
        return Err("where the eval loop's calls begin could not be read from the dump".into());
    };
    if calls.iter().map(|c| c.frames).sum::<usize>() != t.python.len() {
        return Err("the Python frames' eval-loop calls do not add up".into());
    }
    let gap = t.native_gap.as_ref();
    let found: Vec<Option<Place>> = if calls.iter().all(|c| c.entry.is_some()) {
        let outer = OuterFrames::of(t);
        let in_gap = |addr: u64| gap.is_some_and(|g| addr >= g.range.0 && addr < g.range.1);
        calls
            .iter()
            .map(|c| c.entry.unwrap_or(0))
            .map(
                |entry| if in_gap(entry) { Some(Place::Gap) } else { outer.holding(entry).map(Place::Frame) },
            )
            .collect()
    } else {
        named_eval_frames(t, calls.len())?.into_iter().map(Some).collect()
    };
    let found: Vec<Place> = found.into_iter().collect::<Option<_>>().ok_or_else(|| {
        "an eval-loop call's native frame is not in the native stack (unwinding stopped early?); \
         both stacks are shown as they are"
            .to_string()
    })?;
    let gap_at = gap.map_or(0, |g| g.at);
    let in_order = found
        .windows(2)
        .all(|w| w[0].key(gap_at) < w[1].key(gap_at) || (w[0] == Place::Gap && w[1] == Place::Gap));
    if !in_order {
        return Err("the eval-loop calls and the native frames are not in the same order".into());
    }
    Ok(found.into_iter().zip(calls.iter().copied()).collect())
}

/// Up to 3.11: the k-th native frame named `_PyEval_EvalFrameDefault` is the k-th call
/// (innermost first). With a gap, the calls not matched by a frame on either side of it are
/// the ones inside it.
fn named_eval_frames(t: &Thread, calls: usize) -> Result<Vec<Place>, String> {
    let named: Vec<usize> = (0..t.native.len()).filter(|&i| is_eval_frame(&t.native[i])).collect();
    let Some(gap) = &t.native_gap else {
        if named.len() != calls {
            return Err(format!(
                "the native stack has {} eval-loop frame(s) but the Python frames belong to {calls} \
                 eval-loop call(s); both stacks are shown as they are",
                named.len(),
            ));
        }
        return Ok(named.into_iter().map(Place::Frame).collect());
    };
    let (top, bottom): (Vec<usize>, Vec<usize>) = named.iter().partition(|&&i| i < gap.at);
    let Some(inside) = calls.checked_sub(top.len() + bottom.len()) else {
        return Err(format!(
            "the native stack has {} eval-loop frame(s) but the Python frames belong to only {calls} \
             eval-loop call(s); both stacks are shown as they are",
            named.len(),
        ));
    };
    let places = top.into_iter().map(Place::Frame);
    Ok(places
        .chain(std::iter::repeat_n(Place::Gap, inside))
        .chain(bottom.into_iter().map(Place::Frame))
        .collect())
}

/// A thread's outer (non-inlined) native frames, innermost first, with their stack
/// pointers, which an unwind only ever moves up (framehop refuses a step back).
struct OuterFrames {
    index: Vec<usize>,
    sp: Vec<u64>,
    /// False for an unwind whose stack pointers go down somewhere: nothing is found in it.
    in_order: bool,
}

impl OuterFrames {
    fn of(t: &Thread) -> OuterFrames {
        let index: Vec<usize> = (0..t.native.len()).filter(|&i| !t.native[i].inlined).collect();
        let sp: Vec<u64> = index.iter().map(|&i| t.native[i].sp).collect();
        let in_order = sp.windows(2).all(|w| w[0] <= w[1]);
        OuterFrames { index, sp, in_order }
    }

    /// The native frame whose stack holds `addr`: its own `sp` at or below it and the next
    /// frame out's `sp` above it (a binary search: a deep stack has thousands of calls).
    fn holding(&self, addr: u64) -> Option<usize> {
        if !self.in_order {
            return None;
        }
        let next_out = self.sp.partition_point(|&sp| sp <= addr);
        (next_out > 0 && next_out < self.sp.len()).then(|| self.index[next_out - 1])
    }
}

/// Modules whose frames are glue when they sit between Python frames and the code they
/// call: the interpreter's executable and library, and crashcatch's own extension (its
/// thread starter runs every Python thread's first frame).
#[derive(Clone, Debug, Default)]
pub struct Plumbing {
    /// The interpreter's executable (the eval loop's module is added per thread).
    pub interpreter: Vec<String>,
    /// crashcatch's extension module.
    pub collector: Option<String>,
}

/// Marks the glue: eval frames; frames of the interpreter (or crashcatch) below the innermost
/// "anchor" — a Python frame or a frame of any other module but the C library — and the C
/// library's process/thread start frames at the bottom. Interpreter frames above the anchor
/// stay: they are what the thread was doing (sleeping on a lock, crashing in the interpreter)
/// — unless crashcatch's own frames are among them: then they are the dump being written
/// (`write_minidump()`), not the program's doing.
fn mark_plumbing(entries: &mut [Entry<'_>], t: &Thread, eval_at: &[usize], known: &Plumbing) {
    // Sets, not lists: a deep stack has thousands of frames and of eval-loop calls.
    let eval_frames: HashSet<*const NativeFrame> =
        eval_at.iter().map(|&i| &t.native[i] as *const _).collect();
    let is_eval = |f: &NativeFrame| eval_frames.contains(&(f as *const _));
    let mut modules: HashSet<&str> = known.interpreter.iter().map(String::as_str).collect();
    modules.extend(known.collector.as_deref());
    modules.extend(eval_at.iter().filter_map(|&i| t.native[i].module.as_deref()));
    let is_glue_module = |f: &NativeFrame| f.module.as_deref().is_some_and(|m| modules.contains(m));
    let is_libc = |f: &NativeFrame| f.module.as_deref().is_some_and(|m| m.starts_with("libc.so"));
    let anchor = entries.iter().position(|e| match e {
        Entry::Python { .. } => true,
        Entry::Native { frame, .. } => !is_glue_module(frame) && !is_libc(frame),
        Entry::Gap { .. } => false,
    });
    let Some(anchor) = anchor else { return };
    let dumping = entries[..anchor].iter().any(|e| match e {
        Entry::Native { frame, .. } => known.collector.is_some() && frame.module == known.collector,
        Entry::Python { .. } | Entry::Gap { .. } => false,
    });
    let mut bottom = true;
    for (i, e) in entries.iter_mut().enumerate().rev() {
        let Entry::Native { frame, plumbing } = e else {
            bottom = false;
            continue;
        };
        let glue = is_glue_module(frame);
        let start_frame = bottom && is_libc(frame);
        bottom &= glue || start_frame;
        *plumbing = (i > anchor && (is_eval(frame) || glue || start_frame)) || (i < anchor && dumping);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::Gap;

    fn native(function: &str, module: &str, sp: u64) -> NativeFrame {
        NativeFrame {
            address: sp,
            module: Some(module.to_string()),
            module_offset: 0,
            function: Some(function.to_string()),
            file: None,
            line: None,
            inlined: false,
            trust: "cfi",
            sp,
            symbol_source: None,
        }
    }

    fn py(name: &str) -> PyFrame {
        PyFrame {
            file: Some("app.py".into()),
            name: Some(name.into()),
            qualname: None,
            line: Some(1),
            subinterpreter: None,
            address: 0,
        }
    }

    fn thread(native: Vec<NativeFrame>, python: Vec<PyFrame>, calls: Vec<EvalCall>) -> Thread {
        Thread {
            tid: 1,
            name: None,
            python_name: None,
            holds_gil: true,
            python,
            python_problem: None,
            python_calls: Some(calls),
            native,
            native_stopped: None,
            native_gap: None,
        }
    }

    /// (kind, name) of the frames shown by default.
    fn shown(m: &Merged<'_>) -> Vec<String> {
        m.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Python { frame, .. } => Some(format!("py {}", frame.function().unwrap_or(""))),
                Entry::Native { plumbing: true, .. } => None,
                Entry::Native { frame, .. } => Some(frame.function.clone().unwrap_or_default()),
                Entry::Gap { .. } => Some("<gap>".into()),
            })
            .collect()
    }

    /// Python -> C -> Python -> C, innermost first, as a stripped 3.12+ build shows it.
    fn chain(entry_inner: u64, entry_outer: u64) -> Thread {
        let n = vec![
            native("deref_null", "ext.so", 100),
            native("PyObject_Call", "python", 200),
            native("??", "python", 300), // the inner eval call (entry frame at 350)
            native("call_back", "ext.so", 400),
            native("??", "python", 500), // the outer eval call (entry frame at 550)
            native("main", "python", 600),
            native("__libc_start_main", "libc.so.6", 700),
        ];
        let p = vec![py("callback"), py("main"), py("<module>")];
        let calls = vec![
            EvalCall { frames: 1, entry: Some(entry_inner) },
            EvalCall { frames: 2, entry: Some(entry_outer) },
        ];
        thread(n, p, calls)
    }

    #[test]
    fn entry_frames_on_the_c_stack_find_unnamed_eval_frames() {
        let t = chain(350, 550);
        let m = merge(&t, &Plumbing::default());
        assert_eq!(m.status, Status::Merged);
        assert_eq!(shown(&m), ["deref_null", "py callback", "call_back", "py main", "py <module>"]);
        assert_eq!(m.plumbing_count(), 5);
    }

    #[test]
    fn an_entry_frame_outside_the_native_stack_gives_separate_stacks() {
        let t = chain(350, 9_000);
        assert!(matches!(merge(&t, &Plumbing::default()).status, Status::Separate(_)));
        // Out of order is refused too.
        let t = chain(550, 350);
        assert!(matches!(merge(&t, &Plumbing::default()).status, Status::Separate(_)));
    }

    #[test]
    fn stack_pointers_that_go_down_find_no_eval_frame() {
        // An unwind never moves down the stack; frames that do are not searched for calls.
        let mut t = chain(350, 550);
        t.native[3].sp = 250;
        assert!(matches!(merge(&t, &Plumbing::default()).status, Status::Separate(_)));
    }

    #[test]
    fn named_eval_frames_merge_up_to_3_11_and_counts_must_agree() {
        let mut t = chain(0, 0);
        t.native[2].function = Some("_PyEval_EvalFrameDefault".into());
        t.native[4].function = Some("_PyEval_EvalFrameDefault.cold".into());
        t.python_calls = Some(vec![EvalCall { frames: 1, entry: None }, EvalCall { frames: 2, entry: None }]);
        let m = merge(&t, &Plumbing::default());
        assert_eq!(shown(&m), ["deref_null", "py callback", "call_back", "py main", "py <module>"]);
        t.python_calls = Some(vec![EvalCall { frames: 3, entry: None }]);
        assert!(matches!(merge(&t, &Plumbing::default()).status, Status::Separate(_)));
    }

    /// An overflowed stack: [recurse, recurse] on top, the middle (stack 300..500) missing,
    /// then an eval call (entry frame at 550), main.
    fn overflowed(calls: Vec<EvalCall>, python: Vec<PyFrame>) -> Thread {
        let n = vec![
            native("recurse", "ext.so", 100),
            native("recurse", "ext.so", 200),
            native("_PyEval_EvalFrameDefault", "python", 500),
            native("main", "python", 600),
        ];
        let mut t = thread(n, python, calls);
        t.native_gap = Some(Gap { at: 2, frames: Some(7), range: (300, 500) });
        t
    }

    #[test]
    fn calls_in_the_gap_of_an_overflowed_stack_go_there() {
        // 3.12+: entry frames in the missing middle (350) and under it (550).
        let calls = vec![EvalCall { frames: 1, entry: Some(350) }, EvalCall { frames: 1, entry: Some(550) }];
        let t = overflowed(calls, vec![py("deep"), py("<module>")]);
        let m = merge(&t, &Plumbing::default());
        assert_eq!(m.status, Status::Merged);
        assert_eq!(shown(&m), ["recurse", "recurse", "<gap>", "py deep", "py <module>"]);
        // Up to 3.11, by name: one eval frame under the gap, the other call is in it.
        let calls = vec![EvalCall { frames: 1, entry: None }, EvalCall { frames: 1, entry: None }];
        let t = overflowed(calls, vec![py("deep"), py("<module>")]);
        assert_eq!(
            shown(&merge(&t, &Plumbing::default())),
            ["recurse", "recurse", "<gap>", "py deep", "py <module>"]
        );
        // Fewer calls than named eval frames cannot be lined up.
        let mut t = overflowed(vec![EvalCall { frames: 1, entry: None }], vec![py("<module>")]);
        t.native[0].function = Some("_PyEval_EvalFrameDefault".into());
        assert!(matches!(merge(&t, &Plumbing::default()).status, Status::Separate(_)));
        // Without Python, the gap is among the native frames.
        let t = overflowed(vec![], vec![]);
        let m = merge(&t, &Plumbing::default());
        assert_eq!(m.status, Status::NativeOnly);
        assert_eq!(shown(&m), ["recurse", "recurse", "<gap>", "_PyEval_EvalFrameDefault", "main"]);
    }

    #[test]
    fn interpreter_frames_above_every_anchor_stay() {
        // A thread sleeping in the interpreter: libc and interpreter frames on top stay.
        let mut t = chain(350, 550);
        t.native[0] = native("clock_nanosleep", "libc.so.6", 100);
        t.native[1] = native("time_sleep", "python", 200);
        let m = merge(&t, &Plumbing::default());
        assert_eq!(
            shown(&m),
            ["clock_nanosleep", "time_sleep", "py callback", "call_back", "py main", "py <module>"]
        );
    }

    #[test]
    fn crashcatch_writing_a_live_dump_is_hidden() {
        let mut t = chain(350, 550);
        t.native[0] = native("waitpid", "libc.so.6", 100);
        t.native[1] = native("dump_now", "_native.abi3.so", 200);
        let known = Plumbing { interpreter: vec![], collector: Some("_native.abi3.so".into()) };
        let m = merge(&t, &known);
        assert_eq!(shown(&m), ["py callback", "call_back", "py main", "py <module>"]);
    }

    #[test]
    fn threads_without_python_or_native_frames() {
        let t = thread(vec![native("start_thread", "libc.so.6", 1)], vec![], vec![]);
        let m = merge(&t, &Plumbing::default());
        assert_eq!((m.status, m.entries.len()), (Status::NativeOnly, 1));
        let t = thread(vec![], vec![py("f")], vec![EvalCall { frames: 1, entry: None }]);
        assert_eq!(merge(&t, &Plumbing::default()).status, Status::PythonOnly);
    }
}
