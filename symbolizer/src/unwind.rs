//! A thread's native stack from a dump (or a debugger's target): unwound with the modules' CFI (framehop), every step
//! checked before it is taken — the caller's address must be executable code (a mapping the
//! dump's `/proc/PID/maps` marks `x`), its stack pointer must move up the thread's own stack,
//! and the unwinder reads nothing but that stack. A step that fails ends the unwind with the
//! reason (`NativeStack::stopped`); no frame is made up from data.
//!
//! A crashed thread's overflowed stack keeps only its two ends (dumper/src/shrink.rs). The
//! unwind of the top stops at the cut; it goes on from the frame near the thread's start
//! whose registers crashcatch's crash-time unwinder recorded (`Resume`), and the missing
//! middle is a [`Gap`] between the two parts.

use crate::native::{Modules, NativeFrame};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
use framehop::FrameAddress;
use minidump::{Minidump, MinidumpLinuxMaps, MinidumpModuleList, Module};
use pylayout::Memory;
use serde_json::Value;
use std::cell::Cell;

/// Frames walked per thread at most.
pub const MAX_FRAMES: usize = 65_536;

/// How far above a stack pointer in a guard region its stack may begin (the kernel's stack
/// guard gap).
const GUARD_MAX: u64 = 1 << 20;

/// A thread's native frames, innermost first, and how the unwind ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NativeStack {
    pub frames: Vec<NativeFrame>,
    /// Why the unwind ended before the thread's start; None when it got there (or nothing
    /// was unwound).
    pub stopped: Option<String>,
    /// The middle of an overflowed stack that is not in the dump.
    pub gap: Option<Gap>,
}

/// Frames missing between `frames[..at]` and `frames[at..]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub at: usize,
    /// How many, as crashcatch's crash-time unwinder counted them (None if unknown).
    pub frames: Option<u64>,
    /// The stack addresses they used: [lo, hi).
    pub range: (u64, u64),
}

/// Where the unwind of a capped stack goes on below the cut (docs/minidump.md,
/// `stack_capped.resume`): a frame's registers and how many frames lie above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub depth: u64,
    /// The stack addresses not in the dump: from the end of the kept top to the frame.
    pub cut: (u64, u64),
}

impl Resume {
    /// From the dump's metadata, if the crashed thread's stack was capped with a resume point.
    pub fn from_metadata(metadata: &Value) -> Option<Resume> {
        let capped = &metadata["stack_capped"];
        let r = &capped["resume"];
        let top_end = capped["start"].as_u64()?.checked_add(capped["kept_size"].as_u64()?)?;
        let (ip, sp) = (r["rip"].as_u64()?, r["rsp"].as_u64()?);
        (sp > top_end).then_some(Resume {
            ip,
            sp,
            bp: r["rbp"].as_u64().unwrap_or(0),
            depth: r["depth"].as_u64()?,
            cut: (top_end, sp),
        })
    }
}

/// What the dump says about the address space: executable ranges and stacks.
pub struct Space {
    /// Sorted, non-overlapping [start, end) ranges of executable code.
    code: Vec<(u64, u64)>,
    /// Readable and writable mappings, sorted; None without a maps stream.
    writable: Option<Vec<(u64, u64)>>,
}

impl Space {
    /// From the dump's copy of `/proc/PID/maps`; without one, every module's range counts as
    /// code and stacks are unbounded.
    pub fn of<T: std::ops::Deref<Target = [u8]>>(dump: &Minidump<T>) -> Space {
        let Ok(maps) = dump.get_stream::<MinidumpLinuxMaps>() else {
            let modules = dump.get_stream::<MinidumpModuleList>().ok();
            let code = modules
                .iter()
                .flat_map(|l| l.iter())
                .map(|m| (m.base_address(), m.base_address().saturating_add(m.size())))
                .collect();
            return Space::new(code, None);
        };
        let ranges = |keep: fn(&minidump::MinidumpLinuxMapInfo) -> bool| -> Vec<(u64, u64)> {
            maps.iter()
                .filter(|m| keep(m))
                .filter_map(|m| m.memory_range())
                .map(|r| (r.start, r.end))
                .collect()
        };
        Space::new(ranges(|m| m.is_executable()), Some(ranges(|m| m.is_readable() && m.is_writable())))
    }

