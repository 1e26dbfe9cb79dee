"""The ``geo-ntl`` click group, lazy command loading and error reporting.

Each command lives in its own module under :mod:`geo_ntl.cli` and is listed in
:data:`COMMANDS`; modules are imported only when their command runs (or when
``--help`` lists them), so ``geo-ntl --help`` stays fast and does not import
torch. :func:`main` turns every :class:`~geo_ntl.exceptions.GeoNTLError` and
usage error into one ``error: ...`` line on stderr with exit status 2; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

import click

from geo_ntl._version import __version__
from geo_ntl.allocator import tune_allocator
from geo_ntl.exceptions import GeoNTLError

__all__ = ["COMMANDS", "cli", "main"]

#: Command name -> ``"module:attribute"`` of its click command.
COMMANDS: dict[str, str] = {
    "cluster": "geo_ntl.cli.cluster:cluster",
    "deblur": "geo_ntl.cli.deblur:deblur",
    "enhance": "geo_ntl.cli.enhance:enhance",
    "evaluate": "geo_ntl.cli.evaluate:evaluate",
    "info": "geo_ntl.cli.info:info",
    "mosaic": "geo_ntl.cli.mosaic:mosaic",
    "psf": "geo_ntl.cli.psf:psf",
    "simulate": "geo_ntl.cli.simulate:simulate",
    "train": "geo_ntl.cli.train:train",
}

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 1


class LazyGroup(click.Group):
    """A click group that imports each command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geo-ntl")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug logs).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, debug: bool) -> None:
    """Clean and analyse high-resolution night-time-light (HR-NTL) imagery.

    \b
    Examples:
      geo-ntl info sample_aoi/helsinki/scene.tif
      geo-ntl deblur sample_aoi/helsinki/scene.tif --out clean.tif
    """
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # dask.distributed logs every connection at INFO through its own handlers.
    for noisy in ("distributed", "tornado", "bokeh"):
        logging.getLogger(noisy).setLevel(level if verbose >= 2 else max(level, logging.WARNING))
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    # This process is geo-ntl's own: keep tile-sized blocks for reuse (see geo_ntl.allocator).
    tune_allocator()


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 on bad input or usage, 130 when interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="geo-ntl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        return EXIT_BAD_INPUT
    except GeoNTLError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        return EXIT_BAD_INPUT
    except (KeyboardInterrupt, click.Abort):
        click.echo("error: interrupted; no partial output was left", err=True)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(str(exc))}; check the paths and free disk space", err=True)
        return EXIT_BAD_INPUT
    except MemoryError:
        click.echo("error: out of memory; lower --tile (or --workers) and run again", err=True)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug, not bad input: say so in one line
        if debug:
            raise
        click.echo(
            f"error: unexpected {type(exc).__name__}: {_one_line(str(exc))}; rerun with --debug and report it",
            err=True,
        )
        return EXIT_INTERNAL
    return 0


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
