//! The C stack section of a report, in the line format of faulthandler 3.14's
//! `dump_c_stack()` (`  Binary file "path", at symbol+0xoff [0xaddr]`), extended with the
//! module-relative offset that symbolizers need: `(name.so+0xoff)`. C++ and Rust symbols
//! are demangled (c++filt's and rustc-demangle's forms); a name too long to show whole is
//! cut and marked `...`, as faulthandler marks long strings.
//!
//! The stack is walked first, then all names are resolved in one pass per module
//! (`symbols`), then everything is printed.

use super::config::ProcessFacts;
use super::demangle;
use super::elf::Module;
use super::memory::SelfMemory;
use super::out::Out;
use super::symbols::{self, Name};
use super::unwind::{End, Frame, Regs, Stop, Trust, Unwinder};
use pylayout::Memory;

/// Innermost frames always printed; a longer stack (deep recursion) prints its first
/// `HEAD` frames, a line saying how many were left out, then its last `TAIL` frames.
const HEAD: usize = 200;
const TAIL: usize = 56;
const KEPT: usize = HEAD + TAIL;
/// Frames walked at most (an 8 MiB stack of the smallest frames).
const MAX_FRAMES: usize = 1 << 20;
/// Bytes for all printed function names (as found in the symbol tables).
const NAME_ARENA: usize = 64 * 1024;
/// Most bytes of a demangled name shown.
const MAX_SHOWN_NAME: usize = 1024;

pub const HEADER: &str = "Current thread's C stack trace (most recent call first):\n";

/// A stack walk: its frames, innermost first, then why it ended.
pub trait Walk: Iterator<Item = Frame> {
    fn end(&self) -> End;
}

impl Walk for Unwinder<'_> {
    fn end(&self) -> End {
        self.end
    }
}

/// Unwinds from `regs` and writes every frame (header included).
pub fn dump(out: &mut Out, mem: &SelfMemory, facts: &ProcessFacts, regs: Regs) {
    out.str(HEADER);
    write_walk(out, mem, &mut Unwinder::new(mem, facts, regs));
}

/// Writes the frames of `walk` (no header), and how it ended.
pub fn write_walk<W: Walk>(out: &mut Out, mem: &SelfMemory, walk: &mut W) {
    // 1. Walk, keeping the first HEAD frames and a ring of the last TAIL (in frames[HEAD..]).
    let mut frames = [None::<Frame>; KEPT];
    let mut total = 0usize;
    for frame in walk.by_ref().take(MAX_FRAMES) {
        let slot = if total < HEAD { total } else { HEAD + (total - HEAD) % TAIL };
        frames[slot] = Some(frame);
        total += 1;
    }
    let kept_tail = total.saturating_sub(HEAD).min(TAIL);
    let omitted = total.saturating_sub(HEAD + kept_tail);
    // Put the ring in order: oldest kept tail frame first.
    if total > HEAD + TAIL {
        frames[HEAD..].rotate_left((total - HEAD) % TAIL);
    }
    let n = total.min(HEAD) + kept_tail;

    // 2. Names, one symbol-table pass per module.
    let mut names = [Name::default(); KEPT];
    let mut arena = [0u8; NAME_ARENA];
    symbols::resolve(mem, &frames[..n], &mut names[..n], &mut arena);

    // 3. Print.
    for i in 0..n {
        if i == HEAD && omitted > 0 {
            out.str("  <");
            out.dec(omitted as u64);
            out.str(" frames omitted>\n");
        }
        if let Some(f) = &frames[i] {
            write_frame(out, mem, f, &names[i], &arena);
        }
    }
    write_end(out, walk.end());
}

