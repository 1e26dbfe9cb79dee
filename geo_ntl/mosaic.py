"""Seamless mosaics of many scenes on one grid, lazily and block by block.

Each output block reads, from every scene that overlaps it, only the window it
needs, warped onto the mosaic grid by GDAL (:class:`rasterio.vrt.WarpedVRT`),
and blends them with feathered weights: a scene's weight at a pixel grows
linearly with the distance to that scene's edge, from ~0 at the edge to 1 at
``feather`` pixels inside, and is 0 where the scene is nodata. So seams fade
over ``feather`` pixels, nodata never leaks in, and each block depends only on
its own window -- no halo, any chunking, the same bytes for any number of
workers. Scenes are blended in the order given, in float64, then rounded.

The mosaic grid defaults to the first scene's CRS and resolution and the union
of all footprints, snapped to the first scene's pixel grid.

Gaps (pixels no scene covers) are marked with the first scene's nodata value. Scenes
without nodata give float mosaics NaN gaps and integer mosaics an internal mask band
(GDAL's per-dataset mask, which QGIS and GDAL honour like nodata): every uint8 or
uint16 (or int16) value may be a real pixel -- 0 is a black one -- so none is taken for nodata.
A valid pixel whose blended value equals the nodata value is moved one step off it
(see :func:`geo_ntl._raster.to_dtype`).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as dsa
import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import ProjError
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geo_ntl._atomic import PathLike, atomic_output, check_distinct, check_output_path
from geo_ntl._raster import (
    check_dtype,
    has_alpha,
    image_bands,
    nodata_mask,
    to_dtype,
    valid_window,
)
from geo_ntl._remote import is_remote
from geo_ntl.exceptions import (
    InputError,
    MissingCRSError,
    NotARasterError,
    OutputExistsError,
    UnsupportedRasterError,
)
from geo_ntl.io import (
    DEFAULT_CHUNKS,
    Compression,
    palette_error,
    scene_info,
    write_cog,
)

__all__ = [
    "DEFAULT_FEATHER",
    "MosaicGrid",
    "mosaic",
    "mosaic_grid",
    "mosaic_is_current",
    "write_mosaic",
    "write_mosaic_vrt",
]

#: Width in output pixels over which a scene's weight ramps up from its edge.
DEFAULT_FEATHER = 128
_RESOLUTION = {"`resolution`": "resolution"}
_VRT_DTYPES = {
    "uint8": "Byte",
    "uint16": "UInt16",
    "int16": "Int16",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass(frozen=True)
class MosaicGrid:
    """The output grid of a mosaic.

    Attributes
    ----------
    crs : pyproj.CRS
    transform : affine.Affine
    width, height : int
    count : int
        Bands.
    dtype : str
    nodata : float or None
        None for an integer mosaic of scenes without nodata: its gaps are marked by
        a mask band instead (the ``valid`` coordinate of :func:`mosaic`).
    """

    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None


@dataclass(frozen=True)
class _Source:
    path: str
    bounds: tuple[float, float, float, float]  # in the grid's CRS
    crs: CRS
    transform: Affine
    width: int
    height: int
    nodata: float | None
    aligned: bool


def _describe(paths: Sequence[PathLike]) -> list[dict[str, Any]]:
    if not paths:
        raise InputError("no scenes given; pass one or more GeoTIFFs, a folder or a glob")
    return [scene_info(path) for path in paths]


def mosaic_grid(
    paths: Sequence[PathLike],
    *,
    crs: str | CRS | None = None,
    resolution: float | None = None,
    nodata: float | None = None,
) -> MosaicGrid:
    """Work out the common grid of a set of scenes.

    Parameters
    ----------
    paths : sequence of path
        Scenes; all must have the same band count and dtype and a CRS.
    crs : str or pyproj.CRS, optional
        Target CRS; defaults to the first scene's.
    resolution : float, optional
        Pixel size in target CRS units; defaults to the first scene's (or, if
        the CRS changes, its size at the first scene's centre).
    nodata : float, optional
        Nodata of the mosaic; defaults to the first scene's, else NaN (floats) or
        none (integers: the gaps are marked by a mask band, see the module notes).

    Returns
    -------
    MosaicGrid

    Raises
    ------
    MissingCRSError
        If a scene has no CRS.
    UnsupportedRasterError
        If band counts or dtypes differ.
    InputError
        If ``crs`` is unknown or a scene cannot be reprojected to it.
    """
    infos = _describe(paths)
    for info in infos:
        if info["read_error"] is not None:
            raise NotARasterError(
                f"{info['path']} is truncated or corrupt: its last block cannot be read "
                f"({info['read_error']}); write or download it again"
            )
        if info["nodata_error"] is not None:
            raise InputError(info["nodata_error"])
        if info["crs"] is None:
            raise MissingCRSError(f"{info['path']} has no CRS; a mosaic needs georeferenced scenes")
        if info["palette"]:
            raise palette_error(info["path"])
    for info in infos:
        info["bands"] -= info["alpha_band"]  # an alpha band is the scene's mask, not an image band
    first = infos[0]
    for info in infos[1:]:
        if info["bands"] != first["bands"] or info["dtype"] != first["dtype"]:
            raise UnsupportedRasterError(
                f"{info['path']} has {info['bands']} band(s) of {info['dtype']} but "
                f"{first['path']} has {first['bands']} of {first['dtype']}; mosaic scenes of one kind"
            )
    check_dtype(first["dtype"], source=first["path"])
    target = _parse_crs(crs) if crs is not None else CRS.from_user_input(first["crs"])
    try:
        footprints = [
            transform_bounds(info["crs"], target, *info["bounds"], densify_pts=21) for info in infos
        ]
    except (ProjError, rasterio.errors.CRSError) as exc:
        raise InputError(f"cannot reproject the scenes to {target.to_string()}: {exc}") from exc
    if not all(np.isfinite(b).all() for b in footprints):
        raise InputError(
            f"some scenes fall outside the valid area of {target.to_string()}; choose another `crs`",
            options={"`crs`": "crs"},
        )
    if resolution is None:
        if CRS.from_user_input(first["crs"]) == target:
            resolution = first["resolution"][0]
        else:
            left, bottom, right, top = footprints[0]
            resolution = min((right - left) / first["width"], (top - bottom) / first["height"])
    if not resolution or resolution <= 0:
        raise InputError(f"resolution must be positive, got {resolution}")
    left = min(b[0] for b in footprints)
    bottom = min(b[1] for b in footprints)
    right = max(b[2] for b in footprints)
    top = max(b[3] for b in footprints)
    # Snap to the first scene's grid when it is in the target CRS at this resolution.
    x0, y0 = first["bounds"][0], first["bounds"][3]
    if CRS.from_user_input(first["crs"]) == target and math.isclose(
        first["resolution"][0], resolution
    ):
        left = x0 + math.floor((left - x0) / resolution + 1e-9) * resolution
        top = y0 + math.ceil((top - y0) / resolution - 1e-9) * resolution
    width = max(1, math.ceil((right - left) / resolution - 1e-9))
    height = max(1, math.ceil((top - bottom) / resolution - 1e-9))
    if nodata is None:
        nodata = first["nodata"]
    if nodata is None and np.dtype(first["dtype"]).kind == "f":
        nodata = float("nan")
    return MosaicGrid(
        crs=target,
        transform=Affine(resolution, 0, left, 0, -resolution, top),
        width=width,
        height=height,
        count=first["bands"],
        dtype=first["dtype"],
        nodata=nodata,
    )


def _parse_crs(crs: str | CRS) -> CRS:
    try:
        return CRS.from_user_input(crs)
    except (ProjError, ValueError, TypeError) as exc:
        raise InputError(
            f"unknown CRS {crs!r}; give an EPSG code such as EPSG:32635, a PROJ string or WKT"
        ) from exc


#: Most pixels per band of a single-file mosaic (beyond it, use ``vrt=True``).
MAX_COG_PIXELS = 2**31
#: Most tiles of a ``vrt=True`` mosaic.
MAX_VRT_TILES = 100_000
#: Most pixels per band of any mosaic (its lazy graph alone grows with the pixel count).
MAX_MOSAIC_PIXELS = MAX_COG_PIXELS * 64


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def check_mosaic_size(
    grid: MosaicGrid, out: PathLike, *, vrt: bool = False, tile_size: int = 8192
) -> None:
    """Refuse, before any work, a mosaic too large to write.

    A single COG may have at most :data:`MAX_COG_PIXELS` pixels per band and needs its
    uncompressed size plus a third (overviews) free beside ``out`` while it is
    encoded; a ``vrt`` mosaic at most :data:`MAX_MOSAIC_PIXELS` pixels per band in
    :data:`MAX_VRT_TILES` tiles, each needing the same room for its own encoding.

    Raises
    ------
    InputError
        Naming the size the mosaic would have.
    """
    pixels = grid.width * grid.height
    itemsize = np.dtype(grid.dtype).itemsize
    size = pixels * grid.count * itemsize
    what = (
        f"the mosaic would be {grid.width} x {grid.height} px ({pixels / 1e9:.3g} Gpx per band, "
        f"{_human_bytes(size)} uncompressed)"
    )
    folder = Path(os.fspath(out)).absolute().parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if vrt:
        tiles = math.ceil(grid.width / tile_size) * math.ceil(grid.height / tile_size)
        if pixels > MAX_MOSAIC_PIXELS:
            raise InputError(
                f"{what}, more than {MAX_MOSAIC_PIXELS / 1e9:.3g} Gpx per band ({tiles} tiles); "
                "choose a coarser `resolution`",
                options=_RESOLUTION,
            )
        if tiles > MAX_VRT_TILES:
            raise InputError(
                f"{what}: {tiles} tiles of {tile_size} px, more than {MAX_VRT_TILES}; "
                "choose a coarser `resolution`",
                options=_RESOLUTION,
            )
        need = min(tile_size, grid.width) * min(tile_size, grid.height) * grid.count * itemsize
    else:
        if pixels > MAX_COG_PIXELS:
            raise InputError(
                f"{what}, more than {MAX_COG_PIXELS} px per band in one file; choose a coarser "
                "`resolution`, or write tiles with vrt=True",
                options={**_RESOLUTION, "vrt=True": "vrt"},
            )
        need = size
    need = need * 4 // 3
    if free is not None and need > free:
        raise InputError(
            f"{what}, and encoding it needs about {_human_bytes(need)} free in {folder} "
            f"but {_human_bytes(free)} is free; free space, choose another `out` or a coarser "
            "`resolution`",
            options={**_RESOLUTION, "`out`": "out"},
        )


def _sources(paths: Sequence[PathLike], grid: MosaicGrid) -> list[_Source]:
    sources = []
    for path in paths:
        with rasterio.open(path) as src:
            src_crs = CRS.from_user_input(src.crs.to_string())
            bounds = transform_bounds(src.crs, grid.crs, *src.bounds, densify_pts=21)
            offset_x = (src.transform.c - grid.transform.c) / grid.transform.a
            offset_y = (src.transform.f - grid.transform.f) / grid.transform.e
            aligned = (
                src_crs == grid.crs
                and math.isclose(src.transform.a, grid.transform.a)
                and math.isclose(src.transform.e, grid.transform.e)
                and src.transform.b == src.transform.d == 0
                and abs(offset_x - round(offset_x)) < 1e-6
                and abs(offset_y - round(offset_y)) < 1e-6
            )
            sources.append(
                _Source(
                    os.fspath(path),
                    bounds,
                    src_crs,
                    src.transform,
                    src.width,
                    src.height,
                    src.nodata,
                    aligned,
                )
            )
    return sources


def _edge_distance(source: _Source, grid: MosaicGrid, rows: slice, cols: slice) -> np.ndarray:
    """Distance in source pixels from each output pixel centre to the source scene's edge."""
    yy, xx = np.mgrid[rows, cols].astype(np.float64) + 0.5
    x, y = grid.transform @ (xx, yy)
    if source.crs != grid.crs:
        x, y = Transformer.from_crs(grid.crs, source.crs, always_xy=True).transform(x, y)
    col, row = ~source.transform @ (x, y)
    return np.minimum.reduce([col, row, source.width - col, source.height - row])


