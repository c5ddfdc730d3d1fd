//! What a crashcatch minidump opened in the debugger (`lldb -c app.dmp`) records that the
//! debugger cannot give: each thread's thread state and name. CPython ≤3.10 names a thread
//! state's thread only by `pthread_t` (fs_base on x86-64 glibc), and lldb reads neither
//! fs_base nor the ThreadNames stream from a minidump (docs/minidump.md, "lldb"); the dump's
//! metadata maps each thread id to both, as `crashcatch symbolize` uses it.

use crate::crash::METADATA_STREAM;
use minidump::Minidump;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Dumps larger than this are not read for their metadata (a core file is not a minidump;
/// crashcatch's dumps are kilobytes to a few megabytes).
const MAX_DUMP: u64 = 1 << 30;

/// A thread as the dump's metadata records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpThread {
    /// Its Python thread state's address.
    pub tstate: Option<u64>,
    /// Its OS name (`/proc/PID/task/TID/comm`).
    pub name: Option<String>,
}

/// Thread id → what the metadata of the crashcatch minidump at `path` says of it; empty
/// when the file is not one (a kernel core, another tool's minidump).
pub fn threads(path: &Path) -> HashMap<u64, DumpThread> {
    let mut out = HashMap::new();
    if std::fs::metadata(path).map_or(true, |m| m.len() > MAX_DUMP) {
        return out;
    }
    let Ok(bytes) = std::fs::read(path) else { return out };
    if !bytes.starts_with(b"MDMP") {
        return out;
    }
    let Ok(dump) = Minidump::read(&bytes[..]) else { return out };
    let Ok(raw) = dump.get_raw_stream(METADATA_STREAM) else { return out };
    let Ok(metadata) = serde_json::from_slice::<Value>(raw) else { return out };
    for t in metadata["threads"].as_array().into_iter().flatten() {
        if let Some(tid) = t["tid"].as_u64() {
            let name = t["name"].as_str().map(str::to_string);
            out.entry(tid).or_insert(DumpThread { tstate: t["python"]["tstate"].as_u64(), name });
        }
    }
    out
}
