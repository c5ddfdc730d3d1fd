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

/// Python thread names by OS thread id, for the dump's metadata.
const THREAD_NAMES: usize = 1024;
struct NameTable(std::cell::UnsafeCell<[handoff::ThreadName; THREAD_NAMES]>);
// SAFETY: written under NAMES_LOCK; the helper reads it from another process.
unsafe impl Sync for NameTable {}
static NAMES: NameTable =
    NameTable(std::cell::UnsafeCell::new([handoff::ThreadName { tid: 0, name: [0; 60] }; THREAD_NAMES]));
static NAMES_LOCK: ForkLock = ForkLock::new();

/// Where a thread's name goes: its home entry `tid % THREAD_NAMES`, or after it when that
/// is taken and a later one is free. A thread start touches a few entries (scanning the
/// whole 64 KiB table was most of the cost of a thread start).
const NAME_PROBES: usize = 16;

/// Records (or updates) the Python name of OS thread `tid`.
pub fn note_thread_name(tid: i32, name: &str) {
    let _lock = NAMES_LOCK.lock();
    // SAFETY: the only writer, under the lock.
    let table = unsafe { &mut *NAMES.0.get() };
    let home = tid.unsigned_abs() as usize % THREAD_NAMES;
    let window = (home..home + NAME_PROBES).map(|i| i % THREAD_NAMES);
    // Thread ids are handed out in sequence: when every entry is taken, the home entry
    // holds the thread `THREAD_NAMES` (or a multiple) ids older, most likely gone.
    let slot = window
        .clone()
        .find(|&i| table[i].tid == tid)
        .or_else(|| window.clone().find(|&i| table[i].tid == 0))
        .unwrap_or(home);
    table[slot].tid = 0;
    handoff::set_field(&mut table[slot].name, name.as_bytes());
    table[slot].tid = tid;
}

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
        req.thread_names_addr = NAMES.0.get() as u64;
        req.thread_names_count = THREAD_NAMES as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entries_of(tid: i32) -> Vec<Vec<u8>> {
        let _lock = NAMES_LOCK.lock();
        // SAFETY: read under the writers' lock.
        let table = unsafe { &*NAMES.0.get() };
        table
            .iter()
            .filter(|e| e.tid == tid)
            .map(|e| e.name.split(|&b| b == 0).next().unwrap().to_vec())
            .collect()
    }

    #[test]
    fn a_thread_has_one_entry_holding_its_latest_name() {
        // Ids far from other tests' (the table is process-wide), two tables' worth of them.
        let first = 1_000_000;
        for tid in first..first + 2 * THREAD_NAMES as i32 {
            note_thread_name(tid, &format!("worker-{tid}"));
        }
        let last = first + 2 * THREAD_NAMES as i32 - 1;
        note_thread_name(last, "renamed");
        assert_eq!(entries_of(last), [b"renamed".to_vec()]);
        for tid in last - THREAD_NAMES as i32 + 1..last {
            assert_eq!(
                entries_of(tid),
                [format!("worker-{tid}").into_bytes()],
                "the newest ids are all kept"
            );
        }
    }
}
