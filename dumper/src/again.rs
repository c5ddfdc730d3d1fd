//! The Python walk, looked at again once the process holds still.
//!
//! The walk (pymem.rs) runs before minidump-writer stops the threads, which keeps that
//! stop short (a live dump's stall). But unless the dump is of a crash whose thread held
//! the GIL, other Python threads may run meanwhile: a thread that returned or called
//! since has frames the walk never saw, and the dump would copy, at the stop, memory the
//! walk chose for frames that are gone (issue 14 follow-up: a registered signal's dump
//! showed some threads without a readable frame). So, while every thread is stopped and
//! before the application memory is copied, each thread state's innermost frame and its
//! code object are read again (a few reads per thread); the threads that moved on, and
//! thread states that are new, are walked in full and their memory added.
//!
//! What can still be torn: a thread that moved and came back to the very same innermost
//! frame address running the same code, with a different caller below it — its frames
//! are in the dump, the caller's code object may not be.

use crate::procmem::{self, ProcessMemory, Region};
use crate::pymem::{frame_caller_offset, frame_code_offset, Collector, FrameChain, PyThreadInfo};
use crate::ranges::RangeSet;
use minidump_writer::app_memory::{AppMemory, AppMemoryList};
use pylayout::walk::{current_frame_slot, FrameSlot};
use pylayout::{Layout, TypeAddrs};
use rustc_hash::FxHashSet as IntSet;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the second look found.
#[derive(Debug, Default)]
pub struct Found {
    /// Thread states walked again (moved on since the walk) or for the first time (new).
    pub walked: Vec<PyThreadInfo>,
    /// Thread states found as the walk left them.
    pub unchanged: usize,
    /// Whether the look ran at all (the writer stopped the threads).
    pub looked: bool,
    /// How long it took (the threads wait meanwhile).
    pub took: std::time::Duration,
    /// `process_vm_readv` calls it made.
    pub reads: u64,
}

/// What [`LookAgain::compare`] found.
#[derive(Debug, PartialEq, Eq)]
struct Compared {
    /// Indices into `LookAgain::threads`.
    moved: Vec<usize>,
    /// An interpreter or thread state came or went.
    lists_changed: bool,
}

/// Ranges to read in one gather, each thread's (a group) merged where they lie within
/// [`Spans::GAP`] of one another: both ends of a gap that small are on readable pages.
#[derive(Default)]
struct Spans {
    list: Vec<(u64, usize)>,
    /// Where the last range starts in the gathered bytes.
    last_at: usize,
    /// Ranges before this index belong to earlier groups.
    group_start: usize,
}

impl Spans {
    const GAP: u64 = 1024;

    fn new_group(&mut self) {
        self.group_start = self.list.len();
    }

    /// Adds [start, start + len) (at or after the group's last start); returns where its
    /// bytes will be in the gathered bytes.
    fn add(&mut self, start: u64, len: usize) -> usize {
        let grouped = self.list.len() > self.group_start;
        match self.list.last_mut() {
            Some((s, l)) if grouped && start >= *s && start <= *s + *l as u64 + Self::GAP => {
                *l = (*l).max((start - *s) as usize + len);
                self.last_at + (start - *s) as usize
            }
            last => {
                if let Some(&mut (_, l)) = last {
                    self.last_at += l;
                }
                self.list.push((start, len));
                self.last_at
            }
        }
    }
}

/// Everything the look needs, owned: for a live dump it runs inside minidump-writer (its
/// while-stopped function must be `Send`); for a crash, on the helper's main thread once
/// writer.rs's `EarlyWriter` has stopped the threads.
#[derive(Clone)]
pub struct LookAgain {
    pub pid: i32,
    pub layout: Layout,
    pub types: TypeAddrs,
    pub runtime: u64,
    pub interp: u64,
    pub os_tids: IntSet<i32>,
    /// The interpreters the walk found.
    pub interps: Vec<u64>,
    /// The thread states it found: (thread state, its interpreter, its first frames).
    pub threads: Vec<(u64, u64, FrameChain)>,
    /// The readable regions the walk's ranges were clipped to.
    pub readable: Vec<Region>,
    /// Shared by the clones: a live dump's, inside the writer, fills it; the helper's own reads it.
    pub found: Arc<Mutex<Found>>,
}

