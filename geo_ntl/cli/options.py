"""Click options shared by several commands, defined once."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from geo_ntl.defaults import ENHANCE_TILE

if TYPE_CHECKING:
    from geo_ntl.radiometry import Calibration

__all__ = [
    "HiddenAliasOption",
    "calibration_opt",
    "cluster_opts",
    "co_opt",
    "compress_opt",
    "device_opt",
    "json_opt",
    "out_opt",
    "overwrite_opt",
    "param_opt",
    "parse_params",
    "tile_opt",
    "tiff_path",
]


class HiddenAliasOption(click.Option):
    """A click option whose old names still work but are left out of ``--help``.

    Pass ``cls=HiddenAliasOption, hidden_aliases=("--old",)`` to ``click.option``
    together with the old name among the option's names.
    """

    def __init__(self, *args, hidden_aliases: Iterable[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        """Return the help line without the hidden aliases."""
        shown = [name for name in self.opts if name not in self.hidden_aliases]
        saved, self.opts = self.opts, shown
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved


#: Suffixes of the GeoTIFF outputs the raster commands write.
TIFF_SUFFIXES = (".tif", ".tiff")


def tiff_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: refuse an output name that does not end in .tif or .tiff.

    The restoration commands always write GeoTIFF; an ``x.png`` would be a GeoTIFF
    under a misleading name.
    """
    from pathlib import Path

    if value is not None and Path(value).suffix.lower() not in TIFF_SUFFIXES:
        suffix = Path(value).suffix or "no suffix"
        raise click.BadParameter(
            f"{value} ends in {suffix}, but the output is a GeoTIFF; name it .tif or .tiff",
            ctx=ctx,
            param=param,
        )
    return value


out_opt = click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(dir_okay=False, writable=False),
    help="Output file (written atomically).",
)
overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
device_opt = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Torch device: auto (GPU when present), cpu, cuda or cuda:N.",
)
tile_opt = click.option(
    "--tile",
    default=ENHANCE_TILE,
    show_default=True,
    type=click.IntRange(min=16),
    help="Tile edge in pixels (halo excluded); lower it to use less memory.",
)
param_opt = click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set an algorithm parameter (repeatable).",
)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (command line or environment), not its default."""
    from click.core import ParameterSource

    source = ctx.get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _compress_conflict(value: str, ctx: click.Context) -> None:
    raise click.UsageError(
        f"--compress {value} and --co COMPRESS={ctx.params['creation_options']['COMPRESS']} "
        "both set the compression; give one of them",
        ctx=ctx,
    )


def _check_compress(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    value = value.upper() if value is not None else None
    if value is not None and "COMPRESS" in (ctx.params.get("creation_options") or {}):
        _compress_conflict(value, ctx)
    return value


def parse_creation_options(
    ctx: click.Context, param: click.Parameter, values: Iterable[str]
) -> dict[str, str]:
    """Click callback: ``--co KEY=VALUE`` strings into COG creation options, checked now.

    Raises
    ------
    click.UsageError
        For a string without ``=``, a key geo_ntl sets itself, a ``BLOCKSIZE`` that is not
        a multiple of 16, or ``COMPRESS`` together with ``--compress``.
    """
    options: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--co {item!r} is not KEY=VALUE, e.g. --co LEVEL=9", ctx=ctx)
        options[key.strip().upper()] = value.strip()
    if not options:
        return options
    from geo_ntl.cli._flags import cli_message
    from geo_ntl.exceptions import ParameterError
    from geo_ntl.io import cog_creation_options

    try:
        cog_creation_options(None, None, options)
    except ParameterError as exc:
        raise click.UsageError(cli_message(exc), ctx=ctx) from exc
    ctx.params["creation_options"] = options
    if "COMPRESS" in options and _given(ctx, "compress") and ctx.params.get("compress"):
        _compress_conflict(ctx.params["compress"], ctx)
    return options


compress_opt = click.option(
    "--compress",
    type=click.Choice(["DEFLATE", "ZSTD", "LZW", "NONE"], case_sensitive=False),
    default=None,
    show_default="DEFLATE",
    callback=_check_compress,
    help="COG compression. ZSTD encoded enhanced scenes 1.4-2.6x faster than DEFLATE at the "
    "same size here, but some older readers lack it.",
)
co_opt = click.option(
    "--co",
    "creation_options",
    multiple=True,
    metavar="KEY=VALUE",
    callback=parse_creation_options,
    help="GDAL COG creation option, as rio's --co (repeatable), e.g. --co LEVEL=9; "
    "BLOCKSIZE a multiple of 16.",
)
json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _parse_calibration(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> Calibration | None:
    """Read ``--calibration gain=..,offset=..,exponent=..,unit=..`` (no default calibration)."""
    if value is None:
        return None
    from geo_ntl.exceptions import ParameterError
    from geo_ntl.radiometry import parse_calibration

    try:
        return parse_calibration(value)
    except ParameterError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


calibration_opt = click.option(
    "--calibration",
    callback=_parse_calibration,
    default=None,
    metavar="gain=G,offset=O,exponent=E,unit=U",
    help="Convert DN to radiance = gain * DN**exponent + offset, in unit U, per pixel before "
    "aggregating (offset 0 and exponent 1 if left out; no default calibration). Without it "
    "night light is in DN.",
)


def _parse_value(text: str) -> float | int | str | bool:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(value, bool | int | float | str):
        return value
    return text


def parse_params(values: Iterable[str]) -> dict[str, float | int | str | bool]:
    """Parse ``NAME=VALUE`` strings into a dict; numbers become int or float.

    Parameters
    ----------
    values : iterable of str
        Strings such as ``"lambda1=0.5"``.

    Returns
    -------
    dict

    Raises
    ------
    click.BadParameter
        If a string has no ``=`` or an empty name.
    """
    params: dict[str, float | int | str | bool] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        params[name.strip()] = _parse_value(raw.strip())
    return params


def cluster_opts(func):  # noqa: ANN001, ANN201 - a click decorator
    """Add ``--workers``, ``--threads-per-worker`` and ``--scheduler`` (see :mod:`geo_ntl.parallel`)."""
    func = click.option(
        "--scheduler",
        envvar="DASK_SCHEDULER_ADDRESS",
        default=None,
        help="Address of a running dask scheduler to join (default: $DASK_SCHEDULER_ADDRESS).",
    )(func)
    func = click.option(
        "--threads-per-worker",
        type=click.IntRange(min=1),
        default=None,
        help="Threads per embedded worker.",
    )(func)
    func = click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=None,
        help="0: run in this process; N: embedded dask cluster of N processes; "
        "default: a cluster only for big jobs (several scenes or > 400 MP).",
    )(func)
    return func
