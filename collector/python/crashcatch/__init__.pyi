import os
from collections.abc import Sequence
from typing import Any, Literal, Protocol

class _FileLike(Protocol):
    def fileno(self) -> int: ...

_File = _FileLike | int | None

def enable(
    file: _File = ...,
    all_threads: bool = ...,
    c_stack: bool = ...,
    *,
    max_threads: int = ...,
    minidump: bool | None = ...,
    dump_dir: str | os.PathLike[str] | None = ...,
    dump_timeout: float = ...,
    dump_environ: bool | Literal["redact"] = ...,
    redact_environ: Sequence[str] = ...,
    max_dump_size: int = ...,
    max_dump_dir_size: int | None = ...,
    live_dump_interval: float = ...,
    dump_locals: bool = ...,
    max_dumps: int = ...,
) -> None: ...
def write_minidump(path: str | os.PathLike[str] | None = ...) -> str: ...
def annotate(key: str, value: str | None) -> None: ...
def default_dump_dir() -> str: ...
def disable() -> bool: ...
def is_enabled() -> bool: ...
def dump_traceback(file: _File = ..., all_threads: bool = ..., *, max_threads: int = ...) -> None: ...
def dump_c_stack(file: _File = ...) -> None: ...
def dump_traceback_later(
    timeout: float,
    repeat: bool = ...,
    file: _File = ...,
    exit: bool = ...,
    *,
    max_threads: int = ...,
    minidump: bool | None = ...,
    c_stack: bool = ...,
) -> None: ...
def cancel_dump_traceback_later() -> None: ...
def register(
    signum: int,
    file: _File = ...,
    all_threads: bool = ...,
    chain: bool = ...,
    *,
    max_threads: int = ...,
    minidump: bool | None = ...,
) -> None: ...
def unregister(signum: int) -> bool: ...
def __getattr__(name: str) -> Any: ...
