"""Atomic output files: write to a temporary sibling, rename on success.

Every file geo_ntl writes goes through :func:`atomic_output`, so a crash, an
exception or a Ctrl-C mid-write never leaves a half-written file behind and
never clobbers an existing output unless ``overwrite`` was asked for.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from geo_ntl.exceptions import OutputExistsError, OutputPathError

__all__ = ["atomic_output", "check_output_path"]

PathLike = str | os.PathLike[str]


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
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise OutputPathError(
            f"output {out} is a folder; give a file name such as {out / 'out.tif'}"
        )
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output {out} already exists; pass --overwrite to replace it")
    parent = out.parent
    if not parent.is_dir():
        raise OutputPathError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"output folder {parent} is not writable; choose another --out")
    return out


@contextlib.contextmanager
def atomic_output(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    The temporary file lives in the same folder as ``path`` (so the final
    :func:`os.replace` is atomic on POSIX file systems) and keeps its suffix,
    so drivers that choose a format by extension still work.

    Parameters
    ----------
    path : str or os.PathLike
        Final output path.
    overwrite : bool, default False
        Whether an existing file may be replaced.

    Yields
    ------
    pathlib.Path
        Where to write. It does not exist yet.

    Raises
    ------
    OutputExistsError, OutputPathError
        As :func:`check_output_path`, before the block runs.

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
    fd, name = tempfile.mkstemp(
        prefix=f".{out.stem}.", suffix=f".partial{out.suffix}", dir=out.parent
    )
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():
            raise OutputPathError(f"nothing was written to {out}")
        if out.exists() and not overwrite:
            raise OutputExistsError(
                f"output {out} appeared while writing; pass --overwrite to replace it"
            )
        os.replace(tmp, out)
    finally:
        sidecars = [*tmp.parent.glob(tmp.name + ".*"), *tmp.parent.glob(tmp.name + "-*")]
        for leftover in (tmp, *sidecars):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
