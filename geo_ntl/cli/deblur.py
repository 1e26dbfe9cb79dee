"""``geo-ntl deblur``: remove blooming (psf-gan, gan-direct or physics); the ASM enhancer on request."""

from __future__ import annotations

from typing import Any

import click

from geo_ntl.cli._restore import restoration_options, restore
from geo_ntl.cli.options import device_opt
from geo_ntl.defaults import DEBLUR_TILE


@click.command()
@click.argument("scenes", nargs=-1, required=True)
@restoration_options
@click.option(
    "--method",
    type=click.Choice(["psf-gan", "gan-direct", "physics", "gan"]),
    default="psf-gan",
    show_default=True,
    help="psf-gan: NTL-Db-Net inside a solver given the scene's own PSF; gan-direct (or gan): "
    "the standalone NTL-Db-Net generator; physics: Richardson-Lucy with the scene's own PSF.",
)
@click.option(
    "--psf-json",
    type=click.Path(dir_okay=False),
    default=None,
    help="PSF from `geo-ntl psf SCENE --json` for psf-gan and physics "
    "(default: measured on each scene).",
)
@click.option(
    "--weights",
    help="Weights of psf-gan or gan-direct: a file from training or a shipped name "
    "(default: the shipped ones).",
)
@click.option(
    "--saturation",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Level at which the sensor clipped (scene units): light spread around pixels at it "
    "may be removed. Default: full scale for integer scenes; none for float radiance "
    "(unless the scene has a SATURATION tag).",
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
    help="Write float32 (with psf-gan or physics and --no-enhance: keeps the light of lamps "
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
    default=DEBLUR_TILE,
    show_default=True,
    type=click.IntRange(min=16),
    help="Tile edge in pixels (halo excluded); lower it to use less memory.",
)
@device_opt
def deblur(
    scenes: tuple[str, ...],
    method: str,
    psf_json: str | None,
    weights: str | None,
    saturation: float | None,
    enhance: bool,
    as_float: bool,
    halo: int | None,
    batch_size: int | None,
    tile: int,
    device: str,
    **restoration: Any,
) -> None:
    """Remove blooming from SCENES (and, with --enhance, brighten them).

    SCENES are files, folders, glob patterns or URLs (https://, s3://,
    /vsi..., one scene each). Keeps size, dtype, CRS, transform and nodata.
    The default method, psf-gan, gives the scene's own PSF (measured on each
    scene, `geo-ntl psf`, unless `--psf-json` gives one; a logged, tagged
    fallback where too few lamps are found) to a clip-aware solver whose
    learned prior is NTL-Db-Net's. The output keeps the scene's light: the
    correction may move light within about 30 px but not create or remove
    it, except around pixels saturated at full scale, whose cores stay at
    full scale. It is what `geo-ntl cluster` analyses. --enhance adds the
    ASM low-light enhancer, for viewing. 1-band scenes are processed as
    three identical channels and merged back; 2- and 4-band scenes are
    refused by psf-gan and gan-direct.

    `--method gan-direct` runs the seed paper's standalone generator;
    `--method physics` a flux-conserving Richardson-Lucy deconvolution with
    the scene's own PSF (any band count).

    \b
    Examples:
      geo-ntl deblur sample_aoi/helsinki/scene.tif --out clean.tif
      geo-ntl deblur scene.tif --out clean_view.tif --enhance --tile 512
      geo-ntl deblur scene.tif --out clean.tif --psf-json scene_psf.json
      geo-ntl deblur scene.tif --out clean.tif --method gan-direct --device cuda
      geo-ntl deblur scenes/ --out-dir clean/ --mosaic city.tif --workers 2
      geo-ntl deblur scene.tif --out clean.tif --method physics --float32
      geo-ntl deblur scene.tif --out clean.tif --method physics --psf-json scene_psf.json
    """
    from geo_ntl.pipeline import DeblurStage, EnhanceStage

    if tile % 4:
        raise click.BadParameter(f"must be a multiple of 4, got {tile}", param_hint="--tile")
    if halo is not None and halo % 4:
        raise click.BadParameter(f"must be a multiple of 4, got {halo}", param_hint="--halo")
    if method == "physics" and (weights is not None or saturation is not None):
        raise click.BadParameter(
            "--weights and --saturation apply to --method psf-gan or gan-direct",
            param_hint="--method",
        )
    if method not in ("gan", "gan-direct") and batch_size is not None:
        raise click.BadParameter(
            "--batch-size applies to --method gan-direct", param_hint="--method"
        )
    if method in ("gan", "gan-direct") and psf_json is not None:
        raise click.BadParameter("applies to --method psf-gan or physics", param_hint="--psf-json")
    stage = DeblurStage(
        method=method,  # type: ignore[arg-type]
        weights=weights,
        tile=tile,
        halo=halo,
        batch_size=batch_size,
        psf=psf_json,
        saturation=saturation,
    )
    restore(
        scenes,
        [stage, EnhanceStage()] if enhance else [stage],
        device=device,
        dtype="float32" if as_float else None,
        **restoration,  # the options of restoration_options: outputs, cluster, codec, progress
    )
