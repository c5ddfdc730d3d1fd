use {
    super::{
        Pid,
        app_memory::AppMemoryList,
        auxv::AuxvDumpInfo,
        crash_context_ext::CrashContextExt,
        dso_debug,
        dumper_cpu_info::CpuInfoError,
        maps_reader::{MappingInfo, MappingList, MapsReaderError},
        process_inspection::{self, ProcessInspector, process_reader::CopyFromProcessError},
        serializers::*,
        thread_info::{ThreadInfo, ThreadInfoError},
    },
    crate::{
        dir_section::{DirSection, DumpBuf},
        mem_writer::{
            Buffer, MemoryArrayWriter, MemoryWriter, MemoryWriterError, write_string_to_location,
        },
        minidump_format::*,
        module_reader,
        serializers::*,
    },
    error_graph::{ErrorList, WriteErrorList},
    errors::{ContinueProcessError, InitError, StopProcessError, WriterError},
    failspot::failspot,
    procfs_core::{
        FromRead,
        process::{MMPermissions, ProcState, Stat},
    },
    std::{
        io::{Read, Seek, Write},
        time::{Duration, Instant},
    },
    thiserror::Error,
};

#[cfg(target_os = "android")]
use super::android::late_process_mappings;

pub use super::auxv::{AuxvType, DirectAuxvDumpInfo};

pub mod app_memory;
pub mod errors;
pub mod exception_stream;
pub mod handle_data_stream;
pub mod mappings;
pub mod memory_info_list_stream;
pub mod memory_list_stream;
pub mod systeminfo_stream;
pub mod thread_list_stream;
pub mod thread_names_stream;

/// The default timeout after a `SIGSTOP` after which minidump writing proceeds
/// regardless of the process state
pub const STOP_TIMEOUT: Duration = Duration::from_millis(100);

#[cfg(target_pointer_width = "32")]
pub const AT_SYSINFO_EHDR: u32 = 33;
#[cfg(target_pointer_width = "64")]
pub const AT_SYSINFO_EHDR: u64 = 33;

#[derive(Debug)]
pub struct MinidumpWriterConfig {
    process_id: Pid,
    blamed_thread: Pid,
    minidump_size_limit: Option<u64>,
    skip_stacks_if_mapping_unreferenced: bool,
    principal_mapping_address: Option<usize>,
    user_mapping_list: MappingList,
    app_memory: AppMemoryList,
    memory_blocks: Vec<MDMemoryDescriptor>,
    principal_mapping: Option<MappingInfo>,
    sanitize_stack: bool,
    crash_context: Option<CrashContextExt>,
    crashing_thread_context: CrashingThreadContext,
    stop_timeout: Duration,
    stop_process: bool,
    thread_names: std::collections::HashMap<Pid, String>,
    while_stopped: WhileStopped,
    proc_maps: Option<Vec<u8>>,
    stack_below_sp: Option<usize>,
    crash_stops: CrashStops,
    direct_auxv_dump_info: Option<DirectAuxvDumpInfo>,
    process_inspector: ProcessInspector,
}

/// A caller's look at the process while every thread is suspended, which may change the
/// application memory to copy and add thread names (crashcatch patch:
/// `set_app_memory_while_stopped`).
#[derive(Default)]
pub struct WhileStopped {
    look: Option<Box<dyn FnMut(&mut AppMemoryList, &mut ThreadNames) + Send>>,
    /// The look names the threads: none is read before (`set_thread_names_while_stopped`).
    names: bool,
    /// Told once the threads are suspended, before any stream is written (`on_suspended`).
    suspended: Option<Box<dyn FnOnce(bool) + Send>>,
}

/// Thread names the caller read, by thread id (crashcatch patch).
pub type ThreadNames = std::collections::HashMap<Pid, String>;

/// How a crash's threads are stopped and resumed (crashcatch patch: `keep_running`,
/// `leave_stopped`, `copy_app_memory_last`).
#[derive(Debug, Default, Clone, Copy)]
struct CrashStops {
    /// A thread never stopped: the crashing one, whose registers and stack come from the
    /// crash context.
    keep_running: Option<Pid>,
    /// The stopped threads are not resumed.
    leave_stopped: bool,
    /// The while-stopped look and the application memory come after the other streams.
    app_memory_last: bool,
    /// No thread is dropped for a null stack pointer (`skip_sandbox_check`).
    skip_sandbox_check: bool,
}

impl std::fmt::Debug for WhileStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.look.is_some() { "WhileStopped(set)" } else { "WhileStopped(unset)" })
    }
}

#[derive(Debug)]
pub struct MinidumpWriter {
    pub process_id: Pid,
    threads_suspended: bool,
    /// When the first thread was interrupted, and how long until all were resumed
    /// (crashcatch patch: `write_timed`).
    suspend_started: Option<std::time::Instant>,
    suspended_for: Option<Duration>,
    pub threads: Vec<Thread>,
    pub auxv: AuxvDumpInfo,
    pub mappings: Vec<MappingInfo>,
    /// Indices of `mappings` by start address when no two overlap, for `find_mapping`'s
    /// binary search (crashcatch patch: one lookup per thread, linear, made a 1000-thread
    /// dump quadratic); empty for the linear search.
    mappings_by_start: Vec<usize>,
    /// /proc/PID/maps as read for `mappings` (or as the caller gave it); the memory info
    /// list and the maps stream use it too (crashcatch patch: was read three times).
    proc_maps: Option<Vec<u8>>,
    pub page_size: usize,
    pub sanitize_stack: bool,
    pub minidump_size_limit: Option<u64>,
    pub user_mapping_list: MappingList,
    pub crashing_thread_context: CrashingThreadContext,
    stop_timeout: Duration,
    stop_process: bool,
    /// Names the caller already read, by thread id (crashcatch patch).
    thread_names: std::collections::HashMap<Pid, String>,
    while_stopped: WhileStopped,
    /// Bytes kept below a thread's stack pointer (crashcatch patch: `set_stack_below_sp`).
    pub stack_below_sp: Option<usize>,
    /// How a crash's threads are stopped and resumed (crashcatch patch).
    crash_stops: CrashStops,
    pub skip_stacks_if_mapping_unreferenced: bool,
    principal_mapping_address: Option<usize>,
    pub principal_mapping: Option<MappingInfo>,
    pub blamed_thread: Pid,
    pub crash_context: Option<CrashContextExt>,
    pub app_memory: AppMemoryList,
    pub memory_blocks: Vec<MDMemoryDescriptor>,
    pub process_inspector: ProcessInspector,
}

