"""Remote scenes: URLs and GDAL virtual file systems, told apart from local paths in one place.

A *remote* input is one GDAL reads through a virtual file system rather than
the local file system: a URL (``https://``, ``http://``, ``s3://``, ``gs://``,
``az://``, which rasterio maps to ``/vsicurl/``, ``/vsis3/``...) or a GDAL
path (``/vsicurl/...``, ``/vsis3/...``, ``/vsimem/...``, ``/vsizip/...``).
Every command takes one as a single scene: it is never globbed nor listed as
a folder, and it is kept as the string it was given (a :class:`pathlib.Path`
would fold the ``//`` of a URL). This module imports nothing heavy.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

__all__ = [
    "REMOTE_PREFIXES",
    "check_not_subdataset",
    "is_remote",
    "scene_name",
    "scene_stem",
]

#: Beginnings of inputs GDAL reads through a virtual file system instead of the local one.
REMOTE_PREFIXES = ("/vsi", "http://", "https://", "s3://", "gs://", "az://")


#: GDAL's subdataset names: ``DRIVER:file[:variable]`` (``NETCDF:in.nc:var``, ``HDF5:...``).
_SUBDATASET = re.compile(r"^(?P<driver>[A-Za-z][A-Za-z0-9_]+):(?!//)(?P<rest>.+)$")


def check_not_subdataset(path: str | os.PathLike[str]) -> None:
    """Refuse a GDAL subdataset name, with the command that extracts it.

    Raises
    ------
    UnsupportedRasterError
        For ``NETCDF:file.nc:var`` and the like (a file of that exact name aside).
    """
    from geo_ntl.exceptions import UnsupportedRasterError

    text = os.fspath(path)
    match = _SUBDATASET.match(text)
    if match is None or is_remote(text) or os.path.exists(text):
        return
    raise UnsupportedRasterError(
        f"{text} names a GDAL subdataset, which geo_ntl does not open; extract it into a "
        f"GeoTIFF first, e.g. `gdal_translate {text} {match['driver'].lower()}_scene.tif`"
    )


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` is a URL or a GDAL virtual file system path, not a local file.

    Parameters
    ----------
    path : str or os.PathLike
        An input as given.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_remote("https://example.com/scene.tif"), is_remote("/vsimem/scene.tif")
    (True, True)
    >>> is_remote("scenes/scene.tif")
    False
    """
    return os.fspath(path).startswith(REMOTE_PREFIXES)


def scene_name(scene: str | os.PathLike[str]) -> str:
    """Return a scene's file name: a local path's name, or a remote one's last path component.

    The query (``?...``) and fragment (``#...``) of a URL are left out.

    Parameters
    ----------
    scene : str or os.PathLike
        A local path or a remote input (see :func:`is_remote`).

    Returns
    -------
    str

    Examples
    --------
    >>> scene_name("https://example.com/city/scene.tif?token=abc")
    'scene.tif'
    >>> scene_name("/vsis3/bucket/2024/scene.tif")
    'scene.tif'
    """
    text = os.fspath(scene)
    if not is_remote(text):
        return Path(text).name
    for mark in ("?", "#"):
        text = text.split(mark, 1)[0]
    return PurePosixPath(text.rstrip("/")).name


def scene_stem(scene: str | os.PathLike[str]) -> str:
    """Return :func:`scene_name` without its suffix: what output names in a folder start with.

    Examples
    --------
    >>> scene_stem("https://example.com/city/scene.tif")
    'scene'
    """
    return PurePosixPath(scene_name(scene)).stem
