"""Writing result tables atomically: GeoPackage, GeoParquet or CSV, chosen by extension."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from geo_ntl.exceptions import MissingDependencyError, ParameterError

__all__ = ["TABLE_FORMATS", "table_format", "write_table"]

#: Extension -> writer of the tables geo_ntl writes.
TABLE_FORMATS = {".gpkg": "GPKG", ".parquet": "parquet", ".geoparquet": "parquet", ".csv": "CSV"}
_DESCRIPTION = {".gpkg": "GeoPackage", ".parquet": "GeoParquet", ".csv": "CSV"}


def table_format(
    path: str | os.PathLike[str], *, allowed: Iterable[str] = ("GPKG", "parquet")
) -> str:
    """Return the writer for ``path`` ("GPKG", "parquet" or "CSV") from its extension.

    Parameters
    ----------
    path : str or os.PathLike
    allowed : iterable of str, default ("GPKG", "parquet")
        Writers the caller accepts.

    Raises
    ------
    ParameterError
        For an extension whose writer is not in ``allowed``.
    """
    allowed = tuple(allowed)
    fmt = TABLE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None or fmt not in allowed:
        names = [
            f"{ext} ({_DESCRIPTION[ext]})" for ext in _DESCRIPTION if TABLE_FORMATS[ext] in allowed
        ]
        raise ParameterError(
            f"cannot tell the format of {path}: use a {' or '.join(names)} extension"
        )
    return fmt


def write_table(
    frame: Any,
    path: str | os.PathLike[str],
    *,
    layer: str,
    overwrite: bool = False,
    allowed: Iterable[str] = ("GPKG", "parquet", "CSV"),
) -> Path:
    """Write a GeoDataFrame atomically as GeoPackage, GeoParquet or CSV, by extension.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
    path : str or os.PathLike
        ``.gpkg`` (layer ``layer``), ``.parquet`` / ``.geoparquet``, or ``.csv``
        (attributes only, without the geometry).
    layer : str
        GeoPackage layer name.
    overwrite : bool, default False
    allowed : iterable of str
        Writers the caller accepts (see :func:`table_format`).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        For another extension.
    MissingDependencyError
        For GeoParquet without pyarrow.
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    from geo_ntl._raster import disk_errors
    from geo_ntl.io import atomic_output

    out = Path(path)
    fmt = table_format(out, allowed=allowed)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(
                "writing GeoParquet needs pyarrow: `pip install pyarrow`, or write a .gpkg"
            ) from exc
    with atomic_output(out, overwrite=overwrite) as tmp, disk_errors(out, tmp.parent):
        if fmt == "GPKG":
            frame.to_file(tmp, driver="GPKG", layer=layer)
        elif fmt == "parquet":
            frame.to_parquet(tmp)
        else:
            attributes = (
                frame.drop(columns=[frame.geometry.name]) if hasattr(frame, "geometry") else frame
            )
            attributes.to_csv(tmp, index=False)
    return out
