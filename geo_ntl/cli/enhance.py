"""``geo-ntl enhance``: the ASM low-light enhancer on scenes, written as COGs."""

from __future__ import annotations

from typing import Any

import click

from geo_ntl.cli._restore import restoration_options, restore
from geo_ntl.cli.options import device_opt, param_opt, parse_params, tile_opt


@click.command("enhance")
@click.argument("scenes", nargs=-1, required=True)
@restoration_options
@param_opt
@tile_opt
@device_opt
@click.option(
    "--float32", "as_float", is_flag=True, help="Write float32 instead of the input dtype."
)
def enhance(
    scenes: tuple[str, ...],
    params: tuple[str, ...],
    tile: int,
    device: str,
    as_float: bool,
    **restoration: Any,
) -> None:
    """Enhance low-light SCENES with the ASM / non-uniform illumination method.

    SCENES are files, folders, glob patterns or URLs (https://, s3://,
    /vsi..., one scene each). Keeps CRS, transform, shape, nodata and dtype
    (float32 with --float32). Parameters (see geo_ntl.enhance.PARAM_DOCS)
    with --param NAME=VALUE, e.g. --param p=0.2.

    \b
    Examples:
      geo-ntl enhance dark.tif --out bright.tif
      geo-ntl enhance dark.tif --out bright.tif --param p=0.25 --tile 2048 --device cuda
      geo-ntl enhance scenes/ --out-dir bright/ --mosaic city.tif --workers 2
    """
    from geo_ntl.enhance import ASMParams
    from geo_ntl.pipeline import EnhanceStage

    restore(
        scenes,
        [EnhanceStage(params=ASMParams.from_mapping(parse_params(params)), tile=tile)],
        device=device,
        dtype="float32" if as_float else None,
        **restoration,  # the options of restoration_options: outputs, cluster, codec, progress
    )