impl LookAgain {
    /// The look, as minidump-writer calls it with the application memory it will copy.
    pub fn look(&self, memory: &mut AppMemoryList) {
        let started = std::time::Instant::now();
        let mem = ProcessMemory::new(self.pid);
        let mut again = Collector::new(&mem, &self.layout, self.types);
        again.os_tids = self.os_tids.clone();
        match self.compare(&mem) {
            Some(Compared { moved, lists_changed: false }) => {
                for &i in &moved {
                    let (ts, interp, _) = self.threads[i];
                    again.thread(interp, ts);
                }
                again.unchanged = self.threads.len() - moved.len();
            }
            // A thread state came or went: the lists are walked again, skipping the thread
            // states found unchanged.
            Some(Compared { moved, lists_changed: true }) => {
                let moved: IntSet<usize> = moved.into_iter().collect();
                again.known = (0..self.threads.len())
                    .filter(|i| !moved.contains(i))
                    .map(|i| self.threads[i].0)
                    .collect();
                again.collect(self.runtime, self.interp);
            }
            // A word could not be read: everything is walked again.
            None => again.collect(self.runtime, self.interp),
        }
        let mut found = self.found();
        found.looked = true;
        found.unchanged = again.unchanged;
        if !again.threads.is_empty() {
            // Frames that moved may be in memory mapped since (a new data-stack chunk).
            let readable = procmem::readable_regions(self.pid).unwrap_or_else(|_| self.readable.clone());
            *memory = merged(memory, again.ranges, &readable);
            found.walked = std::mem::take(&mut again.threads);
        }
        found.reads = mem.syscalls();
        found.took = started.elapsed();
        crate::timeline::mark("look_again");
    }

