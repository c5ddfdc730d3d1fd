//! Which memory of the dumped process the Python stacks need, so the symbolizer can decode
//! every Python frame of every thread of every interpreter from the dump alone: the
//! runtime and interpreter fields, thread states, frames, code objects, their name and
//! file strings and their line tables.

use crate::ranges::RangeSet;
use pylayout::text::str_info;
use pylayout::walk::{self, PyFrame};
use pylayout::{Layout, Memory, TypeAddrs};
use rustc_hash::FxHashSet as IntSet;

/// Bytes kept of `_PyRuntime`: its debug-offsets header (3.13+) and the interpreter list.
const RUNTIME_BYTES: u64 = 4096;
/// Interpreters walked at most.
const MAX_INTERPRETERS: usize = 64;
/// Characters of a str kept at most (file names can be long, but not megabytes).
const MAX_STR_CHARS: u64 = 4096;
/// Line-table bytes kept at most.
const MAX_LINETABLE: u64 = 1 << 20;
/// Thread states walked at most, over all interpreters, and frames over all threads. A
/// corrupt runtime can link its lists into cycles or send them through garbage: every
/// walk here visits each address once and stops at these totals, so the helper finishes
/// long before its deadline whatever it reads.
pub const MAX_THREAD_STATES: usize = 4096;
pub const MAX_FRAMES_TOTAL: usize = 100_000;
/// A thread's current data-stack chunk used beyond this is taken for corrupt: its frames
/// are kept one range each (chunks are 16 KiB unless a frame needs more).
const MAX_LIVE_DATA_STACK: u64 = 1 << 20;
/// Callers of each thread's innermost frame fetched ahead for all threads at once.
const PREFETCH_LEVELS: usize = 4;

/// What was found, for the metadata and the tests.
#[derive(Debug, Default)]
pub struct PyThreadInfo {
    pub tstate: u64,
    pub interp: u64,
    pub thread_id: u64,
    pub native_thread_id: Option<u64>,
    pub frames: usize,
    /// The addresses of its Python frames (`PyFrame::frame`), innermost first.
    pub frame_addrs: Vec<u64>,
    /// Its innermost frames as the walk found them: what tells, when the stopped process is
    /// looked at again (again.rs), whether the thread moved on since.
    pub chain: FrameChain,
}

/// Frames of a chain compared when the process is looked at again.
pub const CHAIN_COMPARED: usize = 16;

/// A thread state's innermost frames (interpreter plumbing included), at most
/// [`CHAIN_COMPARED`], each with the code object it runs, innermost first; and the frame
/// after the last one kept (`Some(0)`: the stack ends there; None: unknown, it could not be
/// read). The innermost frame alone does not tell: ≤3.10 reuses a code's "zombie" frame
/// and 3.11+ puts frames at the same depth at the same address, so a thread back in the
/// same function under another caller has the same innermost frame and code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameChain {
    pub frames: Vec<(u64, u64)>,
    pub next: Option<u64>,
}

impl FrameChain {
    /// The innermost frame (0: none).
    pub fn top(&self) -> u64 {
        self.frames.first().map_or(0, |&(frame, _)| frame)
    }
}

/// One past the largest of the offsets (plus a pointer).
fn span(offsets: &[Option<u32>]) -> u64 {
    offsets.iter().flatten().map(|&o| o as u64 + 8).max().unwrap_or(0)
}

/// The bytes of a thread state the walk reads.
pub fn tstate_span(l: &Layout) -> u64 {
    span(&[
        l.tstate_next,
        l.tstate_interp,
        l.tstate_thread_id,
        l.tstate_native_thread_id,
        l.tstate_datastack_chunk,
        l.tstate_current_frame,
        l.tstate_cframe,
        l.tstate_frame,
    ])
}

/// Where a frame keeps its code object (3.11+ `_PyInterpreterFrame.f_executable`, before
/// that `PyFrameObject.f_code`): part of a [`FrameChain`], read here and again while the
/// threads are stopped (again.rs), which must read the same field.
pub fn frame_code_offset(l: &Layout) -> Option<u32> {
    if l.has_interpreter_frames() {
        l.iframe_executable
    } else {
        l.frame_code
    }
}