def _read_on_grid(
    source: _Source, grid: MosaicGrid, window: Window, resampling: Resampling
) -> tuple[np.ndarray, np.ndarray]:
    """Read a grid window of one scene: values (float64) and a validity mask.

    Valid means inside the scene and not masked by it (nodata, a mask band, ``.msk``,
    alpha; see :func:`geo_ntl._raster.valid_window`). A warped scene without nodata gets
    an alpha band from the warper, so the pixels it cannot fill are not taken for 0.
    """
    with rasterio.open(source.path) as src:
        if source.aligned:
            # Same CRS and pixel grid: a shifted window, copied pixel for pixel.
            col_off = window.col_off - round(
                (src.transform.c - grid.transform.c) / grid.transform.a
            )
            row_off = window.row_off - round(
                (src.transform.f - grid.transform.f) / grid.transform.e
            )
            shifted = Window(col_off, row_off, window.width, window.height)
            values = src.read(
                image_bands(src), window=shifted, boundless=True, fill_value=src.nodata or 0
            )
            return values.astype(np.float64), valid_window(src, shifted)
        add_alpha = src.nodata is None and not has_alpha(src)
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=resampling,
            add_alpha=add_alpha,
        ) as vrt:
            values = vrt.read(image_bands(src), window=window)
            if add_alpha or has_alpha(src):  # read it: GDAL's mask ignores a float alpha band
                valid = vrt.read(vrt.count, window=window) > 0
            else:
                valid = vrt.dataset_mask(window=window) > 0
        invalid = nodata_mask(values, source.nodata)
        valid = valid if invalid is None else valid & ~invalid
        return values.astype(np.float64), valid


