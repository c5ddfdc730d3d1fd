//! The C stack section of a report, in the line format of faulthandler 3.14's
//! `dump_c_stack()` (`  Binary file "path", at symbol+0xoff [0xaddr]`), extended with the
//! module-relative offset that symbolizers need: `(name.so+0xoff)`.

use super::config::ProcessFacts;
use super::elf::{self, Module};
use super::memory::SelfMemory;
use super::out::Out;
use super::symfile;
use super::unwind::{End, Frame, Regs, Trust, Unwinder};
use pylayout::Memory;

/// Innermost frames always printed; a longer stack (deep recursion) prints its first
/// `HEAD` frames, a line saying how many were left out, then its last `TAIL` frames.
const HEAD: usize = 200;
const TAIL: usize = 56;
/// Frames walked at most (an 8 MiB stack of the smallest frames).
const MAX_FRAMES: usize = 1 << 20;

pub const HEADER: &str = "Current thread's C stack trace (most recent call first):\n";

/// Unwinds from `regs` and writes every frame (header included).
pub fn dump(out: &mut Out, mem: &SelfMemory, facts: &ProcessFacts, regs: Regs) {
    out.str(HEADER);
    let mut tail = [None::<Frame>; TAIL];
    let mut total = 0usize;
    let mut frames = Unwinder::new(mem, facts, regs);
    for frame in frames.by_ref().take(MAX_FRAMES) {
        if total < HEAD {
            write_frame(out, mem, &frame);
        } else {
            tail[(total - HEAD) % TAIL] = Some(frame);
        }
        total += 1;
    }
    if total > HEAD {
        let kept = (total - HEAD).min(TAIL);
        let omitted = total - HEAD - kept;
        if omitted > 0 {
            out.str("  <");
            out.dec(omitted as u64);
            out.str(" frames omitted>\n");
        }
        for i in 0..kept {
            let idx = (total - HEAD - kept + i) % TAIL;
            if let Some(Some(frame)) = tail.get(idx) {
                write_frame(out, mem, frame);
            }
        }
    }
    // Say whether the walk reached the thread's start or had to stop early.
    out.str(match frames.end {
        End::ThreadStart => "  <end of stack>\n",
        End::Stuck => "  <unwinding stopped: no call frame information for the last frame>\n",
        End::NotYet => "  <unwinding stopped: frame limit reached>\n",
    });
}

fn write_frame(out: &mut Out, mem: &SelfMemory, f: &Frame) {
    let Some(m) = f.module else {
        out.str("  <unknown module> [0x");
        out.hex(f.pc, 1);
        out.str("]\n");
        return;
    };
    out.str("  Binary file \"");
    write_cstr(out, mem, m.name, usize::MAX);
    out.byte(b'"');
    // Name the function containing the call, not the instruction after it.
    let lookup = if f.trust == Trust::Context { f.pc } else { f.pc - 1 };
    let mut name = [0u8; 256];
    let path = if m.name != 0 && mem.read_u8(m.name).is_some_and(|b| b != 0) { m.name } else { 0 };
    let from_file = if path != 0 { symfile::nearest_symtab(mem, &m, path, lookup, &mut name) } else { None };
    if let Some((len, off)) = from_file {
        out.str(", at ");
        out.bytes(&name[..len]);
        out.str("+0x");
        out.hex(off + (f.pc - lookup), 1);
    } else if let Some((name, off)) = elf::nearest_dynsym(mem, &m, lookup) {
        out.str(", at ");
        write_cstr(out, mem, name, 1024);
        out.str("+0x");
        out.hex(off + (f.pc - lookup), 1);
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

/// Writes a NUL-terminated string from memory, at most `max` bytes.
fn write_cstr(out: &mut Out, mem: &SelfMemory, addr: u64, max: usize) {
    let mut buf = [0u8; 64];
    let mut done = 0usize;
    while done < max.min(4096) {
        let n = buf.len().min(max - done);
        // Read byte-wise at the end of a page to avoid failing on the next one.
        let to_page_end = (4096 - ((addr + done as u64) % 4096)) as usize;
        let n = n.min(to_page_end);
        if !mem.read(addr + done as u64, &mut buf[..n]) {
            return;
        }
        if let Some(nul) = buf[..n].iter().position(|&b| b == 0) {
            out.bytes(&buf[..nul]);
            return;
        }
        out.bytes(&buf[..n]);
        done += n;
    }
}

fn write_basename(out: &mut Out, mem: &SelfMemory, m: &Module) {
    // Find the last '/' of the path, reading it once in chunks.
    let mut buf = [0u8; 64];
    let (mut i, mut last_slash) = (0u64, 0u64);
    let mut len = 0u64;
    'outer: while i < 4096 {
        let to_page_end = 4096 - ((m.name + i) % 4096);
        let n = (buf.len() as u64).min(to_page_end) as usize;
        if !mem.read(m.name + i, &mut buf[..n]) {
            break;
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            match b {
                0 => {
                    len = i + k as u64;
                    break 'outer;
                }
                b'/' => last_slash = i + k as u64 + 1,
                _ => {}
            }
        }
        i += n as u64;
    }
    if len > last_slash {
        write_cstr(out, mem, m.name + last_slash, (len - last_slash) as usize);
    } else {
        out.str("?");
    }
}
