//! `dumpcheck DUMP`: prints, as JSON, what the tests check in a minidump, read with the
//! `minidump` crate: the exception, threads, modules (with build ids), the memory ranges,
//! crashcatch's metadata stream, and every Python thread's frames decoded from the dump's
//! memory alone (pylayout over the dump's memory list).

use minidump::{
    Minidump, MinidumpException, MinidumpModuleList, MinidumpThreadList, Module, UnifiedMemoryList,
};
use pylayout::text::{for_each_char, StrRead};
use pylayout::walk;
use pylayout::{lines, Layout, Memory};
use serde_json::{json, Value};

const METADATA_STREAM: u32 = 0x4343_0001;

/// The dump's memory list as a `pylayout::Memory`; reads may span adjacent regions.
struct DumpMemory<'a>(UnifiedMemoryList<'a>);

impl Memory for DumpMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr + done as u64;
            let Some(region) = self.0.memory_at_address(at) else { return false };
            let bytes = region.bytes();
            let off = (at - region.base_address()) as usize;
            let n = (bytes.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[off..off + n]);
            done += n;
        }
        true
    }
}

fn main() {
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
    let exception = dump.get_stream::<MinidumpException>().ok().map(|e| {
        json!({
            "tid": e.get_crashing_thread_id(),
            "code": e.raw.exception_record.exception_code,
            "address": e.raw.exception_record.exception_address,
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
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{}",
        json!({"size": size, "exception": exception, "threads": threads, "modules": modules,
               "memory": ranges, "metadata": metadata, "python": python, "streams_ok": streams_ok,
               "thread_names": thread_names})
    );
}

/// Every Python thread of the interpreter named in the metadata, innermost frame first.
fn decode_python(mem: &DumpMemory, meta: &Value) -> Value {
    let version = meta["python"]["version"].as_str().unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u8>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let Ok(layout) = Layout::for_version(major, minor) else {
        return json!({"error": format!("no layout for {version}")});
    };
    let str_type = meta["types"]["str"].as_u64().unwrap_or(0);
    let interp = meta["python"]["interp"].as_u64().unwrap_or(0);
    let text = |obj: u64| {
        let mut s = String::new();
        let r = for_each_char(mem, &layout, str_type, obj, 4096, &mut |c| {
            s.push(char::from_u32(c).unwrap_or('?'))
        });
        matches!(r, StrRead::Done { .. }).then_some(s)
    };
    let mut threads = Vec::new();
    let complete = walk::for_each_thread(mem, &layout, interp, &mut |ts| {
        let mut frames = Vec::new();
        let end = walk::for_each_frame(mem, &layout, ts, 0, &mut |f| {
            let field = |off: Option<u32>| off.and_then(|o| mem.ptr_at(f.code, o)).and_then(text);
            frames.push(json!({
                "file": field(layout.code_filename),
                "name": field(layout.code_name),
                "qualname": field(layout.code_qualname),
                "line": lines::addr_to_line(mem, &layout, f.code, f.addr),
            }));
            true
        });
        threads.push(json!({
            "tstate": ts,
            "thread_id": walk::thread_id(mem, &layout, ts),
            "native_thread_id": walk::native_thread_id(mem, &layout, ts),
            "frames": frames,
            "walk": format!("{end:?}"),
        }));
        true
    });
    json!({"threads": threads, "thread_list_complete": complete})
}
