"""Follow one scene of a run through its stages, counting its tile tasks as dask finishes them.

A stage's tiles are the tasks of the layer :func:`geo_ntl.tiling.apply_tiled` names
after it (:data:`STAGE_LAYERS`; low-level fusion keeps the name as part of the
fused task's). The count comes from dask itself, wherever the graph is computed:

* dask's local schedulers -- a :class:`dask.callbacks.Callback` counts the tile
  tasks of each graph as they finish (a run computes one scene at a time there);
* dask.distributed -- the scene's graph is annotated with a tag while it is built
  and a thread polls the scheduler for the states of the tagged tile tasks (a
  small function run by ``Client.run_on_scheduler``, no scheduler plugin), so
  scenes in flight at the same time are told apart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from dask.callbacks import Callback
from dask.utils import key_split

from geo_ntl.progress import DONE, WRITE_COG, ProgressEvent

log = logging.getLogger(__name__)

#: Task name of each stage's tiles (the ``name`` its ``apply_tiled`` call gives).
STAGE_LAYERS: dict[str, tuple[str, ...]] = {
    "deblur": ("deblur", "psfgan", "physics"),
    "enhance": ("enhance",),
}
#: Annotation that tags a scene's tasks on a dask.distributed cluster.
ANNOTATION = "geo_ntl_progress"
#: Seconds between two polls of a cluster's scheduler.
POLL_SECONDS = 0.5


def is_tile_task(key: Any, layers: Sequence[str]) -> bool:
    """Whether a (possibly fused) task key belongs to one of the named layers."""
    return not set(key_split(key).split("-")).isdisjoint(layers)


def graph_tiles(data: Any, layers: Sequence[str]) -> int | None:
    """Return the number of tasks of the named layers in a lazy array's graph, or None."""
    data = getattr(data, "data", data)
    graph = data.__dask_graph__() if hasattr(data, "__dask_graph__") else None
    named = getattr(graph, "layers", None) or {}
    count = sum(len(layer) for name, layer in named.items() if key_split(name) in layers)
    return count or None


class SceneTracker:
    """Report one scene's stages and tile counts, as :class:`ProgressEvent`s.

    Use it as a context manager around the scene's work and build its graphs inside
    :meth:`annotate`.

    Parameters
    ----------
    report : callable
        Takes each event.
    scene, scenes : int
        Position of the scene (1-based) and the number of scenes of the run.
    name : str
        Scene file name.
    stages : sequence of str
        The scene's stages in order; after the last one's tiles comes :data:`WRITE_COG`.
    client : distributed.Client or None
        The cluster computing the graphs, None for dask's local schedulers.
    """

    def __init__(
        self,
        report: Callable[[ProgressEvent], None],
        *,
        scene: int,
        scenes: int,
        name: str,
        stages: Sequence[str],
        client: Any,
    ) -> None:
        self._report = report
        self._scene, self._scenes, self._name = scene, scenes, name
        self._final = stages[-1]
        self._client = client
        self._tag = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._generation = 0
        self._stage: str | None = None
        self._completed: int | None = None
        self._total: int | None = None
        self._expected: int | None = None
        self._watch: Any = None

    def __enter__(self) -> SceneTracker:
        if self._client is None:
            self._watch = _LocalTileCounter(self)
        else:
            self._watch = _ClusterTilePoller(self._client, self._tag, self)
        self._watch.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._watch.__exit__(*exc_info)

    def annotate(self) -> contextlib.AbstractContextManager[Any]:
        """Tag the tasks of graphs built inside the block as this scene's (on a cluster)."""
        if self._client is None:
            return contextlib.nullcontext()
        import dask

        return dask.annotate(**{ANNOTATION: self._tag})

    def stage(self, name: str, data: Any = None) -> None:
        """Enter stage ``name`` (no-op if already in it); ``data``: its lazy result, if known."""
        with self._lock:
            if name != self._stage:
                self._close_stage()
                self._generation += 1
                self._stage, self._completed, self._total, self._expected = name, None, None, None
                self._emit()
            if data is not None and self._expected is None:
                self._expected = graph_tiles(data, STAGE_LAYERS.get(name, ()))

    def done(self) -> None:
        """Say the scene's output is complete."""
        with self._lock:
            self._close_stage()
            self._generation += 1
            self._stage, self._completed, self._total = DONE, None, None
            self._emit()

    def current(self) -> tuple[int, tuple[str, ...], int | None]:
        """Return the stage's generation, its tile layers and its expected tile count."""
        with self._lock:
            return self._generation, STAGE_LAYERS.get(self._stage or "", ()), self._expected

    def tiles(self, generation: int, completed: int, total: int) -> None:
        """Report ``completed`` of ``total`` tiles of the stage of ``generation``."""
        with self._lock:
            if generation != self._generation or total <= 0:
                return
            if total == self._total and completed <= (self._completed or 0):
                return
            self._completed, self._total = min(completed, total), total
            self._emit()
            if completed >= total and self._client is not None:
                self.computed(generation)

    def computed(self, generation: int) -> None:
        """Say the tiles of the stage of ``generation`` are all computed."""
        with self._lock:
            if generation == self._generation and self._stage == self._final:
                self.stage(WRITE_COG)

    def _close_stage(self) -> None:
        """End a counted stage at its total (a poll may have missed its last tiles)."""
        total = self._total if self._total is not None else self._expected
        if total is not None and (self._total != total or (self._completed or 0) < total):
            self._completed, self._total = total, total
            self._emit()

    def _emit(self) -> None:
        event = ProgressEvent(
            self._scene, self._scenes, self._name, self._stage or "", self._completed, self._total
        )
        try:
            self._report(event)
        except Exception:  # noqa: BLE001 - a display never stops a run
            log.debug("progress display failed", exc_info=True)


