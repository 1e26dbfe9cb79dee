"""``geo-ntl deblur``: deblooming GAN, then the ASM enhancer, one COG per scene."""

from __future__ import annotations

import click

from geo_ntl.cli._restore import restoration_options, run_restoration
from geo_ntl.cli.options import device_opt

#: Tile edge of the GAN in pixels (halo excluded); the same as geo_ntl.deblur.DEFAULT_TILE.
DEFAULT_TILE = 2048


@click.command()
@click.argument("scenes", nargs=-1, required=True)
@restoration_options
@click.option(
    "--weights",
    help="Weights file from `geo-ntl train` or a shipped name (default: the shipped model).",
)
@click.option("--no-enhance", is_flag=True, help="Skip the ASM low-light enhancer.")
@click.option(
    "--halo",
    type=click.IntRange(min=0),
    help="Halo in pixels (multiple of 4; default from the receptive field).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Tiles per forward pass (default: 4 on a GPU, 1 on a CPU).",
)
@click.option(
    "--tile",
    default=DEFAULT_TILE,
    show_default=True,
    type=click.IntRange(min=16),
    help="Tile edge in pixels (halo excluded); lower it to use less memory.",
)
@device_opt
def deblur(
    scenes: tuple[str, ...],
    out: str | None,
    out_dir: str | None,
    mosaic_out: str | None,
    weights: str | None,
    no_enhance: bool,
    halo: int | None,
    batch_size: int | None,
    tile: int,
    device: str,
    workers: int | None,
    threads_per_worker: int | None,
    scheduler: str | None,
    overwrite: bool,
    compress: str,
) -> None:
    """Remove blooming from SCENES with the NTL-Db-Net GAN and enhance them (ASM).

    SCENES are files, folders or glob patterns. Keeps size, dtype, CRS,
    transform and nodata. 1-band scenes are processed as three identical
    channels and merged back; 2- and 4-band scenes are refused.

    \b
    Examples:
      geo-ntl deblur sample_aoi/helsinki/scene.tif --out clean.tif
      geo-ntl deblur scene.tif --out clean.tif --no-enhance --tile 512
      geo-ntl deblur scene.tif --out clean.tif --weights runs/a/generator.pt --device cuda
      geo-ntl deblur scenes/ --out-dir clean/ --mosaic city.tif --workers 2
    """
    import itertools
    from pathlib import Path

    import xarray as xr

    from geo_ntl._atomic import staging_dir
    from geo_ntl.deblur import deblur as run_deblur
    from geo_ntl.deblur import get_model
    from geo_ntl.deblur.inference import DEFAULT_HALO
    from geo_ntl.deblur.weights import list_models, resolve_weights, sha256sum
    from geo_ntl.enhance import ASMParams
    from geo_ntl.enhance import enhance as asm_enhance
    from geo_ntl.io import open_scene, write_cog

    if tile % 4:
        raise click.BadParameter(f"must be a multiple of 4, got {tile}", param_hint="--tile")
    if halo is not None and halo % 4:
        raise click.BadParameter(f"must be a multiple of 4, got {halo}", param_hint="--halo")
    get_model(weights)  # a missing, corrupt or foreign weights file fails here, before any work
    weights_path, _ = resolve_weights(weights)
    shipped = weights is None or weights in list_models()
    # The job signature holds what changes the pixels: the model by its SHA-256 (a retrained
    # file under the same name is another model), the resolved halo, the enhancer's parameters.
    params = {
        "weights": weights or "default",
        "weights_sha256": sha256sum(weights_path),
        "enhance": ASMParams().to_dict() if not no_enhance else False,
        "tile": tile,
        "halo": DEFAULT_HALO if halo is None else halo,
        "batch_size": batch_size,
    }
    inputs = [] if shipped else [("weights file", weights_path)]
    # The enhancer's first pass reads the whole scene for its global statistics, then
    # its tiles read it again: stage the GAN output on disk so the GAN runs once. The
    # folder is hidden, marked as this run's, and removed on any exit (a killed run's is
    # removed by the next run for the same outputs).
    parents = [Path(p) for p in (out_dir, out and Path(out).absolute().parent) if p]
    staging_parent = next((p for p in parents if p.is_dir()), None)
    owners = [Path(out_dir or out).absolute()] if (out_dir or out) else []
    with staging_dir(staging_parent, prefix=".geo_ntl-gan-", owners=owners) as staging:
        counter = itertools.count()

        def build(da: xr.DataArray) -> xr.DataArray:
            gan = run_deblur(
                da.chunk({"y": tile, "x": tile}),
                weights=weights,
                device=device,
                tile=tile,
                halo=halo,
                enhance=False,
                batch_size=batch_size,
            )
            if no_enhance:
                return gan
            path = write_cog(gan, Path(staging) / f"gan_{next(counter)}.tif", compress="NONE")
            return asm_enhance(open_scene(path, chunks=tile), device=device, tile=tile)

        run_restoration(
            scenes,
            stage="deblur",
            suffix="_clean",
            params=params,
            build=build,
            out=out,
            out_dir=out_dir,
            mosaic_out=mosaic_out,
            overwrite=overwrite,
            workers=workers,
            threads_per_worker=threads_per_worker,
            scheduler=scheduler,
            device=device,
            compress=compress,
            inputs=inputs,
        )
