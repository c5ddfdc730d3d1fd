//! `crashcatch list`: the dumps of a crash directory, newest first, each with what it is a
//! dump of and its crash signature (the crashing thread's top Python and native frame).

use crate::crash::{Crash, Options};
use crate::render::signal_name;
use crate::terminal::Escaped;
use minidump::{Minidump, MinidumpLinuxProcStatus};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// One `.dmp` file of the directory.
#[derive(Clone, Debug)]
pub struct Listed {
    pub path: PathBuf,
    pub size: u64,
    /// When the dump was taken (its metadata), else the file's modification time.
    pub time_unix_ns: u64,
    pub argv: Vec<String>,
    pub pid: Option<u32>,
    pub kind: Option<String>,
    pub signal: Option<i64>,
    /// `function (file:line)` of the crashing thread's innermost Python frame.
    pub python_frame: Option<String>,
    /// The crashing thread's innermost native frame: its function, else `module+0xoffset`.
    pub native_frame: Option<String>,
    /// Why the dump cannot be read (truncated, not a minidump, ...): listed, not skipped.
    pub damaged: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot list the crash directory {0}: {1} (give the directory, or set CRASHCATCH_DUMP_DIR to where the program writes its dumps)")]
pub struct ListError(PathBuf, std::io::Error);

/// The `.dmp` files of `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<Listed>, ListError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ListError(dir.to_path_buf(), e))?;
    let mut listed: Vec<Listed> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "dmp"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| describe(&e.path()))
        .collect();
    listed.sort_by(|a, b| b.time_unix_ns.cmp(&a.time_unix_ns).then_with(|| b.path.cmp(&a.path)));
    Ok(listed)
}

/// What one dump file is; a file that cannot be read is `damaged`, with the reason.
pub fn describe(path: &Path) -> Listed {
    let meta = std::fs::metadata(path).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut out = Listed {
        path: path.to_path_buf(),
        size: meta.map_or(0, |m| m.len()),
        time_unix_ns: modified,
        argv: Vec::new(),
        pid: None,
        kind: None,
        signal: None,
        python_frame: None,
        native_frame: None,
        damaged: None,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            out.damaged = Some(format!("cannot read it: {e}"));
            return out;
        }
    };
    if let Err(problem) = check_complete(&bytes) {
        out.damaged = Some(problem);
        return out;
    }
    let crash = match Crash::from_bytes_with(path, &bytes, &Options::default()) {
        Ok(c) => c,
        Err(e) => {
            out.damaged = Some(e.to_string());
            return out;
        }
    };
    let m = &crash.metadata;
    if let Some(ns) = m["time_unix_ns"].as_u64() {
        out.time_unix_ns = ns;
    }
    out.argv = m["python"]["argv"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    out.pid = process_id(&bytes);
    out.kind = Some(crash.kind.clone());
    out.signal = (crash.signal != 0).then_some(crash.signal);
    if let Some(thread) = crash.threads.first() {
        out.python_frame = thread.python.first().map(|f| {
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!(" ({file}:{line})"),
                (Some(file), None) => format!(" ({file})"),
                _ => String::new(),
            };
            format!("{}{place}", f.function().unwrap_or("?"))
        });
        out.native_frame = thread.native.first().map(|f| match (&f.function, &f.module) {
            (Some(function), _) => function.clone(),
            (None, Some(module)) => format!("{module}+{:#x}", f.module_offset),
            (None, None) => format!("{:#x}", f.address),
        });
    }
    out
}

/// Every stream the dump's directory names lies inside the file: a dump cut short (a full
/// disk, a copy interrupted) is told apart from a complete one whose parts are merely odd.
fn check_complete(bytes: &[u8]) -> Result<(), String> {
    let dump = Minidump::read(bytes).map_err(|e| format!("not a minidump, or truncated: {e}"))?;
    let len = bytes.len() as u64;
    for stream in dump.all_streams() {
        let end = u64::from(stream.location.rva) + u64::from(stream.location.data_size);
        if end > len {
            return Err(format!(
                "truncated: {len} bytes, its stream {:#x} ends at byte {end}",
                stream.stream_type
            ));
        }
    }
    let memory = dump.get_stream::<minidump::MinidumpMemoryList>();
    if let Ok(list) = memory {
        if let Some(region) = list.iter().find(|r| r.bytes.len() as u64 != r.size) {
            return Err(format!("truncated: the memory at {:#x} is cut short", region.base_address));
        }
    }
    Ok(())
}