#[derive(Debug, Clone)]
pub struct Thread {
    pub tid: Pid,
    pub name: Option<String>,
}

#[derive(Debug, Default)]
pub enum CrashingThreadContext {
    #[default]
    None,
    CrashContext(MDLocationDescriptor),
    CrashContextPlusAddress((MDLocationDescriptor, usize)),
}

impl MinidumpWriterConfig {
    pub fn new(process_id: Pid, blamed_thread: Pid) -> Self {
        Self {
            process_id,
            blamed_thread,
            minidump_size_limit: Default::default(),
            skip_stacks_if_mapping_unreferenced: Default::default(),
            principal_mapping_address: Default::default(),
            user_mapping_list: Default::default(),
            app_memory: Default::default(),
            memory_blocks: Default::default(),
            principal_mapping: Default::default(),
            sanitize_stack: Default::default(),
            crash_context: Default::default(),
            crashing_thread_context: Default::default(),
            stop_timeout: STOP_TIMEOUT,
            stop_process: true,
            thread_names: Default::default(),
            while_stopped: Default::default(),
            proc_maps: None,
            stack_below_sp: None,
            crash_stops: CrashStops::default(),
            direct_auxv_dump_info: Default::default(),
            process_inspector: ProcessInspector::local(process_id),
        }
    }

    pub fn set_minidump_size_limit(&mut self, limit: u64) -> &mut Self {
        self.minidump_size_limit = Some(limit);
        self
    }

    pub fn set_user_mapping_list(&mut self, user_mapping_list: MappingList) -> &mut Self {
        self.user_mapping_list = user_mapping_list;
        self
    }

    pub fn set_principal_mapping_address(&mut self, principal_mapping_address: usize) -> &mut Self {
        self.principal_mapping_address = Some(principal_mapping_address);
        self
    }

    pub fn set_app_memory(&mut self, app_memory: AppMemoryList) -> &mut Self {
        self.app_memory = app_memory;
        self
    }

    pub fn set_crash_context(&mut self, crash_context: CrashContextExt) -> &mut Self {
        self.crash_context = Some(crash_context);
        self
    }

    pub fn skip_stacks_if_mapping_unreferenced(&mut self) -> &mut Self {
        self.skip_stacks_if_mapping_unreferenced = true; // Off by default
        self
    }

    pub fn sanitize_stack(&mut self) -> &mut Self {
        self.sanitize_stack = true; // Off by default
        self
    }

    /// Sets the timeout after `SIGSTOP` is sent to the process, if the process
    /// has not stopped by the time the timeout has reached, we proceed with
    /// minidump generation
    pub fn stop_timeout(&mut self, duration: Duration) -> &mut Self {
        self.stop_timeout = duration;
        self
    }

    /// Do not send `SIGSTOP`/`SIGCONT` to the whole process; only suspend its threads one by
    /// one with ptrace (crashcatch patch). A group stop is a job-control stop: a shell
    /// reports the program as stopped, and if the writer dies before `SIGCONT` the process
    /// stays stopped for good.
    pub fn skip_process_stop(&mut self) -> &mut Self {
        self.stop_process = false;
        self
    }

    /// Copies each thread's stack from `bytes` below its stack pointer (crashcatch patch),
    /// not from the start of the stack pointer's page: below the red zone (128 bytes on
    /// x86-64) a stack holds only what calls that returned left behind, up to 4 KiB a
    /// thread, of no use to an unwinder and possibly sensitive. The crashing thread of a
    /// crash context keeps its whole page. Unset by default.
    pub fn set_stack_below_sp(&mut self, bytes: usize) -> &mut Self {
        self.stack_below_sp = Some(bytes);
        self
    }

    /// Never stops thread `tid` (crashcatch patch): with a crash context, its registers and
    /// stack come from the context, and its stack no longer changes while its signal
    /// handler runs on an alternate stack (a crash handler writing its report meanwhile).
    /// Ignored without a crash context. Unset by default.
    pub fn keep_running(&mut self, tid: Pid) -> &mut Self {
        self.crash_stops.keep_running = Some(tid);
        self
    }

    /// Leaves the stopped threads stopped when the writer is done with them (crashcatch
    /// patch): they stay so until the calling thread resumes them (`PTRACE_DETACH`) or
    /// exits, when the kernel resumes them. The writer then returns the dump before it has
    /// resumed each thread (1000 threads: ~5 ms), which the caller can do later, off its
    /// path. Unset by default.
    pub fn leave_stopped(&mut self) -> &mut Self {
        self.crash_stops.leave_stopped = true;
        self
    }

    /// Keeps every stopped thread, without reading its registers once more to drop those
    /// whose stack pointer is null (crashcatch patch): that check is for the trusted threads
    /// of Chromium's seccomp sandbox, and costs a `PTRACE_GETREGS` per thread while all of
    /// them wait (the thread list reads the registers anyway; a thread without a stack then
    /// has none in the dump). Unset by default.
    pub fn skip_sandbox_check(&mut self) -> &mut Self {
        self.crash_stops.skip_sandbox_check = true;
        self
    }

    /// Writes the module list, the /proc files and the other streams that need no look at
    /// the stopped threads before the `set_app_memory_while_stopped` look and the
    /// application memory, not after them (crashcatch patch): a caller whose look waits for
    /// work done meanwhile (a crash's helper walking the Python stacks), and whose threads
    /// may stay stopped that long, gets them done while it waits. Unset by default.
    pub fn copy_app_memory_last(&mut self) -> &mut Self {
        self.crash_stops.app_memory_last = true;
        self
    }

    /// The threads' names (/proc/PID/task/TID/comm) as the caller already read them
    /// (crashcatch patch): a thread listed here is not read again; any other is.
    pub fn set_thread_names(&mut self, names: std::collections::HashMap<Pid, String>) -> &mut Self {
        self.thread_names = names;
        self
    }

    /// The text of /proc/PID/maps as the caller just read it (crashcatch patch): used instead
    /// of reading it again (a 1000-thread process's is ~2,000 lines, ~3 ms to read). A
    /// mapping made since is missing, such as the stack of a thread started since. Unset
    /// by default.
    pub fn set_proc_maps(&mut self, text: Vec<u8>) -> &mut Self {
        self.proc_maps = Some(text);
        self
    }

