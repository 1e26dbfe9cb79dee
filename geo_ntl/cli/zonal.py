"""``geo-ntl zonal``: coverage-weighted night light per polygon, for one or many scenes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from geo_ntl.cli.options import calibration_opt, json_opt, out_opt, overwrite_opt

if TYPE_CHECKING:
    from geo_ntl.radiometry import Calibration


@click.command()
@click.argument("scenes", nargs=-1, required=True)
@click.option(
    "--zones",
    required=True,
    type=click.Path(dir_okay=False),
    help="Zone polygons: districts, tracts... (any vector format, any CRS).",
)
@out_opt
@click.option(
    "--id-column",
    default=None,
    help="Column of --zones naming each zone (unique) [default: the feature's position].",
)
@calibration_opt
@click.option(
    "--allow-enhanced",
    is_flag=True,
    help="Analyse rasters the low-light enhancer wrote (refused by default).",
)
@json_opt
@overwrite_opt
def zonal(
    scenes: tuple[str, ...],
    zones: str,
    out: str,
    id_column: str | None,
    calibration: Calibration | None,
    allow_enhanced: bool,
    as_json: bool,
    overwrite: bool,
) -> None:
    """Sum, mean and valid-pixel count of night light per zone, band and scene.

    SCENES are files, folders, globs or remote inputs. Pixels count by the
    fraction of their area inside each polygon (exactextract);
    nodata, masked and non-finite pixels are left out. Writes one tidy table, a
    row per zone x scene x band with each scene's date tag, to --out: .csv,
    .parquet (GeoParquet) or .gpkg (with the zones' geometry).

    \b
    Examples:
      geo-ntl zonal raw.tif clean.tif --zones districts.gpkg --id-column name --out light.csv
      geo-ntl zonal 2024-*.tif --zones districts.gpkg --calibration gain=0.01,unit=nW/cm2/sr \\
          --out series.parquet
    """
    from geo_ntl._atomic import check_distinct
    from geo_ntl.batch import expand_scenes
    from geo_ntl.cli._flags import warning_lines
    from geo_ntl.io import check_output_path
    from geo_ntl.spatial.tables import table_format, write_table
    from geo_ntl.spatial.zones import zonal as run_zonal

    table_format(out, allowed=("GPKG", "parquet", "CSV"))
    paths = expand_scenes(scenes)
    readers = [("scene", scene) for scene in paths] + [("zones file", zones)]
    check_distinct([out], readers)
    check_output_path(out, overwrite=overwrite)
    with warning_lines():
        table = run_zonal(
            paths,
            zones=zones,
            id_column=id_column,
            calibration=calibration,
            allow_enhanced=allow_enhanced,
        )
    from geo_ntl.cli.main import note_written

    write_table(table, out, layer="zonal", overwrite=overwrite)
    note_written(out)
    if as_json:
        click.echo(
            table.drop(columns=table.geometry.name).to_json(orient="records", date_format="iso")
        )
        return
    click.echo(
        f"zones: {table['zone'].nunique()}, scenes: {table['scene'].nunique()}, "
        f"rows: {len(table)} (night light in {table['unit'].iloc[0]}); wrote {out}"
    )
