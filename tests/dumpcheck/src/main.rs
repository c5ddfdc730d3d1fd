//! `dumpcheck DUMP`: prints, as JSON, what the tests check in a minidump, read with the
//! `minidump` crate: the exception (with the crashing thread's rip, rsp, rbp), threads, modules (with build ids), the memory ranges,
//! crashcatch's metadata stream, and every Python thread's frames decoded from the dump's
//! memory alone (the symbolizer's decoder; the tests compare them with the scripts' lines).
//!
//! `dumpcheck --rust-demangle NAME…`: each Rust symbol name as rustc-demangle's `{:#}`
//! (hash-free) form prints it, one a line (the name itself if it is not a Rust one).
//!
//! `dumpcheck --py-locals PID INFO`: a stopped process's frame locals (see py_locals.rs).

mod py_locals;

use minidump::{Minidump, MinidumpException, MinidumpModuleList, MinidumpThreadList, Module};
use serde_json::{json, Value};
use symbolizer::crash::METADATA_STREAM;
use symbolizer::memory::DumpMemory;
use symbolizer::python::{decode_python as decode, PyTarget};

/// MD_LINUX_ENVIRON.
const LINUX_ENVIRON: u32 = 0x4767_0007;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--rust-demangle") {
        for name in &args[2..] {
            match rustc_demangle::try_demangle(name) {
                Ok(d) => println!("{d:#}"),
                Err(_) => println!("{name}"),
            }
        }
        return;
    }
    if let [_, flag, pid, info] = &args[..] {
        if flag == "--py-locals" {
            if let Err(e) = py_locals::main(pid, info) {
                eprintln!("dumpcheck: {e}");
                std::process::exit(2);
            }
            return;
        }
    }
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dumpcheck DUMP");
        std::process::exit(2);
    };
    let dump = match Minidump::read_path(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dumpcheck: cannot read {path}: {e}");
            std::process::exit(2);
        }
    };
    let system = dump.get_stream::<minidump::MinidumpSystemInfo>().ok();
    let exception = dump.get_stream::<MinidumpException>().ok().map(|e| {
        // The crashing thread's registers as the dump records them.
        let context = system.as_ref().and_then(|sys| e.context(sys, None)).map(|c| {
            let reg = |name: &str| c.get_register(name);
            json!({"rip": reg("rip"), "rsp": reg("rsp"), "rbp": reg("rbp")})
        });
        json!({
            "tid": e.get_crashing_thread_id(),
            "code": e.raw.exception_record.exception_code,
            "address": e.raw.exception_record.exception_address,
            "context": context,
        })
    });
    let threads: Vec<Value> = dump
        .get_stream::<MinidumpThreadList>()
        .map(|l| {
            l.threads
                .iter()
                .map(|t| {
                    json!({"tid": t.raw.thread_id, "stack_start": t.raw.stack.start_of_memory_range,
                                "stack_size": t.raw.stack.memory.data_size})
                })
                .collect()
        })
        .unwrap_or_default();
    let modules: Vec<Value> = dump
        .get_stream::<MinidumpModuleList>()
        .map(|l| {
            l.iter()
                .map(|m| {
                    json!({"name": m.code_file(), "base": m.base_address(), "size": m.size(),
                                "build_id": m.code_identifier().map(|c| c.to_string())})
                })
                .collect()
        })
        .unwrap_or_default();
    let metadata: Value = dump
        .get_raw_stream(METADATA_STREAM)
        .ok()
        .and_then(|raw| serde_json::from_slice(raw).ok())
        .unwrap_or(Value::Null);
    let memory = dump.get_memory();
    let ranges: Vec<Value> = memory
        .as_ref()
        .map(|m| m.by_addr().map(|r| json!([r.base_address(), r.bytes().len()])).collect())
        .unwrap_or_default();
    let python = memory.map(|m| decode_python(&DumpMemory(m), &metadata)).unwrap_or(Value::Null);
    // Every other stream minidump-writer writes must parse too (offsets intact).
    let mut streams_ok = serde_json::Map::new();
    streams_ok.insert("system_info".into(), dump.get_stream::<minidump::MinidumpSystemInfo>().is_ok().into());
    streams_ok
        .insert("thread_names".into(), dump.get_stream::<minidump::MinidumpThreadNames>().is_ok().into());
    streams_ok.insert("linux_maps".into(), dump.get_stream::<minidump::MinidumpLinuxMaps>().is_ok().into());
    streams_ok
        .insert("memory_info".into(), dump.get_stream::<minidump::MinidumpMemoryInfoList>().is_ok().into());
    streams_ok
        .insert("handle_data".into(), dump.get_stream::<minidump::MinidumpHandleDataStream>().is_ok().into());
    streams_ok
        .insert("proc_status".into(), dump.get_stream::<minidump::MinidumpLinuxProcStatus>().is_ok().into());
    let names = dump.get_stream::<minidump::MinidumpThreadNames>().ok();
    let thread_names: Vec<Value> = threads
        .iter()
        .filter_map(|t| {
            let tid = t["tid"].as_u64()? as u32;
            Some(json!([tid, names.as_ref()?.get_name(tid)?]))
        })
        .collect();
    // minidump-writer's LinuxEnviron stream (/proc/PID/environ): NAME=VALUE strings.
    let environ: Option<Vec<String>> = dump.get_raw_stream(LINUX_ENVIRON).ok().map(|raw| {
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    });
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}",
        json!({"size": size, "exception": exception, "threads": threads, "modules": modules,
               "memory": ranges, "metadata": metadata, "python": python, "streams_ok": streams_ok,
               "thread_names": thread_names, "environ": environ})
    );
}

/// Every Python thread of the interpreter named in the metadata, innermost frame first.
fn decode_python(mem: &DumpMemory, meta: &Value) -> Value {
    let version = meta["python"]["version"].as_str().unwrap_or("");
    let (threads, problem, _) = decode(mem, &PyTarget::from_metadata(meta), version, &|_| false, None);
    let threads: Vec<Value> = threads
        .iter()
        .map(|t| {
            json!({
                "tstate": t.tstate,
                "thread_id": t.thread_id,
                "native_thread_id": t.native_thread_id,
                "walk": t.problem,
                "frames": t.frames.iter().map(|f| json!({
                    "file": f.file.as_deref(), "name": f.name.as_deref(), "qualname": f.qualname.as_deref(), "line": f.line,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"threads": threads, "thread_list_complete": problem.is_none()})
}