    /// Calls `look` once every thread is suspended, before the application memory is
    /// copied, with that memory's list to change (crashcatch patch): memory the caller chose
    /// while the process ran may have moved on by then, and only now can it look again at a
    /// process that holds still. Unset by default.
    ///
    /// `look` may also add thread names, as `set_thread_names` does: a caller that works out
    /// the names while the writer stops the threads (on another thread) hands them over here.
    pub fn set_app_memory_while_stopped(
        &mut self,
        look: impl FnMut(&mut AppMemoryList, &mut ThreadNames) + Send + 'static,
    ) -> &mut Self {
        self.while_stopped.look = Some(Box::new(look));
        self
    }

    /// Calls `told` once the threads are suspended, right after the writer stopped them and
    /// before it writes any stream (crashcatch patch), with whether they are (false: none
    /// could be, and the `set_app_memory_while_stopped` look will not run). A caller that
    /// works on another thread meanwhile can then look at the stopped process itself while
    /// the writer copies the threads, and hand over only what the look found. Unset by
    /// default.
    pub fn on_suspended(&mut self, told: impl FnOnce(bool) + Send + 'static) -> &mut Self {
        self.while_stopped.suspended = Some(Box::new(told));
        self
    }

    /// The threads' names come from the `set_app_memory_while_stopped` look (crashcatch
    /// patch): no name is read before the threads are stopped, and a thread the look does
    /// not name has its /proc/PID/task/TID/comm read after it. Unset by default.
    pub fn set_thread_names_while_stopped(&mut self) -> &mut Self {
        self.while_stopped.names = true;
        self
    }

    /// Directly set important Auxv info determined by the crashing process
    ///
    /// Since `/proc/{pid}/auxv` can sometimes be inaccessible, the calling process should prefer to transfer this
    /// information directly using the Linux `getauxval()` call (if possible).
    ///
    /// Any field that is set to `0` will be considered unset. In that case, minidump-writer might try other techniques
    /// to obtain it (like reading `/proc/{pid}/auxv`).
    pub fn set_direct_auxv_dump_info(
        &mut self,
        direct_auxv_dump_info: DirectAuxvDumpInfo,
    ) -> &mut Self {
        self.direct_auxv_dump_info = Some(direct_auxv_dump_info);
        self
    }
    /// Generates a minidump and writes to the destination provided. Returns the in-memory
    /// version of the minidump as well.
    pub fn write(self, destination: &mut (impl Write + Seek)) -> Result<Vec<u8>, WriterError> {
        self.write_timed(destination).map(|(image, _)| image)
    }
    /// [`Self::write`], and how long the threads were suspended: from the first thread's
    /// interruption to the last one's resumption (crashcatch patch); None if they were
    /// still suspended when the writer returned (an error).
    pub fn write_timed(
        self,
        destination: &mut (impl Write + Seek),
    ) -> Result<(Vec<u8>, Option<Duration>), WriterError> {
        let mut soft_errors = ErrorList::default();

        let mut writer = self.build();
        writer.init(soft_errors.subwriter(WriterError::InitErrors))?;

        let mut buffer = Buffer::with_capacity(0);
        writer.write_dump(&mut buffer, destination, soft_errors)?;
        Ok((buffer.into(), writer.suspended_for))
    }
    /// Allows testing code to inspect the pre-output state of the MinidumpWriter
    pub fn build_for_testing(
        self,
        soft_errors: impl WriteErrorList<InitError>,
    ) -> Result<MinidumpWriter, InitError> {
        let mut writer = self.build();
        writer.init(soft_errors)?;
        Ok(writer)
    }
    fn build(self) -> MinidumpWriter {
        let auxv = self
            .direct_auxv_dump_info
            .map(AuxvDumpInfo::from)
            .unwrap_or_default();

        MinidumpWriter {
            process_id: self.process_id,
            threads_suspended: Default::default(),
            suspend_started: None,
            suspended_for: None,
            threads: Default::default(),
            auxv,
            mappings: Default::default(),
            mappings_by_start: Vec::new(),
            proc_maps: self.proc_maps,
            page_size: Default::default(),
            sanitize_stack: self.sanitize_stack,
            minidump_size_limit: self.minidump_size_limit,
            user_mapping_list: self.user_mapping_list,
            crashing_thread_context: self.crashing_thread_context,
            stop_timeout: self.stop_timeout,
            stop_process: self.stop_process,
            thread_names: self.thread_names,
            while_stopped: self.while_stopped,
            stack_below_sp: self.stack_below_sp,
            crash_stops: self.crash_stops,
            skip_stacks_if_mapping_unreferenced: self.skip_stacks_if_mapping_unreferenced,
            principal_mapping_address: self.principal_mapping_address,
            principal_mapping: self.principal_mapping,
            blamed_thread: self.blamed_thread,
            crash_context: self.crash_context,
            app_memory: self.app_memory,
            memory_blocks: self.memory_blocks,
            process_inspector: self.process_inspector,
        }
    }
}

