//! `crashcatch-dump ADDRESS`: writes a minidump of the parent process, which left a
//! `handoff::Request` at ADDRESS and is waiting (crashed, or paused on purpose), then
//! writes one line to stdout: the path of the dump, or why there is none. Exit status 0
//! on success.
//!
//! Started by the crashcatch collector, found next to it inside the installed package.
//!
//! `crashcatch-dump --pid PID [-o FILE]` (`crashcatch dump PID`): the same for a running
//! Python process that asked for nothing (external.rs); exit status 2 when there is no dump.

mod again;
mod context;
mod deadline;
mod environ;
mod external;
mod limits;
mod locals;
mod metadata;
mod output;
mod overlaps;
mod procmem;
mod pymem;
mod ranges;
mod shrink;
mod source;
mod stall;
mod streams;
mod tasks;
mod timeline;
mod writer;

use handoff::{field_str, EnvironMode, Kind, Request};
use minidump_writer::crash_context::CrashContext;
use procmem::ProcessMemory;
use pylayout::{Layout, Memory};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

/// A crashing stack deeper than this (an overflow: 8 MiB) is cut: the dump keeps this much
/// from the stack pointer up (the innermost frames) and this much at the end (where the
/// thread started). Deep but ordinary stacks stay whole, so their frames can be merged.
const STACK_CAP_ABOVE: u64 = 1024 * 1024;
const STACK_TOP_KEPT: u32 = 256 * 1024;
const STACK_BOTTOM_KEPT: u64 = 64 * 1024;
/// The bottom is kept from the frame an unwind of the dump goes on from (found by the
/// requester: handoff's `resume_*`) if that is at most this far from the end.
const STACK_RESUME_MAX: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
enum DumpError {
    #[error("usage: crashcatch-dump REQUEST_ADDRESS (started by crashcatch, not by hand)")]
    Usage,
    #[error("the requesting process went away before its report was complete")]
    Gone,
    #[error("cannot read the crash record from process {0}: {1} (is ptrace allowed? see /proc/sys/kernel/yama/ptrace_scope)")]
    NoRequest(i32, String),
    #[error("cannot create the dump directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("cannot create {0}: {1}")]
    Create(PathBuf, std::io::Error),
    #[error("minidump-writer failed: {0}")]
    Writer(String),
    #[error("cannot finish the minidump in memory: {0}")]
    Image(String),
    #[error("the dump would take {size} bytes even without the Python memory, more than max_dump_size ({limit} bytes): raise enable(max_dump_size=...) (0: no limit)")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    External(#[from] external::ExternalError),
    #[error("the dump directory {dir} holds {used} of dumps and this one ({size}) would pass max_dump_dir_size ({limit}): live dumps are refused until old dumps are deleted, or raise enable(max_dump_dir_size=...) (0: no limit); crash dumps are still written")]
    DirFull { dir: PathBuf, used: String, size: String, limit: String },
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(opts) = external::parse_args(&args) {
        std::process::exit(run_external(opts));
    }
    let (ok, line) = match run() {
        Ok(path) => (true, format!("crashcatch: minidump written to {}\n", path.display())),
        Err(e) => (false, format!("crashcatch: no minidump: {e}\n")),
    };
    report(&line);
    // Test hook: the helper lingers after its answer (a crash does not wait for its exit).
    test_delay("CRASHCATCH_TEST_HELPER_LINGER_MS");
    std::process::exit(if ok { 0 } else { 1 });
}

/// `--pid PID [-o FILE]`: the dump's path (and how long the threads were stopped) on
/// stdout, exit status 0; or why there is none on stderr, exit status 2.
fn run_external(opts: Result<external::Options, external::ExternalError>) -> i32 {
    timeline::start();
    let result = opts.map_err(DumpError::from).and_then(|opts| {
        // The threads must not stay stopped if the writer hangs (deadline.rs).
        deadline::arm(DEFAULT_DEADLINE_MS);
        let req = external::request(&opts)?;
        write_dump(&req, opts.pid, Some(DEFAULT_DEADLINE_MS), std::time::Instant::now(), &mut || Ok(None))
    });
    match result {
        Ok((path, pause)) => {
            report(&format!(
                "crashcatch: minidump written to {} (threads stopped for at most {:.1} ms)\n",
                path.display(),
                pause.as_secs_f64() * 1000.0
            ));
            0
        }
        Err(e) => {
            eprintln!("crashcatch: no minidump: {e}");
            2
        }
    }
}

