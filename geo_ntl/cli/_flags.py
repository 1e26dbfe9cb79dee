"""Show library errors in command-line terms: the parameters they name become flags.

Library messages name Python parameters (``pass overwrite=True``) and list them in
:attr:`geo_ntl.exceptions.GeoNTLError.options`; :func:`cli_message` rewrites each
one into the flag that sets it (``pass --overwrite``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping

import click

__all__ = ["FLAG_NAMES", "cli_message", "cli_text", "flag_text", "warning_lines"]

#: Parameters whose flag is not ``--`` and the name with dashes.
FLAG_NAMES = {"creation_options": "--co", "psf": "--psf-json"}


def flag_text(phrase: str, name: str) -> str:
    """Spell ``phrase``, a mention of parameter ``name``, as on the command line.

    ``overwrite=True`` -> ``--overwrite``; ``device='cpu'`` -> ``--device cpu``;
    ``out`` -> ``--out``.
    """
    flag = FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
    _, sep, value = phrase.partition("=")
    if not sep or value == "True":
        return flag
    return f"{flag} {value.strip(chr(39) + chr(34))}"


def cli_text(text: str, options: Mapping[str, str]) -> str:
    """Return ``text`` with each phrase of ``options`` (``{phrase: parameter}``) as its flag."""
    for phrase, name in options.items():
        pattern = rf"(?<![\w-]){re.escape(phrase)}(?![\w=-])"
        text = re.sub(pattern, flag_text(phrase, name).replace("\\", "\\\\"), text)
    return text


def cli_message(exc: BaseException) -> str:
    """Return the message of ``exc`` with every parameter it names shown as its flag."""
    return cli_text(str(exc), getattr(exc, "options", {}))


@contextlib.contextmanager
def warning_lines() -> Iterator[None]:
    """Show the GeoNTLWarnings of the block as ``warning: ...`` lines on stderr once it ends."""
    import warnings

    from geo_ntl.exceptions import GeoNTLWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GeoNTLWarning)
        yield
    for item in caught:
        if issubclass(item.category, GeoNTLWarning):
            click.echo(f"warning: {item.message}", err=True)
