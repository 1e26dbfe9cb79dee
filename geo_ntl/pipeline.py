"""Restore many scenes in one resumable run: scenes in, one COG each (and a mosaic) out.

:func:`restore_scenes` is the one path every restoration takes -- ``geo-ntl
deblur``, ``geo-ntl enhance``, notebooks and scripts. It expands the scenes
(files, folders, globs), plans one output per scene, keeps the outputs an
earlier run of the same job finished (job signatures, :mod:`geo_ntl.batch`),
chooses where the work runs (:mod:`geo_ntl.parallel`), checks every scene for
valid pixels before any work, writes each output atomically as a COG with its
provenance, and optionally blends them into a mosaic.

Deblur then enhance runs the deblur once per scene: its output is staged on
disk in a hidden folder (removed on any exit) and the enhancer reads it from
there, because the enhancer's whole-scene statistics and its tiles would each
evaluate a lazy deblur again.

Examples
--------
>>> from geo_ntl.pipeline import restore_scenes
>>> restore_scenes(
...     "scenes/", stages=["deblur", ("enhance", {"tile": 512})], out_dir="clean/"
... )  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geo_ntl._stages import (
    STAGING_PREFIX,
    DeblurStage,
    EnhanceStage,
    StagePlan,
    StageSpec,
    plan_stages,
)

if TYPE_CHECKING:
    from geo_ntl.io import Compression
    from geo_ntl.progress import ProgressCallback

__all__ = ["ComputeOptions", "DeblurStage", "EnhanceStage", "StageSpec", "restore_scenes"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ComputeOptions:
    """Where the work runs (see :func:`geo_ntl.parallel.compute_context`).

    Parameters
    ----------
    workers : int, optional
        0: in this process; N: an embedded dask cluster of N processes; default a
        cluster only for big jobs.
    threads_per_worker : int, optional
        Threads per embedded worker.
    scheduler : str, optional
        Address of a running dask scheduler to join.
    """

    workers: int | None = None
    threads_per_worker: int | None = None
    scheduler: str | None = None


def restore_scenes(
    scenes: PathLike | Sequence[PathLike],
    *,
    stages: Sequence[StageSpec],
    out: PathLike | None = None,
    out_dir: PathLike | None = None,
    mosaic: PathLike | None = None,
    overwrite: bool = False,
    device: str = "auto",
    dtype: str | None = None,
    compress: Compression | None = None,
    creation_options: Mapping[str, str] | None = None,
    compute: ComputeOptions | None = None,
    allow_no_crs: bool = False,
    on_written: Callable[[Path], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Run restoration stages over scenes and write one COG each (plus an optional mosaic).

    Parameters
    ----------
    scenes : path or sequence of paths
        Files, folders, glob patterns or remote inputs (URLs, ``/vsi...`` paths: one scene each).
    stages : sequence of StageSpec
        ``["deblur"]``, ``["enhance"]`` or ``["deblur", "enhance"]``, each a name, a
        ``(name, keyword arguments)`` pair or a :class:`DeblurStage` / :class:`EnhanceStage`.
        Outputs are named ``<scene>_clean.tif`` with a deblur stage, else
        ``<scene>_enhanced.tif``.
    out : path, optional
        Output COG of a single scene.
    out_dir : path, optional
        Output folder for any number of scenes (created if missing).
    mosaic : path, optional
        Also blend every output into this mosaic COG.
    overwrite : bool, default False
        Recompute and replace every output (and the mosaic). Without it, outputs an
        earlier run of the same job finished are kept, and other existing files are an error.
    device : str, default "auto"
        Torch device of the stages.
    dtype : {None, "float32"}, optional
        Output dtype; default the input's.
    compress : str, optional
        Compression of the COGs and the mosaic (see :func:`geo_ntl.io.write_cog`; default
        DEFLATE); not part of the job signature (another compression has the same pixels).
    creation_options : mapping of str to str, optional
        Further GDAL COG creation options (see :func:`geo_ntl.io.write_cog`); not part of the
        job signature either.
    compute : ComputeOptions, optional
        Where the work runs; default chosen from the size of the job.
    allow_no_crs : bool, default False
        Accept scenes without a CRS.
    on_written : callable, optional
        Called with each output's path once it is complete (the scenes', then the mosaic's);
        default a log record.
    on_note : callable, optional
        Called with a one-line note when outputs of an earlier run are kept or recomputed;
        default a log record.
    progress : callable, optional
        Called with a :class:`geo_ntl.progress.ProgressEvent` as each scene enters a stage
        and as its tiles finish, on dask's local schedulers and on a cluster alike (from
        several threads when scenes are in flight together); default nothing.
        :class:`geo_ntl.progress.RichProgress` shows them on a terminal.

    Returns
    -------
    list of pathlib.Path
        The written (or already finished) outputs, in scene order.

    Raises
    ------
    SceneNotFoundError
        If a scene, folder or pattern names no scene.
    InputError
        For bad destinations (``out`` with several scenes, an output that is an input) or
        a scene without valid pixels -- before any work.
    OutputExistsError
        If an output or the mosaic exists and is not this job's (``overwrite=True`` replaces it).
    ParameterError, TilingError, WeightsNotFoundError, WeightsError
        For bad stages (checked before any scene is read).

    Examples
    --------
    >>> from geo_ntl.pipeline import ComputeOptions, DeblurStage
    >>> restore_scenes(
    ...     ["a.tif", "b.tif"], stages=[DeblurStage(tile=1024), "enhance"],
    ...     out_dir="clean", mosaic="city.tif", compute=ComputeOptions(workers=2),
    ... )  # doctest: +SKIP
    """
    from geo_ntl.batch import expand_scenes
    from geo_ntl.parallel import compute_context

    plan = plan_stages(stages, dtype=dtype)
    listed = [scenes] if isinstance(scenes, str | os.PathLike) else list(scenes)
    paths = expand_scenes([os.fspath(s) for s in listed])
    compute = compute or ComputeOptions()
    with (
        _staging(plan, out=out, out_dir=out_dir) as staging,
        compute_context(
            workers=compute.workers,
            threads_per_worker=compute.threads_per_worker,
            scheduler=compute.scheduler,
            megapixels=_megapixels(paths, allow_no_crs=allow_no_crs),
            n_scenes=len(paths),
            gpu=str(device) != "cpu",
        ) as context,
    ):
        return _run(
            context,
            paths,
            plan=plan,
            staging=staging,
            out=out,
            out_dir=out_dir,
            mosaic=mosaic,
            overwrite=overwrite,
            device=device,
            compress=compress,
            creation_options=creation_options,
            allow_no_crs=allow_no_crs,
            on_written=on_written or (lambda path: log.info("wrote %s", path)),
            on_note=on_note or log.info,
            progress=progress,
        )


