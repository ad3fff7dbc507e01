"""Command-line doors onto the FaceAtlas layers."""

from __future__ import annotations

__all__ = ["run"]


def run() -> None:
    """The `faceatlas` command: the CLI imported inside the Ctrl-C handler, so an interrupt while
    it loads (the engine's imports take a second or two) ends with status 130, not a traceback."""
    try:
        from faceatlas.cli.main import app

        app(prog_name="faceatlas")
    except KeyboardInterrupt:
        raise SystemExit(130) from None
