"""``geo-ntl mosaic``: blend many scenes into one COG (or COG tiles and a VRT)."""

from __future__ import annotations

import click

from geo_ntl.cli.options import cluster_opts, co_opt, compress_opt, out_opt, overwrite_opt


@click.command()
@click.argument("scenes", nargs=-1, required=True)
@out_opt
@click.option("--crs", default=None, help="Target CRS (default: the first scene's).")
@click.option(
    "--resolution",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Pixel size in target CRS units (default: the first scene's).",
)
@click.option(
    "--feather",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Width in pixels of the blending ramp at scene edges.",
)
@click.option(
    "--resampling",
    type=click.Choice(["nearest", "bilinear", "cubic"]),
    default="bilinear",
    show_default=True,
    help="Resampling of scenes not on the mosaic grid.",
)
@click.option(
    "--vrt", is_flag=True, help="Write COG tiles and a VRT index (for very large areas; resumable)."
)
@click.option(
    "--vrt-tile",
    type=click.IntRange(min=256),
    default=8192,
    show_default=True,
    help="Tile edge in pixels with --vrt.",
)
@compress_opt
@co_opt
@cluster_opts
@overwrite_opt
def mosaic(
    scenes,
    out,
    crs,
    resolution,
    feather,
    resampling,
    vrt,
    vrt_tile,
    workers,
    threads_per_worker,
    scheduler,
    overwrite,
    compress,
    creation_options,
) -> None:  # noqa: ANN001
    """Reproject SCENES (files, folders, globs or URLs) to one grid and blend them seamlessly.

    Overlaps are feathered over --feather pixels, nodata never leaks in, and the
    result is the same bytes for any number of workers. Gaps get the first scene's
    nodata; without one, NaN (float) or an internal mask band (uint8/uint16, whose
    every value may be a real pixel). --out ends in .tif/.tiff (.vrt with --vrt).

    \b
    Examples:
      geo-ntl mosaic clean/*.tif --out city.tif
      geo-ntl mosaic clean/ --out city.vrt --vrt --workers 4
      geo-ntl mosaic a.tif b.tif --out ab.tif --crs EPSG:32635 --resolution 1.0
    """
    from geo_ntl._atomic import check_distinct
    from geo_ntl.batch import expand_scenes
    from geo_ntl.mosaic import (
        check_mosaic_size,
        check_mosaic_suffix,
        mosaic_grid,
        mosaic_is_current,
        write_mosaic,
    )
    from geo_ntl.parallel import compute_context

    check_mosaic_suffix(out, vrt=vrt)
    paths = expand_scenes(scenes)
    check_distinct([out], [("input scene", p) for p in paths])
    grid = mosaic_grid(paths, crs=crs, resolution=resolution)
    check_mosaic_size(grid, out, vrt=vrt, tile_size=vrt_tile)
    settings = {"crs": crs, "resolution": resolution, "feather": feather, "resampling": resampling}
    if not overwrite and mosaic_is_current(paths, out, vrt=vrt, tile_size=vrt_tile, **settings):
        click.echo(
            f"kept {out}: an earlier identical run wrote it; --overwrite recomputes it", err=True
        )
        return
    megapixels = grid.width * grid.height / 1e6
    with compute_context(
        workers=workers,
        threads_per_worker=threads_per_worker,
        scheduler=scheduler,
        megapixels=megapixels,
        n_scenes=1,
    ):
        written = write_mosaic(
            paths,
            out,
            overwrite=overwrite,
            vrt=vrt,
            tile_size=vrt_tile,
            compress=compress,
            creation_options=creation_options,
            **settings,
        )
    click.echo(f"{written}: {grid.width} x {grid.height} px from {len(paths)} scene(s)")