def _staging(
    plan: StagePlan, *, out: PathLike | None, out_dir: PathLike | None
) -> contextlib.AbstractContextManager[Path | None]:
    """Return the hidden folder a deblur output waits in for the enhancer (removed on exit).

    Marked as this run's, so the next run for the same outputs removes what a killed one left.
    """
    if not plan.staged:
        return contextlib.nullcontext()
    from geo_ntl._atomic import staging_dir

    parents = [Path(p) for p in (out_dir, out and Path(out).absolute().parent) if p]
    parent = next((p for p in parents if p.is_dir()), None)
    owners = [Path(out_dir or out).absolute()] if (out_dir or out) else []  # type: ignore[arg-type]
    return staging_dir(parent, prefix=STAGING_PREFIX, owners=owners)


def _megapixels(paths: Sequence[str | Path], *, allow_no_crs: bool) -> float:
    """Return the size of the scenes in megapixels (what decides ``workers=None``).

    Each is opened as the stages will open it, so an unreadable scene is its one-line error.
    """
    from geo_ntl.io import open_scene

    total = 0.0
    for path in paths:
        da = open_scene(path, allow_no_crs=allow_no_crs)
        total += da.sizes["y"] * da.sizes["x"] / 1e6
    return total


def _run(
    context: Any,
    paths: Sequence[str | Path],
    *,
    plan: StagePlan,
    staging: Path | None,
    out: PathLike | None,
    out_dir: PathLike | None,
    mosaic: PathLike | None,
    overwrite: bool,
    device: str,
    compress: Compression | None,
    creation_options: Mapping[str, str] | None,
    allow_no_crs: bool,
    on_written: Callable[[Path], None],
    on_note: Callable[[str], None],
    progress: ProgressCallback | None,
) -> list[Path]:
    """Plan the jobs on the device the compute context offers, and run them there.

    The device is planned first (on a cluster, from its workers' GPUs): it, its precision and
    the GAN's batch are part of each job's signature.
    """
    from geo_ntl._device import plan_device
    from geo_ntl.batch import plan_jobs, run_jobs, without_own_outputs
    from geo_ntl.io import check_codec, cog_creation_options, ensure_valid_data, open_scene
    from geo_ntl.parallel import scenes_in_flight

    device_plan = plan_device(device)
    plan.bind(device_plan)
    build = plan.builder(staging, device_plan)
    out = None if out is None else os.fspath(out)
    out_dir = None if out_dir is None else os.fspath(out_dir)
    paths, own = without_own_outputs(paths, out_dir=out_dir, stage=plan.stage, suffix=plan.suffix)
    if own:
        on_note(f"left out {len(own)} output(s) of this command found among the scenes")
    if not paths:
        from geo_ntl.exceptions import SceneNotFoundError

        raise SceneNotFoundError(
            "every scene given is an output of this command; give the original scenes"
        )
    mosaic = None if mosaic is None else os.fspath(mosaic)
    from geo_ntl._atomic import check_local_output

    for target in (out, out_dir, mosaic):
        if target is not None:
            check_local_output(target)
    if out_dir is not None and out is None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(
        paths,
        out=out,
        out_dir=out_dir,
        suffix=plan.suffix,
        stage=plan.stage,
        params=plan.params,
        overwrite=overwrite,
    )
    readers = [("input scene", p) for p in paths] + list(plan.inputs)
    mosaic_kept = _check_outputs(jobs, readers, mosaic=mosaic, overwrite=overwrite)
    _note_resumed(jobs, mosaic_kept=mosaic_kept, on_note=on_note)
    opened = {
        job.scene: open_scene(job.scene, allow_no_crs=allow_no_crs) for job in jobs if not job.done
    }
    codec = cog_creation_options(compress, None, creation_options)["COMPRESS"]
    for da in opened.values():  # a codec the outputs cannot take: refused before any pixel is read
        check_codec(codec, plan.dtype or da.dtype, da.sizes["band"])
    for da in opened.values():
        ensure_valid_data(da)
    trackers = _Trackers(progress, jobs, stages=plan.stages, client=context.client)

    def process(job: Any) -> None:
        with trackers.scene(job) as tracker:
            with tracker.annotate():
                result = build(opened[job.scene], tracker.stage)
                tracker.stage(plan.stages[-1], result)
                _write(result, job, plan=plan, overwrite=overwrite, device_tag=device_plan.device,
                       compress=compress, creation_options=creation_options,
                       allow_no_crs=allow_no_crs)  # fmt: skip
            tracker.done()
        on_written(job.out)

    outputs = run_jobs(jobs, process, in_flight=scenes_in_flight(context))
    if mosaic is not None and not mosaic_kept:
        from geo_ntl.mosaic import write_mosaic

        trackers.mosaic(Path(mosaic).name)
        write_mosaic(outputs, mosaic, overwrite=overwrite, compress=compress,
                     creation_options=creation_options)  # fmt: skip
        trackers.mosaic(Path(mosaic).name, done=True)
        on_written(Path(mosaic))
    return outputs


