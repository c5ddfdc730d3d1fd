"""`crashcatch symbolize` finds separate debug info the way gdb does, for a stripped module:
build-id directories (the debug root, `--symbols-path DIR/.build-id`), `.gnu_debuglink`
(next to the module, in `.debug/`, under the debug root) and debuginfod (a real local
server, then its cache) — and refuses every file whose build id (or debuglink CRC) is not
the dump's, saying which.

Fixtures are made here: buggyext (built with -g) is copied, its DWARF moved to a debug file
with `objcopy --only-keep-debug`, the copy stripped and given a debuglink, and a crash of
that copy is dumped. Runs on the host interpreter INTERPRETERS[0]."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import pytest

from crashlib import compile_buggyext, crash_segfault_importing_from
from interpreters import REPO

SYMBOLIZE = os.path.join(REPO, "target", "release", "crashcatch-symbolize")
# The extension's frames for buggyext.segfault(2), innermost first (see test_symbolize.py).
EXT_NAMES = ["deref_null", "deref_null", "deref_null", "inlined_helper", "buggy_entry", "segfault"]
EXT_INLINED = [False, False, False, True, False, False]


@dataclass
class Stripped:
    dump: str
    binary: str         # the stripped module file the dump names
    name: str           # its file name
    debug: str          # its debug file (objcopy --only-keep-debug)
    wrong: str          # the debug file of another build of the same source
    build_id: str
    empty_root: str     # a debug root with nothing in it


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def build_id(path):
    for line in sh("readelf", "-n", path).stdout.splitlines():
        if "Build ID:" in line:
            return line.split()[-1]
    raise AssertionError(f"{path} has no build id")


def build_id_path(root, bid):
    return os.path.join(root, ".build-id", bid[:2], bid[2:] + ".debug")


def place(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy(src, dst)


@pytest.fixture(scope="module")
def stripped(tmp_path_factory):
    from conftest import INTERPRETERS
    interp = INTERPRETERS[0]
    if interp.root:
        pytest.skip("needs a host interpreter")
    store = tmp_path_factory.mktemp("debugfiles")
    private = tempfile.mkdtemp(prefix="stripped-", dir=interp.host_path(interp.work_dir))
    name = [n for n in os.listdir(interp.ext_dir) if n.startswith("buggyext")][0]
    binary = os.path.join(private, name)
    shutil.copy(os.path.join(interp.ext_dir, name), binary)
    debug = str(store / (name + ".debug"))
    sh("objcopy", "--only-keep-debug", binary, debug)
    sh("strip", "--strip-unneeded", binary)
    sh("objcopy", "--add-gnu-debuglink=" + debug, binary)
    # Another build of the same source (another build id), and its debug file.
    other = str(store / ("other-" + name))
    compile_buggyext(interp, other, "-O1", "-DOTHER_BUILD")
    wrong = str(store / (name + ".wrong.debug"))
    sh("objcopy", "--only-keep-debug", other, wrong)
    assert build_id(wrong) != build_id(debug) == build_id(binary)
    r = crash_segfault_importing_from(interp, private, 2)
    empty_root = str(store / "empty-root")
    os.mkdir(empty_root)
    return Stripped(r.dumps[0], binary, name, debug, wrong, build_id(binary), empty_root)


def symbolize(s, *args, env=None, timeout=60):
    """(the extension's native frames, problem lines naming it, seconds taken). The debug
    root is empty and debuginfod off unless `env` says otherwise."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("DEBUGINFOD_")}
    full["CRASHCATCH_DEBUG_ROOT"] = s.empty_root
    full.update(env or {})
    start = time.monotonic()
    out = subprocess.run([SYMBOLIZE, "symbolize", s.dump, "--json", *args],
                         capture_output=True, text=True, timeout=timeout, env=full)
    took = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    assert "panicked" not in out.stderr, out.stderr
    doc = json.loads(out.stdout)
    frames = [f for f in doc["threads"][0]["native_frames"] if (f["module"] or "").startswith("buggyext")]
    problems = [p for p in doc["modules_without_symbols"] if s.name in p or s.build_id in p]
    return frames, problems, took


def assert_dwarf(frames, source=None):
    """The extension's DWARF: names of static functions, the inlined frame, file:line."""
    assert [f["function"] for f in frames][:6] == EXT_NAMES, frames
    assert [f["inlined"] for f in frames][:6] == EXT_INLINED, frames
    assert all(f["file"] and f["file"].endswith("buggyext.c") and f["line"] for f in frames), frames
    if source:
        assert all(f["symbols"] == source for f in frames), frames


def assert_no_dwarf(frames):
    assert frames and not any(f["file"] for f in frames), frames
    assert "inlined_helper" not in [f["function"] for f in frames], frames


def test_stripped_module_alone_has_only_its_symbol_table(stripped):
    frames, problems, _ = symbolize(stripped)
    assert_no_dwarf(frames)
    # The exported function is still named, from .dynsym; nothing was refused.
    assert "buggy_entry" in [f["function"] for f in frames], frames
    assert problems == []


def test_build_id_dir_under_the_debug_root(stripped, tmp_path):
    root = str(tmp_path / "root")
    place(stripped.debug, build_id_path(root, stripped.build_id))
    frames, problems, _ = symbolize(stripped, env={"CRASHCATCH_DEBUG_ROOT": root})
    assert_dwarf(frames, "build-id dir")
    assert problems == []
    # Another build's debug file under our build id's name: refused, and said so.
    bad = str(tmp_path / "bad")
    place(stripped.wrong, build_id_path(bad, stripped.build_id))
    frames, problems, _ = symbolize(stripped, env={"CRASHCATCH_DEBUG_ROOT": bad})
    assert_no_dwarf(frames)
    assert any(build_id_path(bad, stripped.build_id) in p and "is not the dump's" in p for p in problems), problems
    # Placed first (--symbols-path comes before the debug root), it is passed over.
    frames, problems, _ = symbolize(stripped, "--symbols-path", bad, env={"CRASHCATCH_DEBUG_ROOT": root})
    assert_dwarf(frames, "build-id dir")


def test_symbols_path_with_a_build_id_tree(stripped, tmp_path):
    good, bad = str(tmp_path / "good"), str(tmp_path / "bad")
    place(stripped.debug, build_id_path(good, stripped.build_id))
    place(stripped.wrong, build_id_path(bad, stripped.build_id))
    frames, problems, _ = symbolize(stripped, "--symbols-path", bad, "--symbols-path", good)
    assert_dwarf(frames, "build-id dir")
    assert problems == []
    frames, problems, _ = symbolize(stripped, "--symbols-path", bad)
    assert_no_dwarf(frames)
    assert any(build_id_path(bad, stripped.build_id) in p and "is not the dump's" in p for p in problems), problems


@pytest.mark.parametrize("where", ["next to the module", ".debug", "debug root"])
def test_debuglink(stripped, tmp_path, where):
    link = os.path.basename(stripped.debug)  # what objcopy --add-gnu-debuglink recorded
    module_dir = os.path.dirname(stripped.binary)
    root = str(tmp_path / "root")
    good = {"next to the module": os.path.join(module_dir, link),
            ".debug": os.path.join(module_dir, ".debug", link),
            "debug root": os.path.join(root, module_dir.lstrip("/"), link)}[where]
    placed = [good]
    try:
        place(stripped.debug, good)
        frames, problems, _ = symbolize(stripped, env={"CRASHCATCH_DEBUG_ROOT": root})
        assert_dwarf(frames, "debuglink")
        assert problems == []
        if where != "next to the module":
            # Another build's debug file where gdb looks first: refused, the next one used.
            first = os.path.join(module_dir, link)
            placed.append(first)
            place(stripped.wrong, first)
            frames, problems, _ = symbolize(stripped, env={"CRASHCATCH_DEBUG_ROOT": root})
            assert_dwarf(frames, "debuglink")
        # Alone, it is refused and named.
        os.remove(good)
        place(stripped.wrong, good)
        frames, problems, _ = symbolize(stripped, env={"CRASHCATCH_DEBUG_ROOT": root})
        assert_no_dwarf(frames)
        assert any(good in p and "is not the dump's" in p for p in problems), problems
        # The right build, changed after the debuglink was made: the CRC tells.
        os.remove(good)
        sh("objcopy", "--add-section", ".crashcatch_test=" + stripped.wrong, stripped.debug, good)
        frames, problems, _ = symbolize(stripped, env={"CRASHCATCH_DEBUG_ROOT": root})
        assert_no_dwarf(frames)
        assert any(good in p and "CRC32" in p for p in problems), problems
    finally:
        for p in placed:
            if os.path.exists(p):
                os.remove(p)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def debuginfod_server(stripped, tmp_path):
    """A debuginfod serving the stripped module (as executable) and its debug file, once it
    has indexed them. It listens on every interface (this version has no bind option); the
    tests only ever talk to 127.0.0.1."""
    if shutil.which("debuginfod") is None:
        pytest.skip("debuginfod is not installed (tools/test.sh installs Debian's package)")
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(stripped.debug, served)
    shutil.copy(stripped.binary, served)
    port = free_port()
    log = open(tmp_path / "debuginfod.log", "w")
    proc = subprocess.Popen(["debuginfod", "-F", str(served), "-p", str(port), "-d", str(tmp_path / "db.sqlite"),
                             "-t", "0", "-g", "0", "-c", "1"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, open(tmp_path / "debuginfod.log").read()
            try:
                with urllib.request.urlopen(f"{url}/buildid/{stripped.build_id}/debuginfo", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "debuginfod did not index the debug file within 60 s"
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()


def test_debuginfod_then_its_cache(stripped, debuginfod_server, tmp_path):
    url, proc = debuginfod_server
    cache = tmp_path / "cache"
    env = {"DEBUGINFOD_URLS": url, "DEBUGINFOD_CACHE_PATH": str(cache)}
    frames, problems, _ = symbolize(stripped, env=env)
    assert_dwarf(frames, "debuginfod")
    assert problems == []
    entry = cache / stripped.build_id / "debuginfo"
    assert entry.is_file() and build_id(str(entry)) == stripped.build_id
    # A cache entry of another build is refused (removed, fetched again).
    other_cache = tmp_path / "other-cache"
    place(stripped.wrong, str(other_cache / stripped.build_id / "debuginfo"))
    frames, problems, _ = symbolize(stripped, env={**env, "DEBUGINFOD_CACHE_PATH": str(other_cache)})
    assert_dwarf(frames, "debuginfod")
    assert build_id(str(other_cache / stripped.build_id / "debuginfo")) == stripped.build_id
    # The module file gone: debuginfod's executable gives the CFI, its debuginfo the DWARF.
    away = stripped.binary + ".away"
    os.rename(stripped.binary, away)
    try:
        frames, problems, _ = symbolize(stripped, env=env)
        assert_dwarf(frames)
        assert (cache / stripped.build_id / "executable").is_file()
        assert all(f["trust"] in ("context", "cfi") for f in frames), frames
        # The server stopped: everything comes from the cache, no request made.
        proc.terminate()
        proc.wait(timeout=30)
        assert symbolize(stripped, env=env)[:2] == (frames, problems)
    finally:
        os.rename(away, stripped.binary)
    frames, problems, _ = symbolize(stripped, env=env)
    assert_dwarf(frames, "debuginfod")


def test_unreachable_debuginfod_is_a_problem_line_not_a_failure(stripped, tmp_path):
    env = {"DEBUGINFOD_URLS": "http://127.0.0.1:1", "DEBUGINFOD_CACHE_PATH": str(tmp_path / "cache")}
    frames, problems, took = symbolize(stripped, env=env, timeout=30)
    assert_no_dwarf(frames)
    assert any("127.0.0.1:1" in p for p in problems), problems
    assert took < 10, took
    # The module file gone too: still exit 0, the server asked once, then passed over.
    away = stripped.binary + ".away"
    os.rename(stripped.binary, away)
    try:
        frames, problems, took = symbolize(stripped, env=env, timeout=30)
    finally:
        os.rename(away, stripped.binary)
    assert frames and not any(f["function"] for f in frames), frames
    assert any("127.0.0.1:1" in p for p in problems), problems
    assert took < 10, took


def test_a_server_that_never_answers_costs_one_timeout(stripped, tmp_path):
    """Connected but silent (a listening socket nobody accepts on): DEBUGINFOD_TIMEOUT
    bounds the wait, and the server is not asked again for the other modules."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        env = {"DEBUGINFOD_URLS": url, "DEBUGINFOD_TIMEOUT": "2", "DEBUGINFOD_CACHE_PATH": str(tmp_path / "cache")}
        away = stripped.binary + ".away"
        os.rename(stripped.binary, away)  # two modules without files: the vDSO and this one
        try:
            frames, problems, took = symbolize(stripped, env=env, timeout=60)
        finally:
            os.rename(away, stripped.binary)
    assert frames and any(url in p and "unreachable" in p for p in problems), problems
    assert took < 8, took


def test_dwz_supplementary_file(tmp_path):
    """Debug info compressed with dwz (as distributions ship it): the module's DWARF refers
    to a shared supplementary file (.gnu_debugaltlink) for what several modules have in
    common, such as the abstract entry of an inlined function; names are found there."""
    from conftest import INTERPRETERS
    interp = INTERPRETERS[0]
    if interp.root:
        pytest.skip("needs a host interpreter")
    private = tempfile.mkdtemp(prefix="dwz-", dir=interp.host_path(interp.work_dir))
    name = [n for n in os.listdir(interp.ext_dir) if n.startswith("buggyext")][0]
    # dwz shares DWARF between at least two files: this build and another one.
    binary, other = os.path.join(private, name), str(tmp_path / "other.so")
    compile_buggyext(interp, binary, "-O1")
    compile_buggyext(interp, other, "-O1", "-DOTHER_BUILD")
    common = str(tmp_path / "common.debug")
    sh("dwz", "-m", common, "-M", common, binary, other)
    assert "DW_AT_abstract_origin: <alt " in sh("readelf", "--debug-dump=info", binary).stdout  # refers out
    r = crash_segfault_importing_from(interp, private, 2)
    s = Stripped(r.dumps[0], binary, name, common, common, build_id(binary), str(tmp_path))
    frames, problems, _ = symbolize(s)
    assert_dwarf(frames, "module file")
    assert problems == [], problems


class Recording:
    """A debuginfod stand-in on 127.0.0.1 that records every path asked for and answers
    each with `body` (404 when None); `announce_size`: send Content-Length (else the body
    ends when the connection closes, HTTP/1.0 style)."""

    def __init__(self, body=None, announce_size=True):
        import http.server
        import threading
        self.paths = []
        recording = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                recording.paths.append(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                if announce_size:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def dump_modules(dump):
    """{file name: build id (lowercase hex)} of the dump's modules, read with dumpcheck."""
    out = sh(os.path.join(REPO, "target", "release", "dumpcheck"), dump).stdout
    modules = json.loads(out)["modules"]
    return {os.path.basename(m["name"]): (m["build_id"] or "").lower() for m in modules}


def test_debuginfod_is_asked_only_for_modules_with_frames(stripped, tmp_path):
    """The module file gone: its file and debug file are asked for (it has frames), but not
    those of modules no frame is in (the vDSO has no file either)."""
    server = Recording()
    env = {"DEBUGINFOD_URLS": server.url, "DEBUGINFOD_CACHE_PATH": str(tmp_path / "cache")}
    away = stripped.binary + ".away"
    os.rename(stripped.binary, away)
    try:
        out = subprocess.run([SYMBOLIZE, "symbolize", stripped.dump, "--json"], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "CRASHCATCH_DEBUG_ROOT": stripped.empty_root, **env})
    finally:
        os.rename(away, stripped.binary)
        server.close()
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    modules = dump_modules(stripped.dump)
    with_frames = {f["module"] for t in doc["threads"] for f in t["native_frames"] if f["module"]}
    asked = {p.split("/")[2] for p in server.paths}
    assert f"/buildid/{stripped.build_id}/executable" in server.paths, server.paths
    assert asked <= {modules[m] for m in with_frames}, (server.paths, with_frames)
    vdso = [name for name in modules if name.startswith("linux-vdso")]
    assert vdso and vdso[0] not in with_frames and modules[vdso[0]] not in asked, (vdso, server.paths)


@pytest.mark.parametrize("announce_size", [True, False], ids=["content-length", "unannounced"])
def test_a_file_over_debuginfod_maxsize_is_refused(stripped, tmp_path, announce_size):
    """A server answering with more bytes than DEBUGINFOD_MAXSIZE: refused before the
    download when it says the size, stopped at the limit when it does not; nothing cached."""
    server = Recording(body=b"\x7fELF" + bytes(4092), announce_size=announce_size)
    cache = tmp_path / "cache"
    env = {"DEBUGINFOD_URLS": server.url, "DEBUGINFOD_CACHE_PATH": str(cache), "DEBUGINFOD_MAXSIZE": "1000"}
    try:
        frames, problems, _ = symbolize(stripped, env=env)
    finally:
        server.close()
    assert_no_dwarf(frames)
    said = "4096 bytes, more than DEBUGINFOD_MAXSIZE (1000 bytes): not downloaded" if announce_size \
        else "more than DEBUGINFOD_MAXSIZE (1000 bytes): download stopped"
    assert any(said in p for p in problems), problems
    assert f"/buildid/{stripped.build_id}/debuginfo" in server.paths, server.paths
    assert not any(f.is_file() and f.stat().st_size for f in cache.rglob("*")), list(cache.rglob("*"))
