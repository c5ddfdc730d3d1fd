"""Hostile variants of a real crashcatch minidump, made by rewriting its streams: small files
that would cost a symbolizer with linear lookups per thread minutes of work. Used by
test_symbolize_hostile.py (each must be read quickly) and as fuzz seeds (test_fuzz_target.py)."""
import json
import os
import struct

THREAD_LIST_STREAM = 3
MEMORY_LIST_STREAM = 5
LINUX_MAPS_STREAM = 0x47670009
METADATA_STREAM = 0x43430001
# MINIDUMP_THREAD: tid, suspend count, priority class, priority, TEB, stack memory
# descriptor (start, size, rva), context location (size, rva).
THREAD = struct.Struct("<IIIIQQIIII")
# Where CONTEXT_AMD64 keeps the stack, frame and instruction pointers.
CONTEXT_RSP, CONTEXT_RBP, CONTEXT_RIP = 0x98, 0xA0, 0xF8


def streams(dump):
    """{stream type: (file offset, size)} of a minidump."""
    _, _, count, directory = struct.unpack_from("<IIII", dump, 0)
    out = {}
    for i in range(count):
        kind, size, rva = struct.unpack_from("<III", dump, directory + 12 * i)
        out[kind] = (rva, size)
    return out


def replace_stream(dump, kind, payload):
    """`dump` with stream `kind`'s data replaced by `payload` (appended at the end, the
    directory entry pointed at it)."""
    out = bytearray(dump)
    _, _, count, directory = struct.unpack_from("<IIII", out, 0)
    for i in range(count):
        if struct.unpack_from("<I", out, directory + 12 * i)[0] == kind:
            struct.pack_into("<II", out, directory + 12 * i + 4, len(payload), len(out))
    return bytes(out + payload)


def metadata(dump):
    rva, size = streams(dump)[METADATA_STREAM]
    return json.loads(dump[rva:rva + size])


def with_metadata(dump, meta):
    return replace_stream(dump, METADATA_STREAM, json.dumps(meta).encode())


def thread_list(dump):
    """The dump's MINIDUMP_THREAD entries, as tuples."""
    rva, _ = streams(dump)[THREAD_LIST_STREAM]
    count = struct.unpack_from("<I", dump, rva)[0]
    return [THREAD.unpack_from(dump, rva + 4 + THREAD.size * i) for i in range(count)]


def with_threads(dump, threads):
    payload = struct.pack("<I", len(threads)) + b"".join(THREAD.pack(*t) for t in threads)
    return replace_stream(dump, THREAD_LIST_STREAM, payload)


def many_threads(dump, count):
    """`count` threads, each listed in the thread list (a copy of a real thread's stack and
    registers under a new id) and in the metadata (a copy of its entry): a lookup of each
    thread's metadata by a linear search costs count² steps."""
    threads = thread_list(dump)
    meta = metadata(dump)
    first_tid = max(t[0] for t in threads) + 1
    copies = [(first_tid + i,) + threads[i % len(threads)][1:] for i in range(count - len(threads))]
    entries = meta["threads"]
    meta["threads"] = entries + [dict(entries[i % len(entries)], tid=t[0]) for i, t in enumerate(copies)]
    return with_metadata(with_threads(dump, threads + copies), meta)


def repeated_thread(dump, count):
    """The crashing thread listed `count` times: each copy would be unwound (with its source
    context copied) again."""
    threads = thread_list(dump)
    crashed = metadata(dump)["requesting_tid"]
    mine = [t for t in threads if t[0] == crashed] or threads[:1]
    return with_threads(dump, threads + mine * count)


def memory_regions(dump):
    """[(address, size, file offset)] of a minidump's memory list(s)."""
    _, _, count, directory = struct.unpack_from("<IIII", dump, 0)
    regions = []
    for i in range(count):
        kind, _, rva = struct.unpack_from("<III", dump, directory + 12 * i)
        if kind == 5:  # MemoryListStream
            for j in range(struct.unpack_from("<I", dump, rva)[0]):
                regions.append(struct.unpack_from("<QII", dump, rva + 4 + 16 * j))
        elif kind == 9:  # Memory64ListStream
            n, offset = struct.unpack_from("<QQ", dump, rva)
            for j in range(n):
                start, size = struct.unpack_from("<QQ", dump, rva + 16 + 16 * j)
                regions.append((start, size, offset))
                offset += size
    return regions


def with_memory(dump, address, data):
    """`dump` with `data` as the memory at `address`: a region added to its memory list."""
    rva, _ = streams(dump)[MEMORY_LIST_STREAM]
    count = struct.unpack_from("<I", dump, rva)[0]
    descriptors = dump[rva + 4:rva + 4 + 16 * count] + struct.pack("<QII", address, len(data), len(dump))
    return replace_stream(dump + data, MEMORY_LIST_STREAM, struct.pack("<I", count + 1) + descriptors)