/// Writes the result line to stdout, where the requester listens (a pipe).
fn report(line: &str) {
    let _ = std::io::stdout().write_all(line.as_bytes());
    let _ = std::io::stdout().flush();
}

/// Test hook: the helper hangs for the number of milliseconds in `var`, to prove the
/// requester's deadline (at the start) and that a helper killed late leaves no file.
fn test_delay(var: &str) {
    if let Some(ms) = std::env::var(var).ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The share of the helper's deadline that reading local variables may take.
const LOCALS_DEADLINE_SHARE: u32 = 2;
/// The helper's deadline when the requester gives none.
const DEFAULT_DEADLINE_MS: u64 = 10_000;

fn run() -> Result<PathBuf, DumpError> {
    timeline::start();
    let started = std::time::Instant::now();
    let arg = std::env::args().nth(1).ok_or(DumpError::Usage)?;
    let deadline_ms: Option<u64> = std::env::args().nth(2).and_then(|v| v.parse().ok());
    // Until the threads are resumed: a crash's requester is stopped with them, its own
    // deadline cannot fire (deadline.rs).
    if let Some(ms) = deadline_ms {
        deadline::arm(ms);
    }
    // "r": the requester named us as its ptracer (under Yama) and filled the request. A
    // crash then writes its text report while we find the threads, walk the stacks and
    // copy them.
    if !go_ahead() {
        return Err(DumpError::Gone);
    }
    let addr = u64::from_str_radix(arg.trim_start_matches("0x"), 16).map_err(|_| DumpError::Usage)?;
    // SAFETY: getppid has no preconditions.
    let pid = unsafe { libc::getppid() };
    let req = read_request(pid, addr)?;
    timeline::mark("request");
    let mut report_written = || {
        // The threads run again: the wait for the report is the requester's to bound.
        deadline::disarm();
        // "g": the report is complete; the requester's deadline runs from here.
        if !go_ahead() {
            return Err(DumpError::Gone);
        }
        if let Some(ms) = deadline_ms {
            deadline::arm(ms);
        }
        test_delay("CRASHCATCH_TEST_HELPER_DELAY_MS");
        read_request(pid, addr).map(Some)
    };
    write_dump(&req, pid, deadline_ms, started, &mut report_written).map(|(path, _)| path)
}

/// Whether the requester's next byte (or its end) is there to be read now.
fn go_ahead_ready() -> bool {
    let mut stdin = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    // SAFETY: polls one valid pollfd, without waiting.
    unsafe { libc::poll(&mut stdin, 1, 0) == 1 }
}

/// Waits for the requester's next byte; false if it is gone (its end of the pipe closed:
/// it died writing its report).
fn go_ahead() -> bool {
    matches!(std::io::stdin().read(&mut [0u8; 1]), Ok(1))
}

/// The request the requester left at `addr`, read now.
fn read_request(pid: i32, addr: u64) -> Result<Request, DumpError> {
    let mut raw = vec![0u8; std::mem::size_of::<Request>()];
    if !ProcessMemory::new(pid).read(addr, &mut raw) {
        return Err(DumpError::NoRequest(pid, std::io::Error::last_os_error().to_string()));
    }
    Request::from_bytes(&raw).ok_or_else(|| DumpError::NoRequest(pid, "bad magic".into()))
}

/// Writes the dump `req` asks for of process `pid`; its path, and how long the threads were
/// stopped at most.
///
/// `report_written` is called once the threads were stopped, copied and resumed, before the
/// metadata is added: it waits for the requester's text report to be complete and returns
/// the request as it is then (None: unchanged).
fn write_dump(
    req: &Request,
    pid: i32,
    deadline_ms: Option<u64>,
    started: std::time::Instant,
    report_written: &mut ReportWritten<'_>,
) -> Result<(PathBuf, std::time::Duration), DumpError> {
    let req = *req;
    let mem = ProcessMemory::new(pid);
    let path = dump_path(&req, pid)?;
    // What output::publish would refuse at the end, refused before the work.
    if path.symlink_metadata().is_ok() {
        return Err(DumpError::Create(path, std::io::ErrorKind::AlreadyExists.into()));
    }
    live_dump_room(&req, 0)?;

    // The Python memory: found while the process is still waiting for us.
    let layout = Layout::for_version(req.py_version[0] as u8, req.py_version[1] as u8).ok();
    let types = req.types;
    let mut py_threads = Vec::new();
    let mut extra_memory = Vec::new();
    let maps = procmem::read_maps(pid).ok();
    let readable = maps.as_deref().map(procmem::parse_maps).unwrap_or_default();
    // A crash waits for the dump: minidump-writer takes this same maps text rather than
    // reading it again (milliseconds with thousands of threads). A live dump's process runs
    // on meanwhile (a thread started since has a new stack): the writer reads it again.
    let fatal = Kind::from_u32(req.kind) == Some(Kind::Fatal);
    let maps = maps.filter(|_| fatal);
    // /proc/PID/task, and each thread's comm (read aside with many threads), read once for
    // the walk and the metadata.
    let tasks = tasks::Tasks::list(pid);
    timeline::mark("proc_files");
    let mut threading = None;
    let (context, sp_adjusted) = match crash_context(&req, pid) {
        Some((ctx, adjusted)) => (Some(ctx), adjusted),
        None => (None, None),
    };
    // A crash: the writer starts stopping the threads now, on its own thread, while this
    // one walks the Python stacks and reads the names and metadata (the walk's memory is
    // handed over once they are stopped; writer.rs). A live dump stops them only after the
    // walk, which keeps its stall short.
    let mut early = (fatal && context.is_some()).then(|| {
        writer::EarlyWriter::start(writer::config(pid, &req, maps.as_deref(), context.as_ref()), pid, req.tid)
    });
    // An overflowed stack is capped below (shrink.rs); keep its bottom, where the thread
    // started, as an ordinary memory range.
    let mut overflowed = None;
    let mut walk_truncated = false;
    let mut with_locals: Option<Vec<(u64, u64)>> = None;
    let mut locals_meta = json!({"kept": false});
    let mut look_again = None;
    if let Some(ctx) = &context {
        let sp = ctx.context.uc_mcontext.gregs[libc::REG_RSP as usize] as u64;
        if let Some(r) = readable.iter().find(|r| sp >= r.start && sp < r.end) {
            if r.end - sp > STACK_CAP_ABOVE {
                let capping = Capping::new(&req, sp, r.end);
                extra_memory.push((capping.bottom, r.end));
                overflowed = Some(capping);
            }
        }
    }
    if let Some(layout) = &layout {
        let mut collector = pymem::Collector::new(&mem, layout, types);
        collector.os_tids = tasks.tids().iter().copied().collect();
        collector.collect(req.runtime, req.interp);
        timeline::mark("walk");
        let (name_ranges, names) = locals::thread_name_ranges(
            &mem,
            layout,
            &metadata::object_types(&req),
            req.interp,
            req.threading_hash(),
        );
        timeline::mark("names");
        for (start, len) in name_ranges {
            collector.ranges.add(start, len);
        }
        threading = names;
        py_threads = std::mem::take(&mut collector.threads);
        walk_truncated = collector.truncated;
        look_again = Some(again::LookAgain {
            pid,
            layout: *layout,
            types,
            runtime: req.runtime,
            interp: req.interp,
            os_tids: collector.os_tids.clone(),
            interps: collector.interps.clone(),
            threads: py_threads.iter().map(|t| (t.tstate, t.interp, t.chain.clone())).collect(),
            readable: readable.clone(),
            found: Default::default(),
        });
        if req.dump_locals != 0 {
            let budget = std::time::Duration::from_millis(deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS))
                / LOCALS_DEADLINE_SHARE;
            let python = Python { mem: &mem, layout, ranges: &collector.ranges, threads: &py_threads };
            let (memory, found) = python.with_locals(&req, &extra_memory, &readable, started + budget);
            with_locals = Some(memory);
            locals_meta = found;
        }
        extra_memory.extend(collector.ranges.finish(&readable));
    }
    // Test hook: time for the process's threads to move on before they are stopped.
    test_delay("CRASHCATCH_TEST_HELPER_WALKED_DELAY_MS");

    let os_threads = tasks.named();
    timeline::mark("names_joined");
    let threads = metadata::Threads { os: &os_threads, python: &py_threads, threading: threading.as_deref() };
    let mut meta = metadata::build(&req, pid, &mem, layout.as_ref(), types, &threads);
    timeline::mark("metadata");
    // The reads the walk and the metadata took (procmem.rs's page cache), for the tests and
    // benchmarks: a few per thread, not one per field.
    meta["process_reads"] = json!(mem.syscalls());
    if walk_truncated {
        // The runtime's lists were cyclic or longer than pymem's caps.
        meta["python_walk_truncated"] = json!(true);
    }
    if let Some((from, to)) = sp_adjusted {
        // The crashing thread's rsp (`from`, which the dump's context holds) was in an
        // unreadable guard region (stack overflow); its stack memory starts at `to`.
        meta["stack_pointer_adjusted"] = json!({"from": from, "to": to});
    }
    let dump = Dump {
        req: &req,
        pid,
        context: context.as_ref(),
        overflowed: overflowed.as_ref(),
        sp_adjusted,
        os_threads: &os_threads,
        maps: maps.as_deref(),
        pause: std::cell::Cell::new(std::time::Duration::ZERO),
        look_again,
        report_written: std::cell::RefCell::new(Some(report_written)),
        report: std::cell::RefCell::new(None),
        still_stopped: std::cell::RefCell::new(None),
    };
    let limit = req.max_dump_size;
    let mut image = if let Some(with_locals) = with_locals {
        let python_bytes: u64 = extra_memory.iter().map(|(s, e)| e - s).sum();
        let locals_bytes: u64 =
            with_locals.iter().map(|(s, e)| e - s).sum::<u64>().saturating_sub(python_bytes);
        locals_meta["bytes_added"] = json!(locals_bytes);
        meta["locals"] = locals_meta;
        let image = dump.first_image(early.take(), &with_locals, &meta)?;
        if limit > 0 && image.len() as u64 > limit {
            // Over the cap: the locals go first, the memory the tracebacks need stays.
            meta["locals"]["dropped_for_size"] = json!(image.len());
            dump.image(&extra_memory, &meta, None)?
        } else {
            image
        }
    } else {
        meta["locals"] = locals_meta;
        dump.first_image(early.take(), &extra_memory, &meta)?
    };
    if limit > 0 && image.len() as u64 > limit && !extra_memory.is_empty() {
        // Over the cap: the memory crashcatch adds (Python structures, a stack's bottom) is
        // what can go; minidump-writer's own limit has already trimmed the thread stacks.
        image = dump.image(&[], &meta, Some(image.len() as u64))?;
    }
    if limit > 0 && image.len() as u64 > limit {
        return Err(DumpError::TooLarge { size: image.len() as u64, limit });
    }
    live_dump_room(&req, image.len() as u64)?;
    test_delay("CRASHCATCH_TEST_HELPER_LATE_DELAY_MS");
    output::publish(&path, &image).map_err(|e| DumpError::Create(path.clone(), e))?;
    Ok((path, dump.pause.get()))
}

