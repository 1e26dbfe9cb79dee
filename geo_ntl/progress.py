"""Progress of a restoration run: the events it reports, and a terminal display of them.

:func:`geo_ntl.pipeline.restore_scenes` reports its progress to an optional
``progress`` callable, one :class:`ProgressEvent` at a time: each scene passes
through its stages (``"deblur"``, ``"enhance"``, with the count of its tiles
done), :data:`WRITE_COG` while its COG is encoded, and :data:`DONE`; the run may
end with :data:`MOSAIC`. Without one the library shows nothing.
:class:`RichProgress` is a ready-made display on stderr (what ``geo-ntl deblur``
and ``geo-ntl enhance`` show on a terminal). Events may come from several threads
(scenes in flight on a cluster); a callable must be thread-safe.

Examples
--------
>>> from geo_ntl.progress import ProgressEvent
>>> events = []
>>> events.append(ProgressEvent(scene=1, scenes=2, name="a.tif", stage="deblur"))
>>> print(events[0])
scene 1/2 a.tif · deblur
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["DONE", "MOSAIC", "WRITE_COG", "ProgressCallback", "ProgressEvent", "RichProgress"]

#: Stage of a scene whose tiles are computed and whose COG is being encoded.
WRITE_COG = "write COG"
#: Stage of the run's mosaic (``scene`` 0).
MOSAIC = "mosaic"
#: Last event of a scene (or of the mosaic): its output is complete.
DONE = "done"


@dataclass(frozen=True)
class ProgressEvent:
    """Where one scene of a run is.

    Attributes
    ----------
    scene : int
        1-based position of the scene among those this run computes (scenes kept from an
        earlier run are not counted); 0 for the mosaic.
    scenes : int
        Scenes this run computes.
    name : str
        File name of the scene (of the mosaic for ``scene`` 0).
    stage : str
        ``"deblur"``, ``"enhance"``, :data:`WRITE_COG`, :data:`MOSAIC` or :data:`DONE`.
    completed, total : int or None
        Tiles of the stage done, and its tiles; None while not counted (before the
        stage's tiles start, and for the stages without tiles).
    """

    scene: int
    scenes: int
    name: str
    stage: str
    completed: int | None = None
    total: int | None = None

    def __str__(self) -> str:
        where = f"scene {self.scene}/{self.scenes} {self.name}" if self.scene else self.name
        tiles = f" · tiles {self.completed}/{self.total}" if self.total is not None else ""
        return f"{where} · {self.stage}{tiles}"


class ProgressCallback(Protocol):
    """What :func:`geo_ntl.pipeline.restore_scenes` reports to: a thread-safe callable."""

    def __call__(self, event: ProgressEvent) -> None:
        """Take one event."""


class RichProgress:
    """Show a run's progress on stderr: a line for the run and one per scene in flight.

    Use it as a context manager around the run and pass it as ``progress``.

    Parameters
    ----------
    force_terminal : bool, optional
        Draw the live display even when stderr is not a terminal; default rich's own
        detection.

    Examples
    --------
    >>> from geo_ntl.pipeline import restore_scenes
    >>> with RichProgress() as progress:  # doctest: +SKIP
    ...     restore_scenes("scenes/", stages=["deblur"], out_dir="clean/", progress=progress)
    """

    def __init__(self, *, force_terminal: bool | None = None) -> None:
        import sys

        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True, force_terminal=force_terminal),
            transient=True,
            # Lines on stdout stay there unless it is the same screen (then above the display).
            redirect_stdout=sys.stdout.isatty(),
        )
        self._lock = threading.Lock()
        self._run: Any = None
        self._lines: dict[int, Any] = {}
        self._stages: dict[int, str] = {}
        self._finished = 0

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.stop()

    def __call__(self, event: ProgressEvent) -> None:
        """Show one event."""
        with self._lock:
            if self._run is None:
                self._run = self._bar.add_task(
                    "scenes", total=event.scenes or None, count=f"0/{event.scenes}"
                )
            if event.stage == DONE:
                self._done(event)
                return
            line = self._lines.get(event.scene)
            if line is None:
                line = self._lines[event.scene] = self._bar.add_task("", total=None, count="")
            where = f"scene {event.scene}/{event.scenes} " if event.scene else ""
            counted = event.total is not None
            moved = self._stages.get(event.scene) != event.stage
            self._stages[event.scene] = event.stage
            self._bar.update(
                line,
                description=f"{where}{event.name} · {event.stage}",
                completed=event.completed or 0,
                total=event.total if counted else None,
                count=f"tiles {event.completed}/{event.total}" if counted else "",
                refresh=moved,
            )

    def _done(self, event: ProgressEvent) -> None:
        line = self._lines.pop(event.scene, None)
        self._stages.pop(event.scene, None)
        if line is not None:
            self._bar.remove_task(line)
        if event.scene:
            self._finished += 1
            self._bar.update(
                self._run, completed=self._finished, count=f"{self._finished}/{event.scenes}"
            )
