"""Single source of the package version (pyproject.toml reads it)."""

__version__ = "0.2.0"
