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
use crate::pymem::{frame_code_offset, Collector, PyThreadInfo, TopFrame};
use crate::ranges::RangeSet;
use minidump_writer::app_memory::{AppMemory, AppMemoryList};
use pylayout::walk::{current_frame_slot, FrameSlot};
use pylayout::{Layout, TypeAddrs};
use rustc_hash::FxHashSet as IntSet;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;

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

/// Everything the look needs, owned: it runs inside minidump-writer.
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
    /// The thread states it found: (thread state, its interpreter, its innermost frame).
    pub threads: Vec<(u64, u64, TopFrame)>,
    /// The readable regions the walk's ranges were clipped to.
    pub readable: Vec<Region>,
    pub found: Rc<RefCell<Found>>,
}

impl LookAgain {
    /// The look, as minidump-writer calls it with the application memory it will copy.
    pub fn look(&self, memory: &mut AppMemoryList) {
        let started = std::time::Instant::now();
        let mem = ProcessMemory::new(self.pid);
        let mut again = Collector::new(&mem, &self.layout, self.types);
        again.os_tids = self.os_tids.clone();
        match self.moved(&mem) {
            Some(moved) => {
                for &(ts, interp) in &moved {
                    again.thread(interp, ts);
                }
                again.unchanged = self.threads.len() - moved.len();
            }
            // The lists changed, or a field was unreadable: everything is walked again
            // (each thread state still as the walk left it counted as unchanged).
            None => {
                again.known = self.threads.iter().map(|&(ts, _, top)| (ts, top)).collect();
                again.collect(self.runtime, self.interp);
            }
        }
        let mut found = self.found.borrow_mut();
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
    }

    /// The thread states (with their interpreter) whose innermost frame or its code changed
    /// since the walk; None if the interpreter or thread lists changed (a new thread, one
    /// gone) or could not be read. Reads only the few words that tell, gathered in three or
    /// four system calls whatever the number of threads: at 100 threads, fetching the pages
    /// that hold them took 0.7 ms, during which every thread waits.
    fn moved(&self, mem: &ProcessMemory) -> Option<Vec<(u64, u64)>> {
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
        if interp_links.iter().any(|&i| i != 0 && !interps.contains(&i))
            || tstate_links.iter().any(|&t| t != 0 && !tstates.contains(&t))
        {
            return None;
        }
        let mut frames = slots.to_vec();
        if let Some(off) = through {
            let cframes: Vec<u64> = frames.iter().filter(|&&c| c != 0).map(|&c| c + off as u64).collect();
            let mut found = mem.gather_words(&cframes)?.into_iter();
            for f in frames.iter_mut().filter(|f| **f != 0) {
                *f = found.next()?;
            }
        }
        let code_at = frame_code_offset(l)? as u64;
        let codes_at: Vec<u64> = frames.iter().filter(|&&f| f != 0).map(|&f| f + code_at).collect();
        let mut codes = mem.gather_words(&codes_at)?.into_iter();
        let mut moved = Vec::new();
        for (&(ts, interp, top), &frame) in self.threads.iter().zip(&frames) {
            let code = if frame != 0 { codes.next()? } else { 0 };
            if (frame, code) != top {
                moved.push((ts, interp));
            }
        }
        Some(moved)
    }

    /// The metadata's Python thread entries brought up to date with what the look found.
    pub fn update(&self, meta: &mut Value) {
        let found = self.found.borrow();
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

    /// A 3.13 interpreter with two thread states, each with one frame, in our own memory.
    struct Fake {
        words: Box<[u64; 4096]>,
        layout: Layout,
    }

    impl Fake {
        const INTERP: usize = 0;
        const TSTATES: [usize; 2] = [1024, 2048];
        const FRAMES: [usize; 2] = [3072, 3584];

        fn new() -> Fake {
            let layout = Layout::for_version(3, 13).expect("3.13 layout");
            let mut fake = Fake { words: Box::new([0; 4096]), layout };
            fake.set(Self::INTERP, layout.interp_threads_head, fake.addr(Self::TSTATES[0]));
            fake.set(Self::TSTATES[0], layout.tstate_next, fake.addr(Self::TSTATES[1]));
            for (ts, frame) in Self::TSTATES.into_iter().zip(Self::FRAMES) {
                fake.set(ts, layout.tstate_current_frame, fake.addr(frame));
                fake.set(frame, layout.iframe_executable, 0xc0de);
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
            let tops = Self::TSTATES
                .into_iter()
                .zip(Self::FRAMES)
                .map(|(ts, f)| (self.addr(ts), (self.addr(f), 0xc0de)));
            LookAgain {
                pid: std::process::id() as i32,
                layout: self.layout,
                types: TypeAddrs::default(),
                runtime: 0,
                interp: self.addr(Self::INTERP),
                os_tids: IntSet::default(),
                interps: vec![self.addr(Self::INTERP)],
                threads: tops.map(|(ts, top)| (ts, self.addr(Self::INTERP), top)).collect(),
                readable: Vec::new(),
                found: Default::default(),
            }
        }
    }

    #[test]
    fn only_the_thread_whose_innermost_frame_changed_has_moved() {
        let mut fake = Fake::new();
        let look = fake.look();
        let mem = ProcessMemory::new(std::process::id() as i32);
        assert_eq!(look.moved(&mem), Some(vec![]));
        assert!(mem.syscalls() <= 3, "{} reads", mem.syscalls());
        // The second thread runs other code in the same frame slot.
        fake.set(Fake::FRAMES[1], fake.layout.iframe_executable, 0xbeef);
        let moved = look.moved(&ProcessMemory::new(std::process::id() as i32));
        assert_eq!(moved, Some(vec![(fake.addr(Fake::TSTATES[1]), fake.addr(Fake::INTERP))]));
    }

    #[test]
    fn a_thread_state_the_walk_never_saw_means_walking_everything_again() {
        let mut fake = Fake::new();
        let look = fake.look();
        let new = fake.addr(4000);
        fake.set(Fake::INTERP, fake.layout.interp_threads_head, new);
        assert_eq!(look.moved(&ProcessMemory::new(std::process::id() as i32)), None);
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