impl MinidumpWriter {
    // TODO: late_init for chromeos and android
    fn init(&mut self, mut soft_errors: impl WriteErrorList<InitError>) -> Result<(), InitError> {
        if self.process_id == std::process::id() as i32 {
            return Err(InitError::CannotPtraceSameProcess);
        }

        // Stopping the process is best-effort.
        if self.stop_process {
            if let Err(e) = self.stop_process(self.stop_timeout) {
                soft_errors.push(InitError::StopProcessFailed(e));
            }
        }

        // Even if we completely fail to fill in any additional Auxv info, we can still press
        // forward.
        if let Err(e) = self.auxv.try_filling_missing_info(
            &self.process_inspector,
            self.process_id,
            soft_errors.subwriter(InitError::FillMissingAuxvInfoErrors),
        ) {
            soft_errors.push(InitError::FillMissingAuxvInfoFailed(e));
        }

        // If we completely fail to enumerate any threads... Some information is still better than
        // no information!
        if let Err(e) =
            self.enumerate_threads(soft_errors.subwriter(InitError::EnumerateThreadsErrors))
        {
            soft_errors.push(InitError::EnumerateThreadsFailed(Box::new(e)));
        }

        // Same with mappings -- Some information is still better than no information!
        if let Err(e) = self.enumerate_mappings() {
            soft_errors.push(InitError::EnumerateMappingsFailed(Box::new(e)));
        }

        self.page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE).try_into().unwrap() };
        assert!(
            self.page_size > 0,
            "somehow we weren't able to get the page size - should never happen"
        );

        let threads_count = self.threads.len();

        self.suspend_threads(soft_errors.subwriter(InitError::SuspendThreadsErrors));
        // crashcatch patch: `on_suspended`.
        if let Some(told) = self.while_stopped.suspended.take() {
            told(self.threads_suspended);
        }

        if self.threads.is_empty() {
            soft_errors.push(InitError::SuspendNoThreadsLeft(threads_count));
        }

        #[cfg(target_os = "android")]
        {
            late_process_mappings(&self.process_inspector, &mut self.mappings)?;
        }

        if self.skip_stacks_if_mapping_unreferenced {
            if let Some(address) = self.principal_mapping_address {
                self.principal_mapping = self.find_mapping_no_bias(address).cloned();
            }

            if !self.crash_thread_references_principal_mapping() {
                soft_errors.push(InitError::PrincipalMappingNotReferenced);
            }
        }

        Ok(())
    }
    /// Generates a minidump and writes to the destination provided. Returns the in-memory
    /// version of the minidump as well.
    fn write_dump(
        &mut self,
        buffer: &mut DumpBuf,
        destination: &mut (impl Write + Seek),
        mut soft_errors: ErrorList<WriterError>,
    ) -> Result<(), WriterError> {
        // A minidump file contains a number of tagged streams. This is the number
        // of streams which we write.
        let num_writers = 18u32;

        let mut header_section = MemoryWriter::<MDRawHeader>::alloc(buffer)?;

        let mut dir_section = DirSection::new(buffer, num_writers, destination)?;

        let header = MDRawHeader {
            signature: MD_HEADER_SIGNATURE,
            version: MD_HEADER_VERSION,
            stream_count: num_writers,
            //   header.get()->stream_directory_rva = dir.position();
            stream_directory_rva: dir_section.position(),
            checksum: 0, /* Can be 0.  In fact, that's all that's
                          * been found in minidump files. */
            time_date_stamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as u32, // TODO: This is not Y2038 safe, but thats how its currently defined as
            flags: 0,
        };
        header_section.set_value(buffer, header)?;

        // Ensure the header gets flushed. If we crash somewhere below,
        // we should have a mostly-intact dump
        dir_section.write_to_file(buffer, None)?;

        let dirent = self.write_thread_list_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        // crashcatch patch: the application memory (and the look before it) first, or after
        // the streams that need no look (`copy_app_memory_last`).
        let last = self.crash_stops.app_memory_last;
        if !last {
            self.copy_while_stopped(buffer, &mut soft_errors)?;
            dir_section.write_to_file(buffer, None)?;
        }

        let dirent = self.write_mappings(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        if !last {
            let dirent = self.write_memory_list_stream(buffer)?;
            dir_section.write_to_file(buffer, Some(dirent))?;
        }

        let dirent = self.write_exception_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let dirent = systeminfo_stream::write(
            &self.process_inspector,
            buffer,
            soft_errors.subwriter(WriterError::WriteSystemInfoErrors),
        )?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let dirent = self.write_memory_info_list_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let mut proc_root = {
            let mut pr = String::with_capacity(24);
            use std::fmt::Write;
            write!(&mut pr, "/proc/{}/", self.blamed_thread).unwrap(); // infallbile barring OOM
            pr
        };

        macro_rules! file_entry {
            (res $write:expr, $kind:ident, $err:ident) => {
                let dirent = match $write {
                    Ok(location) => MDRawDirectory {
                        stream_type: MDStreamType::$kind as u32,
                        location,
                    },
                    Err(e) => {
                        soft_errors.push(WriterError::$err(e));
                        Default::default()
                    }
                };
                dir_section.write_to_file(buffer, Some(dirent))?;
            };
            ($fname:literal, $kind:ident, $err:ident) => {
                let trunc = proc_root.len();
                proc_root.push_str($fname);

                file_entry!(res write_file(&self.process_inspector, buffer, &proc_root), $kind, $err);

                proc_root.truncate(trunc);
            };
        }

        file_entry!(
            res write_file(&self.process_inspector, buffer, "/proc/cpuinfo"),
            LinuxCpuInfo,
            WriteCpuInfoFailed
        );
        file_entry!("status", LinuxProcStatus, WriteThreadProcStatusFailed);

        // Unfortunately neither of these files exist on Android, and there doesn't seem
        // to be a way to read equivalent information from elsewhere on the file system
        #[cfg(not(target_os = "android"))]
        {
            file_entry!(
                res write_file(&self.process_inspector, buffer, "/etc/lsb-release")
                    .or_else(|_| write_file(&self.process_inspector, buffer, "/etc/os-release")),
                LinuxLsbRelease,
                WriteOsReleaseInfoFailed
            );
        }

        file_entry!("cmdline", LinuxCmdLine, WriteCommandLineFailed);
        file_entry!("environ", LinuxEnviron, WriteEnvironmentFailed);
        file_entry!("auxv", LinuxAuxv, WriteEnvironmentFailed);
        match self.proc_maps.as_deref() {
            Some(text) => {
                file_entry!(
                    res Ok::<_, MemoryWriterError>(MemoryArrayWriter::write_bytes(buffer, text).location()),
                    LinuxMaps,
                    WriteMapsFailed
                );
            }
            None => {
                file_entry!("maps", LinuxMaps, WriteMapsFailed);
            }
        }

        let dirent =
            match dso_debug::write_dso_debug_stream(&self.process_inspector, buffer, &self.auxv) {
                Ok(dirent) => dirent,
                Err(e) => {
                    soft_errors.push(WriterError::WriteDSODebugStreamFailed(e));
                    Default::default()
                }
            };
        dir_section.write_to_file(buffer, Some(dirent))?;

        file_entry!("limits", MozLinuxLimits, WriteLimitsFailed);

        if last {
            self.copy_while_stopped(buffer, &mut soft_errors)?;
            dir_section.write_to_file(buffer, None)?;
            let dirent = self.write_memory_list_stream(buffer)?;
            dir_section.write_to_file(buffer, Some(dirent))?;
        }

        let dirent = self.write_thread_names_stream(buffer)?;
        dir_section.write_to_file(buffer, Some(dirent))?;

        let dirent = match self.write_handle_data_stream(buffer) {
            Ok(dirent) => dirent,
            Err(e) => {
                soft_errors.push(WriterError::WriteHandleDataStreamFailed(e));
                Default::default()
            }
        };
        dir_section.write_to_file(buffer, Some(dirent))?;

        // If this fails, there's really nothing we can do about that (other than ignore it).
        let dirent = write_soft_errors(buffer, soft_errors)
            .map(|location| MDRawDirectory {
                stream_type: MDStreamType::MozSoftErrors as u32,
                location,
            })
            .unwrap_or_default();
        dir_section.write_to_file(buffer, Some(dirent))?;

        // If you add more directory entries, don't forget to update num_writers, above.
        Ok(())
    }

    fn crash_thread_references_principal_mapping(&self) -> bool {
        if self.crash_context.is_none() || self.principal_mapping.is_none() {
            return false;
        }

        let low_addr = self
            .principal_mapping
            .as_ref()
            .unwrap()
            .system_mapping_info
            .start_address;
        let high_addr = self
            .principal_mapping
            .as_ref()
            .unwrap()
            .system_mapping_info
            .end_address;

        let pc = self
            .crash_context
            .as_ref()
            .unwrap()
            .get_instruction_pointer();
        let stack_pointer = self.crash_context.as_ref().unwrap().get_stack_pointer();

        if pc >= low_addr && pc < high_addr {
            return true;
        }

        let (valid_stack_pointer, stack_len) = match self.get_stack_info(stack_pointer) {
            Ok(x) => x,
            Err(_) => {
                return false;
            }
        };

        let stack_copy = match MinidumpWriter::copy_from_process(
            &self.process_inspector,
            valid_stack_pointer,
            stack_len,
        ) {
            Ok(x) => x,
            Err(_) => {
                return false;
            }
        };

        let sp_offset = stack_pointer.saturating_sub(valid_stack_pointer);
        self.principal_mapping
            .as_ref()
            .unwrap()
            .stack_has_pointer_to_mapping(&stack_copy, sp_offset)
    }

    /// Suspends a thread by attaching to it.
    fn suspend_thread(process_inspector: &ProcessInspector, tid: Pid) -> Result<(), WriterError> {
        process_inspector
            .suspend_thread(tid)
            .map_err(WriterError::SuspendThreadFailed)?;
        Self::check_suspended(process_inspector, tid)
    }

    /// What `suspend_thread` checks once the thread is stopped (crashcatch patch: split out
    /// for `suspend_threads`, which interrupts every thread before waiting for any).
    fn check_suspended(process_inspector: &ProcessInspector, tid: Pid) -> Result<(), WriterError> {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            // On x86, the stack pointer is NULL or -1, when executing trusted code in
            // the seccomp sandbox. Not only does this cause difficulties down the line
            // when trying to dump the thread's stack, it also results in the minidumps
            // containing information about the trusted threads. This information is
            // generally completely meaningless and just pollutes the minidumps.
            // We thus test the stack pointer and exclude any threads that are part of
            // the seccomp sandbox's trusted code.
            let skip_thread;
            let regs = process_inspector.get_gen_regs(tid);
            if let Ok(regs) = regs {
                #[cfg(target_arch = "x86_64")]
                {
                    skip_thread = regs.rsp == 0;
                }
                #[cfg(target_arch = "x86")]
                {
                    skip_thread = regs.esp == 0;
                }
            } else {
                skip_thread = true;
            }
            if skip_thread {
                process_inspector
                    .resume_thread(tid)
                    .map_err(WriterError::ResumeThreadFailed)?;
                return Err(WriterError::DetachSkippedThread(tid));
            }
        }
        Ok(())
    }

    /// Resumes a thread by detaching from it.
    fn resume_thread(process_inspector: &ProcessInspector, tid: Pid) -> Result<(), WriterError> {
        process_inspector
            .resume_thread(tid)
            .map_err(WriterError::ResumeThreadFailed)
    }

    fn suspend_threads(&mut self, mut soft_errors: impl WriteErrorList<WriterError>) {
        // Iterate over all threads and try to suspend them.
        // If the thread either disappeared before we could attach to it, or if
        // it was part of the seccomp sandbox's trusted code, it is OK to
        // silently drop it from the minidump.
        self.suspend_started = Some(std::time::Instant::now());
        //
        // crashcatch patch: without the process stop, every thread is interrupted first and
        // then each stop is waited for, so the threads stop together: the first one stopped
        // does not wait for a round trip per other thread.
        if self.stop_process {
            self.threads.retain(
                |x| match Self::suspend_thread(&self.process_inspector, x.tid) {
                    Ok(()) => true,
                    Err(e) => {
                        soft_errors.push(e);
                        false
                    }
                },
            );
        } else {
            let inspector = &self.process_inspector;
            // crashcatch patch: the crashing thread left running (`keep_running`).
            let running = self.kept_running();
            let stops = |tid: Pid| running != Some(tid);
            let skip_check = self.crash_stops.skip_sandbox_check;
            self.threads.retain(|x| match stops(x.tid).then(|| inspector.interrupt_thread(x.tid)) {
                None => true,
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    soft_errors.push(WriterError::SuspendThreadFailed(e));
                    false
                }
            });
            self.threads.retain(|x| {
                if !stops(x.tid) {
                    return true;
                }
                let stopped = inspector
                    .wait_for_stop(x.tid)
                    .map_err(WriterError::SuspendThreadFailed)
                    .and_then(|()| match skip_check {
                        true => Ok(()),
                        false => Self::check_suspended(inspector, x.tid),
                    });
                match stopped {
                    Ok(()) => true,
                    Err(e) => {
                        soft_errors.push(e);
                        false
                    }
                }
            });
        }

        self.threads_suspended = true;

        failspot::failspot!(<crate::FailSpotName>::SuspendThreads soft_errors.push(WriterError::PtraceAttachError(1234, libc::EPERM)))
    }

    /// The thread never stopped (crashcatch patch: `keep_running`, with a crash context).
    fn kept_running(&self) -> Option<Pid> {
        self.crash_context.as_ref().and(self.crash_stops.keep_running)
    }

    fn resume_threads(&mut self, mut soft_errors: impl WriteErrorList<WriterError>) {
        // crashcatch patch: none resumed (`leave_stopped`); nor the one never stopped.
        if self.threads_suspended && !self.crash_stops.leave_stopped {
            let running = self.kept_running();
            for thread in self.threads.iter().filter(|t| running != Some(t.tid)) {
                match Self::resume_thread(&self.process_inspector, thread.tid) {
                    Ok(()) => (),
                    Err(e) => {
                        soft_errors.push(e);
                    }
                }
            }
        }
        if self.threads_suspended {
            self.suspended_for = self.suspend_started.map(|t| t.elapsed());
        }
        self.threads_suspended = false;
    }

    /// Send SIGSTOP to the process so that we can get a consistent state.
    ///
    /// This will block waiting for the process to stop until `timeout` has passed.
    fn stop_process(&mut self, timeout: Duration) -> Result<(), StopProcessError> {
        self.process_inspector
            .stop_process()
            .map_err(StopProcessError::Stop)?;

        // Something like waitpid for non-child processes would be better, but we have no such
        // tool, so we poll the status.
        const POLL_INTERVAL: Duration = Duration::from_millis(1);
        let proc_file = format!("/proc/{}/stat", self.process_id);
        let end = Instant::now() + timeout;

        loop {
            let stat_file = self
                .process_inspector
                .read_file(&proc_file)
                .map_err(StopProcessError::ReadFileFailed)?;
            if let Ok(ProcState::Stopped) = Stat::from_read(stat_file)?.state() {
                return Ok(());
            }

            std::thread::sleep(POLL_INTERVAL);
            if Instant::now() > end {
                return Err(StopProcessError::Timeout);
            }
        }
    }

    /// Send SIGCONT to the process to continue.
    ///
    /// Unlike `stop_process`, this function does not wait for the process to continue.
    fn continue_process(&mut self) -> Result<(), ContinueProcessError> {
        self.process_inspector
            .continue_process()
            .map_err(ContinueProcessError)
    }

    /// Parse /proc/$pid/task to list all the threads of the process identified by
    /// pid.
    fn enumerate_threads(
        &mut self,
        mut soft_errors: impl WriteErrorList<InitError>,
    ) -> Result<(), InitError> {
        let pid = self.process_id;
        let task_path = format!("/proc/{pid}/task");

        for file_name in self
            .process_inspector
            .read_dir(&task_path)
            .map_err(InitError::ReadProcTaskFailed)?
        {
            let file_name = match file_name {
                Ok(file_name) => file_name,
                Err(e) => {
                    soft_errors.push(InitError::ReadProcessThreadEntryFailed(e));
                    continue;
                }
            };
            let tid = match file_name.to_str().and_then(|name| name.parse::<Pid>().ok()) {
                Some(tid) => tid,
                None => {
                    soft_errors.push(InitError::ProcessTaskEntryNotTid(file_name));
                    continue;
                }
            };

            // A name the caller gave (crashcatch patch) is not read again; nor one the
            // caller will give once the threads are stopped (`name_threads`).
            if let Some(name) = self.thread_names.remove(&tid) {
                self.threads.push(Thread { tid, name: Some(name) });
                continue;
            }
            if self.while_stopped.names {
                self.threads.push(Thread { tid, name: None });
                continue;
            }

            let name = self.read_thread_name(tid, &mut soft_errors);
            self.threads.push(Thread { tid, name });
        }

        Ok(())
    }

    /// The caller's look at the stopped process (only if they are), the application memory
    /// copied, the threads resumed (crashcatch patch): the registers, stacks and
    /// application memory are copied; the rest (modules, /proc files, thread names) does
    /// not need the threads stopped. Only without the process stop: a group-stopped process
    /// would stay stopped anyway.
    fn copy_while_stopped(
        &mut self,
        buffer: &mut DumpBuf,
        soft_errors: &mut ErrorList<WriterError>,
    ) -> Result<(), WriterError> {
        if self.threads_suspended {
            if let Some(look) = self.while_stopped.look.as_mut() {
                look(&mut self.app_memory, &mut self.thread_names);
            }
        }
        if self.while_stopped.names {
            self.name_threads(soft_errors.subwriter(WriterError::InitErrors));
        }
        self.write_app_memory(buffer)
            .map_err(WriterError::SectionAppMemoryError)?;
        if !self.stop_process {
            self.resume_threads(error_graph::strategy::DontCare);
        }
        Ok(())
    }

    /// Thread `tid`'s name from /proc/PID/task/TID/comm; None (and why) if unreadable.
    fn read_thread_name(
        &self,
        tid: Pid,
        soft_errors: &mut impl WriteErrorList<InitError>,
    ) -> Option<String> {
        if failspot!(ThreadName) {
            self.process_inspector.fail_one_syscall_with(libc::EPERM);
        }

        // Read the thread-name (if there is any)
        let pid = self.process_id;
        let name_result = self
            .process_inspector
            .read_file(format!("/proc/{pid}/task/{tid}/comm"))
            .map_err(std::io::Error::other)
            .and_then(|mut file| {
                let mut s = String::new();
                file.read_to_string(&mut s)?;
                Ok(s)
            });

        match name_result {
            Ok(name) => Some(name.trim_end().to_string()),
            Err(e) => {
                soft_errors.push(InitError::ReadThreadNameFailed(e));
                None
            }
        }
    }

    /// The names the while-stopped look gave (crashcatch patch:
    /// `set_thread_names_while_stopped`); a thread it did not name has its comm read now.
    fn name_threads(&mut self, mut soft_errors: impl WriteErrorList<InitError>) {
        let mut threads = std::mem::take(&mut self.threads);
        for thread in threads.iter_mut().filter(|t| t.name.is_none()) {
            thread.name = match self.thread_names.remove(&thread.tid) {
                Some(name) => Some(name),
                None => self.read_thread_name(thread.tid, &mut soft_errors),
            };
        }
        self.threads = threads;
    }

    fn enumerate_mappings(&mut self) -> Result<(), InitError> {
        // linux_gate_loc is the beginning of the kernel's mapping of
        // linux-gate.so in the process.  It doesn't actually show up in the
        // maps list as a filename, but it can be found using the AT_SYSINFO_EHDR
        // aux vector entry, which gives the information necessary to special
        // case its entry when creating the list of mappings.
        // See http://www.trilithium.com/johan/2005/08/linux-gate/ for more
        // information.
        let maps_path = format!("/proc/{}/maps", self.process_id);
        let text = self.proc_maps.take().or_else(|| {
            self.process_inspector.read_file(&maps_path).ok().and_then(|mut file| {
                let mut text = Vec::new();
                file.read_to_end(&mut text).ok().map(|_| text)
            })
        });
        self.mappings = match &text {
            Some(text) => procfs_core::process::MemoryMaps::from_read(&text[..])
                .map_err(MapsReaderError::from)
                .and_then(|maps| {
                    MappingInfo::aggregate(maps, self.auxv.get_linux_gate_address())
                }),
            // Unreadable: the original reader, for its error.
            None => MappingInfo::for_pid(
                &self.process_inspector,
                self.process_id,
                self.auxv.get_linux_gate_address(),
            ),
        }
        .map_err(InitError::AggregateMappingsFailed)?;
        self.proc_maps = text;

        // Although the initial executable is usually the first mapping, it's not
        // guaranteed (see http://crosbug.com/25355); therefore, try to use the
        // actual entry point to find the mapping.
        if let Some(entry_point_loc) = self
            .auxv
            .get_entry_address()
            .map(|u| usize::try_from(u).unwrap())
        {
            // If this module contains the entry-point, and it's not already the first
            // one, then we need to make it be first.  This is because the minidump
            // format assumes the first module is the one that corresponds to the main
            // executable (as codified in
            // processor/minidump.cc:MinidumpModuleList::GetMainModule()).
            if let Some(entry_mapping_idx) = self.mappings.iter().position(|mapping| {
                (mapping.start_address..mapping.start_address + mapping.size)
                    .contains(&entry_point_loc)
            }) {
                self.mappings.swap(0, entry_mapping_idx);
            }
        }
        let mut order: Vec<usize> = (0..self.mappings.len()).collect();
        order.sort_unstable_by_key(|&i| self.mappings[i].start_address);
        let disjoint = order.windows(2).all(|w| {
            let (a, b) = (&self.mappings[w[0]], &self.mappings[w[1]]);
            a.start_address.checked_add(a.size).is_some_and(|end| end <= b.start_address)
        });
        self.mappings_by_start = if disjoint { order } else { Vec::new() };
        Ok(())
    }

    /// Read thread info from /proc/$pid/status.
    /// Fill out the |tgid|, |ppid| and |pid| members of |info|. If unavailable,
    /// these members are set to -1. Returns true if all three members are
    /// available.
    pub fn get_thread_info_by_index(&self, index: usize) -> Result<ThreadInfo, ThreadInfoError> {
        if index > self.threads.len() {
            return Err(ThreadInfoError::IndexOutOfBounds(index, self.threads.len()));
        }

        ThreadInfo::create(&self.process_inspector, self.threads[index].tid)
    }

    // Returns a valid stack pointer and the mapping that contains the stack.
    // The stack pointer will usually point within this mapping, but it might
    // not in case of stack overflows, hence the returned pointer might be
    // different from the one that was passed in.
    pub fn get_stack_info(&self, int_stack_pointer: usize) -> Result<(usize, usize), WriterError> {
        // Round the stack pointer to the nearest page, this will cause us to
        // capture data below the stack pointer which might still be relevant.
        let mut stack_pointer = int_stack_pointer & !(self.page_size - 1);
        let mut mapping = self.find_mapping(stack_pointer);

        // The guard page has been 1 MiB in size since kernel 4.12, older
        // kernels used a 4 KiB one instead. Note the saturating add, as 32-bit
        // processes can have a stack pointer within 1MiB of usize::MAX
        let guard_page_max_addr = stack_pointer.saturating_add(1024 * 1024);

        // If we found no mapping, or the mapping we found has no permissions
        // then we might have hit a guard page, try looking for a mapping in
        // addresses past the stack pointer. Stack grows towards lower addresses
        // on the platforms we care about so the stack should appear after the
        // guard page.
        while !Self::may_be_stack(mapping) && (stack_pointer <= guard_page_max_addr) {
            stack_pointer += self.page_size;
            mapping = self.find_mapping(stack_pointer);
        }

        mapping
            .map(|mapping| {
                let valid_stack_pointer = if mapping.contains_address(stack_pointer) {
                    stack_pointer
                } else {
                    mapping.start_address
                };

                let stack_len = mapping.size - (valid_stack_pointer - mapping.start_address);
                (valid_stack_pointer, stack_len)
            })
            .ok_or(WriterError::NoStackPointerMapping)
    }

    fn may_be_stack(mapping: Option<&MappingInfo>) -> bool {
        if let Some(mapping) = mapping {
            return mapping
                .permissions
                .intersects(MMPermissions::READ | MMPermissions::WRITE);
        }

        false
    }

    pub fn sanitize_stack_copy(
        &self,
        stack_copy: &mut [u8],
        stack_pointer: usize,
        sp_offset: usize,
    ) -> Result<(), WriterError> {
        // We optimize the search for containing mappings in three ways:
        // 1) We expect that pointers into the stack mapping will be common, so
        //    we cache that address range.
        // 2) The last referenced mapping is a reasonable predictor for the next
        //    referenced mapping, so we test that first.
        // 3) We precompute a bitfield based upon bits 32:32-n of the start and
        //    stop addresses, and use that to short circuit any values that can
        //    not be pointers. (n=11)
        let defaced;
        #[cfg(target_pointer_width = "64")]
        {
            defaced = 0x0defaced0defacedusize.to_ne_bytes();
        }
        #[cfg(target_pointer_width = "32")]
        {
            defaced = 0x0defacedusize.to_ne_bytes();
        };
        // the bitfield length is 2^test_bits long.
        let test_bits = 11;
        // byte length of the corresponding array.
        let array_size: usize = 1 << (test_bits - 3);
        let array_mask = array_size - 1;
        // The amount to right shift pointers by. This captures the top bits
        // on 32 bit architectures. On 64 bit architectures this would be
        // uninformative so we take the same range of bits.
        let shift = 32 - 11;
        // let MappingInfo* last_hit_mapping = nullptr;
        // let MappingInfo* hit_mapping = nullptr;
        let stack_mapping = self.find_mapping_no_bias(stack_pointer);
        let mut last_hit_mapping: Option<&MappingInfo> = None;
        // The magnitude below which integers are considered to be to be
        // 'small', and not constitute a PII risk. These are included to
        // avoid eliding useful register values.
        let small_int_magnitude: isize = 4096;

        let mut could_hit_mapping = vec![0; array_size];
        // Initialize the bitfield such that if the (pointer >> shift)'th
        // bit, modulo the bitfield size, is not set then there does not
        // exist a mapping in mappings that would contain that pointer.
        for mapping in &self.mappings {
            if !mapping.is_executable() {
                continue;
            }
            // For each mapping, work out the (unmodulo'ed) range of bits to
            // set.
            let mut start = mapping.start_address;
            let mut end = start + mapping.size;
            start >>= shift;
            end >>= shift;
            for bit in start..=end {
                // Set each bit in the range, applying the modulus.
                could_hit_mapping[(bit >> 3) & array_mask] |= 1 << (bit & 7);
            }
        }

        // Zero memory that is below the current stack pointer.
        let offset =
            (sp_offset + std::mem::size_of::<usize>() - 1) & !(std::mem::size_of::<usize>() - 1);
        for x in &mut stack_copy[0..offset] {
            *x = 0;
        }
        let mut chunks = stack_copy[offset..].chunks_exact_mut(std::mem::size_of::<usize>());

        // Apply sanitization to each complete pointer-aligned word in the
        // stack.
        for sp in &mut chunks {
            let addr = usize::from_ne_bytes(sp.to_vec().as_slice().try_into()?);
            let addr_signed = isize::from_ne_bytes(sp.to_vec().as_slice().try_into()?);

            if addr <= small_int_magnitude as usize && addr_signed >= -small_int_magnitude {
                continue;
            }

            if let Some(stack_map) = stack_mapping
                && stack_map.contains_address(addr)
            {
                continue;
            }
            if let Some(last_hit) = last_hit_mapping
                && last_hit.contains_address(addr)
            {
                continue;
            }

            let test = addr >> shift;
            if (could_hit_mapping[(test >> 3) & array_mask] & (1 << (test & 7)) != 0)
                && let Some(hit_mapping) = self.find_mapping_no_bias(addr)
                && hit_mapping.is_executable()
            {
                last_hit_mapping = Some(hit_mapping);
                continue;
            }
            sp.copy_from_slice(&defaced);
        }
        // Zero any partial word at the top of the stack, if alignment is
        // such that that is required.
        for sp in chunks.into_remainder() {
            *sp = 0;
        }
        Ok(())
    }

    // Find the mapping which the given memory address falls in.
    pub fn find_mapping(&self, address: usize) -> Option<&MappingInfo> {
        if !self.mappings_by_start.is_empty() && self.mappings_by_start.len() == self.mappings.len() {
            // crashcatch patch: the same answer as the linear search, disjoint mappings
            // holding an address in one of them at most.
            let order = &self.mappings_by_start;
            let after = order.partition_point(|&i| self.mappings[i].start_address <= address);
            return after
                .checked_sub(1)
                .map(|i| &self.mappings[order[i]])
                .filter(|map| address - map.start_address < map.size);
        }
        self.mappings
            .iter()
            .find(|map| address >= map.start_address && address - map.start_address < map.size)
    }

    // Find the mapping which the given memory address falls in. Uses the
    // unadjusted mapping address range from the kernel, rather than the
    // biased range.
    pub fn find_mapping_no_bias(&self, address: usize) -> Option<&MappingInfo> {
        self.mappings.iter().find(|map| {
            address >= map.system_mapping_info.start_address
                && address < map.system_mapping_info.end_address
        })
    }

    pub fn build_id_from_process_memory_for_index(
        &mut self,
        idx: usize,
    ) -> Result<Vec<u8>, WriterError> {
        let reader = self.process_inspector.process_reader();
        module_reader::read_build_id_from_module(module_reader::ProcessModuleMemoryReader::new(
            &reader,
            self.mappings[idx].start_address,
        ))
        .map_err(WriterError::ModuleReaderError)
    }

    pub fn soname_from_process_memory_for_index(
        &mut self,
        idx: usize,
    ) -> Result<String, WriterError> {
        let reader = self.process_inspector.process_reader();
        module_reader::read_soname_from_module(module_reader::ProcessModuleMemoryReader::new(
            &reader,
            self.mappings[idx].start_address,
        ))
        .map_err(WriterError::ModuleReaderError)
    }

    /// Copies a block of bytes from the target process, returning the heap
    /// allocated copy
    #[inline]
    pub fn copy_from_process(
        process_inspector: &ProcessInspector,
        src: usize,
        length: usize,
    ) -> Result<Vec<u8>, CopyFromProcessError> {
        let length =
            std::num::NonZeroUsize::new(length).ok_or(CopyFromProcessError::InvalidArgument)?;
        let mem = process_inspector.process_reader();
        mem.read_to_vec(src, length)
    }
}