def _blend_block(
    _template: np.ndarray,
    block_info: dict[Any, Any] | None = None,
    *,
    sources: list[_Source],
    grid: MosaicGrid,
    feather: int,
    resampling: Resampling,
) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"][1:]  # type: ignore[index]  # dask passes it
    rows, cols = slice(r0, r1), slice(c0, c1)
    left, top = grid.transform @ (c0, r0)
    right, bottom = grid.transform @ (c1, r1)
    total = np.zeros((grid.count, r1 - r0, c1 - c0))
    weight_sum = np.zeros((r1 - r0, c1 - c0))
    window = Window(c0, r0, c1 - c0, r1 - r0)
    for source in sources:
        s_left, s_bottom, s_right, s_top = source.bounds
        if s_left >= right or s_right <= left or s_bottom >= top or s_top <= bottom:
            continue
        values, valid = _read_on_grid(source, grid, window, resampling)
        if np.issubdtype(np.dtype(grid.dtype), np.floating):
            valid &= np.isfinite(values).all(axis=0)
        weight = np.clip(_edge_distance(source, grid, rows, cols) / feather, 1e-3, 1.0) * valid
        total += np.where(weight > 0, values * weight, 0.0)
        weight_sum += weight
    covered = weight_sum > 0
    out = np.divide(total, weight_sum, out=np.zeros_like(total), where=covered)
    out = to_dtype(out, grid.dtype, grid.nodata, ~covered)
    if grid.nodata is None and np.dtype(grid.dtype).kind in "ui":
        # one more plane: the validity mask (see mosaic())
        out = np.concatenate([out, covered[None].astype(out.dtype)])
    return out


