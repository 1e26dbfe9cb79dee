"""The one path every restoration command takes: scenes in, COGs (and a mosaic) out.

``geo-ntl enhance`` and ``geo-ntl deblur`` differ only in the stage they run;
everything else -- expanding scenes, planning outputs, resuming, choosing the
scheduler, checking for valid pixels, writing COGs, mosaicking -- is here, so
it is done one way.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import xarray as xr

log = logging.getLogger(__name__)

Stage = Callable[[xr.DataArray], xr.DataArray]


def restoration_options(func):  # noqa: ANN001, ANN201 - a click decorator
    """Options shared by the restoration commands (outputs, cluster, mosaic)."""
    from geo_ntl.cli.options import cluster_opts, compress_opt, overwrite_opt, tiff_path

    func = overwrite_opt(func)
    func = compress_opt(func)
    func = cluster_opts(func)
    func = click.option(
        "--mosaic",
        "mosaic_out",
        type=click.Path(dir_okay=False),
        default=None,
        callback=tiff_path,
        help="Also blend all outputs into this mosaic COG.",
    )(func)
    func = click.option(
        "--out-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Output folder for several scenes (one COG per scene); created if missing.",
    )(func)
    func = click.option(
        "--out",
        "-o",
        "out",
        type=click.Path(dir_okay=False),
        default=None,
        callback=tiff_path,
        help="Output COG (one scene).",
    )(func)
    return func


def run_restoration(
    scenes: Sequence[str],
    *,
    stage: str,
    suffix: str,
    params: Mapping[str, Any],
    build: Stage,
    out: str | None,
    out_dir: str | None,
    mosaic_out: str | None,
    overwrite: bool,
    workers: int | None,
    threads_per_worker: int | None,
    scheduler: str | None,
    device: str = "auto",
    dtype: str | None = None,
    allow_no_crs: bool = False,
    compress: str = "DEFLATE",
) -> list[Path]:
    """Run one stage over scenes and write one COG each (plus an optional mosaic).

    Parameters
    ----------
    scenes : sequence of str
        Files, folders or globs.
    stage : str
        Stage name for provenance and job signatures.
    suffix : str
        Suffix of output names in ``out_dir``.
    params : mapping
        Stage parameters (recorded, and part of the job signature).
    build : callable
        ``build(scene_da) -> result_da``, lazy.
    out, out_dir, mosaic_out : str, optional
        Destinations (see :func:`geo_ntl.batch.plan_jobs`).
    overwrite : bool
        Replace outputs written by other jobs.
    workers, threads_per_worker, scheduler
        See :func:`geo_ntl.parallel.compute_context`.
    device : str, default "auto"
        The stage's device, for GPU task annotations.
    dtype : str, optional
        Output dtype; defaults to the input's.
    allow_no_crs : bool, default False
        Accept scenes without CRS.
    compress : str, default "DEFLATE"
        Compression of the COGs and the mosaic (see :func:`geo_ntl.io.write_cog`). Not part of
        the job signature: an output finished with another compression has the same pixels.

    Returns
    -------
    list of pathlib.Path
        The written (or already finished) outputs.
    """
    import rasterio
    from dask.diagnostics import ProgressBar

    from geo_ntl._atomic import check_output_path
    from geo_ntl.batch import expand_scenes, plan_jobs, run_jobs
    from geo_ntl.io import ensure_valid_data, open_scene, write_cog
    from geo_ntl.parallel import compute_context, gpu_annotations, scenes_in_flight

    paths = expand_scenes(scenes)
    if out_dir is not None and out is None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(
        paths,
        out=out,
        out_dir=out_dir,
        suffix=suffix,
        stage=stage,
        params=params,
        overwrite=overwrite,
    )
    if mosaic_out is not None:
        check_output_path(mosaic_out, overwrite=overwrite)
    opened = {
        job.scene: open_scene(job.scene, allow_no_crs=allow_no_crs) for job in jobs if not job.done
    }
    for da in opened.values():
        ensure_valid_data(da)
    megapixels = 0.0
    for job in jobs:
        with rasterio.open(job.scene) as src:
            megapixels += src.width * src.height / 1e6

    with compute_context(
        workers=workers,
        threads_per_worker=threads_per_worker,
        scheduler=scheduler,
        megapixels=megapixels,
        n_scenes=len(jobs),
        gpu=str(device) != "cpu",
    ) as context:

        def process(job: Any) -> None:
            with gpu_annotations(context, device):
                result = build(opened[job.scene])
            # Tile progress on a terminal (the dashboard shows it on a cluster).
            show = context.client is None and sys.stderr.isatty()
            with ProgressBar(minimum=5, out=sys.stderr) if show else contextlib.nullcontext():
                _write(result, job)

        def _write(result: xr.DataArray, job: Any) -> None:
            write_cog(
                result,
                job.out,
                overwrite=True,
                dtype=dtype,
                stage=stage,
                params=params,
                tags={"GEO_NTL_JOB": job.signature, "GEO_NTL_SOURCE": job.scene.name},
                allow_no_crs=allow_no_crs,
                compress=compress,
            )
            click.echo(f"wrote {job.out}")

        outputs = run_jobs(jobs, process, in_flight=scenes_in_flight(context))
        if mosaic_out is not None:
            from geo_ntl.mosaic import write_mosaic

            write_mosaic(outputs, mosaic_out, overwrite=overwrite, compress=compress)
            click.echo(f"wrote mosaic {mosaic_out}")
    return outputs