/// What the Python walk found, for adding the frames' locals to it.
struct Python<'a> {
    mem: &'a ProcessMemory,
    layout: &'a Layout,
    ranges: &'a ranges::RangeSet,
    threads: &'a [pymem::PyThreadInfo],
}

impl Python<'_> {
    /// The memory to dump with the frames' locals (`enable(dump_locals=True)`): `base`, the
    /// Python structures and what the locals reader read until `until`; and the metadata's
    /// `locals` entry.
    fn with_locals(
        &self,
        req: &Request,
        base: &[(u64, u64)],
        readable: &[procmem::Region],
        until: std::time::Instant,
    ) -> (Vec<(u64, u64)>, Value) {
        let frames = frames_to_read(req, self.threads);
        let found = locals::collect(self.mem, self.layout, &metadata::object_types(req), &frames, until);
        let mut all = self.ranges.clone();
        for &(start, len) in &found.ranges {
            all.add(start, len);
        }
        let meta = json!({
            "kept": true, "frames": found.frames, "frames_cut": found.frames_cut,
            "locals": found.locals, "bytes_read": found.bytes_read, "stopped": found.stopped,
            "max_total_bytes": locals::MAX_TOTAL_BYTES, "max_frame_bytes": locals::MAX_FRAME_BYTES,
        });
        let mut memory = base.to_vec();
        memory.extend(all.finish(readable));
        (memory, meta)
    }
}