    /// Which of the walk's thread states (indices into `threads`) moved on since: their
    /// first frames ([`FrameChain`]), those frames' code or callers differ now. Reads only
    /// the words that tell, gathered across all threads: one or two gathers for the lists
    /// and frame slots, one for every level of the chains (a system call per 1024 ranges).
    /// At 100 threads, fetching the pages that hold them took 0.7 ms, during which every
    /// thread waits. None if a word could not be read.
    fn compare(&self, mem: &ProcessMemory) -> Option<Compared> {
        let l = &self.layout;
        let head = l.interp_threads_head? as u64;
        let next = l.tstate_next? as u64;
        let FrameSlot { in_tstate: slot, through } = current_frame_slot(l)?;
        // One gather: the runtime's first interpreter, each interpreter's next and first
        // thread state, each thread state's next and frame slot.
        let runtime_head = l.runtime_interpreters_head.filter(|_| self.runtime != 0);
        let interp_next = l.interp_next? as u64;
        let mut addrs: Vec<u64> = runtime_head.map(|off| self.runtime + off as u64).into_iter().collect();
        addrs.extend(self.interps.iter().map(|&i| i + interp_next));
        addrs.extend(self.interps.iter().map(|&i| i + head));
        addrs.extend(self.threads.iter().map(|&(ts, _, _)| ts + next));
        addrs.extend(self.threads.iter().map(|&(ts, _, _)| ts + slot as u64));
        let words = mem.gather_words(&addrs)?;
        let (links, slots) = words.split_at(words.len() - self.threads.len());
        let (interp_links, tstate_links) = links.split_at(runtime_head.map_or(0, |_| 1) + self.interps.len());
        // Every link still leads to an interpreter or thread state the walk found.
        let interps: IntSet<u64> = self.interps.iter().copied().collect();
        let tstates: IntSet<u64> = self.threads.iter().map(|&(ts, _, _)| ts).collect();
        let lists_changed = interp_links.iter().any(|&i| i != 0 && !interps.contains(&i))
            || tstate_links.iter().any(|&t| t != 0 && !tstates.contains(&t));
        let mut tops = slots.to_vec();
        if let Some(off) = through {
            let cframes: Vec<u64> = tops.iter().filter(|&&c| c != 0).map(|&c| c + off as u64).collect();
            let mut found = mem.gather_words(&cframes)?.into_iter();
            for f in tops.iter_mut().filter(|f| **f != 0) {
                *f = found.next()?;
            }
        }
        let mut moved = Vec::new();
        let mut candidates = Vec::new();
        for (i, ((_, _, chain), &top)) in self.threads.iter().zip(&tops).enumerate() {
            if top != chain.top() {
                moved.push(i);
            } else if top != 0 {
                candidates.push(i);
            }
        }
        // Each compared frame's code and caller, read for every level at once: the walk's
        // frames are where the thread's chain must still be. Frames of a thread that lie
        // near one another (3.11+: its data stack) are one range, since the kernel's cost is
        // per range (per-frame ranges cost 6 ms at 1000 threads).
        let code_at = frame_code_offset(l)? as u64;
        let back_at = frame_caller_offset(l)? as u64;
        let (lo, hi) = (code_at.min(back_at), code_at.max(back_at) + 8);
        let mut spans = Spans::default();
        let offsets: Vec<Vec<usize>> = candidates
            .iter()
            .map(|&i| {
                let frames = &self.threads[i].2.frames;
                let mut by_address: Vec<(u64, usize)> =
                    frames.iter().enumerate().map(|(k, &(frame, _))| (frame, k)).collect();
                by_address.sort_unstable();
                spans.new_group();
                let mut offsets = vec![0; frames.len()];
                for (frame, k) in by_address {
                    offsets[k] = spans.add(frame + lo, (hi - lo) as usize);
                }
                offsets
            })
            .collect();
        let bytes = mem.gather(&spans.list)?;
        let word =
            |at: usize| bytes.get(at..at + 8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
        for (&i, offsets) in candidates.iter().zip(&offsets) {
            let chain = &self.threads[i].2;
            for (k, &(_, walked_code)) in chain.frames.iter().enumerate() {
                let code = word(offsets[k] + (code_at - lo) as usize)?;
                let back = word(offsets[k] + (back_at - lo) as usize)?;
                let walked_back = chain.frames.get(k + 1).map(|&(frame, _)| frame).or(chain.next);
                if code != walked_code || walked_back.is_some_and(|b| b != back) {
                    moved.push(i);
                    break;
                }
            }
        }
        Some(Compared { moved, lists_changed })
    }

    /// What the look found (a look that panicked left it as it was).
    pub fn found(&self) -> MutexGuard<'_, Found> {
        self.found.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The metadata's Python thread entries brought up to date with what the look found.
    pub fn update(&self, meta: &mut Value) {
        let found = self.found();
        if !found.looked {
            return;
        }
        meta["python_looked_again"] = json!({
            "walked": found.walked.len(), "unchanged": found.unchanged, "reads": found.reads,
            "ms": found.took.as_secs_f64() * 1000.0,
        });
        for t in &found.walked {
            let mut listed = false;
            for entry in meta["python_threads"].as_array_mut().into_iter().flatten() {
                if entry["tstate"] == json!(t.tstate) {
                    entry["frames"] = json!(t.frames);
                    listed = true;
                }
            }
            if !listed {
                if let Some(list) = meta["python_threads"].as_array_mut() {
                    list.push(json!({
                        "tstate": t.tstate, "interp": t.interp, "thread_id": t.thread_id,
                        "native_thread_id": t.native_thread_id, "frames": t.frames,
                    }));
                }
            }
            for os in meta["threads"].as_array_mut().into_iter().flatten() {
                for key in ["python", "python_outer"] {
                    if os[key]["tstate"] == json!(t.tstate) {
                        os[key]["frames"] = json!(t.frames);
                    }
                }
            }
        }
    }
}

/// `memory` and `more` as one sorted list without overlaps, clipped to `readable`.
fn merged(memory: &AppMemoryList, mut more: RangeSet, readable: &[Region]) -> AppMemoryList {
    for m in memory {
        more.add(m.ptr as u64, m.length as u64);
    }
    more.finish(readable)
        .into_iter()
        .map(|(start, end)| AppMemory { ptr: start as usize, length: (end - start) as usize })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3.13 interpreter with two thread states, each with two frames, in our own memory.
    struct Fake {
        words: Box<[u64; 4096]>,
        layout: Layout,
    }

    impl Fake {
        const INTERP: usize = 0;
        const TSTATES: [usize; 2] = [1024, 2048];
        const FRAMES: [usize; 2] = [3072, 3584];
        const CALLERS: [usize; 2] = [3328, 3840];

        fn new() -> Fake {
            let layout = Layout::for_version(3, 13).expect("3.13 layout");
            let mut fake = Fake { words: Box::new([0; 4096]), layout };
            fake.set(Self::INTERP, layout.interp_threads_head, fake.addr(Self::TSTATES[0]));
            fake.set(Self::TSTATES[0], layout.tstate_next, fake.addr(Self::TSTATES[1]));
            for ((ts, frame), caller) in Self::TSTATES.into_iter().zip(Self::FRAMES).zip(Self::CALLERS) {
                fake.set(ts, layout.tstate_current_frame, fake.addr(frame));
                fake.set(frame, layout.iframe_executable, 0xc0de);
                fake.set(frame, layout.iframe_previous, fake.addr(caller));
                fake.set(caller, layout.iframe_executable, 0xca11);
            }
            fake
        }

        fn addr(&self, word: usize) -> u64 {
            self.words.as_ptr() as u64 + 8 * word as u64
        }

        fn set(&mut self, word: usize, offset: Option<u32>, value: u64) {
            let offset = offset.expect("a 3.13 offset") as usize;
            assert_eq!(offset % 8, 0);
            self.words[word + offset / 8] = value;
        }

        fn look(&self) -> LookAgain {
            let chains =
                Self::TSTATES.into_iter().zip(Self::FRAMES).zip(Self::CALLERS).map(|((ts, f), c)| {
                    let frames = vec![(self.addr(f), 0xc0de), (self.addr(c), 0xca11)];
                    (self.addr(ts), FrameChain { frames, next: Some(0) })
                });
            LookAgain {
                pid: std::process::id() as i32,
                layout: self.layout,
                types: TypeAddrs::default(),
                runtime: 0,
                interp: self.addr(Self::INTERP),
                os_tids: IntSet::default(),
                interps: vec![self.addr(Self::INTERP)],
                threads: chains.map(|(ts, chain)| (ts, self.addr(Self::INTERP), chain)).collect(),
                readable: Vec::new(),
                found: Default::default(),
            }
        }

        fn compare(&self, look: &LookAgain) -> Option<Compared> {
            look.compare(&ProcessMemory::new(std::process::id() as i32))
        }
    }

    #[test]
    fn only_the_thread_whose_innermost_frame_changed_has_moved() {
        let mut fake = Fake::new();
        let look = fake.look();
        let mem = ProcessMemory::new(std::process::id() as i32);
        assert_eq!(look.compare(&mem), Some(Compared { moved: vec![], lists_changed: false }));
        // The lists and slots, then one gather per level of the chains.
        assert!(mem.syscalls() <= 3, "{} reads", mem.syscalls());
        // The second thread runs other code in the same frame slot.
        fake.set(Fake::FRAMES[1], fake.layout.iframe_executable, 0xbeef);
        assert_eq!(fake.compare(&look), Some(Compared { moved: vec![1], lists_changed: false }));
    }

    #[test]
    fn the_same_innermost_frame_under_another_caller_has_moved() {
        let mut fake = Fake::new();
        let look = fake.look();
        // Back in the same function, at the same frame address, called by other code.
        fake.set(Fake::CALLERS[0], fake.layout.iframe_executable, 0xbeef);
        assert_eq!(fake.compare(&look), Some(Compared { moved: vec![0], lists_changed: false }));
        fake.set(Fake::CALLERS[0], fake.layout.iframe_executable, 0xca11);
        // Or called from a frame elsewhere.
        let (previous, elsewhere) = (fake.layout.iframe_previous, fake.addr(4000));
        fake.set(Fake::FRAMES[1], previous, elsewhere);
        assert_eq!(fake.compare(&look), Some(Compared { moved: vec![1], lists_changed: false }));
        let caller = fake.addr(Fake::CALLERS[1]);
        fake.set(Fake::FRAMES[1], previous, caller);
        // Or with a frame below the one that ended the stack.
        fake.set(Fake::CALLERS[1], previous, elsewhere);
        assert_eq!(fake.compare(&look), Some(Compared { moved: vec![1], lists_changed: false }));
    }

    #[test]
    fn a_thread_state_the_walk_never_saw_changes_the_lists() {
        let mut fake = Fake::new();
        let look = fake.look();
        let new = fake.addr(4000);
        fake.set(Fake::INTERP, fake.layout.interp_threads_head, new);
        assert_eq!(fake.compare(&look), Some(Compared { moved: vec![], lists_changed: true }));
    }

    #[test]
    fn spans_merge_within_a_group_and_say_where_each_range_lands() {
        let mut spans = Spans::default();
        spans.new_group();
        assert_eq!(spans.add(1000, 16), 0);
        assert_eq!(spans.add(1100, 16), 100); // near: the same range, grown
        assert_eq!(spans.add(1100 + 16 + Spans::GAP + 1, 16), 116); // too far: a new one
        spans.new_group();
        assert_eq!(spans.add(1100 + 16 + Spans::GAP + 20, 16), 132); // near, but another group's
        assert_eq!(spans.list, [(1000, 116), (2141, 16), (2160, 16)]);
    }

    #[test]
    fn ranges_found_again_join_the_ones_chosen_before() {
        let memory = vec![AppMemory { ptr: 100, length: 50 }, AppMemory { ptr: 1000, length: 10 }];
        let mut more = RangeSet::default();
        more.add(140, 20);
        more.add(2000, 8);
        more.add(9000, 8); // unmapped
        let readable = [Region { start: 0, end: 4096 }];
        let got: Vec<(usize, usize)> =
            merged(&memory, more, &readable).iter().map(|m| (m.ptr, m.length)).collect();
        assert_eq!(got, [(100, 60), (1000, 10), (2000, 8)]);
    }
}
