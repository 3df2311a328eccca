"""``python -m cocoseg``: the same as the ``cocoseg`` command."""

from cocoseg.cli import cli

cli()
