//! The handoff between a process that wants a minidump (it crashed, got a registered signal
//! or asked for one) and the `crashcatch-dump` helper it starts.
//!
//! The process keeps one [`Request`] in static memory, filled at `enable()` time (paths,
//! interpreter facts) and completed at dump time (signal, registers). It starts the helper
//! with the request's address; the helper reads the request and everything else it needs
//! straight from the process's memory (`process_vm_readv`) while it is stopped, and writes
//! one line of result text to its stdout, a pipe to the requester.
//!
//! Plain `#[repr(C)]` data with fixed-size byte arrays: the signal handler fills it without
//! allocating, and both sides agree on the layout because they are built from this crate.

/// "ccdump" + format version (2: environment mode, size caps, redaction patterns; 3: the
/// resume point of a capped stack, the requesting thread's own thread state; 4: local
/// variables on request, the builtin objects' addresses).
pub const MAGIC: u64 = 0x0004_7075_6d64_6363;

/// Why the dump is taken.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A fatal signal (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL); the process then dies.
    Fatal = 1,
    /// A signal passed to `register()`; the process goes on.
    Signal = 2,
    /// A `dump_traceback_later()` timeout; the process goes on.
    Timeout = 3,
    /// `write_minidump()`; the process goes on.
    Requested = 4,
    /// A `dump_traceback_later(exit=True)` timeout; the process exits after the dump.
    TimeoutExit = 5,
    /// `crashcatch dump PID`: taken from outside, no record from the process; it goes on.
    External = 6,
}

impl Kind {
    pub fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Fatal,
            2 => Kind::Signal,
            3 => Kind::Timeout,
            4 => Kind::Requested,
            5 => Kind::TimeoutExit,
            6 => Kind::External,
            _ => return None,
        })
    }
}

/// What a dump keeps of the process's environment (minidump-writer copies all of it).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvironMode {
    /// The values of variables whose names look like secrets are replaced (the default,
    /// and what a zeroed record means).
    Redact = 0,
    /// Everything, as the process had it.
    Keep = 1,
    /// No environment stream at all.
    Drop = 2,
}

impl EnvironMode {
    pub fn from_u32(v: u32) -> EnvironMode {
        match v {
            1 => EnvironMode::Keep,
            2 => EnvironMode::Drop,
            // Unknown values fall back to the safe default.
            _ => EnvironMode::Redact,
        }
    }
}

/// Bytes reserved for the raw `siginfo_t` and `ucontext_t` and the FXSAVE area.
pub const SIGINFO_SIZE: usize = 128;
pub const UCONTEXT_SIZE: usize = 1024;
pub const FPSTATE_SIZE: usize = 512;
pub const PATH_SIZE: usize = 4096;
/// Bytes reserved for the user's extra redaction patterns (`pattern\0`…).
pub const REDACT_SIZE: usize = 1024;
/// Builtin objects whose addresses the request carries: one per
/// `pylayout::objects::ObjectTypes::SYMBOLS` entry, in that order.
pub const OBJECT_TYPES: usize = pylayout::objects::ObjectTypes::SYMBOLS.len();

