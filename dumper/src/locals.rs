//! The memory the Python frames' local variables need, kept when `enable(dump_locals=True)`
//! asks (local variables can hold secrets: off by default).
//!
//! Found by running pylayout's own readers — `locals::frame_locals` and `objects::decode`
//! with the default limits, as py-locals runs them — over a [`Memory`] that records every
//! range they read: the dump then holds exactly the bytes a reader of the dump reads, and
//! no second copy of CPython's layout rules lives here.

use pylayout::locals::frame_locals;
use pylayout::objects::{decode, Limits, ObjectTypes};
use pylayout::thread_names::PythonThread;
use pylayout::{Layout, Memory};
use rustc_hash::FxHashSet as IntSet;
use std::cell::{Cell, RefCell};
use std::time::Instant;

/// Bytes read for local variables at most, over all frames, and per frame: a frame holding
/// a huge structure must not crowd out the others (the innermost frames of the requesting
/// thread come first).
pub const MAX_TOTAL_BYTES: u64 = 16 << 20;
pub const MAX_FRAME_BYTES: u64 = 1 << 20;

/// A [`Memory`] that records the ranges read successfully, within a byte budget. A range
/// read again (a type object, a shared string) is recorded and charged once.
struct Recorder<'a> {
    mem: &'a dyn Memory,
    reads: RefCell<Vec<(u64, u64)>>,
    seen: RefCell<IntSet<(u64, u64)>>,
    left: Cell<u64>,
    /// Whether a read was refused because the budget was spent.
    cut: Cell<bool>,
}

impl Memory for Recorder<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let n = buf.len() as u64;
        if self.seen.borrow().contains(&(addr, n)) {
            return self.mem.read(addr, buf);
        }
        if n > self.left.get() {
            self.cut.set(true);
            return false;
        }
        if !self.mem.read(addr, buf) {
            return false;
        }
        self.left.set(self.left.get() - n);
        self.reads.borrow_mut().push((addr, n));
        self.seen.borrow_mut().insert((addr, n));
        true
    }
}

/// Bytes read for the Python thread names at most.
pub const MAX_THREAD_NAME_BYTES: u64 = 1 << 20;

/// The memory pylayout's `thread_names::python_threads` reads for the interpreter at
/// `interp`: kept in every dump (thread names are no secret, and the metadata already
/// lists them) so that gdb's `cc-threads` names the threads on `crashcatch core`'s core too.
/// Also the threads it found, for the metadata (read once, not a second time there); None
/// when the byte budget cut the read short, so that the metadata reads them whole.
/// `threading_hash`: `hash("threading")` in the process, to find the module by it.
pub fn thread_name_ranges(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    interp: u64,
    threading_hash: Option<i64>,
) -> (Vec<(u64, u64)>, Option<Vec<PythonThread>>) {
    let rec = Recorder {
        mem,
        reads: RefCell::new(Vec::new()),
        seen: RefCell::new(IntSet::default()),
        left: Cell::new(MAX_THREAD_NAME_BYTES),
        cut: Cell::new(false),
    };
    let threads = pylayout::thread_names::python_threads_hashed(&rec, layout, types, interp, threading_hash);
    let whole = !rec.cut.get();
    (rec.reads.into_inner(), whole.then_some(threads))
}

/// What was kept, for the metadata.
#[derive(Debug, Default)]
pub struct Found {
    /// The ranges read: (start, length).
    pub ranges: Vec<(u64, u64)>,
    /// Frames whose locals were read, and how many of them hit the per-frame cap.
    pub frames: usize,
    pub frames_cut: usize,
    /// Bound local variables decoded.
    pub locals: usize,
    /// Bytes read (a range read twice counted once per frame).
    pub bytes_read: u64,
    /// Why frames were left out: "max_total_bytes" or "deadline"; None if none was.
    pub stopped: Option<&'static str>,
}

/// Reads the locals of each frame in `frames` (most wanted first) until the caps or `until`.
pub fn collect(
    mem: &dyn Memory,
    layout: &Layout,
    types: &ObjectTypes,
    frames: &[u64],
    until: Instant,
) -> Found {
    let mut found = Found::default();
    let limits = Limits::default();
    for &frame in frames {
        let total_left = MAX_TOTAL_BYTES - found.bytes_read;
        if total_left == 0 {
            found.stopped = Some("max_total_bytes");
            break;
        }
        if Instant::now() >= until {
            found.stopped = Some("deadline");
            break;
        }
        let rec = Recorder {
            mem,
            reads: RefCell::new(Vec::new()),
            seen: RefCell::new(IntSet::default()),
            left: Cell::new(total_left.min(MAX_FRAME_BYTES)),
            cut: Cell::new(false),
        };
        let budget = rec.left.get();
        for local in frame_locals(&rec, layout, types, frame).unwrap_or_default() {
            if local.value != 0 {
                decode(&rec, layout, types, local.value, &limits);
                found.locals += 1;
            }
        }
        found.frames += 1;
        found.frames_cut += usize::from(rec.cut.get());
        found.bytes_read += budget - rec.left.get();
        found.ranges.append(&mut rec.reads.into_inner());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every address reads as its own low byte; reads above `end` fail.
    struct Counting {
        end: u64,
    }

    impl Memory for Counting {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (addr + i as u64) as u8;
            }
            addr + buf.len() as u64 <= self.end
        }
    }

    fn recorder(mem: &dyn Memory, left: u64) -> Recorder<'_> {
        Recorder {
            mem,
            reads: RefCell::new(Vec::new()),
            seen: RefCell::new(IntSet::default()),
            left: Cell::new(left),
            cut: Cell::new(false),
        }
    }

    #[test]
    fn records_successful_reads_only() {
        let mem = Counting { end: 0x2000 };
        let rec = recorder(&mem, 100);
        assert!(rec.read(0x1000, &mut [0u8; 16]));
        assert!(!rec.read(0x1ff8, &mut [0u8; 16]));
        assert_eq!(*rec.reads.borrow(), [(0x1000, 16)]);
        assert_eq!(rec.left.get(), 84);
        assert!(!rec.cut.get());
        // Read again: neither recorded nor charged again.
        assert!(rec.read(0x1000, &mut [0u8; 16]));
        assert_eq!((rec.reads.borrow().len(), rec.left.get()), (1, 84));
    }

    #[test]
    fn refuses_reads_past_the_budget() {
        let mem = Counting { end: u64::MAX };
        let rec = recorder(&mem, 20);
        assert!(rec.read(0x1000, &mut [0u8; 16]));
        assert!(!rec.read(0x2000, &mut [0u8; 8]));
        assert!(rec.cut.get());
        assert_eq!(rec.reads.borrow().len(), 1);
    }

    #[test]
    fn stops_at_the_deadline() {
        let mem = Counting { end: u64::MAX };
        let layout = Layout::for_version(3, 12).expect("3.12 layout");
        let found = collect(&mem, &layout, &ObjectTypes::default(), &[0x1000, 0x2000], Instant::now());
        assert_eq!((found.frames, found.stopped), (0, Some("deadline")));
    }
}
