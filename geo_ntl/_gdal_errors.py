"""GDAL errors raised while geo_ntl writes an output fail that write.

GDAL reports an error on the thread that met it. On a Python thread rasterio turns it
into an exception; but GDAL encodes a compressed GeoTIFF on its own worker threads
(``NUM_THREADS``), whose errors only reach GDAL's process-wide handler, which prints
``ERROR 1: ...`` and lets the write finish: an output of zeros reported as written.
:func:`failing_on_gdal_errors` installs a process-wide handler (through ``ctypes`` on the
libgdal rasterio loaded) while a write runs, collects those errors and raises
:class:`~geo_ntl.exceptions.WriteError` at the end of the block, before the output is
renamed into place. Errors of another write running at the same time in this process
fail it too: a write is never reported done while GDAL said something went wrong.
Where libgdal cannot be found the handler is not installed, and
:func:`gdal_worker_threads` tells writers to encode on the calling thread instead, where
rasterio raises (writers turn that into the same error, :func:`gdal_write_error`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from geo_ntl.exceptions import WriteError

__all__ = ["failing_on_gdal_errors", "gdal_worker_threads", "gdal_write_error"]

log = logging.getLogger(__name__)

#: GDAL's error classes (``CPLErr``).
_CE_WARNING, _CE_FAILURE, _CE_FATAL = 2, 3, 4
_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p)


@functools.cache
def _libgdal() -> Any:
    """Return the libgdal rasterio loaded (found in this process's memory map), or None."""
    import rasterio  # noqa: F401 - loads libgdal

    path = None
    with contextlib.suppress(OSError):
        with open("/proc/self/maps") as maps:
            for line in maps:
                name = line.split()[-1]
                if "/libgdal" in name and ".so" in name:
                    path = name
                    break
    path = path or ctypes.util.find_library("gdal")
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.CPLSetErrorHandler.argtypes = [ctypes.c_void_p]
        lib.CPLSetErrorHandler.restype = ctypes.c_void_p
    except (OSError, AttributeError):
        return None
    return lib


class _Collector:
    """The process-wide handler, installed while at least one write runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.previous: int | None = None
        self.errors: list[str] = []
        self.callback = _HANDLER(self._handle)

    def _handle(self, error_class: int, _number: int, message: bytes | None) -> None:
        text = (message or b"").decode("utf-8", "replace").strip()
        if error_class >= _CE_FAILURE:
            self.errors.append(text)
        elif error_class == _CE_WARNING:
            log.warning("GDAL: %s", text)

    def enter(self, lib: Any) -> int:
        with self.lock:
            if self.active == 0:
                self.previous = lib.CPLSetErrorHandler(ctypes.cast(self.callback, ctypes.c_void_p))
            self.active += 1
            return len(self.errors)

    def leave(self, lib: Any, start: int) -> list[str]:
        with self.lock:
            seen = self.errors[start:]
            self.active -= 1
            if self.active == 0:
                lib.CPLSetErrorHandler(self.previous)
                self.errors.clear()
            return seen


_COLLECTOR = _Collector()


def gdal_worker_threads() -> str:
    """``NUM_THREADS`` for GDAL encoders: all CPUs where their errors can be caught, else 1."""
    return "ALL_CPUS" if _libgdal() is not None else "1"


@contextlib.contextmanager
def failing_on_gdal_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Raise :class:`WriteError` naming ``path`` if GDAL reported an error in the block.

    Use it inside :func:`geo_ntl._atomic.atomic_output`, around everything that writes
    the temporary file, so that a failed write replaces nothing.
    """
    lib = _libgdal()
    if lib is None:
        yield
        return
    start = _COLLECTOR.enter(lib)
    failed = True
    try:
        yield
        failed = False
    finally:
        errors = _COLLECTOR.leave(lib, start)
    if errors and not failed:
        raise gdal_write_error(path, "; ".join(dict.fromkeys(errors)))


def gdal_write_error(path: str | os.PathLike[str], detail: str) -> WriteError:
    """Return the error for a write GDAL failed: names the file, GDAL's words and the fix."""
    detail = " ".join(part.strip() for part in detail.splitlines() if part.strip())
    return WriteError(
        f"GDAL could not write {os.fspath(path)} ({detail}); nothing was written; "
        "check the creation options (`creation_options`)",
        options={"`creation_options`": "creation_options"},
    )
