//! Python tracebacks in faulthandler's exact format for the running version
//! (`Python/traceback.c`: `_Py_DumpTracebackThreads`, `dump_frame`, `_Py_DumpASCII`).

use super::config::Target;
use super::out::Out;
use pylayout::text::{for_each_char, StrRead};
use pylayout::walk::{self, PyFrame, WalkEnd};
use pylayout::{lines, Memory};

/// faulthandler's limits: frames per thread, characters per string.
const MAX_FRAME_DEPTH: usize = 100;
const MAX_STRING_LENGTH: usize = 500;

/// `pthread_self()` of the calling thread: what `tstate->thread_id` holds.
pub fn current_pthread() -> u64 {
    // SAFETY: pthread_self only reads the thread pointer; it is async-signal-safe.
    unsafe { libc::pthread_self() as u64 }
}

/// The thread state of the calling thread in the target interpreter, if it has one.
pub fn current_tstate(t: &Target) -> Option<u64> {
    let me = current_pthread();
    let mut found = None;
    walk::for_each_thread(&t.mem, &t.layout, t.interp, &mut |ts| {
        if walk::thread_id(&t.mem, &t.layout, ts) == Some(me) {
            found = Some(ts);
            return false;
        }
        true
    });
    found
}

/// Whose threads a report shows, as faulthandler chooses them: the interpreter that the
/// calling thread's own thread state belongs to (a subinterpreter's while the thread runs
/// one, 3.12+), else the one current at `enable()`.
pub struct View {
    /// The target, its `interp` being the interpreter to report.
    pub target: Target,
    /// The calling thread's state in it.
    pub current: Option<u64>,
    /// The calling thread's state in the `enable()` interpreter when `target` is another
    /// one: the frames that called into the subinterpreter.
    pub outer: Option<u64>,
}

/// Heads the frames that called into a subinterpreter, after the rest of a fatal report.
pub const OUTER_HEADER: &str =
    "Current thread's frames in the calling interpreter (most recent call first):\n";

pub fn view(t: &Target) -> View {
    let in_main = current_tstate(t);
    let own = this_thread_state(t).and_then(|ts| {
        let interp = t.mem.ptr_at(ts, t.layout.tstate_interp?)?;
        (interp != t.interp && is_listed(t, interp, ts)).then_some((ts, interp))
    });
    match own {
        Some((ts, interp)) => View { target: Target { interp, ..*t }, current: Some(ts), outer: in_main },
        None => View { target: *t, current: in_main, outer: None },
    }
}

/// The calling thread's own thread state, for the dump (0: none or unknown).
pub fn own_thread_state(t: &Target) -> u64 {
    this_thread_state(t).unwrap_or(0)
}

/// `PyGILState_GetThisThreadState()`: a read of a thread-specific key, signal-safe.
fn this_thread_state(t: &Target) -> Option<u64> {
    if t.this_thread_state == 0 {
        return None;
    }
    // SAFETY: the address of the exported `PyThreadState *PyGILState_GetThisThreadState(void)`
    // found at prepare time; it only reads this thread's TSS slot (pthread_getspecific).
    let get: extern "C" fn() -> u64 = unsafe { core::mem::transmute(t.this_thread_state as usize) };
    Some(get()).filter(|&ts| ts != 0)
}

/// Whether `ts` is in `interp`'s thread list (a sanity check before trusting it).
fn is_listed(t: &Target, interp: u64, ts: u64) -> bool {
    let mut found = false;
    walk::for_each_thread(&t.mem, &t.layout, interp, &mut |other| {
        found = other == ts;
        !found
    });
    found
}

/// `_Py_DumpTracebackThreads(fd, interp, current)`. Returns false (and writes nothing)
/// when the interpreter's thread list is unreadable.
pub fn dump_all_threads(out: &mut Out, t: &Target, current: Option<u64>, max_threads: usize) -> bool {
    let mut n = 0usize;
    walk::for_each_thread(&t.mem, &t.layout, t.interp, &mut |ts| {
        if n != 0 {
            out.byte(b'\n');
        }
        if n >= max_threads {
            out.str("...\n");
            return false;
        }
        let is_current = Some(ts) == current;
        write_thread_header(out, t, ts, is_current);
        if is_current && t.layout.minor >= 10 {
            let interp = t.mem.ptr_at(ts, t.layout.tstate_interp.unwrap_or(0)).unwrap_or(t.interp);
            if walk::gc_collecting(&t.mem, &t.layout, interp) == Some(true) {
                out.str("  Garbage-collecting\n");
            }
        }
        dump_thread(out, t, ts, false);
        n += 1;
        true
    })
}

