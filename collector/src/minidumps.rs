//! Minidump settings prepared at enable time, and dumps taken outside signal handlers
//! (`write_minidump()`, timeouts), through the handlers' own helper code.

use crate::forklock::ForkLock;
use crate::signal_safe::config::{self, Target};
use crate::signal_safe::dump::{self, Event, HelperConfig, HELPER};
use crate::signal_safe::handler;
use crate::signal_safe::memory;
use crate::signal_safe::out::Out;
use handoff::Kind;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// Annotation bytes kept (`key\0value\0` pairs).
pub const ANNOTATIONS_SIZE: usize = 16 * 1024;
static ANNOTATIONS: ForkLock = ForkLock::new();
struct AnnotationBuf(std::cell::UnsafeCell<[u8; ANNOTATIONS_SIZE]>);
// SAFETY: written under the ANNOTATIONS lock; the helper reads it from another process.
unsafe impl Sync for AnnotationBuf {}
static ANNOTATION_BYTES: AnnotationBuf = AnnotationBuf(std::cell::UnsafeCell::new([0; ANNOTATIONS_SIZE]));

pub struct Settings<'a> {
    pub enabled: bool,
    pub dump_dir: &'a str,
    pub helper: &'a str,
    pub timeout: Duration,
    pub prog_name: &'a str,
    pub py_version: [u32; 3],
    pub runtime: u64,
    pub source_context: u32,
    pub environ_mode: handoff::EnvironMode,
    /// Extra name patterns to redact (case-insensitive substrings).
    pub environ_redact: &'a [String],
    pub max_dump_size: u64,
    pub max_dir_size: u64,
    /// Whether dumps keep the frames' local variables (`enable(dump_locals=True)`).
    pub dump_locals: bool,
    /// The builtin objects' addresses, for the helper's object decoder.
    pub object_types: [u64; handoff::OBJECT_TYPES],
    /// `hash("threading")` in this process, if it could be computed.
    pub threading_hash: Option<i64>,
}

/// `pattern\0`… in upper case, as the helper matches names; an error if they do not fit.
fn pack_patterns(patterns: &[String], field: &mut [u8]) -> Result<(), String> {
    let mut packed = Vec::new();
    for p in patterns {
        if p.is_empty() || p.contains('\0') {
            return Err(format!("redact_environ patterns must be non-empty and without NUL: {p:?}"));
        }
        packed.extend_from_slice(p.to_uppercase().as_bytes());
        packed.push(0);
    }
    // One byte more for the empty string that ends the list.
    if packed.len() >= field.len() {
        return Err(format!(
            "redact_environ patterns take {} bytes, more than the {} kept: use fewer or shorter ones",
            packed.len(),
            field.len() - 1
        ));
    }
    field.fill(0);
    field[..packed.len()].copy_from_slice(&packed);
    Ok(())
}

/// Whether Yama restricts ptrace to descendants (ptrace_scope 1). Modes 0 (classic) and
/// no Yama need nothing; modes 2 and 3 cannot be helped from inside the process.
fn yama_restricted() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|v| v.trim() == "1")
}

