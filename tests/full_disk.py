"""Running the CLI in a process of its own whose files cannot grow past a size: a disk that fills
up during a run (``RLIMIT_FSIZE``; SIGXFSZ ignored, so a write past it fails with EFBIG instead of
killing the process)."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def file_size_limit(size: int) -> Callable[[], None]:
    """A ``preexec_fn`` for :mod:`subprocess`: no file of the child grows past ``size`` bytes."""

    def apply() -> None:  # in the child, before it runs Python
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


def run_cli_on_a_full_disk(args: list[str | Path], size: int) -> subprocess.CompletedProcess[str]:
    """``faceatlas ARGS`` where no file can grow past ``size`` bytes."""
    return subprocess.run([sys.executable, "-m", "faceatlas.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, preexec_fn=file_size_limit(size))
