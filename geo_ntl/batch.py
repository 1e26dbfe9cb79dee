"""Many scenes, one command: expanding inputs, planning outputs, resuming runs.

A restoration command given several scenes (files, folders, glob patterns or
remote inputs) writes one COG per scene. Each output records a job signature in its
``GEO_NTL_JOB`` tag: a hash of everything that determines its pixels -- the
stage, its effective parameters (defaults filled in, weights by SHA-256), the
input's identity (resolved path, size, modification time and a fingerprint of
its first and last bytes; for a remote input its URL and raster header) and the code's identity (geo_ntl version and
:func:`geo_ntl._provenance.code_hash`). Running the same command again keeps
every output whose signature matches, so an interrupted run resumes where it
stopped and ends with the same files as an uninterrupted one. An existing
output with another signature is an error unless ``overwrite`` is set, and
``overwrite`` recomputes every output, matching or not.

Folders and globs never yield hidden (dot-) files -- geo_ntl's own temporary
files are hidden -- nor files named like temporary files.

A remote input (a URL such as ``https://...`` or ``s3://...``, or a GDAL path such
as ``/vsicurl/...``, see :func:`geo_ntl._remote.is_remote`) is one scene: never
globbed nor listed, kept as the string given, and named after its last path
component (``https://host/a/scene.tif?sig=x`` writes ``scene<suffix>.tif``). GDAL
cannot tell its size or modification time through rasterio, so its identity is
the URL and its raster header (size, bands, dtypes, CRS, transform): a remote
scene replaced at the same URL by one with the same header but other pixels is
taken for the same input -- pass ``overwrite`` to recompute.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from geo_ntl._atomic import PathLike, check_distinct, check_output_path, remove_stale_partials
from geo_ntl._provenance import code_hash
from geo_ntl._remote import check_not_subdataset, is_remote, scene_stem
from geo_ntl._version import __version__
from geo_ntl.exceptions import InputError, OutputExistsError, SceneNotFoundError

__all__ = [
    "RASTER_SUFFIXES",
    "Scene",
    "SceneJob",
    "expand_scenes",
    "input_identity",
    "is_scene_name",
    "job_identity",
    "job_signature",
    "mismatch_reason",
    "plan_jobs",
    "remote_identity",
    "run_jobs",
]

log = logging.getLogger(__name__)

#: File suffixes picked up when a folder is given.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")
#: Tag that records a job's signature in its output.
JOB_TAG = "GEO_NTL_JOB"
#: Tag that records the identity of a job's input(s) (JSON).
INPUT_TAG = "GEO_NTL_INPUT"
#: Name endings of temporary files (geo_ntl's, GDAL's, editors'), never taken for scenes.
TEMPORARY_SUFFIXES = (".partial", ".staging", ".tmp", ".temp", ".part", "~")
#: Bytes read from each end of an input for its content fingerprint.
FINGERPRINT_BYTES = 64 * 1024

#: A scene: a local file, or a remote input kept as the string given (see :func:`expand_scenes`).
Scene = Path | str


@dataclass(frozen=True)
class SceneJob:
    """One scene to process.

    Attributes
    ----------
    scene : pathlib.Path or str
        Input: a local file, or a remote input (a str, see :func:`expand_scenes`).
    out : pathlib.Path
        Output COG.
    signature : str
        Job signature recorded in the output.
    done : bool
        Whether an earlier run already wrote this output (and it is kept).
    current : bool, default False
        Whether the existing output is what this job writes (kept unless ``overwrite``).
    """

    scene: Scene
    out: Path
    signature: str
    done: bool
    current: bool = False


def expand_scenes(items: Iterable[PathLike]) -> list[Scene]:
    """Turn files, folders, glob patterns and remote inputs into a de-duplicated list of scenes.

    Parameters
    ----------
    items : iterable of path or str
        Files, folders (their ``*.tif``, ``*.tiff`` and ``*.vrt`` files), glob
        patterns such as ``"scenes/*.tif"``, or remote inputs (``https://...``,
        ``s3://...``, ``/vsicurl/...``, ``/vsimem/...``: see
        :func:`geo_ntl._remote.is_remote`). Folders and globs skip hidden
        (dot-) files and temporary files (see :func:`is_scene_name`); a file
        named explicitly is always taken. A remote input is one scene, taken
        as given: it is neither globbed nor listed, nor checked here (opening
        it is).

    Returns
    -------
    list of pathlib.Path or str
        Local scenes as absolute paths (each folder's and glob's sorted), remote
        ones as the strings given, in the order of ``items``.

    Raises
    ------
    SceneNotFoundError
        If an item matches nothing.
    """
    scenes: list[Scene] = []
    for item in items:
        text = os.fspath(item)
        if is_remote(text):
            scenes.append(text)
            continue
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in RASTER_SUFFIXES and is_scene_name(p.name) and p.is_file()
            )
            if not found:
                raise SceneNotFoundError(f"folder {path} holds no .tif, .tiff or .vrt scenes")
            scenes.extend(found)
        elif path.exists():
            scenes.append(path)
        elif glob.has_magic(text):
            found = sorted(
                Path(p)
                for p in glob.glob(text, recursive=True)
                if is_scene_name(Path(p).name) and Path(p).is_file()
            )
            if not found:
                raise SceneNotFoundError(f"no scene matches {text!r}; check the pattern")
            scenes.extend(found)
        else:
            check_not_subdataset(text)
            raise SceneNotFoundError(f"scene {text} does not exist; check the path")
    unique: dict[Scene, None] = {}
    for scene in scenes:
        unique.setdefault(scene if isinstance(scene, str) else scene.absolute(), None)
    return list(unique)


def without_own_outputs(
    scenes: Sequence[Scene], *, out_dir: PathLike | None, stage: str, suffix: str
) -> tuple[list[Scene], list[Scene]]:
    """Leave out the scenes that are this job's own outputs in its output folder.

    A scene in ``out_dir`` named ``<stem><suffix>.tif`` whose tags say geo_ntl's ``stage``
    wrote it (:data:`JOB_TAG`, ``GEO_NTL_STAGE``) is an output of an earlier run of the
    same command, not an input: so ``deblur DIR --out-dir DIR`` can run again.

    Returns
    -------
    (list, list)
        The scenes kept, and those left out.
    """
    if out_dir is None:
        return list(scenes), []
    folder = os.path.realpath(os.fspath(out_dir))
    kept: list[Scene] = []
    skipped: list[Scene] = []
    for scene in scenes:
        own = (
            not isinstance(scene, str)
            and os.path.realpath(scene.parent) == folder
            and scene.name.endswith(f"{suffix}.tif")
        )
        if own:
            tags = _recorded_tags(Path(scene)) or {}
            own = JOB_TAG in tags and tags.get("GEO_NTL_STAGE") == stage
        (skipped if own else kept).append(scene)
    return kept, skipped


def is_scene_name(name: str) -> bool:
    """Whether a file name found in a folder or by a glob may be a scene.

    Hidden names (``.x.tif``: geo_ntl's temporary and staging files are hidden)
    and names of temporary files (``x.partial.tif``, ``x.staging.tif``,
    ``x.tif.tmp``, ``x.tif~``...) are not.

    Parameters
    ----------
    name : str
        File name (no folder).

    Returns
    -------
    bool
    """
    if name.startswith("."):
        return False
    lowered = name.lower()
    stem = lowered.rsplit(".", 1)[0] if "." in lowered else lowered
    return not any(stem.endswith(t) or lowered.endswith(t) for t in TEMPORARY_SUFFIXES)


def _fingerprint(path: Path, size: int) -> str:
    """SHA-256 of the first and last :data:`FINGERPRINT_BYTES` of a file (and its size)."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        if size > 2 * FINGERPRINT_BYTES:
            f.seek(size - FINGERPRINT_BYTES)
        digest.update(f.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


def input_identity(path: PathLike) -> dict[str, Any]:
    """Identity of an input: resolved path, size, modification time, content fingerprint.

    Parameters
    ----------
    path : path
        An existing file, or a remote input (see :func:`geo_ntl._remote.is_remote`).

    Returns
    -------
    dict
        ``{"path", "size", "mtime_ns", "fingerprint"}``, JSON-serialisable; for a
        remote input ``{"url", "header"}`` (see :func:`remote_identity`).

    Raises
    ------
    SceneNotFoundError
        If a remote input cannot be opened.
    """
    if is_remote(path):
        return remote_identity(os.fspath(path))
    real = Path(os.path.realpath(path))
    stat = real.stat()
    return {
        "path": str(real),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "fingerprint": _fingerprint(real, stat.st_size),
    }


def remote_identity(url: str) -> dict[str, Any]:
    """Identity of a remote input: the URL as given and its raster header.

    GDAL cannot tell a remote file's size or modification time through rasterio, and
    reading its bytes to fingerprint them would download it; the header (size, bands,
    dtypes, CRS, transform, nodata) is read anyway to open the scene.

    Parameters
    ----------
    url : str
        A remote input (see :func:`geo_ntl._remote.is_remote`).

    Returns
    -------
    dict
        ``{"url", "header"}``, JSON-serialisable.

    Raises
    ------
    SceneNotFoundError
        If GDAL cannot open ``url``.
    """
    try:
        with rasterio.open(url) as src:
            header = {
                "width": src.width,
                "height": src.height,
                "count": src.count,
                "dtypes": list(src.dtypes),
                "crs": src.crs.to_string() if src.crs is not None else None,
                "transform": list(src.transform)[:6],
                "nodata": None if src.nodata is None else str(src.nodata),
            }
    except rasterio.errors.RasterioIOError as exc:
        raise SceneNotFoundError(
            f"remote scene {url} cannot be opened ({exc}); check the URL and its access"
        ) from exc
    return {"url": url, "header": header}


def job_identity(
    scene: PathLike | Sequence[PathLike], stage: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything that determines an output, as a JSON-serialisable dict.

    Parameters
    ----------
    scene : path or sequence of paths
        Input scene(s) (a sequence for a mosaic).
    stage : str
        Processing stage, e.g. ``"deblur"``.
    params : mapping
        Effective parameters: every value that changes the pixels, with defaults
        filled in and models named by their SHA-256 (``weights_sha256``).

    Returns
    -------
    dict
        ``{"version", "code", "stage", "params", "inputs"}``.
    """
    scenes = [scene] if isinstance(scene, str | os.PathLike) else list(scene)
    return {
        "version": __version__,
        "code": code_hash(),
        "stage": stage,
        "params": json.loads(json.dumps(dict(params), sort_keys=True, default=str)),
        "inputs": [input_identity(p) for p in scenes],
    }


def job_signature(
    scene: PathLike | Sequence[PathLike], stage: str, params: Mapping[str, Any]
) -> str:
    """Hash of :func:`job_identity`: what an output records in its ``GEO_NTL_JOB`` tag.

    Parameters
    ----------
    scene : path or sequence of paths
        Input scene(s).
    stage : str
        Processing stage, e.g. ``"deblur"``.
    params : mapping
        Effective parameters (see :func:`job_identity`).

    Returns
    -------
    str
        Hex SHA-256 digest.
    """
    identity = job_identity(scene, stage, params)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _recorded_tags(path: Path) -> dict[str, str] | None:
    try:
        with rasterio.open(path) as src:
            return src.tags()
    except rasterio.errors.RasterioIOError:
        return None


def _recorded_signature(path: Path) -> str | None:
    tags = _recorded_tags(path)
    return None if tags is None else tags.get(JOB_TAG)


def mismatch_reason(path: PathLike, identity: Mapping[str, Any]) -> str:
    """Say why the existing output ``path`` is not what ``identity`` would write.

    Parameters
    ----------
    path : path
        An existing output.
    identity : mapping
        From :func:`job_identity`.

    Returns
    -------
    str
        E.g. ``"it was written with other parameters (p, tile)"``.
    """
    tags = _recorded_tags(Path(path))
    if tags is None or JOB_TAG not in tags:
        return "it was not written by a geo_ntl job"
    reasons = []
    if tags.get("GEO_NTL_STAGE") != identity["stage"]:
        reasons.append(f"by the {tags.get('GEO_NTL_STAGE')} stage")
    if (
        tags.get("GEO_NTL_VERSION") != identity["version"]
        or tags.get("GEO_NTL_CODE") != identity["code"]
    ):
        reasons.append(
            f"by other code (geo_ntl {tags.get('GEO_NTL_VERSION')} "
            f"code {tags.get('GEO_NTL_CODE', 'unrecorded')})"
        )
    try:
        recorded = json.loads(tags.get("GEO_NTL_PARAMS", "{}"))
    except ValueError:
        recorded = {}
    changed = sorted(
        k for k in set(recorded) | set(identity["params"])
        if recorded.get(k) != identity["params"].get(k)
    )  # fmt: skip
    if changed:
        reasons.append(f"with other parameters ({', '.join(changed)})")
    try:
        inputs = json.loads(tags.get(INPUT_TAG, "null"))
    except ValueError:
        inputs = None
    if inputs != identity["inputs"]:
        reasons.append("from another or a changed input")
    return "it was written " + (", ".join(reasons) if reasons else "by another job")


def plan_jobs(
    scenes: Sequence[Scene],
    *,
    out: PathLike | None = None,
    out_dir: PathLike | None = None,
    suffix: str,
    stage: str,
    params: Mapping[str, Any],
    overwrite: bool = False,
) -> list[SceneJob]:
    """Pair scenes with outputs and find the ones an earlier run finished.

    Parameters
    ----------
    scenes : sequence of pathlib.Path or str
        Inputs from :func:`expand_scenes`.
    out : path, optional
        Output file; only for a single scene.
    out_dir : path, optional
        Output folder; outputs are named ``<stem><suffix>.tif`` (a remote scene's stem
        is that of its URL's last path component).
    suffix : str
        Suffix of output names in ``out_dir``.
    stage : str
        Stage name for the job signature.
    params : mapping
        Parameters for the job signature.
    overwrite : bool, default False
        Recompute and replace every output, including those an earlier run of
        the same job finished. Without it, such outputs are kept (``done``) and
        any other existing output is an error.

    Returns
    -------
    list of SceneJob

    Raises
    ------
    InputError
        If neither or both of ``out`` and ``out_dir`` are given, ``out`` is
        given for several scenes, two scenes would share an output, or an
        output is one of the scenes (compared as files, not spellings).
    OutputExistsError
        If an output exists, was not written by this same job, and
        ``overwrite`` is False -- checked for every scene before any work.
    """
    if (out is None) == (out_dir is None):
        raise InputError(
            "give either `out` (one scene) or `out_dir` (any number of scenes)",
            options={"`out`": "out", "`out_dir`": "out_dir"},
        )
    if out is not None and len(scenes) != 1:
        raise InputError(
            f"`out` takes one scene but {len(scenes)} were given; use `out_dir`",
            options={"`out`": "out", "`out_dir`": "out_dir"},
        )
    if out_dir is not None:
        folder = Path(out_dir)
        if not folder.is_dir():
            raise InputError(f"output folder {folder} does not exist; create it first")
        outs = [folder.absolute() / f"{scene_stem(scene)}{suffix}.tif" for scene in scenes]
    else:
        outs = [Path(out).expanduser().absolute()]  # type: ignore[arg-type]
    if len(set(outs)) != len(outs):
        raise InputError(
            "two scenes have the same file name; give them distinct names or separate runs"
        )
    check_distinct(outs, [("input scene", scene) for scene in scenes])
    jobs = []
    for scene, target in zip(scenes, outs, strict=True):
        remove_stale_partials(target)
        identity = job_identity(scene, stage, params)
        signature = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        current = target.exists() and _recorded_signature(target) == signature
        done = current and not overwrite
        if not done:
            try:
                check_output_path(target, overwrite=overwrite)
            except OutputExistsError as exc:
                raise OutputExistsError(
                    f"output {target} already exists and is not what this command writes: "
                    f"{mismatch_reason(target, identity)}; pass overwrite=True to replace it",
                    options={"overwrite=True": "overwrite"},
                ) from exc
        jobs.append(SceneJob(scene, target, signature, done, current))
    return jobs


def run_jobs(
    jobs: Sequence[SceneJob],
    process: Callable[[SceneJob], None],
    *,
    in_flight: int = 1,
) -> list[Path]:
    """Run ``process`` on every job not done yet, ``in_flight`` jobs at a time.

    With ``in_flight`` > 1 the jobs run in that many threads of this process,
    each submitting its own scene's graph to the same dask.distributed client.
    A scene has phases in which the cluster's workers wait on this process --
    its scene-wide statistics are summed before any tile starts, and its COG is
    encoded here after the last tile -- and a second scene's tiles fill them.
    Outputs do not depend on the order or overlap of jobs: each is written
    atomically from its own scene. Progress is ``process``'s to report
    (:func:`geo_ntl.pipeline.restore_scenes` takes a ``progress`` callback).

    Parameters
    ----------
    jobs : sequence of SceneJob
        From :func:`plan_jobs`.
    process : callable
        Writes ``job.out`` from ``job.scene`` (atomically, recording
        ``{"GEO_NTL_JOB": job.signature}`` in its tags). Must be thread-safe
        when ``in_flight`` > 1.
    in_flight : int, default 1
        Jobs processed at the same time; see :func:`geo_ntl.parallel.scenes_in_flight`.

    Returns
    -------
    list of pathlib.Path
        Every job's output, done now or before.

    Raises
    ------
    Exception
        The first error a job raised, after the jobs already running have
        finished (their outputs are complete and count as done for a rerun);
        jobs not yet started are not started.
    """
    if in_flight < 1:
        raise InputError(f"in_flight must be 1 or more, got {in_flight}")
    todo = [job for job in jobs if not job.done]
    for job in jobs:
        if job.done:
            log.info("%s: kept, written by an earlier run of the same job", job.out)
    if in_flight == 1 or len(todo) < 2:
        for job in todo:
            process(job)
    else:
        _run_overlapped(todo, process, in_flight)
    return [job.out for job in jobs]


def _prioritised(process: Callable[[SceneJob], None], job: SceneJob, rank: int) -> None:
    """Run ``process(job)`` with its dask tasks at priority ``-rank``: earlier scenes first.

    Without priorities, scenes in flight share the workers evenly, finish their tiles
    together and leave the workers idle together while this process encodes their COGs.
    With them, the earlier scene's tasks run first and the later one's fill the gaps.
    """
    import dask

    with dask.annotate(priority=-rank):
        process(job)


def _run_overlapped(
    todo: Sequence[SceneJob],
    process: Callable[[SceneJob], None],
    in_flight: int,
) -> None:
    """Run jobs in order in ``in_flight`` threads; stop starting new ones after an error."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    pending = list(reversed(todo))
    running: set[Future[None]] = set()
    error: BaseException | None = None
    pool = ThreadPoolExecutor(in_flight, thread_name_prefix="geo_ntl-scene")
    try:
        while pending or running:
            while pending and error is None and len(running) < in_flight:
                rank = len(todo) - len(pending)
                running.add(pool.submit(_prioritised, process, pending.pop(), rank))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                exc = future.exception()
                if exc is not None and error is None:
                    error = exc
    except BaseException:
        # Interrupted (Ctrl-C): start nothing more; running scenes stop when the cluster closes.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if error is not None:
        raise error
