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
@json_opt
def evaluate(output: str, reference: str | None, low_light: str | None, as_json: bool) -> None:
    """Print image-quality metrics of OUTPUT (a raster or an 8/16-bit image file).

    Reads whole images into memory. No-reference metrics (brightness, entropy,
    average gradient, NIQE, PIQE, CEIQ) always; LOE with --low-light; PSNR, SSIM, VIF
    and LRSD with --reference (same shape and dtype).

    \b
    Examples:
      geo-ntl evaluate enhanced.tif
      geo-ntl evaluate enhanced.tif --reference truth.tif --low-light dark.tif --json
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
    for name, arr in (("reference", ref), ("low-light", low)):
        if arr is not None and arr.shape != out.shape:
            raise InputError(
                f"the {name} image has shape {arr.shape} but the output has {out.shape}"
            )
        if arr is not None and arr.dtype != out.dtype:
            raise InputError(
                f"the {name} image is {arr.dtype} but the output is {out.dtype}; convert one"
            )
    scores = run(out, reference=ref, low_light=low)
    if as_json:
        clean = {
            k: (None if v is None or (isinstance(v, float) and math.isinf(v)) else v)
            for k, v in scores.items()
        }
        if scores.get("psnr") == math.inf:
            clean["psnr"] = "inf"
        click.echo(
            json.dumps({"output": output, "reference": reference, "metrics": clean}, indent=2)
        )
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
    Console().print(table)
