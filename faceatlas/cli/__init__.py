"""Command-line doors onto the FaceAtlas layers."""

from __future__ import annotations

import signal

__all__ = ["run"]


def run() -> None:
    """The `faceatlas` command: the CLI imported inside the Ctrl-C handler, so an interrupt while
    it loads (the engine's imports take a second or two) ends with status 130, not a traceback.

    SIGTERM (a plain `kill`, a container's stop) is turned into Ctrl-C for every command: the
    ``finally`` blocks run, so a download's ``.part`` file and the other temporary files are removed
    and outputs closed, and the command ends as on Ctrl-C (status 130); SIGTERM's default action
    ended the process on the spot and left them behind. Once the command is done, both signals are
    ignored while the process exits: its status and its flushed output are the command's (a kill
    in that moment gave status 143 and lost the summary of an enrolment that was saved)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        from faceatlas.cli.main import app

        app(prog_name="faceatlas")  # ends with SystemExit (click's standalone mode)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:  # the command is done: a kill now would end the exit itself (status 143, stdout unflushed)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
