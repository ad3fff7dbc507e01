"""Inference sessions: created once per model, with deliberate thread counts and providers.

Two backends run the engine's ONNX files (``FACEATLAS_PROVIDER``): ONNX Runtime (the default) and
OpenVINO (the optional ``openvino`` extra). Both are used through the same interface, an ONNX
Runtime ``InferenceSession``'s: ``get_inputs()``/``get_outputs()`` (name, shape) and
``run(None, {name: array}) -> [arrays]``; callers never ask which one runs. OpenVINO computes the
same float embeddings (cosine to ONNX Runtime's above 0.99999, tests/test_openvino.py), so the
recogniser's id does not depend on the backend. bench/engine_throughput.py measures both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort

from faceatlas.engine.models import loading
from faceatlas.errors import ProviderMissing

Provider = Literal["onnxruntime", "openvino"]
PROVIDERS: tuple[Provider, ...] = ("onnxruntime", "openvino")

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Intra-op threads when none are configured: every core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})  # /proc/cpuinfo names


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (x86 ``flags``, Arm ``Features``); empty elsewhere."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def has_int8_dot(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU multiplies int8 by int8 in one instruction (VNNI, AMX, Arm's SDOT), where an
    int8 convolution net runs faster than float; on plain AVX2 ONNX Runtime's u8s8 kernels do not."""
    return bool((cpu_flags() if flags is None else flags) & INT8_DOT_FLAGS)


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


class Session(Protocol):
    """What the engine needs of a session (an ONNX Runtime ``InferenceSession`` has it)."""

    def get_inputs(self) -> Sequence[Any]: ...

    def get_outputs(self) -> Sequence[Any]: ...

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any]) -> list[Any]: ...


def create_session(
    model: Path | bytes, providers: Sequence[str] | None = None, threads: int | None = None,
    provider: Provider = "onnxruntime",
) -> Session:
    """A session for ``model`` on ``provider``: ONNX Runtime (graph optimisation on, ``threads``
    intra-op threads, quiet logs; ``providers`` its execution providers) or OpenVINO on the CPU."""
    if provider == "openvino":
        return OpenVINOSession(model, threads)
    return create_ort_session(model, providers, threads)


SPINNING = "session.intra_op.allow_spinning"  # ONNX Runtime's session config key


def create_ort_session(
    model: Path | bytes, providers: Sequence[str] | None = None, threads: int | None = None
) -> ort.InferenceSession:
    """An ONNX Runtime session with graph optimisation on, ``threads`` intra-op threads that do not
    spin between calls, quiet logs.

    Each session has its own thread pool, and by default its threads keep spinning on the cores
    after each call; the engine alternates sessions (detector, recogniser, liveness, persons), so
    the next session's threads would wait for those cores. Without spinning, one image's analysis
    (SCRFD + MobileFaceNet, 2 threads) took 18.5-25.0 ms instead of 44-50 ms on a group photo; one
    call alone takes the same time either way (bench/engine_throughput.py, "One image at a time")."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry(SPINNING, "0")
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    with _loading(model):
        session = ort.InferenceSession(source, options, providers=choose_providers(providers))
    wanted_cuda = providers is None or "CUDAExecutionProvider" in (providers or [])
    if wanted_cuda and "CUDAExecutionProvider" in ort.get_available_providers() \
            and "CUDAExecutionProvider" not in session.get_providers():
        log.warning("CUDA is built in but the session fell back to %s", session.get_providers())
    return session


def _loading(model: Path | bytes) -> contextlib.AbstractContextManager[None]:
    """A file that does not load is an error that names it (bytes: the caller names their file)."""
    return contextlib.nullcontext() if isinstance(model, bytes) else loading(model)


@dataclass(frozen=True)
class NodeArg:
    """An input or output as ONNX Runtime describes it: name, shape (a dynamic dimension is a str)."""

    name: str
    shape: list[int | str]


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ProviderMissing("FACEATLAS_PROVIDER=openvino needs the OpenVINO runtime: "
                              "pip install 'faceatlas[openvino]' (or unset FACEATLAS_PROVIDER)") from exc
    return openvino


class OpenVINOSession:
    """An ONNX file compiled by OpenVINO for the CPU, used like an ONNX Runtime session.

    Compiled once (latency hint, ``threads`` inference threads; dynamic dimensions stay dynamic);
    each thread gets its own infer request, so one session serves the service's workers at once as
    an ONNX Runtime session does. Outputs come back as fresh arrays, in the model's output order."""

    def __init__(self, model: Path | bytes, threads: int | None = None) -> None:
        ov = _openvino()
        core = ov.Core()
        self.threads = threads or default_threads()
        with _loading(model):
            parsed = core.read_model(io.BytesIO(model) if isinstance(model, bytes) else str(model))
            # f32 always: on CPUs with AVX-512 BF16 or AMX OpenVINO computes in bfloat16 by default
            # (detection scores 1e-3 off, other embeddings under the same recogniser id)
            self.compiled = core.compile_model(parsed, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                               "INFERENCE_NUM_THREADS": self.threads,
                                                               "INFERENCE_PRECISION_HINT": "f32"})
        self._inputs = [self._arg(port) for port in self.compiled.inputs]
        self._outputs = [self._arg(port) for port in self.compiled.outputs]
        self._index = {arg.name: i for i, arg in enumerate(self._inputs)}
        self._local = threading.local()

    @staticmethod
    def _arg(port: Any) -> NodeArg:
        shape = [dim.get_length() if dim.is_static else f"d{i}" for i, dim in enumerate(port.get_partial_shape())]
        return NodeArg(port.get_any_name(), shape)

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return ["OpenVINO CPU"]

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer({self._index[name]: np.ascontiguousarray(value) for name, value in input_feed.items()})
        arrays = [np.array(result[port], copy=True) for port in self.compiled.outputs]
        if output_names is None:
            return arrays
        wanted = {arg.name: array for arg, array in zip(self._outputs, arrays)}
        return [wanted[name] for name in output_names]