class _LocalTileCounter(Callback):
    """Count the current stage's tile tasks of each graph dask's local schedulers compute."""

    def __init__(self, tracker: SceneTracker) -> None:
        super().__init__()
        self._tracker = tracker
        self._generation = 0
        self._layers: tuple[str, ...] = ()
        self._done = self._total = 0

    def _start_state(self, dsk: Any, state: Any) -> None:
        self._generation, self._layers, _ = self._tracker.current()
        self._done = 0
        self._total = sum(is_tile_task(key, self._layers) for key in dsk) if self._layers else 0
        if self._total:
            self._tracker.tiles(self._generation, 0, self._total)

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if self._total and is_tile_task(key, self._layers):
            self._done += 1
            self._tracker.tiles(self._generation, self._done, self._total)

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        if self._total and not errored:
            self._tracker.computed(self._generation)


def _scheduler_probe() -> Callable[..., dict[str, bool]]:
    """Return the function run on the scheduler: ``{key: finished}`` of a scene's tile tasks.

    Made here, not at module level, so that it travels by value: the scheduler need not
    have geo_ntl installed.
    """

    def probe(dask_scheduler: Any, tag: str, layers: list[str]) -> dict[str, bool]:
        wanted = set(layers)
        found = {}
        for key, task in dask_scheduler.tasks.items():
            if (task.annotations or {}).get("geo_ntl_progress") != tag:
                continue
            if wanted.isdisjoint(task.prefix.name.split("-")):
                continue
            found[str(key)] = task.state in ("memory", "erred") or (
                task.state in ("released", "forgotten") and task.nbytes >= 0
            )
        return found

    return probe


class _ClusterTilePoller:
    """Poll a dask.distributed scheduler for a scene's tile tasks in a background thread."""

    def __init__(self, client: Any, tag: str, tracker: SceneTracker) -> None:
        self._client, self._tag, self._tracker = client, tag, tracker
        self._probe = _scheduler_probe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="geo_ntl-progress", daemon=True)
        self._generation = -1
        self._seen: set[str] = set()
        self._finished: set[str] = set()

    def __enter__(self) -> _ClusterTilePoller:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the cluster is closing, or gone: stop counting
                log.debug("stopped polling the scheduler for progress", exc_info=True)
                return

    def poll(self) -> None:
        """Ask the scheduler once and report the count."""
        generation, layers, expected = self._tracker.current()
        if not layers:
            return
        if generation != self._generation:
            self._generation, self._seen, self._finished = generation, set(), set()
        states = self._client.run_on_scheduler(self._probe, tag=self._tag, layers=list(layers))
        # A task seen before and gone since was computed and forgotten.
        self._finished |= self._seen - states.keys()
        self._seen |= states.keys()
        self._finished |= {key for key, finished in states.items() if finished}
        total = max(expected or 0, len(self._seen))
        if total:
            self._tracker.tiles(generation, len(self._finished), total)