def mosaic(
    paths: Sequence[PathLike],
    *,
    crs: str | CRS | None = None,
    resolution: float | None = None,
    nodata: float | None = None,
    feather: int = DEFAULT_FEATHER,
    resampling: Literal["nearest", "bilinear", "cubic"] = "bilinear",
    chunks: int = DEFAULT_CHUNKS,
) -> xr.DataArray:
    """Blend scenes into one lazy, dask-backed mosaic on a common grid.

    Parameters
    ----------
    paths : sequence of path
        Scenes to mosaic, in blending order.
    crs, resolution, nodata
        The grid, see :func:`mosaic_grid`.
    feather : int, default DEFAULT_FEATHER
        Width in output pixels of the blending ramp at scene edges.
    resampling : {"nearest", "bilinear", "cubic"}, default "bilinear"
        Resampling for scenes not aligned with the grid (aligned ones are
        copied pixel for pixel).
    chunks : int, default DEFAULT_CHUNKS
        Block edge of the result.

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` with CRS, transform and nodata set. An integer mosaic of
        scenes without nodata has no nodata value (its gaps are 0) and a boolean
        ``valid`` coordinate ``(y, x)``, False in the gaps; :func:`write_mosaic`
        writes it as the COG's mask band.

    Raises
    ------
    InputError
        If ``feather`` is below 1 or the grid has more than
        :data:`MAX_MOSAIC_PIXELS` pixels (a graph of that many blocks alone
        would not fit in memory).
    """
    if feather < 1:
        raise InputError(f"feather must be at least 1 pixel, got {feather}")
    grid = mosaic_grid(paths, crs=crs, resolution=resolution, nodata=nodata)
    if grid.width * grid.height > MAX_MOSAIC_PIXELS:
        raise InputError(
            f"the mosaic would be {grid.width} x {grid.height} px "
            f"({grid.width * grid.height / 1e9:.3g} Gpx per band); choose a coarser resolution"
        )
    sources = _sources(paths, grid)
    masked = grid.nodata is None and np.dtype(grid.dtype).kind in "ui"
    planes = grid.count + 1 if masked else grid.count
    template = dsa.empty(
        (planes, grid.height, grid.width), dtype=grid.dtype, chunks=(planes, chunks, chunks)
    )
    data = template.map_blocks(
        _blend_block,
        sources=sources,
        grid=grid,
        feather=feather,
        resampling=Resampling[resampling],
        dtype=grid.dtype,
        name="geo_ntl-mosaic",
        meta=np.empty((0, 0, 0), dtype=grid.dtype),
    )
    x = grid.transform.c + grid.transform.a * (np.arange(grid.width) + 0.5)
    y = grid.transform.f + grid.transform.e * (np.arange(grid.height) + 0.5)
    coords: dict[str, Any] = {"band": np.arange(1, grid.count + 1), "y": y, "x": x}
    if masked:
        coords["valid"] = (("y", "x"), data[grid.count] > 0)
        data = data[: grid.count]
    da = xr.DataArray(data, dims=("band", "y", "x"), coords=coords)
    da = da.rio.write_crs(grid.crs.to_string()).rio.write_transform(grid.transform)
    if grid.nodata is None:
        return da
    return da.rio.write_nodata(grid.nodata, encoded=False)