/// Says whether the walk reached the thread's start or had to stop early, and why.
fn write_end(out: &mut Out, end: End) {
    let (why, addr) = match end {
        End::ThreadStart => return out.str("  <end of stack>\n"),
        End::NotYet => return out.str("  <unwinding stopped: frame limit reached>\n"),
        End::Stuck(Stop::NoUnwindInfo) => {
            return out.str(
                "  <unwinding stopped: no call frame information for the last frame, and no frame pointer into this thread's stack>\n",
            )
        }
        End::Stuck(Stop::NotCode(addr)) => ("the caller's address found for the last frame is not executable code", addr),
        End::Stuck(Stop::OffStack(addr)) => {
            ("the caller's stack pointer found for the last frame is not further up this thread's stack", addr)
        }
    };
    out.str("  <unwinding stopped: ");
    out.str(why);
    out.str(" (0x");
    out.hex(addr, 1);
    out.str(")>\n");
}

/// The address to name a frame by: the call instruction, not the return address after it.
pub fn lookup_pc(f: &Frame) -> u64 {
    if f.trust == Trust::Context {
        f.pc
    } else {
        f.pc - 1
    }
}

fn write_frame(out: &mut Out, mem: &SelfMemory, f: &Frame, name: &Name, arena: &[u8]) {
    let Some(m) = f.module else {
        out.str("  <unknown module> [0x");
        out.hex(f.pc, 1);
        out.str("]\n");
        return;
    };
    out.str("  Binary file \"");
    write_cstr(out, mem, m.name, 4096);
    out.byte(b'"');
    if let (true, Some(text)) = (name.found, arena.get(name.start..name.start + name.len)) {
        out.str(", at ");
        write_name(out, text, name.complete);
        out.str("+0x");
        out.hex(name.offset + (f.pc - lookup_pc(f)), 1);
    }
    out.str(" [0x");
    out.hex(f.pc, 1);
    out.str("] (");
    write_basename(out, mem, &m);
    out.str("+0x");
    out.hex(f.pc.wrapping_sub(m.bias), 1);
    out.byte(b')');
    match f.trust {
        Trust::FramePointer => out.str(" [frame pointer]"),
        Trust::StackTop => out.str(" [stack top]"),
        Trust::Context | Trust::Cfi => {}
    }
    out.byte(b'\n');
}

/// A symbol name, demangled if it is a C++ or Rust one (and whole: a cut name could
/// demangle to something else), else as it is.
fn write_name(out: &mut Out, name: &[u8], complete: bool) {
    let mut shown = [0u8; MAX_SHOWN_NAME];
    let demangled = if complete { demangle::demangle(name, &mut shown) } else { None };
    match demangled {
        Some(d) => {
            out.bytes(shown.get(..d.len).unwrap_or(&[]));
            if d.truncated {
                out.str("...");
            }
        }
        None => out.bytes(name),
    }
}

/// Calls `f` with the bytes of a NUL-terminated string in memory (at most 4096), in
/// chunks that never cross a page boundary (the next page may be unmapped).
fn for_each_cstr_chunk(mem: &SelfMemory, addr: u64, max: usize, f: &mut dyn FnMut(u64, &[u8])) {
    let mut buf = [0u8; 64];
    let mut done = 0usize;
    while done < max.min(4096) {
        let at = addr + done as u64;
        let n = buf.len().min(max - done).min((4096 - at % 4096) as usize);
        if !mem.read(at, &mut buf[..n]) {
            return;
        }
        if let Some(nul) = buf[..n].iter().position(|&b| b == 0) {
            f(done as u64, &buf[..nul]);
            return;
        }
        f(done as u64, &buf[..n]);
        done += n;
    }
}

fn write_cstr(out: &mut Out, mem: &SelfMemory, addr: u64, max: usize) {
    for_each_cstr_chunk(mem, addr, max, &mut |_, chunk| out.bytes(chunk));
}

fn write_basename(out: &mut Out, mem: &SelfMemory, m: &Module) {
    let (mut start, mut len) = (0u64, 0u64);
    for_each_cstr_chunk(mem, m.name, 4096, &mut |at, chunk| {
        if let Some(slash) = chunk.iter().rposition(|&b| b == b'/') {
            start = at + slash as u64 + 1;
        }
        len = at + chunk.len() as u64;
    });
    if len > start {
        write_cstr(out, mem, m.name + start, (len - start) as usize);
    } else {
        out.str("?");
    }
}
