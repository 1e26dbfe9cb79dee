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
    from geo_ntl.cli.options import cluster_opts, co_opt, compress_opt, overwrite_opt, tiff_path

    func = overwrite_opt(func)
    func = co_opt(func)
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
    compress: str | None = None,
    inputs: Sequence[tuple[str, str | Path]] = (),
    creation_options: Mapping[str, str] | None = None,
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
        Effective stage parameters -- defaults filled in, a model as ``weights_sha256``
        (recorded, and part of the job signature).
    build : callable
        ``build(scene_da) -> result_da``, lazy.
    out, out_dir, mosaic_out : str, optional
        Destinations (see :func:`geo_ntl.batch.plan_jobs`).
    overwrite : bool
        Recompute and replace every output (and the mosaic). Without it, outputs
        an earlier run of the same job finished are kept, and others are an error.
    workers, threads_per_worker, scheduler
        See :func:`geo_ntl.parallel.compute_context`.
    device : str, default "auto"
        The stage's device, for GPU task annotations.
    dtype : str, optional
        Output dtype; defaults to the input's.
    allow_no_crs : bool, default False
        Accept scenes without CRS.
    compress : str, optional
        Compression of the COGs and the mosaic (see :func:`geo_ntl.io.write_cog`). Not part of
        the job signature: an output finished with another compression has the same pixels.
    creation_options : mapping, optional
        Further COG creation options (``--co``); not part of the job signature either.
    inputs : sequence of (str, path)
        Other files the stage reads (e.g. ``("weights file", path)``); no output may be one.

    Returns
    -------
    list of pathlib.Path
        The written (or already finished) outputs.
    """
    import json

    import rasterio
    from dask.diagnostics import ProgressBar

    from geo_ntl._atomic import check_distinct, check_output_path, remove_stale_partials
    from geo_ntl.batch import expand_scenes, input_identity, plan_jobs, run_jobs
    from geo_ntl.exceptions import OutputExistsError
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
    readers = [("input scene", p) for p in paths] + list(inputs)
    check_distinct([job.out for job in jobs], readers)
    mosaic_kept = False
    if mosaic_out is not None:
        from geo_ntl.mosaic import mosaic_is_current

        check_distinct([*(job.out for job in jobs), mosaic_out], readers)
        remove_stale_partials(mosaic_out)
        if Path(mosaic_out).exists() and not overwrite:
            # Kept only if every scene is kept too and the mosaic is of exactly those outputs.
            mosaic_kept = all(job.done for job in jobs) and mosaic_is_current(
                [job.out for job in jobs], mosaic_out
            )
            if not mosaic_kept:
                raise OutputExistsError(
                    f"mosaic {mosaic_out} already exists and is not the mosaic of these outputs; "
                    "pass --overwrite to replace it"
                )
        check_output_path(mosaic_out, overwrite=True)
    kept = sum(job.done for job in jobs)
    redone = sum(job.current and not job.done for job in jobs)
    if kept:
        what = f"kept {kept} of {len(jobs)} output(s)" + (" and the mosaic" if mosaic_kept else "")
        _note(f"{what} from an earlier identical run; --overwrite recomputes them")
    elif redone:
        _note(
            f"recomputing {redone} of {len(jobs)} output(s) an earlier identical run wrote "
            "(--overwrite)"
        )
    opened = {
        job.scene: open_scene(job.scene, allow_no_crs=allow_no_crs) for job in jobs if not job.done
    }
    for da in opened.values():
        ensure_valid_data(da)
    megapixels = 0.0
    for job in jobs:
        with rasterio.open(job.scene) as src:
            megapixels += src.width * src.height / 1e6
    device_tag = _device_name(device)

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
            tags = {
                "GEO_NTL_JOB": job.signature,
                "GEO_NTL_SOURCE": job.scene.name,
                "GEO_NTL_INPUT": json.dumps([input_identity(job.scene)], sort_keys=True),
                "GEO_NTL_DEVICE": device_tag,
            }
            write_cog(
                result,
                job.out,
                # Without --overwrite the output did not exist when planned: refuse one that
                # appeared since (a concurrent run) instead of replacing it.
                overwrite=overwrite,
                dtype=dtype,
                stage=stage,
                params=params,
                tags=tags,
                allow_no_crs=allow_no_crs,
                compress=compress,
                creation_options=creation_options,
            )
            click.echo(f"wrote {job.out}")

        outputs = run_jobs(jobs, process, in_flight=scenes_in_flight(context))
        if mosaic_out is not None and not mosaic_kept:
            from geo_ntl.mosaic import write_mosaic

            write_mosaic(
                outputs,
                mosaic_out,
                overwrite=overwrite,
                compress=compress,
                creation_options=creation_options,
            )
            click.echo(f"wrote mosaic {mosaic_out}")
    return outputs


def _device_name(device: str) -> str:
    """Return the torch device a stage runs on, resolved (``auto`` -> ``cuda``/``cpu``)."""
    try:
        from geo_ntl._device import resolve_device

        return str(resolve_device(device))
    except Exception:  # noqa: BLE001 - a provenance tag; the stage reports bad devices itself
        return str(device)


def _note(message: str) -> None:
    """One line on stderr, unless -q."""
    if logging.getLogger().getEffectiveLevel() <= logging.WARNING:
        click.echo(message, err=True)
