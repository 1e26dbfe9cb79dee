"""``geo-ntl psf``: measure a scene's own point-spread function."""

from __future__ import annotations

import json

import click

from geo_ntl.cli.options import json_opt, overwrite_opt


@click.command()
@click.argument("scene", type=click.Path(dir_okay=False))
@json_opt
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a PNG of the radial profiles (log scale).",
)
@overwrite_opt
def psf(scene: str, as_json: bool, plot: str | None, overwrite: bool) -> None:
    """Measure the blooming PSF of SCENE from its isolated street lamps.

    Prints, per band, the FWHM (pixels, and metres on a georeferenced scene),
    the log-log slope of the wings, the number of sources stacked and the
    method (isolated lamps, or the edges of saturated blobs when too few lamps
    are isolated). `--json` prints the whole estimate, kernels included, which
    `geo-ntl deblur --method physics --psf-json FILE` reads back.

    \b
    Examples:
      geo-ntl psf sample_aoi/helsinki/scene.tif
      geo-ntl psf scene.tif --json > scene_psf.json
      geo-ntl psf scene.tif --plot psf.png --overwrite
      geo-ntl deblur scene.tif --out clean.tif --method physics --psf-json scene_psf.json
    """
    from geo_ntl.io import open_scene
    from geo_ntl.psf import estimate_psf, write_profile_plot

    if plot is not None:
        from geo_ntl._atomic import check_output_path

        check_output_path(plot, overwrite=overwrite)
    da = open_scene(scene, allow_no_crs=True)
    est = estimate_psf(da)
    pixel = abs(float(da.rio.resolution()[0])) if da.rio.crs is not None else None
    if plot is not None:
        write_profile_plot(est, plot, overwrite=overwrite, title=scene, pixel_size=pixel)
    if as_json:
        data = est.to_dict()
        res = da.rio.resolution() if da.rio.crs is not None else None
        data["resolution"] = [abs(float(v)) for v in res] if res is not None else None
        data["fwhm_m"] = (
            [v * pixel if v is not None else None for v in data["fwhm"]] if pixel else None
        )
        data["crs"] = str(da.rio.crs) if da.rio.crs is not None else None
        data["scene"] = scene
        click.echo(json.dumps(data))
        return
    click.echo(f"{'band':>4}  {'FWHM px':>8}  {'FWHM m':>7}  {'wing slope':>10}  sources  method")
    for b, (fw, slope) in enumerate(zip(est.fwhm, est.wing_slope, strict=True), start=1):
        metres = f"{fw * pixel:7.2f}" if pixel else f"{'-':>7}"
        click.echo(f"{b:>4}  {fw:8.2f}  {metres}  {slope:10.2f}  {est.n_sources:>7}  {est.method}")
    click.echo(f"kernel {est.size} x {est.size} px")
    if plot is not None:
        click.echo(f"wrote {plot}")