/// Where a frame keeps its caller (3.11+ `_PyInterpreterFrame.previous`, before that
/// `PyFrameObject.f_back`): followed ahead of the walk (`prefetch_chains`) and while the
/// threads are stopped (again.rs).
pub fn frame_caller_offset(l: &Layout) -> Option<u32> {
    if l.has_interpreter_frames() {
        l.iframe_previous
    } else {
        l.frame_back
    }
}

pub struct Collector<'a> {
    /// The process's thread ids (from /proc), to validate tids read from memory.
    pub os_tids: IntSet<i32>,
    pub mem: &'a dyn Memory,
    pub layout: &'a Layout,
    pub types: TypeAddrs,
    pub ranges: RangeSet,
    pub threads: Vec<PyThreadInfo>,
    /// Whether a walk stopped at one of the caps rather than at the end of its list.
    pub truncated: bool,
    /// Thread states found unchanged since an earlier walk (again.rs): not walked again.
    pub known: IntSet<u64>,
    /// Thread states of `known` found unchanged.
    pub unchanged: usize,
    /// The interpreters walked.
    pub interps: Vec<u64>,
    seen_tstates: IntSet<u64>,
    seen_code: IntSet<u64>,
    frames_walked: usize,
}

impl<'a> Collector<'a> {
    pub fn new(mem: &'a dyn Memory, layout: &'a Layout, types: TypeAddrs) -> Self {
        Collector {
            os_tids: IntSet::default(),
            mem,
            layout,
            types,
            ranges: RangeSet::default(),
            threads: Vec::new(),
            truncated: false,
            known: IntSet::default(),
            unchanged: 0,
            interps: Vec::new(),
            seen_tstates: IntSet::default(),
            seen_code: IntSet::default(),
            frames_walked: 0,
        }
    }

    /// Every interpreter reachable from `runtime` (or just `interp` when the runtime's
    /// address is unknown).
    pub fn collect(&mut self, runtime: u64, interp: u64) {
        let l = *self.layout;
        let mut interps = Vec::new();
        if runtime != 0 {
            self.ranges.add(runtime, RUNTIME_BYTES);
            if let Some(off) = l.runtime_ceval_gil {
                self.ranges.add(runtime + off as u64, span(&[l.gil_last_holder, l.gil_locked]));
            }
            if let Some(mut i) = l.runtime_interpreters_head.and_then(|o| self.mem.ptr_at(runtime, o)) {
                while i != 0 && interps.len() < MAX_INTERPRETERS && !interps.contains(&i) {
                    interps.push(i);
                    i = l.interp_next.and_then(|o| self.mem.ptr_at(i, o)).unwrap_or(0);
                }
            }
        }
        if interp != 0 && !interps.contains(&interp) {
            interps.push(interp);
        }
        for &i in &interps {
            self.interpreter(i);
        }
        self.interps = interps;
    }

    fn interpreter(&mut self, interp: u64) {
        let l = *self.layout;
        let interp_span = span(&[
            l.interp_next,
            l.interp_threads_head,
            l.interp_gc_collecting,
            l.interp_sysdict,
            l.interp_modules,
            l.interp_ceval_gil,
        ]);
        self.ranges.add(interp, interp_span);
        if let Some(gil) = l.interp_ceval_gil.and_then(|o| self.mem.ptr_at(interp, o)) {
            self.ranges.add(gil, 64); // last_holder, locked
        }
        let mut tstates = Vec::new();
        let (seen, truncated) = (&mut self.seen_tstates, &mut self.truncated);
        walk::for_each_thread(self.mem, &l, interp, &mut |ts| {
            if seen.len() >= MAX_THREAD_STATES {
                *truncated = true;
                return false;
            }
            // A thread state seen before: the list loops back (or into another interpreter's).
            if !seen.insert(ts) {
                return false;
            }
            tstates.push(ts);
            true
        });
        self.prefetch_chains(&tstates);
        for ts in tstates {
            self.thread(interp, ts);
        }
    }

