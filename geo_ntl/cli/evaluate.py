"""``geo-ntl evaluate``: image-quality metrics of an output, optionally against a reference."""

from __future__ import annotations

import json
import math

import click

from geo_ntl.cli.options import json_opt


@click.command("evaluate")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option(
    "--reference",
    type=click.Path(dir_okay=False),
    help="Clean reference image (PSNR/SSIM/VIF/LRSD).",
)
@click.option(
    "--low-light", "low_light", type=click.Path(dir_okay=False), help="The low-light input (LOE)."
)
@click.option(
    "--input",
    "input_",
    type=click.Path(dir_okay=False),
    help="The scene before restoration (light measures: flux per 100 m cell, lamp widths, "
    "new maxima, dark rings, highlights kept).",
)
@json_opt
def evaluate(
    output: str,
    reference: str | None,
    low_light: str | None,
    input_: str | None,
    as_json: bool,
) -> None:
    """Print image-quality metrics of OUTPUT (a raster or an 8/16-bit image file).

    Reads whole images into memory. No-reference metrics (brightness, entropy,
    average gradient, NIQE, PIQE, CEIQ) always; LOE with --low-light; PSNR, SSIM, VIF
    and LRSD with --reference (same shape and dtype); with --input (the scene before
    restoration) the light measures of geo_ntl.metrics.light: black levels, flux
    per 108 px (100 m) cell against the input above its black level, median FWHM of
    the input's isolated lamps in both, new maxima, dark rings, highlights kept.

    \b
    Examples:
      geo-ntl evaluate enhanced.tif
      geo-ntl evaluate enhanced.tif --reference truth.tif --low-light dark.tif --json
      geo-ntl evaluate clean.tif --input scene.tif
    """
    import numpy as np

    from geo_ntl.exceptions import InputError
    from geo_ntl.io import open_scene
    from geo_ntl.metrics import evaluate as run

    def load(path: str) -> np.ndarray:
        return open_scene(path, allow_no_crs=True).values

    out = load(output)
    ref = load(reference) if reference else None
    low = load(low_light) if low_light else None
    before = load(input_) if input_ else None
    for name, arr in (("reference", ref), ("low-light", low), ("input", before)):
        if arr is not None and arr.shape != out.shape:
            raise InputError(
                f"the {name} image has shape {arr.shape} but the output has {out.shape}"
            )
        if arr is not None and arr.dtype != out.dtype:
            raise InputError(
                f"the {name} image is {arr.dtype} but the output is {out.dtype}; convert one"
            )
    scores = run(out, reference=ref, low_light=low)
    light = None
    if before is not None:
        from geo_ntl.metrics.light import compare_light

        light = compare_light(before, out)
    if as_json:
        clean = {
            k: (None if v is None or (isinstance(v, float) and math.isinf(v)) else v)
            for k, v in scores.items()
        }
        if scores.get("psnr") == math.inf:
            clean["psnr"] = "inf"
        payload = {"output": output, "reference": reference, "metrics": clean}
        if light is not None:
            payload["input"] = input_
            payload["light"] = _finite(light)
        click.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"quality of {output}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("better")
    better = {"niqe": "lower", "piqe": "lower", "loe": "lower", "lrsd": "lower"}
    for name, value in scores.items():
        text = "n/a" if value is None else f"{value:.4f}"
        table.add_row(name, text, better.get(name, "higher" if name != "brightness" else "-"))
    console = Console()
    console.print(table)
    if light is not None:
        console.print(_light_table(light, output, input_))


def _finite(value):  # noqa: ANN001, ANN202
    """NaN and inf become None, recursively (for JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _light_table(light: dict, output: str, input_: str | None):  # noqa: ANN202
    from rich.table import Table

    def num(v: float | None, spec: str = ".3f") -> str:
        return "n/a" if v is None or not math.isfinite(v) else format(v, spec)

    flux = light["flux"]
    rows = [
        (
            "black level, input (per band)",
            ", ".join(f"{v:.1f}" for v in light["black_before"]),
            "-",
        ),
        (
            "black level, output (per band)",
            ", ".join(f"{v:.1f}" for v in light["black_after"]),
            "-",
        ),
        ("lit 100 m cells", str(flux["n"]), "-"),
        ("cell flux ratio, median", num(flux["median_ratio"]), "1"),
        ("cell flux |ratio-1|, median", num(flux["median_abs_dev"]), "lower"),
        ("cells within +-10 %", num(flux["within_10pct"]), "higher"),
        ("cell flux ratio, min / max", f"{num(flux['min'])} / {num(flux['max'])}", "1"),
        ("isolated lamps (input)", str(light["lamps"]), "-"),
        (
            "lamp FWHM px, input / output",
            f"{num(light['fwhm_before'], '.2f')} / {num(light['fwhm_after'], '.2f')}",
            "lower",
        ),
        ("new maxima", str(light["new_maxima"]), "lower"),
        ("dark rings", num(light["dark_rings"]), "lower"),
        ("highlights kept", num(light["highlights_kept"]), "higher"),
    ]
    table = Table(title=f"light of {output} against the input {input_}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("better")
    for row in rows:
        table.add_row(*row)
    return table
