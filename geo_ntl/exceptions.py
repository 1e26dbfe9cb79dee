"""Exception and warning classes raised by geo_ntl.

Every error derives from :class:`GeoNTLError` and from the builtin exception
that matches its meaning, so callers can catch either. Messages say what was
wrong, what was received and how to fix it; the command-line interface prints
them as a single ``error: ...`` line and exits with status 2.

Messages name Python parameters (``pass overwrite=True``), never command-line
flags. An error whose message names parameters lists them in its ``options``
attribute, ``{text in the message: parameter name}``, so that the command line
can show each text as the flag that sets it (``--overwrite``).
"""

from __future__ import annotations

from collections.abc import Mapping

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
    "WriteError",
    "DimensionError",
    "TilingError",
    "ParameterError",
    "PSFEstimationError",
    "WeightsNotFoundError",
    "WeightsError",
    "MissingDependencyError",
    "VectorDataError",
    "ClusterError",
    "DeviceMemoryError",
    "GeoNTLWarning",
]


class GeoNTLError(Exception):
    """Root of every error raised by geo_ntl.

    Parameters
    ----------
    *args
        The message (and any further arguments, as for :class:`Exception`).
    options : mapping of str to str, optional
        The parameters the message names: each text as it appears in the message
        (``"overwrite=True"``, ``"out"``) mapped to the parameter's name
        (``"overwrite"``, ``"out"``).

    Attributes
    ----------
    options : dict of str to str
        As given (empty when the message names no parameter).
    """

    def __init__(self, *args: object, options: Mapping[str, str] | None = None) -> None:
        super().__init__(*args)
        self.options = dict(options or {})

    def __reduce__(self):  # noqa: ANN204 - keep ``options`` across processes (dask workers)
        return (_rebuild, (type(self), self.args, self.options))


def _rebuild(cls: type[GeoNTLError], args: tuple, options: dict[str, str]) -> GeoNTLError:
    error = cls.__new__(cls)
    GeoNTLError.__init__(error, *args, options=options)
    return error


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


class WriteError(OutputPathError):
    """GDAL reported an error while an output was written (nothing was written or replaced)."""


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


class DeviceMemoryError(GeoNTLError, MemoryError):
    """The device (a GPU) ran out of memory for one tile: an ordinary limit, lowered by options."""


class GeoNTLWarning(UserWarning):
    """Root of every warning issued by geo_ntl."""
