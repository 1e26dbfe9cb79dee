"""``geo-ntl info``: describe a raster."""

from __future__ import annotations

import json

import click

from geo_ntl.cli.options import json_opt


@click.command()
@click.argument("scene", type=click.Path(dir_okay=True))
@json_opt
def info(scene: str, as_json: bool) -> None:
    """Print size, bands, dtype, CRS, resolution, nodata and COG validity of SCENE.

    \b
    Examples:
      geo-ntl info sample_aoi/helsinki/scene.tif
      geo-ntl info clean.tif --json
    """
    from geo_ntl.io import scene_info

    details = scene_info(scene)
    if as_json:
        click.echo(json.dumps(details, indent=2, default=str))
        return
    rows = [
        ("path", details["path"]),
        ("size", f"{details['width']} x {details['height']} px"),
        ("bands", f"{details['bands']} ({details['dtype']})"),
        ("crs", details["crs"] or "none"),
        ("resolution", "{:g} x {:g}".format(*details["resolution"])),
        ("bounds", ", ".join(f"{v:.2f}" for v in details["bounds"])),
        ("nodata", details["nodata"] if details["nodata_error"] is None else "invalid tag"),
        ("blocks", "x".join(str(v) for v in details["block_shape"])),
        ("compression", details["compression"] or "none"),
        ("overviews", ", ".join(str(v) for v in details["overviews"]) or "none"),
        ("valid COG", "yes" if details["is_cog"] else "no: " + "; ".join(details["cog_errors"])),
    ]
    descriptions = [d for d in details["band_descriptions"] if d]
    if descriptions:
        rows.append(("band names", ", ".join(descriptions)))
    for key, value in sorted(details["tags"].items()):
        if key.startswith("GEO_NTL"):
            rows.append((key.lower(), value))
    if details["nodata_error"] is not None:
        rows.append(("warning", details["nodata_error"]))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
