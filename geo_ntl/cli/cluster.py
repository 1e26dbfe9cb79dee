"""``geo-ntl cluster``: spatial clustering of night light with roads and permeable surfaces."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from geo_ntl import defaults
from geo_ntl.cli.options import calibration_opt, json_opt, out_opt, overwrite_opt

if TYPE_CHECKING:
    from geo_ntl.radiometry import Calibration


def _parse_road_weights(values: tuple[str, ...]) -> dict[str, float] | None:
    if not values:
        return None
    weights: dict[str, float] = {}
    for text in values:
        name, sep, value = text.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise click.BadParameter(
                f"expected CLASS=WEIGHT such as primary=2, got {text!r}", param_hint="--road-weight"
            )
    return weights


@contextlib.contextmanager
def _option_names() -> Iterator[None]:
    """Name the command's option where the library's refusal names its argument."""
    from geo_ntl.radiometry import EnhancedRasterError

    try:
        yield
    except EnhancedRasterError as exc:
        raise EnhancedRasterError(
            str(exc).replace("allow_enhanced=True", "--allow-enhanced")
        ) from None


@click.command()
@click.argument("ntl", type=click.Path(dir_okay=False))
@click.option(
    "--roads",
    default=None,
    type=click.Path(dir_okay=False),
    help="Road lines (any vector format, any CRS); overrides --osm's roads.",
)
@click.option(
    "--permeable",
    default=None,
    type=click.Path(dir_okay=False),
    help="Permeable-surface polygons (any vector format, any CRS); overrides --osm's.",
)
@click.option(
    "--osm",
    default=None,
    type=click.Path(dir_okay=False),
    help="OpenStreetMap .osm.pbf extract to read roads (highway ways) and permeable surfaces "
    "(landuse/natural/leisure tags) from, within the scene (needs pyrosm).",
)
@click.option(
    "--cell-size",
    default=defaults.CLUSTER_CELL_SIZE,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Cell size in metres (square edge, or hexagon width across flats).",
)
@out_opt
@click.option(
    "--aoi", type=click.Path(dir_okay=False), default=None, help="Area-of-interest polygons."
)
@click.option("--grid", type=click.Choice(["square", "hex"]), default="square", show_default=True)
@click.option(
    "--analysis-crs",
    default=None,
    metavar="CRS",
    help="Projected CRS in metres for cells, lengths and areas, e.g. EPSG:32635 "
    "[default: the raster's own if projected in metres, else its local UTM zone].",
)
@click.option(
    "--weights",
    type=click.Choice(["queen", "rook", "knn", "distance"]),
    default="queen",
    show_default=True,
    help="Spatial weights (row-standardised).",
)
@click.option(
    "--k",
    type=click.IntRange(min=1),
    default=defaults.CLUSTER_K,
    show_default=True,
    help="Neighbours for knn weights.",
)
@click.option(
    "--distance",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Distance band in metres for distance weights [default: 1.5 x cell size].",
)
@click.option(
    "--permutations",
    type=click.IntRange(min=1),
    default=defaults.CLUSTER_PERMUTATIONS,
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the permutations.")
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=defaults.CLUSTER_ALPHA,
    show_default=True,
    help="Significance level of the LISA labels.",
)
@click.option(
    "--fdr", is_flag=True, help="Label with the false-discovery-rate cut-off instead of --alpha."
)
@click.option(
    "--radiance",
    type=click.Choice(["mean", "luma"]),
    default="mean",
    show_default=True,
    help="How the bands of RGB rasters combine per pixel: band mean or Rec. 601 luma.",
)
@calibration_opt
@click.option(
    "--road-weight",
    "road_weights",
    multiple=True,
    metavar="CLASS=WEIGHT",
    help="Weight a road class (OSM `highway` value) in the density (repeatable; others 1).",
)
@click.option(
    "--jobs", type=int, default=1, show_default=True, help="Threads for the permutations (-1: all)."
)
@click.option(
    "--figures",
    type=click.Path(file_okay=False),
    default=None,
    help="Write splot's LISA maps and Moran scatterplots (PNG) into this folder (needs the maps extra).",
)
@click.option(
    "--allow-enhanced",
    is_flag=True,
    help="Analyse a raster the low-light enhancer wrote (refused by default: the enhancer "
    "changes relative brightness).",
)
@json_opt
@overwrite_opt
def cluster(
    ntl: str,
    roads: str | None,
    permeable: str | None,
    osm: str | None,
    cell_size: float,
    out: str,
    aoi: str | None,
    grid: str,
    analysis_crs: str | None,
    weights: str,
    k: int,
    distance: float | None,
    permutations: int,
    seed: int,
    alpha: float,
    fdr: bool,
    radiance: str,
    calibration: Calibration | None,
    road_weights: tuple[str, ...],
    jobs: int,
    figures: str | None,
    allow_enhanced: bool,
    as_json: bool,
    overwrite: bool,
) -> None:
    """Cluster night light of NTL against road density and permeable surfaces.

    Aggregates NTL (normally a cleaned COG), the road lines and the permeable
    polygons (or those of an OpenStreetMap extract, --osm) to grid cells, then
    runs global Moran's I of each variable, bivariate Moran's I of night light
    with road density and with permeable fraction, LISA and bivariate LISA (HH,
    LL, HL, LH, ns). Writes the cells (.gpkg or .parquet) to --out. Rasters that
    are not projected in metres (EPSG:4326...) are analysed in their local UTM
    zone, or in --analysis-crs.

    \b
    Examples:
      geo-ntl cluster clean.tif --roads roads.gpkg --permeable parks.gpkg --out cells.gpkg
      geo-ntl cluster clean.tif --osm helsinki-latest.osm.pbf --figures figs --out cells.gpkg
      geo-ntl cluster clean.tif --roads roads.gpkg --permeable parks.gpkg --cell-size 100 \\
          --grid hex --weights knn --k 6 --fdr --json --figures figs --out cells.parquet
    """
    from pathlib import Path

    from geo_ntl._atomic import check_distinct
    from geo_ntl.cli._flags import warning_lines
    from geo_ntl.io import check_output_path
    from geo_ntl.spatial.api import cells_format, summary_json
    from geo_ntl.spatial.api import cluster as run_cluster

    cells_format(out)
    named = [("roads file", roads), ("permeable file", permeable), ("OSM extract", osm)]
    named += [("AOI file", aoi)]
    readers = [("NTL raster", ntl)] + [(name, path) for name, path in named if path]
    check_distinct([out], readers)
    check_output_path(out, overwrite=overwrite)
    if figures is not None:
        from geo_ntl.spatial.plots import require_splot

        require_splot()
    if figures is not None and not overwrite:
        for existing in sorted(Path(figures).glob("*.png")):
            if existing.name.startswith(("lisa_", "scatter_")):
                check_output_path(existing, overwrite=False)
    with warning_lines(), _option_names():
        result = run_cluster(
            ntl,
            roads=roads,
            permeable=permeable,
            osm=osm,
            cell_size=cell_size,
            aoi=aoi,
            grid=grid,  # type: ignore[arg-type]
            weights=weights,  # type: ignore[arg-type]
            k=k,
            distance=distance,
            permutations=permutations,
            seed=seed,
            alpha=alpha,
            fdr=fdr,
            radiance=radiance,  # type: ignore[arg-type]
            road_class_weights=_parse_road_weights(road_weights),
            n_jobs=jobs,
            allow_enhanced=allow_enhanced,
            calibration=calibration,
            analysis_crs=analysis_crs,
        )
    from geo_ntl.cli.main import note_written

    result.write(out, overwrite=overwrite)
    note_written(out)
    if figures is not None:
        result.write_figures(figures, overwrite=overwrite)
    if as_json:
        click.echo(summary_json(result))
        return
    rep = result.report
    click.echo(
        f"cells: {rep['n_cells']} ({rep['n_analysed']} analysed, {rep['n_no_data']} without data, "
        f"{rep['n_islands']} islands); wrote {out}"
    )
    click.echo(f"night light in {rep['ntl_unit']}; cells in {rep['analysis_crs']}")
    for name, stat in result.global_stats.items():
        click.echo(
            f"{name:<34} I={stat.I:+.4f}  E[I]={stat.expected_I:+.4f}  "
            f"z={stat.z:+.2f}  p_sim={stat.p_sim:.4f}"
        )
    for key, local in result.local_stats.items():
        counts = " ".join(f"{lab}={n}" for lab, n in local.counts().items())
        click.echo(f"lisa {key:<29} {counts}")