/// The dumped process's id, from its /proc status (minidump-writer's LinuxProcStatus stream).
fn process_id(bytes: &[u8]) -> Option<u32> {
    let dump = Minidump::read(bytes).ok()?;
    let status = dump.get_stream::<MinidumpLinuxProcStatus>().ok()?;
    let raw = status.raw_bytes();
    String::from_utf8_lossy(&raw)
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The program's name for the table: its script (or `-m` module) where the command is
/// `python [options] SCRIPT`, else the executable's file name.
pub fn program(argv: &[String]) -> String {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let Some(first) = argv.first() else { return "?".to_string() };
    if !base(first).starts_with("python") {
        return base(first);
    }
    let mut rest = argv.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-m" => return rest.next().map_or_else(|| base(first), |m| format!("-m {m}")),
            "-c" => return format!("{} -c", base(first)),
            "-X" | "-W" => {
                rest.next();
            }
            a if a.starts_with('-') => {}
            script => return base(script),
        }
    }
    base(first)
}

pub fn json(listed: &[Listed]) -> Value {
    let entries: Vec<Value> = listed
        .iter()
        .map(|l| {
            json!({
                "path": l.path.display().to_string(),
                "size": l.size,
                "time_unix_ns": l.time_unix_ns,
                "program": program(&l.argv),
                "argv": l.argv,
                "pid": l.pid,
                "kind": l.kind,
                "signal": l.signal,
                "signal_name": l.signal.map(signal_name),
                "python_frame": l.python_frame,
                "native_frame": l.native_frame,
                "damaged": l.damaged,
            })
        })
        .collect();
    json!({"schema": "crashcatch-list/1", "dumps": entries})
}

/// A table, newest first: one line per dump, then its crash signature indented under it.
pub fn text(dir: &Path, listed: &[Listed]) -> String {
    use std::fmt::Write;
    // Names come from the crashed program (file names, argv, function names): never let
    // them act on the terminal.
    let e = |s: &str| Escaped(s).to_string();
    let dir = e(&dir.display().to_string());
    let mut out = String::new();
    if listed.is_empty() {
        let _ = writeln!(out, "no dumps in {dir}");
        return out;
    }
    let _ = writeln!(out, "{} dumps in {dir}, newest first:", listed.len());
    for l in listed {
        let name = l.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let signal = match (l.signal, l.kind.as_deref()) {
            (_, Some(kind)) if kind != "fatal-signal" => kind.to_string(),
            (Some(s), _) => signal_name(s).to_string(),
            _ => "-".to_string(),
        };
        let pid = l.pid.map_or("?".to_string(), |p| p.to_string());
        let _ = writeln!(
            out,
            "{}  {:<20} pid {:<8} {:<10} {:>9}  {name}",
            utc_time(l.time_unix_ns),
            e(&program(&l.argv)),
            pid,
            signal,
            human_size(l.size),
            name = e(&name)
        );
        if let Some(problem) = &l.damaged {
            let _ = writeln!(out, "    DAMAGED: {}", e(problem));
            continue;
        }
        let _ = writeln!(out, "    python: {}", e(l.python_frame.as_deref().unwrap_or("-")));
        let _ = writeln!(out, "    native: {}", e(l.native_frame.as_deref().unwrap_or("-")));
    }
    out
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} B"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` UTC, from the stamp the dump helper puts in file names.
pub fn utc_time(ns: u64) -> String {
    let stamp = handoff::utc_stamp(ns);
    let part = |range: std::ops::Range<usize>| stamp.get(range).unwrap_or("??");
    format!("{}-{}-{} {}:{}:{}Z", part(0..4), part(4..6), part(6..8), part(9..11), part(11..13), part(13..15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_time(1_795_721_757_123_000_000), "2026-11-26 19:35:57Z");
    }

    #[test]
    fn programs() {
        let v = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(program(&v("/usr/bin/python3.12 -X dev /tmp/a/crash.py x")), "crash.py");
        assert_eq!(program(&v("python3 -m pkg.mod")), "-m pkg.mod");
        assert_eq!(program(&v("/opt/app/server --port 1")), "server");
        assert_eq!(program(&[]), "?");
    }
}
