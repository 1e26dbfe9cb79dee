"""``geo-ntl info``: describe a raster."""

from __future__ import annotations

import json

import click

from geo_ntl.cli.options import json_opt

#: Readable names of the provenance tags, in display order.
_LABELS = {
    "version": "geo_ntl version",
    "code": "geo_ntl code",
    "stage": "stage",
    "params": "parameters",
    "weights_sha256": "weights sha256",
    "device": "device",
    "torch": "torch",
    "gdal": "GDAL",
    "source": "source",
    "input": "input",
    "job": "job signature",
}


def provenance(tags: dict[str, str]) -> dict[str, object]:
    """Return the ``GEO_NTL_*`` tags as ``{name: value}``, JSON values decoded, known ones first."""
    found: dict[str, object] = {}
    for key, value in tags.items():
        if not key.startswith("GEO_NTL_"):
            continue
        name = key[len("GEO_NTL_") :].lower()
        if name in ("params", "input"):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        found[name] = value
    order = list(_LABELS)
    rank = {name: i for i, name in enumerate(order)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


@click.command()
@click.argument("scene", type=click.Path(dir_okay=True))
@json_opt
def info(scene: str, as_json: bool) -> None:
    """Print size, bands, dtype, CRS, resolution, nodata, COG validity and provenance of SCENE.

    Provenance is what geo_ntl recorded when it wrote SCENE: version, code hash,
    stage, parameters, model SHA-256, device, torch and GDAL versions, job signature.

    \b
    Examples:
      geo-ntl info sample_aoi/helsinki/scene.tif
      geo-ntl info clean.tif --json
    """
    from geo_ntl.io import scene_info

    details = scene_info(scene)
    details["provenance"] = provenance(details["tags"])
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
    for key, value in details["provenance"].items():
        if key == "params" and isinstance(value, dict):
            value = ", ".join(f"{k}={_short(v)}" for k, v in sorted(value.items())) or "none"
        elif isinstance(value, list | dict):
            value = json.dumps(value, sort_keys=True)
        rows.append((_LABELS.get(key, key.replace("_", " ")), value))
    if details["nodata_error"] is not None:
        rows.append(("warning", details["nodata_error"]))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
