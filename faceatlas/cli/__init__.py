"""Command-line doors onto the FaceAtlas layers."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

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
    sys.unraisablehook = _interrupt_again(sys.unraisablehook)
    try:
        from faceatlas.cli.errors import hold_stdout, said_stdout_failure

        hold_stdout()  # started with stdout closed (`>&-`): what it prints fails, as to /dev/full
        from faceatlas.cli.main import app

        with said_stdout_failure():  # the help, printed before any command runs, too
            app(prog_name="faceatlas")  # ends with SystemExit (click's standalone mode)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:  # the command is done: a kill now would end the exit itself (status 143, stdout unflushed)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_again(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    """An unraisable-exception hook that delivers a swallowed Ctrl-C (or SIGTERM) again: one that
    lands in a finalizer or a weakref callback (SQLAlchemy's state cleanup) is "ignored" by Python,
    and `album scan` went on to the end, status 0, instead of stopping; sent again, it is raised
    at the next line of the command's own code."""

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_type, type) and issubclass(unraisable.exc_type, KeyboardInterrupt):
            # from another thread, a moment later: sent from here, it is raised in this hook, and ignored
            again = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            again.daemon = True
            again.start()
            return
        previous(unraisable)

    return hook