    pub fn new(mut code: Vec<(u64, u64)>, writable: Option<Vec<(u64, u64)>>) -> Space {
        code.sort_unstable();
        // Overlapping ranges (a core's PF_X loads and its files' code) become one: `is_code`
        // looks only at the last range starting at or below an address.
        code.dedup_by(|next, kept| {
            let overlaps = next.0 <= kept.1;
            if overlaps {
                kept.1 = kept.1.max(next.1);
            }
            overlaps
        });
        let writable = writable.map(|mut w| {
            w.sort_unstable();
            w
        });
        Space { code, writable }
    }

    /// Whether `addr` is in executable code.
    pub fn is_code(&self, addr: u64) -> bool {
        let after = self.code.partition_point(|&(start, _)| start <= addr);
        after > 0 && addr < self.code[after - 1].1
    }

    /// [lo, hi) of the stack `sp` is on: the writable mapping holding it or, when `sp` went
    /// into the guard region below a stack (an overflow), the first one above it.
    pub fn stack_of(&self, sp: u64) -> (u64, u64) {
        let Some(writable) = &self.writable else { return (0, u64::MAX) };
        let first = writable.partition_point(|&(_, end)| end <= sp);
        match writable.get(first) {
            Some(&(start, end)) if start <= sp.saturating_add(GUARD_MAX) => (start.min(sp), end),
            // Not on any stack we know of: only the stack pointer's own page.
            _ => (sp & !0xfff, (sp & !0xfff).saturating_add(0x1000)),
        }
    }
}

/// A thread's registers: (instruction pointer, stack pointer, frame pointer).
pub type Registers = (u64, u64, u64);

/// Unwinds one thread from its registers and symbolizes every frame; `limit` frames at most
/// (and never more than MAX_FRAMES). `resume`: for the crashed thread of a capped dump.
pub fn unwind(
    modules: &Modules,
    mem: &dyn Memory,
    space: &Space,
    (ip, sp, bp): Registers,
    limit: usize,
    resume: Option<&Resume>,
) -> NativeStack {
    let limit = limit.min(MAX_FRAMES);
    let mut stack = NativeStack::default();
    let bounds = space.stack_of(sp);
    let mut walk = Walk {
        modules,
        mem,
        space,
        bounds: Cell::new(bounds),
        cut: resume.map(|r| r.cut),
        cut_reached: Cell::new(false),
    };
    let mut end = walk.run(FrameAddress::InstructionPointer(ip), (ip, sp, bp), limit, &mut stack.frames);
    if let (Some(r), Ended::Stopped(_)) = (resume, &end) {
        if walk.cut_reached.get() {
            let unwound = stack.frames.iter().filter(|f| !f.inlined).count() as u64;
            stack.gap =
                Some(Gap { at: stack.frames.len(), frames: r.depth.checked_sub(unwound), range: r.cut });
            walk.cut = None;
            end = match FrameAddress::from_return_address(r.ip) {
                Some(address) => walk.run(address, (r.ip, r.sp, r.bp), limit, &mut stack.frames),
                None => Ended::Stopped("the recorded resume point has no return address".into()),
            };
        }
    }
    stack.stopped = match end {
        Ended::ThreadStart => None,
        Ended::Limit => Some(format!("the native frame limit was reached ({limit} frames)")),
        Ended::Stopped(why) => Some(why),
    };
    stack.frames.truncate(limit);
    stack
}

enum Ended {
    ThreadStart,
    Limit,
    Stopped(String),
}

struct Walk<'a> {
    modules: &'a Modules,
    mem: &'a dyn Memory,
    space: &'a Space,
    /// The stack being unwound: the only memory the unwinder reads (it changes where a
    /// signal handler on an alternate stack interrupted the thread's own stack).
    bounds: Cell<(u64, u64)>,
    /// A capped stack's missing middle, and whether the last step tried to read it.
    cut: Option<(u64, u64)>,
    cut_reached: Cell<bool>,
}

