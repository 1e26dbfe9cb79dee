"""Atomic output files: write to a temporary sibling, rename on success.

Every file geo_ntl writes goes through :func:`atomic_output`, so a crash, an
exception or an interrupt mid-write never leaves a half-written file behind and
never clobbers an existing output unless ``overwrite`` was asked for:

* The temporary files of one write share a hidden prefix beside the output,
  ``.NAME.XXXXXXXX.partial.SUFFIX`` (the file itself, the COG writer's
  ``.staging.tif``, GDAL sidecars), and an *owner record*
  ``.NAME.XXXXXXXX.partial.SUFFIX.geo_ntl-owner`` (JSON: the final output, the
  host, pid and start time of the writing process) is created first and removed
  last. A process killed with SIGKILL leaves them behind; the next write of the
  same output (:func:`remove_stale_partials`) removes them, and only them --
  name pattern, recorded output, host and a dead writer must all match.
* The final step is a no-clobber link without ``overwrite`` (``os.link`` fails if
  the output appeared meanwhile, e.g. from a concurrent run) and an atomic
  ``os.replace`` with it. Either way readers only ever see a complete file.
* :func:`check_distinct` compares outputs with inputs as files (resolved paths
  and, for existing files, device and inode), not as spellings.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from geo_ntl._remote import is_remote
from geo_ntl.exceptions import InputError, OutputExistsError, OutputPathError

__all__ = [
    "OWNER_SUFFIX",
    "atomic_output",
    "check_distinct",
    "check_local_output",
    "check_output_path",
    "committed_outputs",
    "remove_stale_partials",
    "remove_stale_staging_dirs",
    "staging_dir",
]

PathLike = str | os.PathLike[str]
log = logging.getLogger(__name__)

#: Suffix of the owner record that marks a write's temporary files as geo_ntl's own.
OWNER_SUFFIX = ".geo_ntl-owner"
#: Name of the owner record inside a staging folder (see :func:`staging_dir`).
STAGING_OWNER = "geo_ntl-owner.json"

# Outputs renamed into place by this process, in order (read by the CLI when interrupted).
_COMMITTED: list[Path] = []


def committed_outputs() -> list[Path]:
    """Return the outputs this process has finished so far (renamed into place), oldest first."""
    return list(_COMMITTED)


def check_output_path(path: PathLike, *, overwrite: bool = False) -> Path:
    """Check that ``path`` can be written, before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        Output file path.
    overwrite : bool, default False
        Whether an existing file may be replaced.

    Returns
    -------
    pathlib.Path
        The absolute output path.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.
    OutputPathError
        If the parent folder does not exist or is not writable, or ``path`` is
        a folder.
    """
    check_local_output(path)
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise OutputPathError(
            f"output {out} is a folder; give a file name such as {out / 'out.tif'}"
        )
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"output {out} already exists; pass overwrite=True to replace it",
            options={"overwrite=True": "overwrite"},
        )
    parent = out.parent
    if not parent.is_dir():
        raise OutputPathError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"output folder {parent} is not writable; choose another `out`",
            options={"`out`": "out"},
        )
    return out


def check_local_output(path: PathLike) -> None:
    """Refuse an output given as a URL or GDAL virtual path: geo_ntl writes local files.

    Raises
    ------
    OutputPathError
        Naming the path and the fix (write locally, then upload).
    """
    text = os.fspath(path)
    if is_remote(text) or "://" in text:
        raise OutputPathError(
            f"output {text} is a URL or a GDAL virtual path; geo_ntl writes local files: "
            "write it to a local path, then upload it (e.g. with `aws s3 cp` or `rclone`)"
        )


def _file_keys(path: str) -> list[object]:
    """Keys under which two spellings of one file meet: resolved path, and (device, inode)."""
    real = os.path.realpath(os.path.expanduser(path))
    try:
        stat = os.stat(real)
    except OSError:
        return [real]
    return [real, (stat.st_dev, stat.st_ino)]


def check_distinct(outputs: Iterable[PathLike], inputs: Iterable[tuple[str, PathLike]]) -> None:
    """Refuse outputs that are one of the inputs, or one another, under any spelling.

    Paths are compared resolved (``..``, symlinks, relative spellings) and, for
    files that exist, as files (device and inode, so hard links match too).

    Parameters
    ----------
    outputs : iterable of path
        Every file the command will write.
    inputs : iterable of (str, path)
        Every file it reads, each with a word for the message (``"scene"``,
        ``"roads file"``, ``"weights file"``...). Remote inputs (see
        :func:`geo_ntl._remote.is_remote`) are skipped: no output is one.

    Raises
    ------
    InputError
        Naming the output, the input it is, and the fix.
    """
    readers: dict[object, tuple[str, str]] = {}
    for label, source in inputs:
        text = os.fspath(source)
        if is_remote(text):  # a URL or GDAL path is never a local output
            continue
        for key in _file_keys(text):
            readers.setdefault(key, (label, text))
        for part in _files_behind(text):
            for key in _file_keys(part):
                readers.setdefault(key, (f"{label} {text}: its source file", part))
    written: dict[object, str] = {}
    for path in outputs:
        out = os.fspath(path)
        keys = _file_keys(out)
        for key in keys:
            if key in readers:
                label, source = readers[key]
                raise InputError(
                    f"output {out} is the {label} {source} (the same file); "
                    "writing it would replace the input; choose another output path"
                )
            if key in written:
                raise InputError(
                    f"outputs {written[key]} and {out} are the same file; give them distinct paths"
                )
        for key in keys:
            written[key] = out


def _files_behind(path: str) -> list[str]:
    """Return the files GDAL reads for a raster besides ``path``: a VRT's sources, sidecars.

    Empty for files GDAL cannot open as a raster (vectors, weights, folders).
    """
    if not os.path.isfile(path):
        return []
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            files = list(src.files)
    except (RasterioError, OSError, ValueError):
        return []
    return [f for f in files if not is_remote(f) and os.path.realpath(f) != os.path.realpath(path)]


# --- owner records ---------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _owner_record(**extra: object) -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": _start_time(os.getpid()),
        **extra,
    }


def _owner_is_dead(record: dict[str, object]) -> bool:
    """Tell whether the recorded writer is provably gone: same host, pid dead or reused."""
    if record.get("host") != socket.gethostname():
        return False  # another machine's process: cannot tell, leave it
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return record.get("start") is not None and record.get("start") != _start_time(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    started = record.get("start")
    return started is not None and _start_time(pid) not in (None, started)


def _read_record(path: Path) -> dict[str, object] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _real(path: PathLike) -> str:
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def remove_stale_partials(path: PathLike) -> list[Path]:
    """Remove what killed geo_ntl writes of ``path`` left beside it.

    A file is removed only when all of these hold: its name starts with the
    prefix of an owner record ``.NAME.*.partial.SUFFIX.geo_ntl-owner`` beside
    ``path``; that record names ``path`` (resolved) as its final output; and the
    process it names ran on this host and is no longer running.

    Parameters
    ----------
    path : str or os.PathLike
        A final output path.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    out = Path(path).expanduser().absolute()
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    target = _real(out)
    pattern = f".{glob_escape(out.stem)}.*.partial{glob_escape(out.suffix)}{OWNER_SUFFIX}"
    for marker in out.parent.glob(pattern):
        record = _read_record(marker)
        if record is None or record.get("final") != target or not _owner_is_dead(record):
            continue
        prefix = marker.name[: -len(OWNER_SUFFIX)]
        for leftover in out.parent.glob(glob_escape(prefix) + "*"):
            if leftover == marker:
                continue
            with contextlib.suppress(FileNotFoundError):
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
                removed.append(leftover)
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        removed.append(marker)
        log.info("removed the leftovers of a killed write of %s (pid %s)", out, record.get("pid"))
    return removed