impl Drop for MinidumpWriter {
    fn drop(&mut self) {
        // Always try to resume all threads (e.g. in case of error)
        self.resume_threads(error_graph::strategy::DontCare);
        // Always allow the process to continue.
        if self.stop_process {
            let _ = self.continue_process();
        }
    }
}

fn write_file(
    process_inspector: &ProcessInspector,
    buffer: &mut DumpBuf,
    filename: &str,
) -> std::result::Result<MDLocationDescriptor, MemoryWriterError> {
    let content = process_inspector
        .read_file(filename)
        .map_err(std::io::Error::other)
        .and_then(|mut file| {
            let mut v = Vec::new();
            file.read_to_end(&mut v)?;
            Ok(v)
        })?;

    let section = MemoryArrayWriter::write_bytes(buffer, &content);
    Ok(section.location())
}

fn write_soft_errors(
    buffer: &mut DumpBuf,
    soft_errors: ErrorList<WriterError>,
) -> Result<MDLocationDescriptor, WriterError> {
    let soft_errors_json_str =
        serde_json::to_string_pretty(&soft_errors).map_err(WriterError::ConvertToJsonFailed)?;
    let section = MemoryArrayWriter::write_bytes(buffer, soft_errors_json_str.as_bytes());
    Ok(section.location())
}