/// Every Python frame whose locals to keep, the requesting thread's first (innermost
/// first), then the other threads'.
fn frames_to_read(req: &Request, threads: &[pymem::PyThreadInfo]) -> Vec<u64> {
    let requesting =
        |t: &pymem::PyThreadInfo| t.tstate == req.tstate || t.native_thread_id == Some(req.tid as u64);
    let first = threads.iter().filter(|t| requesting(t));
    let rest = threads.iter().filter(|t| !requesting(t));
    first.chain(rest).flat_map(|t| t.frame_addrs.iter().copied()).collect()
}

/// For a live dump into the dump directory (not a crash, not an exact path) with a
/// directory cap: `DirFull` if the dumps already there plus `size` bytes pass the cap.
fn live_dump_room(req: &Request, size: u64) -> Result<(), DumpError> {
    let live = Kind::from_u32(req.kind) != Some(Kind::Fatal);
    if !live || req.max_dir_size == 0 || !field_str(&req.dump_path).is_empty() {
        return Ok(());
    }
    let dir = PathBuf::from(field_str(&req.dump_dir));
    let used = limits::dumps_in(&dir);
    if used.saturating_add(size) > req.max_dir_size || used >= req.max_dir_size {
        return Err(DumpError::DirFull {
            dir,
            used: limits::human(used),
            size: limits::human(size),
            limit: limits::human(req.max_dir_size),
        });
    }
    Ok(())
}

