"""What produced an output: the code's identity and the versions of the libraries it ran on.

:func:`code_hash` is a SHA-256 over the contents of every ``geo_ntl/**/*.py``
file and the shipped weights registry, computed once per process. It is part
of every job signature (see :mod:`geo_ntl.batch`), so an output written by
other code -- an edited enhancer, a new release, a changed default -- is never
taken for a finished one. Hashing the whole package is deliberately coarse: it
cannot miss a module a stage imports, and reading ~100 small files costs a few
milliseconds.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path

from geo_ntl._version import __version__

__all__ = ["code_hash", "library_versions"]

_PACKAGE = Path(__file__).resolve().parent


@functools.cache
def code_hash() -> str:
    """Hex SHA-256 (first 16 digits) of geo_ntl's source files and weights registry.

    Returns
    -------
    str
    """
    digest = hashlib.sha256()
    files = sorted(_PACKAGE.rglob("*.py")) + [_PACKAGE / "weights" / "registry.json"]
    for path in files:
        if not path.is_file():
            continue
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of geo_ntl, torch and GDAL for provenance tags (torch is not imported)."""
    import rasterio

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return {
        "GEO_NTL_VERSION": __version__,
        "GEO_NTL_CODE": code_hash(),
        "GEO_NTL_TORCH": torch_version,
        "GEO_NTL_GDAL": rasterio.__gdal_version__,
    }