/// The record. Fields marked (enable) are written once when crashcatch is enabled;
/// (dump) fields are written by the requesting thread right before starting the helper.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Request {
    /// (enable) [`MAGIC`], written last.
    pub magic: u64,
    /// (dump) [`Kind`].
    pub kind: u32,
    /// (dump) Signal number (0 for a requested dump).
    pub signo: i32,
    /// (dump) `si_code` of the signal.
    pub si_code: i32,
    /// (dump) OS thread id of the thread that crashed or asked.
    pub tid: i32,
    /// (dump) Its `pthread_self()`, which is what Python ≤3.10 thread states record.
    pub pthread: u64,
    /// (dump) Its own thread state (`PyGILState_GetThisThreadState()`), a subinterpreter's
    /// while it runs one; 0 when unknown.
    pub tstate: u64,
    /// (dump) Faulting address (`si_addr`) for SIGSEGV/SIGBUS/SIGFPE/SIGILL.
    pub fault_addr: u64,
    /// (dump) Wall-clock time of the event, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// (dump) Whether `siginfo`/`ucontext`/`fpstate` hold the signal context.
    pub has_context: u32,
    pub _pad0: u32,
    pub siginfo: [u8; SIGINFO_SIZE],
    pub ucontext: [u8; UCONTEXT_SIZE],
    pub fpstate: [u8; FPSTATE_SIZE],
    /// (enable) Directory for dumps, NUL-terminated (the helper creates it 0700).
    pub dump_dir: [u8; PATH_SIZE],
    /// (dump) For `write_minidump(path)`: the exact file to create; empty otherwise.
    pub dump_path: [u8; PATH_SIZE],
    /// (enable) Program name used in file names, NUL-terminated.
    pub prog_name: [u8; 64],
    /// (enable) CPython version: major, minor, micro.
    pub py_version: [u32; 3],
    /// (enable) The `PyInterpreterState*` crashcatch was enabled in, and `&_PyRuntime`.
    pub interp: u64,
    pub runtime: u64,
    /// (enable) Builtin types, to recognise objects.
    pub types: pylayout::TypeAddrs,
    /// (enable) Where the text report of this dump is kept (a buffer in the process), and
    /// (dump) how many bytes of it are valid.
    pub report_addr: u64,
    pub report_len: u64,
    /// (enable) Annotations: `count` entries of `key\0value\0` packed in a buffer.
    pub annotations_addr: u64,
    pub annotations_len: u64,
    /// (enable) Lines of source context to keep around each Python frame of the
    /// requesting thread.
    pub source_context: u32,
    /// (enable) [`EnvironMode`].
    pub environ_mode: u32,
    /// (enable) Largest dump the helper may write, in bytes; 0: no limit.
    pub max_dump_size: u64,
    /// (enable) Live dumps (every [`Kind`] but `Fatal`) are refused while the `*.dmp` files
    /// of the dump directory take more than this many bytes; 0: no limit.
    pub max_dir_size: u64,
    /// (enable) Extra name patterns whose values are redacted: NUL-terminated,
    /// upper-case substrings one after another, an empty one ending the list.
    pub environ_redact: [u8; REDACT_SIZE],
    /// (dump) Where an unwind of the requesting thread's stack can go on when the helper
    /// keeps only its two ends (a stack overflow): the registers of a frame near the
    /// thread's start, found by the requester's own unwind, and how many frames lie above
    /// it (innermost is 0). `resume_rsp` 0: none.
    pub resume_rip: u64,
    pub resume_rsp: u64,
    pub resume_rbp: u64,
    pub resume_depth: u64,
    /// (enable) The builtin objects the object decoder recognises (`None`, `bool`, `int`
    /// …), in `pylayout::objects::ObjectTypes::SYMBOLS` order; 0: unknown.
    pub object_types: [u64; OBJECT_TYPES],
    /// (enable) 1: keep the memory that the local variables of every Python frame need
    /// (`enable(dump_locals=True)`); 0 (the default): none of it, as locals can hold secrets.
    pub dump_locals: u32,
    pub _pad1: u32,
    /// (enable) `hash("threading")` in the process (str hashes are salted per process),
    /// with `threading_hash_known` 1: the helper then finds `sys.modules["threading"]` the
    /// way the dict itself does, instead of reading every module's name (0.3 ms of a
    /// 1-thread crash's dump).
    pub threading_hash: i64,
    pub threading_hash_known: u32,
    pub _pad2: u32,
}

impl Request {
    /// `hash("threading")` in the requesting process, if it gave it.
    pub fn threading_hash(&self) -> Option<i64> {
        (self.threading_hash_known == 1).then_some(self.threading_hash)
    }

    pub const fn zeroed() -> Request {
        Request {
            magic: 0,
            kind: 0,
            signo: 0,
            si_code: 0,
            tid: 0,
            pthread: 0,
            tstate: 0,
            fault_addr: 0,
            time_ns: 0,
            has_context: 0,
            _pad0: 0,
            siginfo: [0; SIGINFO_SIZE],
            ucontext: [0; UCONTEXT_SIZE],
            fpstate: [0; FPSTATE_SIZE],
            dump_dir: [0; PATH_SIZE],
            dump_path: [0; PATH_SIZE],
            prog_name: [0; 64],
            py_version: [0; 3],
            interp: 0,
            runtime: 0,
            types: pylayout::TypeAddrs {
                str_type: 0,
                code_type: 0,
                module_type: 0,
                dict_type: 0,
                frozenset_type: 0,
                frame_type: 0,
            },
            report_addr: 0,
            report_len: 0,
            annotations_addr: 0,
            annotations_len: 0,
            source_context: 0,
            environ_mode: 0,
            max_dump_size: 0,
            max_dir_size: 0,
            environ_redact: [0; REDACT_SIZE],
            resume_rip: 0,
            resume_rsp: 0,
            resume_rbp: 0,
            resume_depth: 0,
            object_types: [0; OBJECT_TYPES],
            dump_locals: 0,
            _pad1: 0,
            threading_hash: 0,
            threading_hash_known: 0,
            _pad2: 0,
        }
    }

