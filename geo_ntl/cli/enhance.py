"""``geo-ntl enhance``: the ASM low-light enhancer on a scene, written as a COG."""

from __future__ import annotations

import click

from geo_ntl.cli.options import (
    device_opt,
    out_opt,
    overwrite_opt,
    param_opt,
    parse_params,
    tile_opt,
)


@click.command("enhance")
@click.argument("scene", type=click.Path(dir_okay=False))
@out_opt
@param_opt
@tile_opt
@device_opt
@click.option(
    "--float32", "as_float", is_flag=True, help="Write float32 instead of the input dtype."
)
@overwrite_opt
def enhance(
    scene: str,
    out: str,
    params: tuple[str, ...],
    tile: int,
    device: str,
    as_float: bool,
    overwrite: bool,
) -> None:
    r"""Enhance a low-light SCENE with the ASM / non-uniform illumination method.

    Keeps CRS, transform, shape, nodata and dtype (float32 with --float32).
    Parameters (see geo_ntl.enhance.PARAM_DOCS) with --param NAME=VALUE, e.g.
    --param p=0.2 --param lambda3=0.8.

    \b
    Examples:
      geo-ntl enhance dark.tif --out bright.tif
      geo-ntl enhance dark.tif --out bright.tif --param p=0.25 --tile 2048 --device cuda
    """
    from geo_ntl.enhance import ASMParams
    from geo_ntl.enhance import enhance as run
    from geo_ntl.io import check_output_path, open_scene, write_cog

    check_output_path(out, overwrite=overwrite)
    prm = ASMParams.from_mapping(parse_params(params))
    da = open_scene(scene)
    result = run(da, params=prm, device=device, tile=tile, dtype="float32" if as_float else None)
    write_cog(result, out, overwrite=overwrite, stage="enhance", params=prm.to_dict())
    click.echo(f"wrote {out}")