impl Walk<'_> {
    /// Symbolizes the frame at `address` with registers `regs` and walks on from it,
    /// appending to `frames` (inlined calls included) until the stack ends or a step fails.
    fn run(
        &self,
        address: FrameAddress,
        (ip, sp, bp): Registers,
        limit: usize,
        frames: &mut Vec<NativeFrame>,
    ) -> Ended {
        let mut read = |addr: u64| {
            let (lo, hi) = self.bounds.get();
            let value = if addr >= lo && addr.checked_add(8).is_some_and(|end| end <= hi) {
                self.mem.read_u64(addr)
            } else {
                None
            };
            if value.is_none() && self.cut.is_some_and(|(c_lo, c_hi)| addr >= c_lo && addr < c_hi) {
                self.cut_reached.set(true);
            }
            value.ok_or(())
        };
        let mut cache = CacheX86_64::<_>::new();
        let mut regs = UnwindRegsX86_64::new(ip, sp, bp);
        let first_trust = if address.is_return_address() { "cfi" } else { "context" };
        frames.extend(self.modules.symbolize(ip, address.address_for_lookup(), first_trust, sp));
        let mut address = address;
        while frames.len() < limit {
            let at = address.address();
            if let Some(interrupted) = self.signal_frame(at, regs.sp()) {
                // The handler returned into the kernel's trampoline: what it interrupted goes
                // on at the registers the kernel saved, on the stack it was using.
                let (ip, sp, bp) = interrupted;
                self.bounds.set(self.space.stack_of(sp));
                regs = UnwindRegsX86_64::new(ip, sp, bp);
                frames.extend(self.modules.symbolize(ip, ip, "signal frame", sp));
                address = FrameAddress::InstructionPointer(ip);
                continue;
            }
            // The rule comes from the module of the frame being unwound.
            let callee_has_cfi = self.modules.has_cfi(address.address_for_lookup());
            let old_sp = regs.sp();
            self.cut_reached.set(false);
            let ret = match self.modules.unwind_frame(address, &mut regs, &mut cache, &mut read) {
                Ok(Some(ret)) => ret,
                Ok(None) if callee_has_cfi => return Ended::ThreadStart,
                Ok(None) => {
                    return Ended::Stopped(format!(
                        "no call frame information for the frame at {at:#x}, and no frame pointer"
                    ))
                }
                Err(e) => return Ended::Stopped(describe(e, at, self.bounds.get())),
            };
            let new_sp = regs.sp();
            if new_sp <= old_sp || new_sp > self.bounds.get().1 {
                return Ended::Stopped(format!(
                    "the caller's stack pointer found for the frame at {at:#x} ({new_sp:#x}) is not further \
                     up the thread's stack"
                ));
            }
            if !self.space.is_code(ret - 1) {
                return Ended::Stopped(format!(
                    "the caller's address found for the frame at {at:#x} ({ret:#x}) is not executable code"
                ));
            }
            let Some(next) = FrameAddress::from_return_address(ret) else { return Ended::ThreadStart };
            let trust = if callee_has_cfi { "cfi" } else { "frame pointer" };
            frames.extend(self.modules.symbolize(ret, ret - 1, trust, new_sp));
            address = next;
        }
        Ended::Limit
    }
}

/// `__restore_rt`, the x86-64 rt_sigreturn trampoline every libc gives the kernel:
/// `mov $15, %rax; syscall`.
const SIGRETURN_TRAMPOLINE: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
/// Where `struct ucontext`'s saved registers (`uc_mcontext.gregs`) begin, and rbp, rsp and
/// rip's slots in them (`REG_RBP`, `REG_RSP`, `REG_RIP` of <sys/ucontext.h>).
const UCONTEXT_GREGS: u64 = 40;
const GREG_RBP: u64 = 10;
const GREG_RSP: u64 = 15;
const GREG_RIP: u64 = 16;

impl Walk<'_> {
    /// When `at` is the signal trampoline (a handler returned to it) and the kernel's
    /// `ucontext` is at `sp`, the interrupted registers: (ip, sp, bp). A core written while
    /// a handler ran (a re-raised abort) has the interrupted code below it.
    fn signal_frame(&self, at: u64, sp: u64) -> Option<Registers> {
        let mut code = [0u8; SIGRETURN_TRAMPOLINE.len()];
        if !self.space.is_code(at) || !self.mem.read(at, &mut code) || code != SIGRETURN_TRAMPOLINE {
            return None;
        }
        let greg = |i: u64| self.mem.read_u64(sp.checked_add(UCONTEXT_GREGS + 8 * i)?);
        let (ip, new_sp) = (greg(GREG_RIP)?, greg(GREG_RSP)?);
        self.space.is_code(ip).then_some((ip, new_sp, greg(GREG_RBP).unwrap_or(0)))
    }
}

