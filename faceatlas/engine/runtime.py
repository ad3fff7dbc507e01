"""ONNX Runtime sessions: created once per model, with deliberate thread counts and providers."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Intra-op threads when none are configured: every core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """The providers to use: CUDA first when this onnxruntime build has it, else CPU.

    When CUDA is asked for but absent, say so instead of silently running on the CPU.
    """
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            log.warning("onnxruntime providers %s are not available here (have %s)", missing, available)
        chosen = [p for p in requested if p in available]
    else:
        chosen = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return chosen or ["CPUExecutionProvider"]


def create_session(
    model: Path | bytes, providers: Sequence[str] | None = None, threads: int | None = None
) -> ort.InferenceSession:
    """An inference session with graph optimisation on, ``threads`` intra-op threads, quiet logs."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=choose_providers(providers))
    wanted_cuda = providers is None or "CUDAExecutionProvider" in (providers or [])
    if wanted_cuda and "CUDAExecutionProvider" in ort.get_available_providers() \
            and "CUDAExecutionProvider" not in session.get_providers():
        log.warning("CUDA is built in but the session fell back to %s", session.get_providers())
    return session
