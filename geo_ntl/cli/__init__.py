"""The ``geo-ntl`` command-line interface: a click group with one module per command."""