def glob_escape(text: str) -> str:
    """Escape glob magic in a literal file-name prefix."""
    import glob

    return glob.escape(text)


def _commit(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move ``tmp`` onto ``out``: replace with ``overwrite``, else refuse an existing ``out``."""
    if overwrite:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)  # atomic, and fails if out exists (POSIX)
    except FileExistsError as exc:
        raise OutputExistsError(
            f"output {out} appeared while this run was writing it (another run?); it was left "
            "as it is; pass overwrite=True to replace it",
            options={"overwrite=True": "overwrite"},
        ) from exc
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                             errno.EMLINK, errno.ENOSYS, errno.EACCES):  # fmt: skip
            raise
        # No hard links here (FAT, some network file systems): claim the name, then replace.
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as exists:
            raise OutputExistsError(
                f"output {out} appeared while this run was writing it (another run?); it was "
                "left as it is; pass overwrite=True to replace it",
                options={"overwrite=True": "overwrite"},
            ) from exists
        os.close(fd)
        os.replace(tmp, out)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_output(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path that becomes ``path`` only if the block succeeds.

    The temporary file lives in the same folder as ``path`` (so the final
    rename is atomic on POSIX file systems) and keeps its suffix, so drivers
    that choose a format by extension still work. Files the block writes next
    to it whose names start with its name (``tmp.name + ".staging.tif"``...)
    are removed with it. Leftovers of killed earlier writes of ``path`` are
    removed first (see :func:`remove_stale_partials`).

    Parameters
    ----------
    path : str or os.PathLike
        Final output path.
    overwrite : bool, default False
        Whether an existing file may be replaced. Without it the final step
        refuses if ``path`` exists by then (e.g. written by a concurrent run).

    Yields
    ------
    pathlib.Path
        Where to write. It does not exist yet.

    Raises
    ------
    OutputExistsError, OutputPathError
        As :func:`check_output_path`, before the block runs; OutputExistsError
        also at the end if ``path`` appeared meanwhile and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_output(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    out = check_output_path(path, overwrite=overwrite)
    remove_stale_partials(out)
    record = json.dumps(_owner_record(final=_real(out)))
    while True:
        token = secrets.token_hex(4)
        tmp = out.with_name(f".{out.stem}.{token}.partial{out.suffix}")
        marker = tmp.with_name(tmp.name + OWNER_SUFFIX)
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "w") as f:
            f.write(record)
        yield tmp
        if not tmp.exists():
            raise OutputPathError(f"nothing was written to {out}")
        _commit(tmp, out, overwrite)
        _COMMITTED.append(out)
    finally:
        for leftover in tmp.parent.glob(glob_escape(tmp.name) + "*"):
            if leftover != marker:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()


# --- staging folders ---------------------------------------------------------------------


def remove_stale_staging_dirs(
    parent: PathLike, prefix: str, owners: Sequence[PathLike]
) -> list[Path]:
    """Remove staging folders ``parent/<prefix>*`` that killed runs for ``owners`` left.

    A folder is removed only if it holds an owner record (see :func:`staging_dir`)
    naming one of ``owners`` (resolved) and a writer on this host that is no
    longer running.

    Returns
    -------
    list of pathlib.Path
        The folders removed.
    """
    folder = Path(parent)
    wanted = {_real(p) for p in owners}
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for candidate in folder.glob(glob_escape(prefix) + "*"):
        record = _read_record(candidate / STAGING_OWNER)
        if record is None or not candidate.is_dir() or candidate.is_symlink():
            continue
        recorded = record.get("for")
        if not isinstance(recorded, list) or not wanted & set(map(str, recorded)):
            continue
        if _owner_is_dead(record):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


@contextlib.contextmanager
def staging_dir(
    parent: PathLike | None, *, prefix: str, owners: Sequence[PathLike]
) -> Iterator[Path]:
    """Create a temporary folder for intermediate files, marked as this run's, removed after.

    Leftovers of killed runs for the same ``owners`` are removed first (see
    :func:`remove_stale_staging_dirs`).

    Parameters
    ----------
    parent : path, optional
        Where to create it (default: the system's temporary folder).
    prefix : str
        Name prefix, e.g. ``".geo_ntl-gan-"``.
    owners : sequence of path
        The outputs (or output folders) the intermediate files are for.

    Yields
    ------
    pathlib.Path
    """
    if parent is not None:
        remove_stale_staging_dirs(parent, prefix, owners)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=parent) as name:
        folder = Path(name)
        record = _owner_record(**{"for": sorted({_real(p) for p in owners})})
        (folder / STAGING_OWNER).write_text(json.dumps(record))
        yield folder