    /// Decodes a request from the bytes read out of the process; `None` if the size or
    /// magic is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<Request> {
        if bytes.len() != core::mem::size_of::<Request>() {
            return None;
        }
        let mut r = Request::zeroed();
        // SAFETY: Request is plain old data (integers and byte arrays, no padding holes
        // that matter, every bit pattern valid) and the sizes are equal.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), (&mut r as *mut Request).cast::<u8>(), bytes.len())
        };
        (r.magic == MAGIC).then_some(r)
    }
}

/// The NUL-separated strings of a field like [`Request::environ_redact`], up to the first
/// empty one.
pub fn field_list(bytes: &[u8]) -> impl Iterator<Item = &str> {
    bytes.split(|&b| b == 0).take_while(|s| !s.is_empty()).filter_map(|s| core::str::from_utf8(s).ok())
}

/// The text of a NUL-terminated byte field.
pub fn field_str(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("")
}

/// Copies `s` into a NUL-terminated byte field, truncating; returns false if it did not fit.
pub fn set_field(field: &mut [u8], s: &[u8]) -> bool {
    let n = s.len().min(field.len().saturating_sub(1));
    field[..n].copy_from_slice(&s[..n]);
    field[n..].iter_mut().for_each(|b| *b = 0);
    n == s.len()
}

/// `YYYYmmddTHHMMSS.mmmZ` from Unix nanoseconds: the time in a dump's file name (the
/// helper names them; `crashcatch list` shows it) (civil-from-days, no time crate needed).
pub fn utc_stamp(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        (ns / 1_000_000) % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000.000Z");
        // 2026-11-26 19:35:57.123 UTC
        assert_eq!(utc_stamp(1_795_721_757_123_000_000), "20261126T193557.123Z");
    }

    #[test]
    fn round_trip_through_bytes() {
        let mut r = Request::zeroed();
        r.magic = MAGIC;
        r.kind = Kind::Fatal as u32;
        r.fault_addr = 0xdead;
        assert!(set_field(&mut r.prog_name, b"python3"));
        let bytes = unsafe_bytes(&r);
        let back = Request::from_bytes(bytes).expect("decodes");
        assert_eq!(back.fault_addr, 0xdead);
        assert_eq!(field_str(&back.prog_name), "python3");
        assert_eq!(Kind::from_u32(back.kind), Some(Kind::Fatal));
    }

    #[test]
    fn wrong_magic_or_size_is_refused() {
        let r = Request::zeroed();
        assert!(Request::from_bytes(unsafe_bytes(&r)).is_none());
        assert!(Request::from_bytes(&[0u8; 16]).is_none());
    }

    #[test]
    fn set_field_truncates_and_terminates() {
        let mut f = [0xffu8; 4];
        assert!(!set_field(&mut f, b"abcdef"));
        assert_eq!(&f, b"abc\0");
    }

    #[test]
    fn lists_end_at_the_first_empty_string() {
        let list: Vec<&str> = field_list(b"KEY\0MYCORP\0\0STALE\0").collect();
        assert_eq!(list, ["KEY", "MYCORP"]);
        assert_eq!(field_list(&[0u8; 8]).count(), 0);
    }

    #[test]
    fn every_field_sits_on_its_natural_alignment() {
        // Both sides read the record byte for byte: no hidden padding may appear.
        assert_eq!(core::mem::size_of::<Request>() % 8, 0);
        assert_eq!(core::mem::offset_of!(Request, max_dump_size) % 8, 0);
        assert_eq!(core::mem::offset_of!(Request, object_types) % 8, 0);
        assert_eq!(
            core::mem::offset_of!(Request, environ_mode),
            core::mem::offset_of!(Request, source_context) + 4
        );
    }

    fn unsafe_bytes(r: &Request) -> &[u8] {
        // SAFETY: viewing plain old data as bytes for the test.
        unsafe {
            core::slice::from_raw_parts((r as *const Request).cast::<u8>(), core::mem::size_of::<Request>())
        }
    }
}