def regressions(dump, line_table_size):
    """Variants of a real dump (frame-object layouts, <=3.10) that once broke the
    symbolizer; each must stay quick and quiet. {name: bytes}. `line_table_size`: bytes of
    the long line table of the "long-line-table" variant."""
    data = bytearray(dump)
    regions = memory_regions(data)

    def offset(addr):
        for start, size, rva in regions:
            if start <= addr and addr + 8 <= start + size:
                return rva + addr - start
        raise KeyError(addr)

    read = lambda addr: struct.unpack_from("<Q", data, offset(addr))[0]  # noqa: E731
    meta = metadata(data)
    version = ".".join(meta["python"]["version"].split(".")[:2])
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylayout", "data",
                           "layouts.json")) as f:
        layout = json.load(f).get(version, {})
    keys = ("interp.threads_head", "tstate.next", "tstate.frame", "frame.back", "frame.code", "code.linetable")
    if not all(k in layout for k in keys):
        return {}
    head, next_, frame_, back, code, linetable = (layout[k] for k in keys)
    tstate = read(meta["python"]["interp"] + head)
    while tstate and not read(tstate + frame_):
        tstate = read(tstate + next_)
    frame = read(tstate + frame_)
    out = {}

    def variant(name, *writes):
        v = bytearray(data)
        for addr, value in writes:
            struct.pack_into("<Q", v, offset(addr), value)
        out[name] = bytes(v)

    # A thread list and a frame list that loop on themselves: 100 000 threads x 10 000
    # frames (a hang) before the decoder's frame budget across threads.
    variant("cyclic", (tstate + next_, tstate), (frame + back, frame))
    # The same, the frame's code with a line table `line_table_size` bytes long (a bytes
    # object in a region of its own) that never reaches the frame's instruction: the table
    # was walked again for each of the 100 000 frames.
    table_at = 0x1000_0000_0000
    table = struct.pack("<QQQQ", 1, 0, line_table_size, 0) + b"\x00\x01" * (line_table_size // 2)
    long_table = bytearray(with_memory(out["cyclic"], table_at, table))
    struct.pack_into("<Q", long_table, offset(read(frame + code) + linetable), table_at)
    out["long-line-table"] = bytes(long_table)
    # A code object at the top of the address space: `code + offset` overflowed (pylayout).
    variant("code-at-top", (frame + code, 2**64 - 1))
    # Source context starting at line -2**63: `line - first_line` overflowed (render).
    for src in meta.get("source", []):
        src["first_line"] = -(2**63)
    out["first-line-min"] = with_metadata(data, meta)
    return out



def mappings(dump):
    """[(start, end, perms, name)] of the dump's copy of /proc/PID/maps."""
    rva, size = streams(dump)[LINUX_MAPS_STREAM]
    out = []
    for line in dump[rva:rva + size].decode(errors="replace").splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        out.append((start, end, fields[1], fields[5] if len(fields) > 5 else ""))
    return out


def deep_native(dump, count, depth=65_536):
    """`count` more threads whose registers start a frame-pointer chain `depth` frames long:
    each unwinds to the per-thread frame limit. The chain is a plausible one, as the unwinder
    checks every step: it lies (a memory region of its own) in the unused low part of a
    thread stack's mapping, and its return addresses point into the vDSO, code without a
    module file and so without CFI."""
    threads = thread_list(dump)
    crashed = metadata(dump)["requesting_tid"]
    # Not the crashing thread: its registers are read from the exception record.
    model = next(t for t in threads if t[0] != crashed)
    context_size, context_rva = model[8], model[9]
    maps = mappings(dump)
    vdso = next(start for start, _, perms, name in maps if name == "[vdso]" and "x" in perms)
    stack = next(start for start, end, perms, _ in maps if perms.startswith("rw") and end - start >= 4 << 20)
    chain_at = stack + 0x1000
    assert 16 * (depth + 1) < 2 << 20, "the chain must stay below the stack's used part"
    chain = b"".join(struct.pack("<QQ", chain_at + 16 * (i + 1), vdso + 0x10 + i % 0x100)
                     for i in range(depth)) + bytes(16)
    context = bytearray(dump[context_rva:context_rva + context_size])
    for field, value in ((CONTEXT_RSP, chain_at), (CONTEXT_RBP, chain_at), (CONTEXT_RIP, vdso + 0x10)):
        struct.pack_into("<Q", context, field, value)
    grown = with_memory(dump, chain_at, chain)
    first_tid = max(t[0] for t in threads) + 1
    deep = [(first_tid + i,) + model[1:8] + (context_size, len(grown)) for i in range(count)]
    return with_threads(grown + bytes(context), threads + deep)


def hostile(dump, count, depth=65_536):
    """{name: dump bytes} of every variant, with `count` threads where they multiply them and
    native stacks `depth` frames deep."""
    return {"many-threads": many_threads(dump, count), "repeated-thread": repeated_thread(dump, count),
            "deep-native": deep_native(dump, count, depth)}