/// Why framehop could not unwind the frame at `at`.
fn describe(e: framehop::Error, at: u64, (lo, hi): (u64, u64)) -> String {
    match e {
        framehop::Error::CouldNotReadStack(addr) if addr >= lo && addr < hi => {
            format!("the stack at {addr:#x}, needed to unwind the frame at {at:#x}, is not in the dump")
        }
        framehop::Error::CouldNotReadStack(addr) => format!(
            "unwinding the frame at {at:#x} would read {addr:#x}, outside the thread's stack \
             (no call frame information, and no frame pointer into the stack?)"
        ),
        framehop::Error::FramepointerUnwindingMovedBackwards => format!(
            "no call frame information for the frame at {at:#x}, and its frame pointer does not point up the stack"
        ),
        other => format!("cannot unwind the frame at {at:#x}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_stacks_come_from_the_mappings() {
        let space = Space::new(
            vec![(0x5000, 0x6000), (0x1000, 0x2000)],
            Some(vec![(0x7000_0000, 0x7080_0000), (0x9000, 0xa000)]),
        );
        assert!(space.is_code(0x1000) && space.is_code(0x5fff));
        assert!(!space.is_code(0x2000) && !space.is_code(0xfff) && !space.is_code(0x7000_1000));
        assert_eq!(space.stack_of(0x7010_0000), (0x7000_0000, 0x7080_0000));
        // An overflow: sp in the guard below the stack.
        assert_eq!(space.stack_of(0x6fff_ffe0), (0x6fff_ffe0, 0x7080_0000));
        // Nowhere: only its own page is read.
        assert_eq!(space.stack_of(0x7fff_0000_0010), (0x7fff_0000_0000, 0x7fff_0000_1000));
        // In the address space's last page (a corrupt sp; found by the fuzz test): up to its end.
        assert_eq!(space.stack_of(u64::MAX - 5), (!0xfff_u64, u64::MAX));
        assert_eq!(Space::new(vec![], None).stack_of(5), (0, u64::MAX));
    }

    /// Memory of a few (address, bytes) regions.
    struct Regions(Vec<(u64, Vec<u8>)>);
    impl Memory for Regions {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            self.0.iter().any(|(base, bytes)| {
                let Some(off) = addr.checked_sub(*base).map(|o| o as usize) else { return false };
                let Some(src) = bytes.get(off..off + buf.len()) else { return false };
                buf.copy_from_slice(src);
                true
            })
        }
    }

    #[test]
    fn a_handler_returning_into_the_signal_trampoline_unwinds_onto_the_interrupted_stack() {
        let (trampoline, interrupted_ip) = (0x1000u64, 0x1800u64);
        let (alt_sp, thread_sp, thread_bp) = (0x7000u64, 0x9100u64, 0x9200u64);
        let mut code = SIGRETURN_TRAMPOLINE.to_vec();
        code.resize(0x1000, 0x90);
        let mut alt = vec![0u8; 0x1000];
        for (slot, value) in [(GREG_RIP, interrupted_ip), (GREG_RSP, thread_sp), (GREG_RBP, thread_bp)] {
            let at = (UCONTEXT_GREGS + 8 * slot) as usize;
            alt[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        let mem = Regions(vec![(trampoline, code), (alt_sp, alt), (0x9000, vec![0; 0x1000])]);
        let space = Space::new(vec![(0x1000, 0x2000)], Some(vec![(0x7000, 0x8000), (0x9000, 0xa000)]));
        let modules = Modules::from_list(&[], &[], None);
        let stack = unwind(&modules, &mem, &space, (trampoline, alt_sp, 0), 100, None);
        let frames: Vec<(u64, &str, u64)> = stack.frames.iter().map(|f| (f.address, f.trust, f.sp)).collect();
        assert_eq!(
            frames[..2],
            [(trampoline, "context", alt_sp), (interrupted_ip, "signal frame", thread_sp)]
        );
        // Other code at the same place is not a trampoline.
        let mut other = mem;
        other.0[0].1[0] = 0x90;
        let stack = unwind(&modules, &other, &space, (trampoline, alt_sp, 0), 100, None);
        assert!(stack.frames.iter().all(|f| f.trust != "signal frame"), "{:?}", stack.frames);
    }

    #[test]
    fn a_resume_point_needs_the_whole_record_below_the_kept_top() {
        let meta = serde_json::json!({"stack_capped": {"start": 0x1000, "kept_size": 0x1000,
            "resume": {"rip": 0x55, "rsp": 0x8000, "rbp": 0, "depth": 900}}});
        let r = Resume::from_metadata(&meta).expect("resume");
        assert_eq!((r.ip, r.sp, r.depth, r.cut), (0x55, 0x8000, 900, (0x2000, 0x8000)));
        let inside_top = serde_json::json!({"stack_capped": {"start": 0x1000, "kept_size": 0x1000,
            "resume": {"rip": 0x55, "rsp": 0x1800, "rbp": 0, "depth": 900}}});
        assert_eq!(Resume::from_metadata(&inside_top), None);
        assert_eq!(Resume::from_metadata(&serde_json::json!({})), None);
    }
}
