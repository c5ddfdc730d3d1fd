"""Hostile variants of a real crashcatch minidump, made by rewriting its streams: small files
that would cost a symbolizer with linear lookups per thread minutes of work. Used by
test_symbolize_hostile.py (each must be read quickly) and as fuzz seeds (test_fuzz_target.py)."""
import json
import struct

THREAD_LIST_STREAM = 3
METADATA_STREAM = 0x43430001
# MINIDUMP_THREAD: tid, suspend count, priority class, priority, TEB, stack memory
# descriptor (start, size, rva), context location (size, rva).
THREAD = struct.Struct("<IIIIQQIIII")


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


def hostile(dump, count):
    """{name: dump bytes} of every variant, with `count` threads where they multiply them."""
    return {"many-threads": many_threads(dump, count), "repeated-thread": repeated_thread(dump, count)}
