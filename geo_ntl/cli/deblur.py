"""``geo-ntl deblur``: the deblooming GAN (or the physics baseline); the ASM enhancer on request."""

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
    "--method",
    type=click.Choice(["gan", "physics"]),
    default="gan",
    show_default=True,
    help="gan: the NTL-Db-Net generator; physics: Richardson-Lucy with the scene's own PSF.",
)
@click.option(
    "--psf-json",
    type=click.Path(dir_okay=False),
    default=None,
    help="PSF from `geo-ntl psf SCENE --json` for --method physics "
    "(default: measured on each scene).",
)
@click.option(
    "--weights",
    help="Weights file from `geo-ntl train` or a shipped name (default: the shipped model).",
)
@click.option(
    "--enhance/--no-enhance",
    default=False,
    show_default=True,
    help="Also run the ASM low-light enhancer: a rendition for viewing, which `geo-ntl cluster` "
    "refuses (without it the output keeps the scene's light, moved but not created or lost).",
)
@click.option(
    "--float32",
    "as_float",
    is_flag=True,
    help="Write float32 (with --method physics --no-enhance: keeps the flux of lamps "
    "sharpened beyond the input's range).",
)
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
    method: str,
    psf_json: str | None,
    weights: str | None,
    enhance: bool,
    as_float: bool,
    halo: int | None,
    batch_size: int | None,
    tile: int,
    device: str,
    workers: int | None,
    threads_per_worker: int | None,
    scheduler: str | None,
    overwrite: bool,
    compress: str | None,
    creation_options: dict[str, str],
) -> None:
    """Remove blooming from SCENES with the NTL-Db-Net GAN (and, with --enhance, brighten them).

    SCENES are files, folders or glob patterns. Keeps size, dtype, CRS,
    transform and nodata. The output keeps the scene's light: the network's
    correction may move light within about 30 px but not create or remove it,
    except around pixels saturated at full scale. It is what `geo-ntl cluster`
    analyses. --enhance adds the ASM low-light enhancer, for viewing. 1-band
    scenes are processed as three identical channels and merged back; 2- and
    4-band scenes are refused.

    With `--method physics`, a flux-conserving Richardson-Lucy deconvolution
    with the scene's own PSF replaces the GAN (any band count): the PSF is
    measured on each scene (`geo-ntl psf`) unless `--psf-json` gives one.

    \b
    Examples:
      geo-ntl deblur sample_aoi/helsinki/scene.tif --out clean.tif
      geo-ntl deblur scene.tif --out clean_view.tif --enhance --tile 512
      geo-ntl deblur scene.tif --out clean.tif --weights runs/a/generator.pt --device cuda
      geo-ntl deblur scenes/ --out-dir clean/ --mosaic city.tif --workers 2
      geo-ntl deblur scene.tif --out clean.tif --method physics --float32
      geo-ntl deblur scene.tif --out clean.tif --method physics --psf-json scene_psf.json
    """
    import itertools
    from pathlib import Path

    import xarray as xr

    from geo_ntl._atomic import staging_dir
    from geo_ntl.deblur import deblur as run_deblur
    from geo_ntl.deblur import get_model
    from geo_ntl.deblur.flux import CLIP_RADIUS, FLUX_SIGMA
    from geo_ntl.deblur.inference import DEFAULT_HALO
    from geo_ntl.deblur.weights import list_models, resolve_weights, sha256sum
    from geo_ntl.enhance import ASMParams
    from geo_ntl.enhance import enhance as asm_enhance
    from geo_ntl.io import open_scene, write_cog

    if tile % 4:
        raise click.BadParameter(f"must be a multiple of 4, got {tile}", param_hint="--tile")
    if halo is not None and halo % 4:
        raise click.BadParameter(f"must be a multiple of 4, got {halo}", param_hint="--halo")
    inputs = []
    # The job signature holds what changes the pixels: the method and its parameters (for the
    # GAN: the model by its SHA-256 -- a retrained file under the same name is another model --
    # the resolved halo and the flux projection), and the enhancer's parameters when it runs.
    enhancer = ASMParams().to_dict() if enhance else False
    if method == "physics":
        from geo_ntl.deblur.physics import physics_stage

        if weights is not None or batch_size is not None:
            raise click.BadParameter(
                "--weights and --batch-size apply to --method gan", param_hint="--method"
            )
        dtype = "float32" if as_float else None
        first_stage, params = physics_stage(psf_json, tile=tile, halo=halo, dtype=dtype)
        params["enhance"] = enhancer
    else:
        if psf_json is not None:
            raise click.BadParameter("applies to --method physics", param_hint="--psf-json")
        get_model(weights)  # a missing, corrupt or foreign weights file fails here, before any work
        weights_path, _ = resolve_weights(weights)
        if not (weights is None or weights in list_models()):
            inputs.append(("weights file", weights_path))
        params = {
            "weights": weights or "default",
            "weights_sha256": sha256sum(weights_path),
            "enhance": enhancer,
            "flux": {"sigma": FLUX_SIGMA, "clip_radius": CLIP_RADIUS},
            "tile": tile,
            "halo": DEFAULT_HALO if halo is None else halo,
            "batch_size": batch_size,
        }
        if as_float:
            params["dtype"] = "float32"

        def first_stage(da: xr.DataArray) -> xr.DataArray:
            return run_deblur(
                da.chunk({"y": tile, "x": tile}),
                weights=weights,
                device=device,
                tile=tile,
                halo=halo,
                enhance=False,
                batch_size=batch_size,
            )

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
            gan = first_stage(da)
            if not enhance:
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
            dtype="float32" if as_float else None,
            compress=compress,
            inputs=inputs,
            creation_options=creation_options,
        )
