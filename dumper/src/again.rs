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
use crate::pymem::{Collector, PyThreadInfo, TopFrame};
use crate::ranges::RangeSet;
use minidump_writer::app_memory::{AppMemory, AppMemoryList};
use pylayout::{Layout, TypeAddrs};
use rustc_hash::{FxHashMap as IntMap, FxHashSet as IntSet};
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
    pub known: IntMap<u64, TopFrame>,
    /// The readable regions the walk's ranges were clipped to.
    pub readable: Vec<Region>,
    pub found: Rc<RefCell<Found>>,
}

impl LookAgain {
    /// The look, as minidump-writer calls it with the application memory it will copy.
    pub fn look(&self, memory: &mut AppMemoryList) {
        let mem = ProcessMemory::new(self.pid);
        let mut again = Collector::new(&mem, &self.layout, self.types);
        again.os_tids = self.os_tids.clone();
        again.known = self.known.clone();
        again.collect(self.runtime, self.interp);
        let mut found = self.found.borrow_mut();
        found.looked = true;
        found.unchanged = again.unchanged;
        if again.threads.is_empty() {
            return;
        }
        // Frames that moved may be in memory mapped since (a new data-stack chunk).
        let readable = procmem::readable_regions(self.pid).unwrap_or_else(|_| self.readable.clone());
        *memory = merged(memory, again.ranges, &readable);
        found.walked = std::mem::take(&mut again.threads);
    }

    /// The metadata's Python thread entries brought up to date with what the look found.
    pub fn update(&self, meta: &mut Value) {
        let found = self.found.borrow();
        if !found.looked {
            return;
        }
        meta["python_looked_again"] = json!({"walked": found.walked.len(), "unchanged": found.unchanged});
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
