"""`python -m faceatlas.cli` runs the same CLI as the `faceatlas` command."""

from faceatlas.cli.main import app

app(prog_name="faceatlas")