    /// Fetches ahead, for every thread state at once, the memory its walk reads first:
    /// the C-stack structure leading to its innermost frame (3.11, 3.12), that frame and
    /// the next [`PREFETCH_LEVELS`] callers. Each thread's are on pages of its own (its
    /// stack, its data stack), which cost a system call each when walked thread by thread
    /// (issue 14: ~2,000 of the walk's 2,700 at 1000 threads).
    fn prefetch_chains(&self, tstates: &[u64]) {
        let l = self.layout;
        let Some(slot) = walk::current_frame_slot(l) else { return };
        let read_all = |addrs: &[u64]| -> Vec<u64> {
            self.mem.prefetch(addrs);
            addrs.iter().filter_map(|&a| self.mem.read_u64(a)).filter(|&p| p != 0).collect()
        };
        let slots: Vec<u64> = tstates.iter().map(|&ts| ts.wrapping_add(slot.in_tstate as u64)).collect();
        let mut frames = read_all(&slots);
        if let Some(off) = slot.through {
            let through: Vec<u64> = frames.iter().map(|&c| c.wrapping_add(off as u64)).collect();
            frames = read_all(&through);
        }
        let Some(previous) = frame_caller_offset(l) else { return };
        for _ in 0..PREFETCH_LEVELS {
            if frames.is_empty() {
                break;
            }
            let links: Vec<u64> = frames.iter().map(|&f| f.wrapping_add(previous as u64)).collect();
            frames = read_all(&links);
        }
    }

    pub fn thread(&mut self, interp: u64, ts: u64) {
        let l = *self.layout;
        if self.known.contains(&ts) {
            self.unchanged += 1;
            return;
        }
        self.ranges.add(ts, tstate_span(&l));
        // 3.12: the C-stack structure that leads to the innermost frame, for the symbolizer.
        if let Some(walk::FrameSlot { in_tstate, through: Some(off) }) = walk::current_frame_slot(&l) {
            if let Some(cframe) = self.mem.ptr_at(ts, in_tstate).filter(|&c| c != 0) {
                self.ranges.add(cframe, off as u64 + 8);
            }
        }
        // Every frame, interpreter plumbing (shims, entry frames) included: the symbolizer
        // walks the same chain through them.
        let mut raw_frames = Vec::new();
        let mut seen = IntSet::default();
        let mut frames: Vec<PyFrame> = Vec::new();
        let mut next = walk::current_frame(self.mem, &l, ts).unwrap_or(0);
        let budget = walk::MAX_FRAMES_WALKED.min(MAX_FRAMES_TOTAL.saturating_sub(self.frames_walked));
        while next != 0 && seen.insert(next) {
            if raw_frames.len() >= budget {
                self.truncated = true;
                break;
            }
            raw_frames.push(next);
            let Some((shown, previous)) = walk::frame_step(self.mem, &l, next, 0) else { break };
            frames.extend(shown);
            next = previous;
        }
        let code_at = frame_code_offset(&l);
        let chain = FrameChain {
            frames: raw_frames
                .iter()
                .take(CHAIN_COMPARED)
                .map(|&f| (f, code_at.and_then(|o| self.mem.ptr_at(f, o)).unwrap_or(0)))
                .collect(),
            next: match raw_frames.get(CHAIN_COMPARED) {
                Some(&after) => Some(after),
                // The walk stopped at an unreadable frame: `next` is that frame itself.
                None if raw_frames.last() == Some(&next) => None,
                None => Some(next),
            },
        };
        let frame_span = if l.has_interpreter_frames() {
            span(&[
                l.iframe_previous,
                l.iframe_executable,
                l.iframe_instr_ptr,
                l.iframe_prev_instr,
                l.iframe_owner,
            ])
        } else {
            span(&[l.frame_back, l.frame_code, l.frame_lasti, l.frame_lineno, l.frame_trace])
        };
        self.frames_walked += raw_frames.len();
        let live = self.live_data_stack(ts, &raw_frames, frame_span);
        if let Some((start, end)) = live {
            self.ranges.add(start, end - start);
        }
        for &frame in raw_frames.iter().filter(|&&f| !live.is_some_and(|(start, end)| f >= start && f < end))
        {
            self.ranges.add(frame, frame_span);
        }
        for f in &frames {
            if f.code != 0 && self.seen_code.insert(f.code) {
                self.code(f.code);
            }
        }
        let thread_id = walk::thread_id(self.mem, &l, ts).unwrap_or(0);
        let native_thread_id =
            walk::native_thread_id(self.mem, &l, ts).or_else(|| self.tid_of_pthread(thread_id));
        self.threads.push(PyThreadInfo {
            tstate: ts,
            interp,
            thread_id,
            native_thread_id,
            frames: frames.len(),
            frame_addrs: frames.iter().map(|f| f.frame).collect(),
            chain,
        });
    }