class _Trackers:
    """Hand each scene its progress tracker (or one that reports nothing)."""

    def __init__(
        self,
        progress: ProgressCallback | None,
        jobs: Sequence[Any],
        *,
        stages: Sequence[str],
        client: Any,
    ) -> None:
        self._progress, self._stages, self._client = progress, stages, client
        todo = [job for job in jobs if not job.done]
        self._scenes = len(todo)
        self._position = {job.out: index for index, job in enumerate(todo, start=1)}

    def scene(self, job: Any) -> contextlib.AbstractContextManager[Any]:
        """Return the tracker of the scene ``job`` computes."""
        if self._progress is None:
            return contextlib.nullcontext(_SILENT)
        from geo_ntl._remote import scene_name
        from geo_ntl._tile_progress import SceneTracker

        index = self._position[job.out]
        return SceneTracker(self._progress, scene=index, scenes=self._scenes,
                            name=scene_name(job.scene), stages=self._stages, client=self._client)  # fmt: skip

    def mosaic(self, name: str, *, done: bool = False) -> None:
        """Report that the mosaic starts, or is complete."""
        if self._progress is not None:
            from geo_ntl.progress import DONE, MOSAIC, ProgressEvent

            stage = DONE if done else MOSAIC
            self._progress(ProgressEvent(scene=0, scenes=self._scenes, name=name, stage=stage))


