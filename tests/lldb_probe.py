"""What a plain lldb (no crashcatch plugin) makes of the core or minidump it has open, as JSON.

Used by tests/test_lldb_minidumps.py inside lldb's own Python (any version lldb embeds, so
3.6-compatible, stdlib only):

    lldb -b -c app.dmp -o "command script import lldb_probe.py" \
         -o "script lldb_probe.report('out.json', 'request.json')"

request.json: {"ranges": [[start, size], ...]}: memory to read through lldb, in 64-byte
reads, as a debugger command would; each range is reported with the sha256 of what lldb
read and the addresses where a read failed.
"""
import hashlib
import json

import lldb

CHUNK = 64


def module_info(target, module):
    header = module.GetObjectFileHeaderAddress()
    return {
        "path": module.GetFileSpec().fullpath,
        "name": module.GetFileSpec().GetFilename(),
        "uuid": module.GetUUIDString(),
        "base": header.GetLoadAddress(target) if header.IsValid() else None,
        # A module lldb could not load from a file is a placeholder without symbols.
        "symbols": module.GetNumSymbols(),
    }


def frame_info(frame):
    module = frame.GetModule()
    return {
        "pc": frame.GetPC(),
        # Shared by a function's frame and the calls inlined into it.
        "cfa": frame.GetCFA(),
        "module": module.GetFileSpec().GetFilename() if module.IsValid() else None,
        "function": frame.GetFunctionName(),
        "inlined": frame.IsInlined(),
    }


def read_range(process, start, size):
    digest, unreadable = hashlib.sha256(), []
    for offset in range(0, size, CHUNK):
        length = min(CHUNK, size - offset)
        error = lldb.SBError()
        data = process.ReadMemory(start + offset, length, error)
        if not error.Success() or data is None or len(data) != length:
            unreadable.append(start + offset)
            data = b"\0" * length
        digest.update(data)
    return {"start": start, "size": size, "sha256": digest.hexdigest(), "unreadable": unreadable[:8],
            "unreadable_count": len(unreadable)}


def report(out_path, request_path):
    with open(request_path) as f:
        request = json.load(f)
    target = lldb.debugger.GetSelectedTarget()
    process = target.GetProcess()
    threads = [process.GetThreadAtIndex(i) for i in range(process.GetNumThreads())]
    selected = process.GetSelectedThread()
    signal = None
    if selected.GetStopReason() == lldb.eStopReasonSignal:
        signal = selected.GetStopReasonDataAtIndex(0)
    result = {
        "pid": process.GetProcessID(),
        "tids": [t.GetThreadID() for t in threads],
        "selected": selected.GetThreadID(),
        "signal": signal,
        "modules": [module_info(target, m) for m in target.module_iter()],
        "frames": {str(t.GetThreadID()): [frame_info(t.GetFrameAtIndex(i)) for i in range(t.GetNumFrames())]
                   for t in threads},
        "memory": [read_range(process, start, size) for start, size in request["ranges"]],
    }
    with open(out_path, "w") as f:
        json.dump(result, f)