    /// 3.11+: the live part of the thread's current data-stack chunk that holds its frames
    /// there, from the lowest of them to `datastack_top`: one range for them all, with the
    /// locals and value stacks between them (object pointers), instead of a range per frame
    /// (issue 14: the kernel's cost is per range; 1000 threads had ~4,000 ranges less). Only
    /// the frames lying between the chunk's start and the top, which is the chunk's used
    /// part and nothing else; None when none does (or the two look corrupt).
    fn live_data_stack(&self, ts: u64, frames: &[u64], frame_span: u64) -> Option<(u64, u64)> {
        let l = self.layout;
        let chunk = self.mem.ptr_at(ts, l.tstate_datastack_chunk?)?;
        let top = self.mem.ptr_at(ts, l.tstate_datastack_top?)?;
        if chunk == 0 || top <= chunk || top - chunk > MAX_LIVE_DATA_STACK {
            return None;
        }
        let lowest =
            frames.iter().copied().filter(|&f| f > chunk && f.saturating_add(frame_span) <= top).min()?;
        Some((lowest, top))
    }

    /// ≤3.10 thread states record only `pthread_t`, which on glibc x86-64 is the address
    /// of the thread's `struct pthread`, whose kernel tid sits at offset 720 (stable since
    /// glibc 2.26). Accepted only if it names one of the process's threads.
    fn tid_of_pthread(&self, pthread: u64) -> Option<u64> {
        const GLIBC_PTHREAD_TID: u64 = 720;
        let tid = self.mem.read_i32(pthread.checked_add(GLIBC_PTHREAD_TID)?)?;
        (tid > 0 && self.os_tids.contains(&tid)).then_some(tid as u64)
    }

    fn code(&mut self, code: u64) {
        let l = *self.layout;
        let code_span = span(&[
            l.code_filename,
            l.code_name,
            l.code_qualname,
            l.code_firstlineno,
            l.code_linetable,
            l.code_code,
        ])
        .max(l.code_code_adaptive.map_or(0, |o| o as u64));
        self.ranges.add(code, code_span);
        for off in [l.code_filename, l.code_name, l.code_qualname].into_iter().flatten() {
            if let Some(s) = self.mem.ptr_at(code, off) {
                self.string(s);
            }
        }
        if let Some(table) = l.code_linetable.and_then(|o| self.mem.ptr_at(code, o)) {
            if let (Some(size_off), Some(data_off)) = (l.varobject_ob_size, l.bytes_ob_sval) {
                if let Some(size) = self.mem.ptr_at(table, size_off) {
                    self.ranges.add(table, data_off as u64 + size.min(MAX_LINETABLE) + 1);
                }
            }
        }
    }