/// What is kept of an overflowed stack besides its top: its bottom, from the frame the
/// requester found to go on from (`resume`) or at least `STACK_BOTTOM_KEPT` bytes.
struct Capping {
    bottom: u64,
    end: u64,
    /// The frame's registers, for the metadata; null without one.
    resume: Value,
}

impl Capping {
    /// For a stack copied from `sp` to `end`.
    fn new(req: &Request, sp: u64, end: u64) -> Capping {
        let top_end = sp + STACK_TOP_KEPT as u64;
        let mut bottom = end.saturating_sub(STACK_BOTTOM_KEPT);
        let mut resume = Value::Null;
        let rsp = req.resume_rsp;
        if rsp > top_end && rsp < end && end - rsp <= STACK_RESUME_MAX {
            bottom = bottom.min(rsp & !0xfff);
            resume = json!({
                "rip": req.resume_rip, "rsp": rsp, "rbp": req.resume_rbp, "depth": req.resume_depth,
            });
        }
        Capping { bottom: bottom.max(top_end), end, resume }
    }
}

/// Waits for the requester's text report: see `write_dump`.
type ReportWritten<'a> = dyn FnMut() -> Result<Option<Request>, DumpError> + 'a;

/// How to build the dump's image; built twice when the first is over the size cap.
struct Dump<'a> {
    req: &'a Request,
    pid: i32,
    context: Option<&'a CrashContext>,
    overflowed: Option<&'a Capping>,
    /// (real rsp, rsp given to the writer) when the real one was in a guard region.
    sp_adjusted: Option<(u64, u64)>,
    /// (tid, comm) of each thread, read once: minidump-writer takes the names from here.
    os_threads: &'a [(i32, String)],
    /// /proc/PID/maps as read before the walk, for the writer (a crash's dump only).
    maps: Option<&'a str>,
    /// How long the threads were stopped for the last image (minidump-writer's whole run
    /// if it cannot say): the longest any thread was stopped.
    pause: std::cell::Cell<std::time::Duration>,
    /// The Python walk's second look, once the threads are stopped (again.rs).
    look_again: Option<again::LookAgain>,
    /// Waits for the requester's report (see `write_dump`); taken by the first image.
    report_written: std::cell::RefCell<Option<&'a mut ReportWritten<'a>>>,
    /// The report as read once it was complete.
    report: std::cell::RefCell<Option<String>>,
    /// The threads the crash's early writer left stopped (writer.rs): resumed before the
    /// report wait if it is not complete yet, and before another image.
    still_stopped: std::cell::RefCell<Option<writer::StillStopped>>,
}

