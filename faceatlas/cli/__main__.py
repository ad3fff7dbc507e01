"""`python -m faceatlas.cli` runs the same CLI as the `faceatlas` command."""

from faceatlas.cli import run

run()