    fn string(&mut self, s: u64) {
        let l = *self.layout;
        let header = l.unicode_compact_size.map_or(80, |v| v as u64);
        self.ranges.add(s, header);
        if let Some(info) = str_info(self.mem, &l, self.types.str_type, s) {
            self.ranges.add(info.data, info.length.min(MAX_STR_CHARS) * info.kind as u64 + info.kind as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Memory made of 8-byte words; everything else is unreadable.
    #[derive(Default)]
    struct Words(HashMap<u64, u64>);

    impl Memory for Words {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = addr + i as u64;
                let Some(word) = self.0.get(&(a & !7)) else { return false };
                *b = word.to_le_bytes()[(a & 7) as usize];
            }
            true
        }
    }

    /// A 3.11+ interpreter frame at `frame` running `code` (a thread's own: shown), called by
    /// `previous`.
    fn iframe(mem: &mut Words, l: &Layout, frame: u64, code: u64, previous: u64) {
        mem.0.insert(frame + l.iframe_previous.expect("previous") as u64, previous);
        mem.0.insert(frame + l.iframe_executable.expect("executable") as u64, code);
        mem.0.insert((frame + l.iframe_owner.expect("owner") as u64) & !7, 0);
        let instr = l.iframe_instr_ptr.or(l.iframe_prev_instr).expect("instruction pointer");
        mem.0.insert(frame + instr as u64, code + l.code_code_adaptive.expect("code") as u64);
    }

    fn collect(mem: &Words, interp: u64) -> Collector<'_> {
        let layout = Box::leak(Box::new(Layout::for_version(3, 12).expect("3.12 layout")));
        let types = TypeAddrs::default();
        let mut c = Collector::new(mem, layout, types);
        c.collect(0, interp);
        c
    }

    fn thread_list(mem: &mut Words, interp: u64, tstates: &[u64], last_next: u64) {
        let l = Layout::for_version(3, 12).expect("3.12 layout");
        mem.0.insert(interp + l.interp_threads_head.expect("head") as u64, tstates[0]);
        for (i, &ts) in tstates.iter().enumerate() {
            let next = tstates.get(i + 1).copied().unwrap_or(last_next);
            mem.0.insert(ts + l.tstate_next.expect("next") as u64, next);
        }
    }

    #[test]
    fn a_cyclic_thread_list_is_walked_once() {
        let mut mem = Words::default();
        thread_list(&mut mem, 0x1000, &[0x10_0000, 0x20_0000, 0x30_0000], 0x10_0000);
        let started = std::time::Instant::now();
        let c = collect(&mem, 0x1000);
        let tstates: Vec<u64> = c.threads.iter().map(|t| t.tstate).collect();
        assert_eq!(tstates, [0x10_0000, 0x20_0000, 0x30_0000]);
        assert!(!c.truncated);
        assert!(started.elapsed().as_secs() < 2);
    }

    #[test]
    fn the_walk_keeps_each_threads_first_frames_and_a_second_walk_skips_the_known_ones() {
        let l = Layout::for_version(3, 13).expect("3.13 layout");
        let mut mem = Words::default();
        let tstates = [0x10_0000, 0x20_0000];
        mem.0.insert(0x1000 + l.interp_threads_head.expect("head") as u64, tstates[0]);
        mem.0.insert(tstates[0] + l.tstate_next.expect("next") as u64, tstates[1]);
        mem.0.insert(tstates[1] + l.tstate_next.expect("next") as u64, 0);
        let frame_of = |ts: u64| ts + 0x8000;
        let caller_of = |ts: u64| ts + 0x9000;
        for ts in tstates {
            mem.0.insert(ts + l.tstate_current_frame.expect("current_frame") as u64, frame_of(ts));
            iframe(&mut mem, &l, frame_of(ts), 0xc0de, caller_of(ts));
            iframe(&mut mem, &l, caller_of(ts), 0xca11, 0);
        }
        let mut first = Collector::new(&mem, &l, TypeAddrs::default());
        first.collect(0, 0x1000);
        assert_eq!(
            first.threads.iter().map(|t| t.chain.clone()).collect::<Vec<_>>(),
            tstates.map(|ts| FrameChain {
                frames: vec![(frame_of(ts), 0xc0de), (caller_of(ts), 0xca11)],
                next: Some(0)
            })
        );
        let mut again = Collector::new(&mem, &l, TypeAddrs::default());
        again.known = [tstates[0]].into_iter().collect();
        again.collect(0, 0x1000);
        assert_eq!(again.unchanged, 1);
        assert_eq!(again.threads.iter().map(|t| t.tstate).collect::<Vec<_>>(), [tstates[1]]);
    }