impl Dump<'_> {
    /// The first image: from the crash's writer started early (which gets `extra` and the
    /// names now), or else as [`Dump::image`] makes it.
    fn first_image(
        &self,
        early: Option<writer::EarlyWriter>,
        extra: &[(u64, u64)],
        meta: &Value,
    ) -> Result<Vec<u8>, DumpError> {
        let Some(early) = early else {
            return self.image(extra, meta, None);
        };
        let look_again = self.look_again(extra);
        let mut memory = writer::app_memory(extra);
        // The look runs here, on this thread, as soon as the threads are stopped, while the
        // writer copies their registers and stacks (1000 threads: ~4 ms off the crash's path).
        if let Some(look) = look_again {
            if early.wait_suspended() {
                look.look(&mut memory);
            }
        }
        let handoff = writer::Handoff { memory, names: self.named_threads().collect() };
        let (written, mut still_stopped) = early.finish(handoff);
        if !go_ahead_ready() {
            // The report is not complete yet: the threads go first, for a thread of the
            // program may be what drains the report's pipe (otherwise they go as the
            // writer's thread exits, after the file is written: cheaper).
            still_stopped.resume();
        }
        *self.still_stopped.borrow_mut() = Some(still_stopped);
        let (image, pause) = written?;
        self.pause.set(pause);
        self.finish(image, look_again, meta, None)
    }

    /// The whole dump in memory: minidump-writer's streams with `extra` memory ranges, the
    /// overflowed stack capped, the environment treated, the metadata appended.
    /// `full_size`: the size of a first image that was over the cap (this one drops `extra`).
    fn image(
        &self,
        extra: &[(u64, u64)],
        meta: &Value,
        full_size: Option<u64>,
    ) -> Result<Vec<u8>, DumpError> {
        if let Some(stopped) = self.still_stopped.take() {
            // Left stopped by the crash's writer, traced by its thread until it resumes
            // them: this writer must find them traced by no one.
            stopped.resume_and_wait();
        }
        let mut config = writer::config(self.pid, self.req, self.maps, self.context);
        config.set_thread_names(self.named_threads().collect());
        config.set_app_memory(writer::app_memory(extra));
        let look_again = self.look_again(extra);
        if let Some(look) = look_again {
            let look = look.clone();
            config.set_app_memory_while_stopped(move |memory, _| {
                timeline::mark("writer_until_stopped");
                look.look(memory)
            });
        }
        let (image, pause) = writer::write(config)?;
        self.pause.set(pause);
        self.finish(image, look_again, meta, full_size)
    }

    /// The names already read (tasks.rs), not read again per thread; an empty one
    /// (unreadable) is left to the writer, which records why.
    fn named_threads(&self) -> impl Iterator<Item = (i32, String)> + '_ {
        self.os_threads.iter().filter(|(_, name)| !name.is_empty()).cloned()
    }

    /// The second look for an image with `extra` memory, reset; none for an image without
    /// it (over the size cap): it has no Python.
    fn look_again(&self, extra: &[(u64, u64)]) -> Option<&again::LookAgain> {
        let look = self.look_again.as_ref().filter(|_| !extra.is_empty())?;
        *look.found() = Default::default();
        Some(look)
    }

    /// The writer's `image` finished: the overflowed stack capped, the environment treated,
    /// the metadata appended.
    fn finish(
        &self,
        mut image: Vec<u8>,
        look_again: Option<&again::LookAgain>,
        meta: &Value,
        full_size: Option<u64>,
    ) -> Result<Vec<u8>, DumpError> {
        let req = self.req;
        let mut meta = meta.clone();
        let gate = self.report_written.borrow_mut().take();
        if let Some(Some(now)) = gate.map(|wait| wait()).transpose()? {
            timeline::mark("report_wait");
            // Read again, past the page cache, which may hold the report half written.
            *self.report.borrow_mut() = Some(metadata::report(&ProcessMemory::new(self.pid), &now));
        }
        if let Some(report) = self.report.borrow().as_ref() {
            meta["report"] = json!(report);
        }
        if let Some(look) = look_again {
            look.update(&mut meta);
        }
        if Kind::from_u32(req.kind) == Some(Kind::External) {
            // Threads are stopped together while the writer copies them: none was stopped
            // longer than from the first interruption to the last resumption.
            meta["threads_stopped_max_ms"] = json!(self.pause.get().as_secs_f64() * 1000.0);
        }
        if let Some(capping) = self.overflowed {
            if let Some(c) = shrink::cap_stack(&mut image, req.tid as u32, STACK_TOP_KEPT) {
                meta["stack_capped"] = json!({
                    "start": c.start, "original_size": c.original, "kept_size": c.kept,
                });
                // Without the extra memory (over the size cap), the bottom is gone too.
                if full_size.is_none() {
                    meta["stack_capped"]["bottom_start"] = json!(capping.bottom);
                    meta["stack_capped"]["bottom_kept"] = json!(capping.end - capping.bottom);
                    meta["stack_capped"]["resume"] = capping.resume.clone();
                } else {
                    meta["stack_capped"]["bottom_kept"] = json!(0);
                }
            }
        }
        // After the stack cut, which may have left some Python ranges off the stack: lldb 21+
        // cannot read a stack that holds another range of the dump (overlaps.rs).
        overlaps::remove_overlaps(&mut image);
        if let Some((real, written)) = self.sp_adjusted {
            // The writer copied the stack from the first readable page; the registers must
            // still be the thread's own.
            context::restore_stack_pointer(&mut image, req.tid as u32, written, real);
        }
        // After the stack cut: shrink.rs leaves dumps with unused streams alone.
        let patterns: Vec<&str> = handoff::field_list(&req.environ_redact).collect();
        let mode = EnvironMode::from_u32(req.environ_mode);
        let env = environ::apply(&mut image, mode, &patterns).map_err(DumpError::Image)?;
        meta["environ"] = json!({
            "mode": environ::mode_name(mode),
            "stream": env.found && mode != EnvironMode::Drop,
            "redacted": env.redacted,
            "extra_patterns": patterns,
        });
        if req.max_dump_size > 0 {
            meta["size_limit"] = json!({
                "max_dump_size": req.max_dump_size,
                "extra_memory_dropped": full_size.is_some(),
                "full_size": full_size,
            });
        }
        timeline::mark("finish");
        meta["helper_ms"] = timeline::summary(req.time_ns);
        streams::append_stream(&mut image, streams::METADATA_STREAM, meta.to_string().as_bytes())
            .map_err(DumpError::Image)?;
        Ok(image)
    }
}

