"""What the restoration commands share: their options, and the call to the pipeline.

``geo-ntl enhance`` and ``geo-ntl deblur`` differ only in the stages they run;
everything else -- expanding scenes, planning outputs, resuming, choosing the
scheduler, checking for valid pixels, writing COGs, mosaicking -- is
:func:`geo_ntl.pipeline.restore_scenes`. Here its messages get the commands'
words: ``wrote ...`` lines on stdout, notes on stderr (unless ``-q``), and the
flags where the library names its arguments.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from geo_ntl.cli._flags import cli_text

if TYPE_CHECKING:
    from geo_ntl.io import Compression
    from geo_ntl.pipeline import StageSpec


def restoration_options(func):  # noqa: ANN001, ANN201 - a click decorator
    """Options shared by the restoration commands (outputs, cluster, mosaic)."""
    from geo_ntl.cli.options import cluster_opts, co_opt, compress_opt, overwrite_opt, tiff_path

    func = click.option(
        "--progress/--no-progress",
        default=None,
        help="Show the run's progress on stderr (scenes, stages, tiles)  [default: on a "
        "terminal, unless -q].",
    )(func)
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


def restore(
    scenes: Sequence[str],
    stages: Sequence[StageSpec],
    *,
    out: str | None,
    out_dir: str | None,
    mosaic_out: str | None,
    overwrite: bool,
    workers: int | None,
    threads_per_worker: int | None,
    scheduler: str | None,
    device: str,
    dtype: str | None,
    compress: str | None,
    creation_options: Mapping[str, str] | None = None,
    progress: bool | None = None,
) -> list[Path]:
    """Run :func:`geo_ntl.pipeline.restore_scenes` with a command's options.

    ``progress``: show a live display on stderr; None: only on a terminal, unless -q.

    Returns
    -------
    list of pathlib.Path
        The written (or already finished) outputs.
    """
    from geo_ntl.pipeline import ComputeOptions, restore_scenes

    def written(path: Path) -> None:
        is_mosaic = mosaic_out is not None and Path(path) == Path(mosaic_out)
        click.echo(f"wrote mosaic {path}" if is_mosaic else f"wrote {path}")

    with _progress_display(progress) as display:
        return restore_scenes(
            scenes,
            stages=stages,
            out=out,
            out_dir=out_dir,
            mosaic=mosaic_out,
            overwrite=overwrite,
            device=device,
            dtype=dtype,
            compress=cast("Compression | None", compress),  # click checked it
            creation_options=creation_options,
            compute=ComputeOptions(
                workers=workers, threads_per_worker=threads_per_worker, scheduler=scheduler
            ),
            on_written=written,
            on_note=_note,
            progress=display,
        )


def _progress_display(wanted: bool | None) -> contextlib.AbstractContextManager[Any]:
    """Return the live progress display (None when it is off) for the ``--progress`` flag."""
    if wanted is None:
        wanted = _stderr_is_terminal() and not _quiet()
    if not wanted:
        return contextlib.nullcontext()
    from geo_ntl.progress import RichProgress

    # Forced on (--progress), it draws even when stderr is not a terminal.
    return RichProgress(force_terminal=True)


def _stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (a live display there is read, not logged)."""
    return sys.stderr.isatty()


def _quiet() -> bool:
    """Whether -q asked for errors only."""
    return logging.getLogger().getEffectiveLevel() > logging.WARNING


def _note(message: str) -> None:
    """One line on stderr, unless -q."""
    if not _quiet():
        click.echo(cli_text(message, {"overwrite=True": "overwrite"}), err=True)
