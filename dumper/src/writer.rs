//! Running minidump-writer: the configuration every image shares, and, for a crash, the
//! writer started early on its own thread.
//!
//! A crash's writer starts as soon as the helper has read /proc: it lists and stops the
//! threads and copies their registers and stacks while the helper's main thread walks the
//! Python stacks and reads the names and metadata (issue 14: at 1000 threads the stop takes
//! ~20 ms, the walk, names and metadata ~25 ms; done one after the other before). Once the
//! writer has stopped the threads ([`EarlyWriter::wait_suspended`]), the main thread looks
//! again at the threads that moved (again.rs) while the writer copies their registers and
//! stacks, and hands over what it found as a [`Handoff`]. A live dump keeps
//! its threads running during the walk (its stall stays short): main.rs's `Dump::image`
//! runs the writer there and then.

use crate::{error_chain, stall, timeline, DumpError};
use handoff::Request;
use minidump_writer::app_memory::AppMemory;
use minidump_writer::crash_context::CrashContext;
use minidump_writer::minidump_writer::MinidumpWriterConfig;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

/// Bytes below the stack pointer that x86-64 code may still use (the System V ABI's red
/// zone): each thread's stack is copied from there.
const RED_ZONE: usize = 128;

/// What every image's writer is told: the process, the crash, the size cap.
pub fn config(
    pid: i32,
    req: &Request,
    maps: Option<&str>,
    context: Option<&CrashContext>,
) -> MinidumpWriterConfig {
    let mut config = MinidumpWriterConfig::new(pid, req.tid);
    // Threads are suspended one by one with PTRACE_SEIZE (third_party/README.md): no group
    // SIGSTOP, so no job-control stop, and nothing stays stopped if we die.
    config.skip_process_stop();
    // No seccomp sandbox's trusted threads to drop in a Python process: one ptrace call less
    // per thread while they all wait (third_party/README.md).
    config.skip_sandbox_check();
    // What lies below a thread's red zone is dead (third_party/README.md): not copied.
    config.set_stack_below_sp(RED_ZONE);
    if let Some(maps) = maps {
        config.set_proc_maps(maps.as_bytes().to_vec());
    }
    if req.max_dump_size > 0 {
        config.set_minidump_size_limit(req.max_dump_size);
    }
    if let Some(ctx) = context {
        config.set_crash_context(minidump_writer::CrashContextExt { inner: ctx.clone() });
    }
    config
}

/// The writer's list of memory ranges to copy.
pub fn app_memory(ranges: &[(u64, u64)]) -> Vec<AppMemory> {
    ranges
        .iter()
        .map(|&(start, end)| AppMemory { ptr: start as usize, length: (end - start) as usize })
        .collect()
}

/// Runs the writer: the image, and how long the threads were stopped, from the first
/// thread's interruption to the last one's resumption (the writer lets the threads go
/// before it reads the modules and /proc files: third_party/README.md), or the writer's
/// whole run if it cannot say.
pub fn write(config: MinidumpWriterConfig) -> Result<(Vec<u8>, Duration), DumpError> {
    let mut destination = stall::Stall::from_env(stall::Discard::default());
    let writing = Instant::now();
    let (image, stopped) =
        config.write_timed(&mut destination).map_err(|e| DumpError::Writer(error_chain(&e)))?;
    timeline::mark("writer_after_stop");
    Ok((image, stopped.unwrap_or_else(|| writing.elapsed())))
}

/// What a crash's early writer gets once the Python walk, and the look again at the
/// stopped threads, are done.
pub struct Handoff {
    pub memory: Vec<AppMemory>,
    pub names: Vec<(i32, String)>,
}

type Written = Result<(Vec<u8>, Duration), DumpError>;

/// A crash's writer, started on its own thread before the Python walk.
pub struct EarlyWriter {
    suspended: Receiver<bool>,
    handoff: Sender<Handoff>,
    written: Receiver<Written>,
    release: Sender<()>,
    released: Receiver<()>,
}

impl EarlyWriter {
    /// Starts the writer for a crash whose thread `crashing` writes its report meanwhile;
    /// with the crash context only (third_party/README.md for the writer's options):
    /// - `crashing` is never stopped: its registers and stack are the crash context's, and
    ///   its handler runs on an alternate stack, so its report goes on all along;
    /// - the module list and /proc files are read while the walk goes on, before the look
    ///   that waits for it (the threads are stopped longer: a crashing process waits anyway);
    /// - the writer hands the image over before it resumes the other threads (1000 threads:
    ///   ~5 ms off the crash's path): its thread resumes them one by one when asked to
    ///   ([`StillStopped::resume`]), or else the kernel does at once when it exits (once
    ///   [`StillStopped`] is dropped; or the helper dies).
    pub fn start(config: MinidumpWriterConfig, pid: i32, crashing: i32) -> EarlyWriter {
        let (handoff, receive_handoff) = channel::<Handoff>();
        let (send_written, written) = channel::<Written>();
        let (release, receive_release) = channel::<()>();
        let (send_released, released) = channel::<()>();
        let (send_suspended, suspended) = channel::<bool>();
        std::thread::spawn(move || {
            let mut config = config;
            config.keep_running(crashing).leave_stopped().copy_app_memory_last();
            config.set_thread_names_while_stopped();
            config.on_suspended(move |stopped| {
                timeline::mark("writer_suspended");
                let _ = send_suspended.send(stopped);
            });
            config.set_app_memory_while_stopped(move |memory, names| {
                timeline::mark("writer_stopped");
                // None: the walk ended without a handoff (a panic); the dump goes on without it.
                let Ok(handoff) = receive_handoff.recv() else { return };
                timeline::mark("handoff_wait");
                *memory = handoff.memory;
                names.extend(handoff.names);
            });
            let _ = send_written.send(write(config));
            if receive_release.recv().is_ok() {
                for tid in crate::tasks::ids(pid) {
                    // SAFETY: PTRACE_DETACH takes no pointers; a thread this thread does not
                    // trace (the crashing one, one gone) fails with ESRCH, ignored.
                    unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize) };
                }
                let _ = send_released.send(());
            }
        });
        EarlyWriter { suspended, handoff, written, release, released }
    }

    /// Waits until the writer has stopped the threads: true if it did (false: it could
    /// stop none, or failed before).
    pub fn wait_suspended(&self) -> bool {
        self.suspended.recv().unwrap_or(false)
    }

    /// Hands over the walk's results and waits for the image; with it, the threads left
    /// stopped.
    pub fn finish(self, handoff: Handoff) -> (Written, StillStopped) {
        // A writer that already failed (before the stop) has dropped its receiver: its
        // error comes next.
        let _ = self.handoff.send(handoff);
        let written = self
            .written
            .recv()
            .unwrap_or_else(|_| Err(DumpError::Writer("the writer's thread panicked".into())));
        (written, StillStopped { release: Some(self.release), released: self.released })
    }
}

/// The crash's threads the early writer left stopped: dropped, they are resumed as its
/// thread exits.
pub struct StillStopped {
    release: Option<Sender<()>>,
    released: Receiver<()>,
}

impl StillStopped {
    /// Has the writer's thread resume them, without waiting (once).
    pub fn resume(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }

    /// Has them resumed and waits until every one is (before another writer stops them
    /// again).
    pub fn resume_and_wait(mut self) {
        self.resume();
        let _ = self.released.recv();
    }
}