    #[test]
    fn a_chain_keeps_its_first_frames_and_the_one_after() {
        let l = Layout::for_version(3, 13).expect("3.13 layout");
        let mut mem = Words::default();
        let ts = 0x10_0000;
        mem.0.insert(0x1000 + l.interp_threads_head.expect("head") as u64, ts);
        let frames: Vec<u64> = (0..CHAIN_COMPARED as u64 + 5).map(|i| 0x40_0000 + i * 0x100).collect();
        mem.0.insert(ts + l.tstate_current_frame.expect("current_frame") as u64, frames[0]);
        for (i, &f) in frames.iter().enumerate() {
            iframe(&mut mem, &l, f, 0xc0de + i as u64, frames.get(i + 1).copied().unwrap_or(0));
        }
        let chain_of = |mem: &Words| {
            let mut c = Collector::new(mem, &l, TypeAddrs::default());
            c.collect(0, 0x1000);
            c.threads[0].chain.clone()
        };
        let chain = chain_of(&mem);
        assert_eq!(chain.frames.len(), CHAIN_COMPARED);
        assert_eq!(chain.frames[1], (frames[1], 0xc0de + 1));
        assert_eq!(chain.next, Some(frames[CHAIN_COMPARED]));
        // A frame that cannot be read ends the walk: what follows it is unknown.
        mem.0.remove(&(frames[2] + l.iframe_previous.expect("previous") as u64));
        let chain = chain_of(&mem);
        assert_eq!((chain.frames.len(), chain.next), (3, None));
    }

    #[test]
    fn frames_in_the_current_data_stack_chunk_are_one_range_up_to_its_top() {
        let l = Layout::for_version(3, 13).expect("3.13 layout");
        let mut mem = Words::default();
        let (interp, ts, chunk) = (0x1000, 0x10_0000, 0x50_0000);
        mem.0.insert(interp + l.interp_threads_head.expect("head") as u64, ts);
        mem.0.insert(ts + l.tstate_next.expect("next") as u64, 0);
        // Innermost first: two frames in the chunk, a generator's frame on the heap, the
        // outermost frame at the chunk's start; the chunk is used up to `top`.
        let frames = [chunk + 0x200, chunk + 0x100, 0x70_0000, chunk + 0x20];
        let top = chunk + 0x280;
        mem.0.insert(ts + l.tstate_current_frame.expect("current_frame") as u64, frames[0]);
        mem.0.insert(ts + l.tstate_datastack_chunk.expect("datastack_chunk") as u64, chunk);
        mem.0.insert(ts + l.tstate_datastack_top.expect("datastack_top") as u64, top);
        for (i, &f) in frames.iter().enumerate() {
            iframe(&mut mem, &l, f, 0, frames.get(i + 1).copied().unwrap_or(0));
        }
        let ranges = |mem: &Words| {
            let mut c = Collector::new(mem, &l, TypeAddrs::default());
            c.collect(0, interp);
            assert_eq!(c.threads[0].chain.frames.len(), 4);
            let everything = [crate::procmem::Region { start: 0, end: u64::MAX }];
            c.ranges.finish(&everything)
        };
        let found = ranges(&mem);
        assert!(found.contains(&(chunk + 0x20, top)), "{found:x?}");
        assert!(found.iter().any(|&(s, _)| s == 0x70_0000), "the heap frame keeps its own range: {found:x?}");
        assert!(!found.iter().any(|&(s, e)| s < chunk + 0x20 && e > chunk), "nothing before the first frame");
        // A top that is not above the chunk (corrupt): each frame is a range of its own.
        mem.0.insert(ts + l.tstate_datastack_top.expect("datastack_top") as u64, chunk);
        let found = ranges(&mem);
        assert!(!found.iter().any(|&(s, e)| s <= chunk + 0x100 && e >= chunk + 0x200), "{found:x?}");
        assert!(found.iter().any(|&(s, _)| s == chunk + 0x100), "{found:x?}");
    }

    #[test]
    fn an_endless_thread_list_stops_at_the_cap() {
        let mut mem = Words::default();
        let tstates: Vec<u64> = (1..=MAX_THREAD_STATES as u64 + 10).map(|i| i << 16).collect();
        thread_list(&mut mem, 0x1000, &tstates, 0);
        let c = collect(&mem, 0x1000);
        assert_eq!(c.threads.len(), MAX_THREAD_STATES);
        assert!(c.truncated);
    }
}
