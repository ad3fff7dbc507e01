"""Waiting for a server a test started to listen on its loopback port."""

from __future__ import annotations

import socket
import subprocess
import time


def wait_until_listening(port: int, process: subprocess.Popen | None = None, seconds: float = 30) -> None:
    """Return once 127.0.0.1:``port`` accepts a connection; fail the test when ``process`` (the
    server's, where known) exits first or nothing listens within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server for port {port} exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} after {seconds} s")
        time.sleep(0.05)
