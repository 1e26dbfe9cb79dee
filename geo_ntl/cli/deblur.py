"""``geo-ntl deblur``: deblooming GAN, then the ASM enhancer, to a COG."""

from __future__ import annotations

import json
from pathlib import Path

import click

from geo_ntl.cli.options import device_opt, out_opt, overwrite_opt, tile_opt


@click.command()
@click.argument("scene", type=click.Path(dir_okay=False))
@out_opt
@click.option("--weights", help="Weights file from `geo-ntl train` or a shipped name "
              "(default: the shipped model).")
@click.option("--no-enhance", is_flag=True, help="Skip the ASM low-light enhancer.")
@click.option("--halo", type=click.IntRange(min=0),
              help="Halo in pixels (multiple of 4; default from the receptive field).")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1),
              help="Tiles per forward pass.")
@tile_opt
@device_opt
@overwrite_opt
def deblur(scene: str, out: str, weights: str | None, no_enhance: bool, halo: int | None,
           batch_size: int, tile: int, device: str, overwrite: bool) -> None:
    """Remove blooming from SCENE with the NTL-Db-Net GAN and enhance it (ASM).

    Keeps size, dtype, CRS, transform and nodata. 1-band scenes are processed as
    three identical channels and merged back; 2- and 4-band scenes are refused.

    \b
    Examples:
      geo-ntl deblur sample_aoi/helsinki/scene.tif --out clean.tif
      geo-ntl deblur scene.tif --out clean.tif --no-enhance --tile 512
      geo-ntl deblur scene.tif --out clean.tif --weights runs/a/generator.pt --device cuda
    """
    from geo_ntl.deblur import deblur as run_deblur
    from geo_ntl.exceptions import OutputExistsError
    from geo_ntl.io import open_scene, write_cog

    if Path(out).exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    if tile % 4:
        raise click.BadParameter(f"must be a multiple of 4, got {tile}", param_hint="--tile")
    if halo is not None and halo % 4:
        raise click.BadParameter(f"must be a multiple of 4, got {halo}", param_hint="--halo")
    da = open_scene(scene, chunks=tile)
    result = run_deblur(da, weights=weights, device=device, tile=tile, halo=halo,
                        enhance=not no_enhance, batch_size=batch_size)
    params = {"weights": weights or "default", "enhance": not no_enhance, "tile": tile,
              "halo": halo, "batch_size": batch_size}
    path = write_cog(result, out, overwrite=overwrite, stage="deblur",
                     params=params, nodata=da.rio.nodata)
    click.echo(f"wrote {path} ({json.dumps(params)})")