/// The longest prefix of `s` that fits `max` bytes without cutting a character.
fn prefix_fitting(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Fills the enable-time half of the request and publishes how to start the helper.
pub fn configure(target: &Target, s: &Settings) -> Result<(), String> {
    if !s.enabled {
        config::store(&HELPER, None);
        return Ok(());
    }
    if !Path::new(s.helper).is_file() {
        return Err(format!("the dump helper {} is missing: reinstall crashcatch", s.helper));
    }
    let dir_max = handoff::PATH_SIZE - 1;
    if s.dump_dir.len() > dir_max {
        return Err(format!("dump_dir is {} bytes long, more than the {dir_max} allowed", s.dump_dir.len()));
    }
    let mut patterns = [0u8; handoff::REDACT_SIZE];
    pack_patterns(s.environ_redact, &mut patterns)?;
    let configured = handler::with_report_lock(LIVE_DUMP_WAIT_MS, || {
        // SAFETY: enable-time writes under the report lock and the GIL; handlers read the
        // record only when a dump happens, holding the same lock.
        let req = unsafe { &mut *dump::request_ptr() };
        handoff::set_field(&mut req.dump_dir, s.dump_dir.as_bytes());
        let prog_max = req.prog_name.len() - 1;
        handoff::set_field(&mut req.prog_name, prefix_fitting(s.prog_name, prog_max).as_bytes());
        req.py_version = s.py_version;
        req.interp = target.interp;
        req.runtime = s.runtime;
        req.types = target.types;
        req.report_addr = dump::capture_addr();
        req.annotations_addr = ANNOTATION_BYTES.0.get() as u64;
        req.source_context = s.source_context;
        req.environ_mode = s.environ_mode as u32;
        req.environ_redact = patterns;
        req.max_dump_size = s.max_dump_size;
        req.max_dir_size = s.max_dir_size;
        req.object_types = s.object_types;
        req.dump_locals = u32::from(s.dump_locals);
        req.threading_hash = s.threading_hash.unwrap_or(0);
        req.threading_hash_known = u32::from(s.threading_hash.is_some());
        req.magic = handoff::MAGIC;
    });
    configured.ok_or("a crash report was being written; try again")?;
    let path = CString::new(s.helper).map_err(|e| e.to_string())?;
    let arg = CString::new(format!("{:x}", dump::request_ptr() as u64)).map_err(|e| e.to_string())?;
    let deadline_ms = s.timeout.as_millis().min(u32::MAX as u128) as u32;
    // The helper ends itself at the same deadline: while it holds our threads in a ptrace
    // stop, our own deadline cannot fire.
    let deadline = CString::new(deadline_ms.to_string()).map_err(|e| e.to_string())?;
    let (path, arg) = (Box::leak(path.into_boxed_c_str()), Box::leak(arg.into_boxed_c_str()));
    let deadline = Box::leak(deadline.into_boxed_c_str());
    let helper = HelperConfig {
        path: path.as_ptr(),
        argv: [path.as_ptr(), arg.as_ptr(), deadline.as_ptr(), std::ptr::null()],
        deadline_ms,
        yama_restricted: yama_restricted(),
    };
    config::store(&HELPER, Some(config::publish(helper)));
    Ok(())
}

/// Replaces the annotations with `pairs` (`key\0value\0`…, already bounded by the caller).
pub fn set_annotations(packed: &[u8]) -> Result<(), String> {
    if packed.len() > ANNOTATIONS_SIZE {
        return Err(format!(
            "annotations take {} bytes, more than the {ANNOTATIONS_SIZE} kept",
            packed.len()
        ));
    }
    let _guard = ANNOTATIONS.lock();
    // SAFETY: the only writer, under the lock.
    unsafe { (&mut *ANNOTATION_BYTES.0.get())[..packed.len()].copy_from_slice(packed) };
    // SAFETY: as in configure().
    unsafe { (*dump::request_ptr()).annotations_len = packed.len() as u64 };
    Ok(())
}

/// How long a live dump waits for a crash report in progress elsewhere.
const LIVE_DUMP_WAIT_MS: u32 = 30_000;

/// Writes a minidump of this live process and returns the helper's result line.
/// `exact_path`: the file to create, or None for one in the dump directory. The helper is
/// started and waited for by the same code the signal handlers use.
/// The report lock (not a mutex) serialises these dumps: a `fork()` while one runs leaves
/// the child a lock whose owner is not its thread, which it takes over.
pub fn dump_now(kind: Kind, exact_path: Option<&str>) -> Result<String, String> {
    handler::with_report_lock(LIVE_DUMP_WAIT_MS, || dump_locked(kind, exact_path))
        .unwrap_or_else(|| Err("a crash report was being written; try again".into()))
}

/// [`dump_now`] for a caller that already holds the report lock.
pub fn dump_locked(kind: Kind, exact_path: Option<&str>) -> Result<String, String> {
    config::load(&HELPER).ok_or("minidumps are disabled (enable(minidump=False))")?;
    let path = exact_path.unwrap_or("");
    if path.len() >= handoff::PATH_SIZE {
        return Err(format!(
            "the path is {} bytes long, more than the {} allowed",
            path.len(),
            handoff::PATH_SIZE - 1
        ));
    }
    // The result line goes through a pipe (it is far smaller than the pipe's buffer).
    let (mut reader, writer) = std::io::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    memory::refresh_pid();
    dump::fill_request(
        &Event { kind, signo: 0, info: None, ucontext: None, tstate: 0, target: None },
        path.as_bytes(),
    );
    let mut out = Out::new(writer.as_raw_fd());
    let written = dump::run_helper(&mut out);
    out.flush();
    drop(out);
    drop(writer);
    let mut line = String::new();
    let _ = reader.read_to_string(&mut line);
    if written {
        Ok(line)
    } else {
        Err(line.trim_end().trim_start_matches("crashcatch: no minidump: ").to_string())
    }
}
