"""``python -m geo_ntl`` runs the command line."""

from geo_ntl.cli.main import run

run()
