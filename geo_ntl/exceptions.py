"""Exception and warning classes raised by geo_ntl.

Every error derives from :class:`GeoNTLError` and from the builtin exception
that matches its meaning, so callers can catch either. Messages say what was
wrong, what was received and how to fix it; the command-line interface prints
them as a single ``error: ...`` line and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "GeoNTLError",
    "InputError",
    "SceneNotFoundError",
    "NotARasterError",
    "MissingCRSError",
    "UnsupportedRasterError",
    "AllNoDataError",
    "OutputExistsError",
    "OutputPathError",
    "DiskFullError",
    "DimensionError",
    "TilingError",
    "ParameterError",
    "PSFEstimationError",
    "WeightsNotFoundError",
    "WeightsError",
    "MissingDependencyError",
    "VectorDataError",
    "ClusterError",
    "GeoNTLWarning",
]


class GeoNTLError(Exception):
    """Root of every error raised by geo_ntl."""


class InputError(GeoNTLError, ValueError):
    """An input is unusable as given."""


class SceneNotFoundError(GeoNTLError, FileNotFoundError):
    """A scene path does not exist."""


class NotARasterError(InputError):
    """A file exists but no raster driver can open it."""


class MissingCRSError(InputError):
    """A raster or vector layer has no coordinate reference system."""


class UnsupportedRasterError(InputError):
    """A raster has a band count or dtype geo_ntl cannot process."""


class AllNoDataError(InputError):
    """A raster holds no valid pixel."""


class OutputExistsError(GeoNTLError, FileExistsError):
    """An output exists and ``overwrite`` was not requested."""


class OutputPathError(GeoNTLError, OSError):
    """An output cannot be written where it was asked for."""


class DiskFullError(OutputPathError):
    """The disk filled up while an output was written (nothing partial is left)."""


class DimensionError(InputError):
    """An array has the wrong dimensions or dimension order."""


class TilingError(InputError):
    """Tile, chunk or halo sizes are inconsistent."""


class ParameterError(InputError):
    """A named algorithm parameter is unknown or out of range."""


class PSFEstimationError(GeoNTLError, ValueError):
    """A scene holds too few usable sources to measure its point-spread function."""


class WeightsNotFoundError(GeoNTLError, FileNotFoundError):
    """A model weights file does not exist."""


class WeightsError(GeoNTLError, ValueError):
    """A model weights file is corrupt or of another architecture."""


class MissingDependencyError(GeoNTLError, ImportError):
    """An optional dependency is not installed."""


class VectorDataError(InputError):
    """A vector layer is empty, invalid or does not overlap the raster."""


class ClusterError(GeoNTLError, RuntimeError):
    """A dask cluster cannot be reached or a distributed run failed."""


class GeoNTLWarning(UserWarning):
    """Root of every warning issued by geo_ntl."""