class _SilentTracker:
    """A scene tracker that reports nothing and tags no task."""

    def annotate(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def stage(self, name: str, data: Any = None) -> None:
        pass

    def done(self) -> None:
        pass


_SILENT = _SilentTracker()


def _check_outputs(
    jobs: Sequence[Any],
    readers: Sequence[tuple[str, PathLike]],
    *,
    mosaic: str | None,
    overwrite: bool,
) -> bool:
    """Refuse outputs that are inputs; return whether an existing mosaic is kept."""
    from geo_ntl._atomic import check_distinct, check_output_path, remove_stale_partials
    from geo_ntl.exceptions import OutputExistsError

    check_distinct([job.out for job in jobs], readers)
    if mosaic is None:
        return False
    from geo_ntl.mosaic import mosaic_is_current

    check_distinct([*(job.out for job in jobs), mosaic], readers)
    remove_stale_partials(mosaic)
    kept = False
    if Path(mosaic).exists() and not overwrite:
        # Kept only if every scene is kept too and the mosaic is of exactly those outputs.
        kept = all(job.done for job in jobs) and mosaic_is_current(
            [job.out for job in jobs], mosaic
        )
        if not kept:
            raise OutputExistsError(
                f"mosaic {mosaic} already exists and is not the mosaic of these outputs; "
                "pass overwrite=True to replace it",
                options={"overwrite=True": "overwrite"},
            )
    check_output_path(mosaic, overwrite=True)
    return kept


def _note_resumed(
    jobs: Sequence[Any], *, mosaic_kept: bool, on_note: Callable[[str], None]
) -> None:
    """Say how many outputs an earlier identical run finished (kept) or wrote (recomputed)."""
    kept = sum(job.done for job in jobs)
    redone = sum(job.current and not job.done for job in jobs)
    if kept:
        what = f"kept {kept} of {len(jobs)} output(s)" + (" and the mosaic" if mosaic_kept else "")
        on_note(f"{what} from an earlier identical run; overwrite=True recomputes them")
    elif redone:
        on_note(
            f"recomputing {redone} of {len(jobs)} output(s) an earlier identical run wrote "
            "(overwrite=True)"
        )


def _write(
    result: Any,
    job: Any,
    *,
    plan: StagePlan,
    overwrite: bool,
    device_tag: str,
    compress: Compression | None,
    creation_options: Mapping[str, str] | None,
    allow_no_crs: bool,
) -> None:
    """Write one scene's result as a COG with its job signature and provenance."""
    from geo_ntl._remote import scene_name
    from geo_ntl.batch import input_identity
    from geo_ntl.io import write_cog

    tags = {
        "GEO_NTL_JOB": job.signature,
        "GEO_NTL_SOURCE": scene_name(job.scene),
        "GEO_NTL_INPUT": json.dumps([input_identity(job.scene)], sort_keys=True),
        "GEO_NTL_DEVICE": device_tag,
    }
    write_cog(
        result,
        job.out,
        # Without overwrite the output did not exist when planned: refuse one that appeared
        # since (a concurrent run) instead of replacing it.
        overwrite=overwrite,
        dtype=plan.dtype,
        stage=plan.stage,
        params=plan.params,
        tags=tags,
        allow_no_crs=allow_no_crs,
        compress=compress,
        creation_options=creation_options,
    )
