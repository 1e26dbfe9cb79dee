"""The ``geo-ntl`` click group, lazy command loading and error reporting.

Each command lives in its own module under :mod:`geo_ntl.cli` and is listed in
:data:`COMMANDS`; modules are imported only when their command runs (or when
``--help`` lists them), so ``geo-ntl --help`` stays fast and does not import
torch. :func:`main` turns every :class:`~geo_ntl.exceptions.GeoNTLError` and
usage error into one ``error: ...`` line on stderr with exit status 2; the
traceback is shown only with ``--debug``.

SIGINT, SIGTERM and SIGHUP (Ctrl-C, a batch scheduler's or ``timeout``'s kill,
a container stop, a closed terminal) raise :class:`Interrupted` -- a
:class:`KeyboardInterrupt` -- in the main thread, so every ``with`` block
unwinds: temporary files are removed, dask clusters and clients close, and an
existing output is left as it was. The command then prints one line and exits
with the shell's convention, 128 + the signal number (130, 143, 129).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence

import click

from geo_ntl._version import __version__
from geo_ntl.allocator import tune_allocator
from geo_ntl.exceptions import GeoNTLError

__all__ = ["COMMANDS", "Interrupted", "cli", "main"]

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
    "zonal": "geo_ntl.cli.zonal:zonal",
}

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 1
#: A closed stdout (the reader exited): 128 + SIGPIPE, as a process killed by it reports.
EXIT_BROKEN_PIPE = 128 + 13
#: Signals that stop a command cleanly (see :class:`Interrupted`).
INTERRUPT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when geo-ntl receives SIGINT, SIGTERM or SIGHUP.

    A :class:`KeyboardInterrupt`, so the code that cleans up after Ctrl-C (context
    managers, ``finally`` blocks, dask's schedulers) does so for every signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn the interrupt signals into :class:`Interrupted` while the block runs.

    The first signal raises; later ones are ignored while the cleanup it started
    runs (a third forces an immediate exit, leaving what a SIGKILL would: the
    next run of the same command removes it). Signals the caller set to be
    ignored are left ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)
        if len(received) >= 3:
            os._exit(128 + signum)

    previous = {}
    for signum in INTERRUPT_SIGNALS:
        # A signal the caller ignores stays ignored (`nohup` ignores SIGHUP, a shell's
        # background job SIGINT).
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, old)


def _interrupt_message(exc: BaseException, written: int) -> tuple[str, int]:
    """Return the one line and exit status for an interrupt (``exc`` or its cause)."""
    cause = exc if isinstance(exc, Interrupted) else exc.__cause__ or exc.__context__
    signum = cause.signum if isinstance(cause, Interrupted) else signal.SIGINT
    name = signal.Signals(signum).name
    if _WRITTEN:  # outputs the command named itself (written outside the COG writer)
        more = f" and {len(_WRITTEN) - 3} more" if len(_WRITTEN) > 3 else ""
        done = ", ".join(_WRITTEN[-3:]) + more
        return (
            f"error: interrupted by {name} after {done} had been written (replaced if it "
            "existed); the rest was not written and no partial file was left",
            128 + signum,
        )
    if written:
        done = (
            f"{written} output(s) finished before it are complete; rerun the same command to resume"
        )
    else:
        done = "no output was written and existing files are unchanged"
    return f"error: interrupted by {name}; {done}", 128 + signum


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
    _configure_logging(verbose=verbose, quiet=quiet, debug=debug)
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    # This process is geo-ntl's own: keep tile-sized blocks for reuse (see geo_ntl.allocator).
    tune_allocator()


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """Log records as one line each: no traceback, no continuation lines (unless ``debug``).

    dask.distributed logs a traceback with many of its errors (a worker killed, a
    connection closed); geo_ntl's contract is one line per message on stderr and the
    traceback only with ``--debug``.
    """

    def __init__(self, debug: bool = False) -> None:
        super().__init__(LOG_FORMAT)
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        if self.debug:
            return super().format(record)
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return _one_line(super().format(record).split("Traceback (most recent call last)")[0])


def _configure_logging(*, verbose: int, quiet: bool, debug: bool) -> None:
    """Set the log levels and the one-line format for a command.

    geo_ntl's own INFO lines (e.g. the dashboard link) and everyone's warnings by default;
    everything at INFO with -v, DEBUG with -vv; only errors with -q.
    """
    from geo_ntl.parallel import set_dask_log_level

    if quiet:
        level = own = logging.ERROR
    else:
        level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
        own = min(level, logging.INFO)
    logging.basicConfig(level=level, format=LOG_FORMAT)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(OneLineFormatter(debug))
    logging.getLogger("geo_ntl").setLevel(own)
    # dask.distributed logs every connection at INFO, and resets its level when imported.
    set_dask_log_level(level)


#: Outputs a command reported as written (see :func:`note_written`), for the interrupt message.
_WRITTEN: list[str] = []


def note_written(path: object) -> None:
    """Record that a command finished writing ``path`` (named if the run is interrupted later)."""
    _WRITTEN.append(str(path))


def _describe_os_error(exc: OSError) -> str:
    """One line for an OSError that is not geo_ntl's own."""
    import errno

    from geo_ntl._raster import is_disk_full

    text = _one_line(str(exc))
    chain = [exc, exc.__cause__, exc.__context__]
    detail = " ".join(_one_line(str(item)) for item in chain if item is not None)
    if is_disk_full(exc):
        where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"no space left on device{where}; free space or choose another --out"
    lowered = detail.lower()
    if type(exc).__name__ == "RasterioIOError" and (
        "read" in lowered or "tiffread" in lowered or "ireadblock" in lowered
    ):
        return (
            f"a raster could not be read: it is truncated or corrupt ({detail}); "
            "write or download it again"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{text}; check the permissions"
    return f"{text}; check the paths"


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
        0 on success, 2 on bad input or usage, 128 + the signal number when
        interrupted (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    with _signals_interrupt():
        return _main(args)


def _finished(paths: Sequence[object]) -> list[object]:
    """Keep the outputs a user asked for: not intermediate files in geo_ntl's staging folders."""
    return [p for p in paths if not p.parent.name.startswith(".geo_ntl-")]  # type: ignore[attr-defined]


def _main(args: list[str]) -> int:
    from geo_ntl._atomic import committed_outputs

    debug = "--debug" in args
    _WRITTEN.clear()
    written_before = len(_finished(committed_outputs()))
    try:
        # Not cli.main(): it turns KeyboardInterrupt into Abort after printing an empty line.
        with (
            _gdal_stderr_filtered(),
            _one_line_warnings(debug),
            cli.make_context("geo-ntl", args) as ctx,
        ):
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        return EXIT_BAD_INPUT
    except GeoNTLError as exc:
        if debug:
            traceback.print_exc()
        from geo_ntl.cli._flags import cli_message

        click.echo(f"error: {_one_line(cli_message(exc))}", err=True)
        return EXIT_BAD_INPUT
    except (KeyboardInterrupt, click.Abort) as exc:
        written = len(_finished(committed_outputs())) - written_before
        message, status = _interrupt_message(exc, written)
        click.echo(message, err=True)
        return status
    except BrokenPipeError:
        # The reader of stdout went away (`geo-ntl info scene.tif | head`): stop quietly, as
        # other command-line tools do, and keep the interpreter's final flush from failing.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_describe_os_error(exc)}", err=True)
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


@contextlib.contextmanager
def _one_line_warnings(debug: bool) -> Iterator[None]:
    """Show each Python warning as one log-style line, ``WARNING <package>: <message>``.

    No source line, and nothing with ``-q`` (as the log). rasterio's
    ``NotGeoreferencedWarning`` is dropped: geo_ntl checks georeferencing itself and says
    what to do (``MissingCRSError``). Deprecation warnings are dropped too, as Python
    drops them outside ``__main__``: they are for the developers of the code that calls a
    library (affine 3 warns at every ``transform * scale`` inside rioxarray), and a
    command's user can do nothing about them. With ``--debug`` warnings are shown as Python
    shows them.
    """
    import warnings

    if debug:
        yield
        return

    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        source = _package_of(str(filename))
        text = f"WARNING {source}: {_one_line(str(message))}"
        if text not in shown and logging.getLogger(source).isEnabledFor(logging.WARNING):
            shown.add(text)  # once per command, however often the code behind it runs
            click.echo(text, err=True)

    with warnings.catch_warnings():
        with contextlib.suppress(ImportError):
            from rasterio.errors import NotGeoreferencedWarning

            warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        warnings.showwarning = show
        yield


def _package_of(filename: str) -> str:
    """Return the package a source file belongs to (``distributed``, ``geo_ntl``...)."""
    parts = os.path.normpath(filename).split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts[:-1]:
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return "geo_ntl" if "geo_ntl" in parts[:-1] else "python"


def _ignore_further_interrupts() -> None:
    """Ignore Ctrl-C from now on: the first one is reported.

    Later ones (during cleanup, cluster shutdown and interpreter exit) must not print
    tracebacks.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


#: Lines that GDAL and libtiff print straight to stderr on a full disk, beside our error line.
_GDAL_DISK_NOISE = (
    "No space left on device",
    "_tiffWriteProc",
    "_tiffSeekProc",
    "TIFFAppendToStrip",
    "TIFFWriteDirectory",
    "Write error at scanline",
)


def _gdal_stderr_filtered():  # noqa: ANN202 - a context manager
    """Drop GDAL's and libtiff's own disk-full lines from stderr while a command runs.

    They are printed by C code straight to file descriptor 2, so stderr is routed through
    a pipe whose relay thread forwards everything else as it comes. Only when stderr is a
    real file descriptor (not under click's test runner).
    """
    import contextlib
    import os
    import threading

    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return contextlib.nullcontext()
    if fd != 2:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def relay():  # noqa: ANN202
        sys.stderr.flush()
        saved = os.dup(2)
        if os.isatty(2):
            # a pseudo-terminal, so progress bars and colours still see a terminal
            read_end, write_end = _raw_pty(2)
        else:
            read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)

        def forward() -> None:
            pending = b""
            while True:
                try:
                    chunk = os.read(read_end, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                kept = [
                    line
                    for line in lines
                    if not any(word.encode() in line for word in _GDAL_DISK_NOISE)
                ]
                out = b"".join(line + b"\n" for line in kept)
                if pending and not pending.lstrip().startswith((b"_tiff", b"TIFF", b"ERROR")):
                    out, pending = out + pending, b""
                if out:
                    os.write(saved, out)
            if pending and not any(word.encode() in pending for word in _GDAL_DISK_NOISE):
                os.write(saved, pending)
            os.close(read_end)

        thread = threading.Thread(target=forward, name="geo_ntl-stderr", daemon=True)
        thread.start()
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)  # closes our pipe's write end held on fd 2
            thread.join(timeout=2.0)  # worker processes may still hold the pipe open
            os.close(saved)

    return relay()


def _raw_pty(like: int) -> tuple[int, int]:
    """Open a pseudo-terminal (master, slave) without output processing, sized like ``like``."""
    import fcntl
    import os
    import termios

    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no "\n" -> "\r\n": the real terminal does that
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    try:
        size = fcntl.ioctl(like, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    except OSError:
        pass
    return master, slave


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s status."""
    try:
        status = main()
    except KeyboardInterrupt:  # a second Ctrl-C while main() reported the first
        status = EXIT_INTERRUPTED
    if status == EXIT_INTERRUPTED:
        # Not in main(): called in-process (tests, notebooks), it must leave Ctrl-C working.
        with contextlib.suppress(KeyboardInterrupt):
            _ignore_further_interrupts()
    sys.exit(status)


if __name__ == "__main__":
    run()