fn write_thread_header(out: &mut Out, t: &Target, ts: u64, is_current: bool) {
    out.str(if is_current { "Current thread 0x" } else { "Thread 0x" });
    out.hex(walk::thread_id(&t.mem, &t.layout, ts).unwrap_or(0), 16);
    // 3.14+ name the current thread after its OS thread name.
    if is_current && t.layout.minor >= 14 {
        let mut name = [0u8; 17];
        // SAFETY: PR_GET_NAME writes at most 16 bytes into the 17-byte buffer.
        let rc = unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
        let len = name.iter().position(|&b| b == 0).unwrap_or(16);
        if rc == 0 && len > 0 {
            out.str(" [");
            out.bytes(&name[..len]);
            out.byte(b']');
        }
    }
    out.str(" (most recent call first):\n");
}

/// `dump_traceback(fd, tstate, write_header)`.
pub fn dump_thread(out: &mut Out, t: &Target, ts: u64, write_header: bool) {
    if write_header {
        out.str("Stack (most recent call first):\n");
    }
    let mut depth = 0usize;
    let end = walk::for_each_frame(&t.mem, &t.layout, ts, t.types.frame_type, &mut |f| {
        if depth >= MAX_FRAME_DEPTH {
            out.str("  ...\n");
            return false;
        }
        // 3.14+ faulthandler silently skips frames whose executable is not (yet) a code
        // object, as seen while another thread pushes or pops a frame.
        if t.layout.minor >= 14 && !is_code(t, f.code) {
            return true;
        }
        write_frame(out, t, f);
        depth += 1;
        true
    });
    match end {
        WalkEnd::NoFrame => out.str("  <no Python frame>\n"),
        WalkEnd::Unreadable if depth == 0 => out.str("  <unreadable Python frames>\n"),
        WalkEnd::Unreadable => out.str("  <unreadable frame>\n"),
        WalkEnd::Complete => {}
    }
}

/// `dump_frame()`: `  File "name", line N in func`.
fn write_frame(out: &mut Out, t: &Target, f: PyFrame) {
    let l = &t.layout;
    let is_code =
        f.code != 0 && t.mem.ptr_at(f.code, l.object_ob_type.unwrap_or(8)) == Some(t.types.code_type);
    let field = |off: Option<u32>| {
        if is_code {
            t.mem.ptr_at(f.code, off.unwrap_or(0))
        } else {
            None
        }
    };
    out.str("  File ");
    match field(l.code_filename) {
        Some(s) if is_str(t, s) => {
            out.byte(b'"');
            write_ascii(out, t, s);
            out.byte(b'"');
        }
        _ => out.str("???"),
    }
    out.str(", line ");
    match is_code.then(|| lines::addr_to_line(&t.mem, l, f.code, f.addr)).flatten() {
        Some(line) if line >= 0 => out.dec(line as u64),
        _ => out.str("???"),
    }
    out.str(" in ");
    match field(l.code_name) {
        Some(s) if is_str(t, s) => write_ascii(out, t, s),
        _ => out.str("???"),
    }
    out.byte(b'\n');
}

fn is_code(t: &Target, obj: u64) -> bool {
    obj != 0 && t.mem.ptr_at(obj, t.layout.object_ob_type.unwrap_or(8)) == Some(t.types.code_type)
}

pub fn is_str(t: &Target, obj: u64) -> bool {
    obj != 0 && t.mem.ptr_at(obj, t.layout.object_ob_type.unwrap_or(8)) == Some(t.types.str_type)
}

/// `_Py_DumpASCII()`: printable ASCII as is, everything else escaped, cut at 500 chars.
pub fn write_ascii(out: &mut Out, t: &Target, s: u64) {
    let mut sink = |ch: u32| {
        if (0x20..=0x7e).contains(&ch) {
            out.byte(ch as u8);
        } else if ch <= 0xff {
            out.str("\\x");
            out.hex(ch as u64, 2);
        } else if ch <= 0xffff {
            out.str("\\u");
            out.hex(ch as u64, 4);
        } else {
            out.str("\\U");
            out.hex(ch as u64, 8);
        }
    };
    let r = for_each_char(&t.mem, &t.layout, t.types.str_type, s, MAX_STRING_LENGTH, &mut sink);
    if r == (StrRead::Done { truncated: true }) {
        out.str("...");
    }
}