/// An error and its causes, innermost last; with a hint when ptrace was refused.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.contains("EPERM") || text.contains("Operation not permitted") {
        text.push_str(" (is ptrace allowed? see /proc/sys/kernel/yama/ptrace_scope)");
    }
    text
}

/// The dump's file: the requested path, or `<dir>/<prog>-<pid>-<UTC time>.dmp`.
fn dump_path(req: &Request, pid: i32) -> Result<PathBuf, DumpError> {
    let exact = field_str(&req.dump_path);
    if !exact.is_empty() {
        return Ok(PathBuf::from(exact));
    }
    let dir = PathBuf::from(field_str(&req.dump_dir));
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| DumpError::Dir(dir.clone(), e))?;
    }
    let prog = sanitize(field_str(&req.prog_name));
    Ok(dir.join(format!("{prog}-{pid}-{}.dmp", handoff::utc_stamp(req.time_ns))))
}

fn sanitize(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() {
        "python".into()
    } else {
        s
    }
}

/// The crashing thread's signal context, as minidump-writer wants it.
/// Also returns (real rsp, rsp given to the writer) when rsp had to be moved.
fn crash_context(
    req: &Request,
    pid: i32,
) -> Option<(minidump_writer::crash_context::CrashContext, Option<(u64, u64)>)> {
    use minidump_writer::crash_context::{fpregset_t, ucontext_t, CrashContext};
    if req.has_context == 0 {
        return None;
    }
    // SAFETY: both types are plain C data of the kernel's x86-64 signal-frame layout; the
    // request holds at least as many bytes as each, copied from the real signal frame.
    let (context, float_state) = unsafe {
        let mut uc: ucontext_t = std::mem::zeroed();
        let n = std::mem::size_of::<ucontext_t>().min(req.ucontext.len());
        std::ptr::copy_nonoverlapping(req.ucontext.as_ptr(), (&mut uc as *mut ucontext_t).cast::<u8>(), n);
        let mut fp: fpregset_t = std::mem::zeroed();
        let n = std::mem::size_of::<fpregset_t>().min(req.fpstate.len());
        std::ptr::copy_nonoverlapping(req.fpstate.as_ptr(), (&mut fp as *mut fpregset_t).cast::<u8>(), n);
        (uc, fp)
    };
    let mut context = context;
    // A stack overflow leaves rsp inside the guard region; with glibc's madvise guard pages
    // that region looks mapped but cannot be read, and minidump-writer then fails the whole
    // dump. Start the copied stack at the first readable page above it instead; the real
    // rsp goes back into the dump's context afterwards (context.rs).
    let sp = context.uc_mcontext.gregs[libc::REG_RSP as usize] as u64;
    let mem = ProcessMemory::new(pid);
    let mut adjusted = None;
    if !mem.read(sp, &mut [0u8; 8]) {
        let first_page = (sp & !0xfff) + 0x1000;
        if let Some(readable) =
            (0..256u64).map(|i| first_page + i * 0x1000).find(|&p| mem.read(p, &mut [0u8; 8]))
        {
            context.uc_mcontext.gregs[libc::REG_RSP as usize] = readable as i64;
            adjusted = Some((sp, readable));
        }
    }
    // SAFETY: signalfd_siginfo is plain data.
    let mut siginfo: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    siginfo.ssi_signo = req.signo as u32;
    siginfo.ssi_code = req.si_code;
    siginfo.ssi_pid = pid as u32;
    siginfo.ssi_tid = req.tid as u32;
    // The fault address, which crash-handler loses (it copies siginfo_t over a
    // signalfd_siginfo, whose layouts differ).
    siginfo.ssi_addr = req.fault_addr;
    Some((CrashContext { context, float_state, siginfo, pid, tid: req.tid }, adjusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_names_are_safe_file_names() {
        assert_eq!(sanitize("my app/../x"), "my_app_.._x");
        assert_eq!(sanitize(""), "python");
    }

    #[test]
    fn dump_path_uses_the_directory_and_time() {
        let mut req = Request::zeroed();
        let dir = std::env::temp_dir().join(format!("cc-test-{}", std::process::id()));
        handoff::set_field(&mut req.dump_dir, dir.as_os_str().as_encoded_bytes());
        handoff::set_field(&mut req.prog_name, b"demo");
        let p = dump_path(&req, 42).expect("path");
        assert!(p.starts_with(&dir) && p.to_string_lossy().contains("demo-42-19700101T"), "{p:?}");
        assert!(dir.is_dir());
        let _ = std::fs::remove_dir(&dir);
    }
}
