//! The process-wide facts of the core (ids, command line, file mappings, thread pointers),
//! from whichever of the dump's streams hold them.

use super::notes::{self, FileMapping};
use minidump::format::MINIDUMP_STREAM_TYPE as ST;
use minidump::{Minidump, MinidumpLinuxMaps, MinidumpLinuxProcStatus, MinidumpMiscInfo};
use procfs_core::process::MMapPath;
use std::collections::HashMap;

pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub name: Vec<u8>,
    /// NUL-separated, as /proc/PID/cmdline.
    pub args: Vec<u8>,
}

impl Process {
    /// `first_tid`: the pid when the dump records none.
    pub fn of<T: std::ops::Deref<Target = [u8]>>(
        dump: &Minidump<T>,
        misc: Option<&MinidumpMiscInfo>,
        first_tid: u32,
    ) -> Process {
        let status = dump.get_stream::<MinidumpLinuxProcStatus>().ok();
        let raw = status.as_ref().map(|s| s.raw_bytes().into_owned()).unwrap_or_default();
        let field = |key: &str| -> Option<&[u8]> {
            raw.split(|&b| b == b'\n').find_map(|line| {
                let rest = line.strip_prefix(key.as_bytes())?.strip_prefix(b":")?;
                Some(rest.trim_ascii())
            })
        };
        // "Uid:	0	0	0	0": the real id first.
        let number = |key: &str| -> Option<u32> {
            let v = field(key)?;
            let first = v.split(|b| b.is_ascii_whitespace()).next()?;
            std::str::from_utf8(first).ok()?.parse().ok()
        };
        let args = dump.get_raw_stream(ST::LinuxCmdLine as u32).map(<[u8]>::to_vec).unwrap_or_default();
        let argv0 = args.split(|&b| b == 0).next().unwrap_or_default();
        let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
        let name = field("Name").filter(|n| !n.is_empty()).unwrap_or(base).to_vec();
        Process {
            pid: misc
                .and_then(|m| m.raw.process_id().copied())
                .or_else(|| number("Pid"))
                .unwrap_or(first_tid),
            ppid: number("PPid").unwrap_or(0),
            uid: number("Uid").unwrap_or(0),
            gid: number("Gid").unwrap_or(0),
            name,
            args,
        }
    }

    pub fn info(&self) -> notes::Process<'_> {
        notes::Process {
            pid: self.pid,
            ppid: self.ppid,
            uid: self.uid,
            gid: self.gid,
            name: &self.name,
            args: &self.args,
        }
    }
}

/// The file-backed mappings, for NT_FILE (gdb reads the pages a core lacks from these files
/// and checks build ids with them).
pub fn file_mappings<'a>(maps: &'a MinidumpLinuxMaps) -> Vec<FileMapping<'a>> {
    maps.iter()
        .filter_map(|m| {
            let MMapPath::Path(path) = &m.map.pathname else { return None };
            let (start, end) = m.map.address;
            (start < end).then(|| FileMapping {
                start,
                end,
                offset: m.map.offset,
                path: path.as_os_str().as_encoded_bytes(),
            })
        })
        .collect()
}

/// Each Python thread's thread pointer (FS base), by OS thread id: the minidump's contexts
/// lack it, but on glibc x86-64 `pthread_self()`, which crashcatch's metadata records as a
/// Python thread's `thread_id`, is that address. gdb needs it for thread-local variables.
pub fn thread_pointers(metadata: &serde_json::Value) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for t in metadata["threads"].as_array().into_iter().flatten() {
        let tid = t["tid"].as_u64().and_then(|t| u32::try_from(t).ok());
        let pointer = t["python"]["thread_id"].as_u64().filter(|&p| p != 0);
        if let (Some(tid), Some(p)) = (tid, pointer) {
            out.entry(tid).or_insert(p);
        }
    }
    out
}