def _valid_mask(da: xr.DataArray) -> Any:
    return da.coords["valid"].data if "valid" in da.coords else None


def _identity(
    paths: Sequence[PathLike], da: xr.DataArray, kwargs: dict[str, Any], tile_size: int | None
) -> dict[str, Any]:
    """Job identity of a mosaic: its scenes and every setting that changes its pixels."""
    from geo_ntl.batch import job_identity

    params = {
        "crs": da.rio.crs.to_string(),
        "transform": list(da.rio.transform())[:6],
        "shape": list(da.shape),
        "nodata": da.rio.nodata,
        "feather": kwargs.get("feather", DEFAULT_FEATHER),
        "resampling": kwargs.get("resampling", "bilinear"),
    }
    if tile_size is not None:
        params["tile_size"] = tile_size
    return job_identity(paths, "mosaic", params)


def _signature(identity: dict[str, Any]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _recorded(path: Path) -> str | None:
    from geo_ntl.batch import JOB_TAG

    try:
        with rasterio.open(path) as src:
            return src.tags().get(JOB_TAG)
    except rasterio.errors.RasterioIOError:
        return None


def mosaic_is_current(
    paths: Sequence[PathLike],
    out: PathLike,
    *,
    vrt: bool = False,
    tile_size: int = 8192,
    **kwargs: Any,
) -> bool:
    """Whether ``out`` exists and is what :func:`write_mosaic` would write now.

    Parameters
    ----------
    paths, out, vrt, tile_size, **kwargs
        As :func:`write_mosaic`.

    Returns
    -------
    bool
        True if ``out`` records the same job signature (same scenes, unchanged, same
        grid and settings, same code); for a VRT, its tiles must be complete too.
    """
    out = Path(out)
    if not out.exists():
        return False
    da = mosaic(paths, **kwargs)
    signature = _signature(_identity(paths, da, kwargs, tile_size if vrt else None))
    if _recorded(out) != signature:
        return False
    if vrt:
        return all(_tile_is_done(tile, signature) for tile, *_ in _tiles(out, da, tile_size))
    return True


def write_mosaic(
    paths: Sequence[PathLike],
    out: PathLike,
    *,
    overwrite: bool = False,
    vrt: bool = False,
    tile_size: int = 8192,
    compress: Compression | None = None,
    creation_options: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Path:
    """Mosaic scenes into one COG, or into COG tiles indexed by a VRT.

    The output records a job signature (see :mod:`geo_ntl.batch`): the scenes'
    identities, the grid and blending settings, and the code. Without
    ``overwrite``, an existing output with the same signature is kept as it is
    (nothing is computed) and any other existing output is an error.

    Parameters
    ----------
    paths : sequence of path
        Scenes, in blending order.
    out : path
        Output COG, or VRT when ``vrt`` is True.
    overwrite : bool, default False
        Recompute and replace the output (and every tile), whatever it holds.
    vrt : bool, default False
        Write ``tile_size`` COG tiles into ``<out stem>_tiles/`` and a VRT that
        indexes them -- for areas too large for one file. Tiles are written one
        by one, atomically, and a tile already written by an earlier run of the
        same mosaic is kept, so an interrupted run resumes where it stopped.
    tile_size : int, default 8192
        Tile edge for ``vrt``.
    compress : {"DEFLATE", "ZSTD", "LZW", "NONE"}, optional
        COG compression, default DEFLATE (see :func:`geo_ntl.io.write_cog`).
    creation_options : mapping of str to str, optional
        Further COG creation options (see :func:`geo_ntl.io.write_cog`); they change the
        encoding, not the pixels, and are not part of the mosaic's signature.
    **kwargs
        Passed to :func:`mosaic`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputPathError
        If ``out`` does not end in ``.vrt`` (``vrt=True``) or ``.tif``/``.tiff``.
    InputError
        If the mosaic is too large to write (see :func:`check_mosaic_size`), or ``out``
        (or, for a VRT, a tile) is one of the scenes.
    OutputExistsError
        If ``out`` or a tile exists, holds another mosaic, and ``overwrite`` is False.
    """
    check_mosaic_suffix(out, vrt=vrt)
    out = Path(out)
    outputs = [out]
    if vrt:
        tiles_dir = out.with_name(out.stem + "_tiles")
        real_tiles = os.path.realpath(tiles_dir)
        outputs += [
            tiles_dir / Path(p).name
            for p in paths
            if not is_remote(p) and os.path.realpath(Path(p).parent) == real_tiles
        ]
    check_distinct(outputs, [("input scene", p) for p in paths])
    grid_keys = ("crs", "resolution", "nodata")
    grid = mosaic_grid(paths, **{k: v for k, v in kwargs.items() if k in grid_keys})
    check_mosaic_size(grid, out, vrt=vrt, tile_size=tile_size)
    da = mosaic(paths, **kwargs)
    identity = _identity(paths, da, kwargs, tile_size if vrt else None)
    signature = _signature(identity)
    params = {"scenes": [os.fspath(p) for p in paths], **identity["params"]}
    tags = {"GEO_NTL_JOB": signature, "GEO_NTL_INPUT": _json(identity["inputs"])}
    current = out.exists() and _recorded(out) == signature
    if out.exists() and not overwrite and not current:
        from geo_ntl.batch import mismatch_reason

        check_output_path(out, overwrite=True)
        raise OutputExistsError(
            f"output {out} already exists and is not this mosaic: "
            f"{mismatch_reason(out, identity)}; pass overwrite=True to replace it",
            options={"overwrite=True": "overwrite"},
        )
    if vrt:
        return write_mosaic_vrt(
            da, out, overwrite=overwrite, tile_size=tile_size, params=params, compress=compress,
            tags=tags, creation_options=creation_options,
        )  # fmt: skip
    if current and not overwrite:
        return out
    return write_cog(
        da,
        out,
        overwrite=overwrite,
        stage="mosaic",
        params=params,
        compress=compress,
        creation_options=creation_options,
        tags=tags,
        mask=_valid_mask(da),
    )


def check_mosaic_suffix(out: PathLike, *, vrt: bool) -> None:
    """Refuse an output name whose suffix does not match what is written.

    Raises
    ------
    OutputPathError
        ``.vrt`` is required with ``vrt``, ``.tif`` or ``.tiff`` otherwise.
    """
    from geo_ntl.exceptions import OutputPathError

    suffix = Path(os.fspath(out)).suffix.lower()
    if vrt and suffix != ".vrt":
        raise OutputPathError(
            f"vrt=True writes a VRT index but `out` {os.fspath(out)} ends in "
            f"{suffix or 'nothing'}; name it .vrt",
            options={"vrt=True": "vrt", "`out`": "out"},
        )
    if not vrt and suffix not in (".tif", ".tiff"):
        hint = " (or pass vrt=True for tiles and a VRT index)" if suffix == ".vrt" else ""
        raise OutputPathError(
            f"the mosaic is written as a GeoTIFF but `out` {os.fspath(out)} ends in "
            f"{suffix or 'nothing'}; name it .tif or .tiff{hint}",
            options={"vrt=True": "vrt", "`out`": "out"},
        )


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _tiles(out: Path, da: xr.DataArray, tile_size: int) -> list[tuple[Path, int, int, int, int]]:
    """List the tiles of a VRT mosaic: (path, row, column, height, width)."""
    tiles_dir = out.with_name(out.stem + "_tiles")
    _, height, width = da.shape
    return [
        (
            tiles_dir / f"tile_{r0 // tile_size:04d}_{c0 // tile_size:04d}.tif",
            r0,
            c0,
            min(tile_size, height - r0),
            min(tile_size, width - c0),
        )
        for r0 in range(0, height, tile_size)
        for c0 in range(0, width, tile_size)
    ]


def _tile_is_done(path: Path, signature: str) -> bool:
    return path.exists() and _recorded(path) == signature


def write_mosaic_vrt(
    da: xr.DataArray,
    out: PathLike,
    *,
    overwrite: bool = False,
    tile_size: int = 8192,
    params: dict[str, Any] | None = None,
    compress: Compression | None = None,
    tags: dict[str, str] | None = None,
    creation_options: Mapping[str, str] | None = None,
) -> Path:
    """Write a lazy mosaic as COG tiles plus a VRT index; resumable per tile.

    Parameters
    ----------
    da : xarray.DataArray
        The mosaic, e.g. from :func:`mosaic`.
    out : path
        The VRT file; tiles go to ``<out stem>_tiles/``.
    overwrite : bool, default False
        Recompute every tile and replace the VRT. Without it, a tile (and a VRT)
        recording this mosaic's signature is kept, and one recording another is
        an error, raised before any tile is written.
    tile_size : int, default 8192
        Tile edge in pixels.
    params : dict, optional
        Provenance recorded in every tile.
    compress : {"DEFLATE", "ZSTD", "LZW", "NONE"}, optional
        Compression of the tiles (default DEFLATE).
    tags : dict, optional
        Further tags for the tiles and the VRT; ``GEO_NTL_JOB`` is the signature
        tiles are matched by (default: a hash of ``params``, shape and transform).
    creation_options : mapping of str to str, optional
        Further COG creation options of the tiles (see :func:`geo_ntl.io.write_cog`).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputExistsError
        If the VRT or a tile holds another mosaic and ``overwrite`` is False.
    """
    import hashlib
    import json
    from xml.sax.saxutils import escape

    from geo_ntl._provenance import code_hash

    out = Path(out)
    tags = dict(tags or {})
    if "GEO_NTL_JOB" not in tags:
        tags["GEO_NTL_JOB"] = hashlib.sha256(
            json.dumps(
                {
                    "code": code_hash(),
                    "params": params or {},
                    "shape": da.shape,
                    "transform": list(da.rio.transform()),
                    "masked": "valid" in da.coords,
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
    signature = tags["GEO_NTL_JOB"]
    tiles = _tiles(out, da, tile_size)
    vrt_current = out.exists() and _recorded(out) == signature
    if not overwrite:
        if out.exists() and not vrt_current:
            raise OutputExistsError(
                f"output {out} already exists and is not this mosaic; pass overwrite=True to "
                "replace it",
                options={"overwrite=True": "overwrite"},
            )
        for path, *_ in tiles:
            if path.exists() and not _tile_is_done(path, signature):
                raise OutputExistsError(
                    f"tile {path} of {out} already exists and is not a tile of this mosaic; "
                    "pass overwrite=True to replace it",
                    options={"overwrite=True": "overwrite"},
                )
    count, height, width = da.shape
    tiles_dir = out.with_name(out.stem + "_tiles")
    check_output_path(out, overwrite=True)
    tiles_dir.mkdir(exist_ok=True)
    dtype = np.dtype(da.dtype).name
    nodata = da.rio.nodata
    sources: list[tuple[str, int, int, int, int]] = []
    for path, r0, c0, h, w in tiles:
        if overwrite or not _tile_is_done(path, signature):
            piece = da.isel(y=slice(r0, r0 + h), x=slice(c0, c0 + w))
            write_cog(
                piece,
                path,
                overwrite=overwrite,
                stage="mosaic-tile",
                params=params,
                tags={**tags, "GEO_NTL_SIGNATURE": signature},
                compress=compress,
                creation_options=creation_options,
                mask=_valid_mask(piece),
            )
        sources.append((f"{tiles_dir.name}/{path.name}", r0, c0, h, w))
    nodata_xml = "" if nodata is None else f"    <NoDataValue>{nodata}</NoDataValue>\n"
    bands = []
    for band in range(1, count + 1):
        items = "".join(
            f'    <SimpleSource>\n      <SourceFilename relativeToVRT="1">{escape(src)}</SourceFilename>\n'
            f"      <SourceBand>{band}</SourceBand>\n"
            f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>\n'
            f'      <DstRect xOff="{c0}" yOff="{r0}" xSize="{w}" ySize="{h}"/>\n    </SimpleSource>\n'
            for src, r0, c0, h, w in sources
        )
        bands.append(
            f'  <VRTRasterBand dataType="{_VRT_DTYPES[dtype]}" band="{band}">\n{nodata_xml}{items}'
            "  </VRTRasterBand>\n"
        )
    if "valid" in da.coords:
        items = "".join(
            f'      <SimpleSource>\n        <SourceFilename relativeToVRT="1">{escape(src)}'
            "</SourceFilename>\n        <SourceBand>mask,1</SourceBand>\n"
            f'        <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>\n'
            f'        <DstRect xOff="{c0}" yOff="{r0}" xSize="{w}" ySize="{h}"/>\n'
            "      </SimpleSource>\n"
            for src, r0, c0, h, w in sources
        )
        bands.append(
            f'  <MaskBand>\n    <VRTRasterBand dataType="Byte">\n{items}'
            "    </VRTRasterBand>\n  </MaskBand>\n"
        )
    transform = da.rio.transform()
    geotransform = ", ".join(repr(v) for v in transform.to_gdal())
    from geo_ntl._provenance import library_versions

    metadata = {**library_versions(), "GEO_NTL_STAGE": "mosaic", **tags}
    if params:
        metadata["GEO_NTL_PARAMS"] = json.dumps(params, sort_keys=True, default=str)
    items = "".join(
        f'    <MDI key="{escape(key)}">{escape(str(value))}</MDI>\n'
        for key, value in sorted(metadata.items())
    )
    text = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
        f"  <SRS>{escape(da.rio.crs.to_wkt())}</SRS>\n"
        f"  <GeoTransform>{geotransform}</GeoTransform>\n"
        f"  <Metadata>\n{items}  </Metadata>\n" + "".join(bands) + "</VRTDataset>\n"
    )
    if vrt_current and not overwrite and out.read_text() == text:
        return out
    # A VRT of this same mosaic (tiles redone after an interruption) may be replaced.
    with atomic_output(out, overwrite=overwrite or vrt_current) as tmp_vrt:
        tmp_vrt.write_text(text)
    return out
