"""A reader of TensorFlow.js graph models and a small executor of their graphs in torch.

A TFJS graph model is a ``model.json`` (``modelTopology.node``: a TensorFlow GraphDef as JSON, each node with
``name``, ``op``, ``input`` and ``attr``; ``weightsManifest``: groups of binary shard files, each listing its
weights in order with ``name``, ``shape``, ``dtype`` and an optional ``quantization``) plus those ``.bin`` shards.

``read_model`` turns it into a :class:`Graph`: plain nodes (attributes decoded to str / int / float / bool /
lists) and constant tensors. ``Graph.to_state`` / ``Graph.from_state`` keep it as a dict of plain values and
torch tensors, so a converted model loads with ``torch.load(weights_only=True)``. :class:`Executor` runs a graph
on torch tensors with TensorFlow's semantics: NHWC (or NCHW where the node says so) convolutions and pools, SAME
padding split as TF does (the extra pixel after), dilations, depthwise channel multipliers, and the
``align_corners`` / ``half_pixel_centers`` flags of ``ResizeBilinear``. An op it does not know raises
:class:`UnsupportedOpError` naming the op and the node, before anything runs.

Only numpy and torch are used; nothing here knows about a particular model.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

STATE_FORMAT = "pic-tfjs-graph/1"
SCALE_ATTR = "pic_scale"  # set by follow_input_size: a resize's output size as a multiple of its input's

AttrValue = str | int | float | bool | list[Any] | None

# Bytes per stored element, by manifest dtype or quantization dtype.
_ITEM_SIZE = {"float32": 4, "int32": 4, "bool": 1, "float16": 2, "uint8": 1, "uint16": 2, "int8": 1, "int16": 2}
_NUMPY_DTYPE = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
    "float16": np.float16,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "int8": np.int8,
    "int16": np.int16,
}


class TfjsFormatError(ValueError):
    """The model.json or its weight shards are not a TFJS graph model this reader understands."""


class UnsupportedOpError(NotImplementedError):
    """The graph uses an op the executor does not implement."""


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]  # "node" or "node:k"; control inputs ("^node") are dropped
    attrs: dict[str, AttrValue] = field(default_factory=dict)


@dataclass
class Graph:
    nodes: list[Node]
    tensors: dict[str, torch.Tensor]  # constants by node name (float weights as float32 or float16)
    inputs: list[str]  # placeholder node names
    outputs: list[str]  # tensor names ("node" or "node:k")
    meta: dict[str, AttrValue] = field(default_factory=dict)

    def to_state(self, float_dtype: torch.dtype = torch.float16) -> dict[str, Any]:
        """Plain dict for ``torch.save`` (loads with ``weights_only=True``); float constants stored as ``float_dtype``."""
        tensors = {k: (v.to(float_dtype) if v.is_floating_point() else v).contiguous() for k, v in self.tensors.items()}
        return {
            "format": STATE_FORMAT,
            "nodes": [
                {"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": dict(n.attrs)} for n in self.nodes
            ],
            "tensors": tensors,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Graph:
        if state.get("format") != STATE_FORMAT:
            raise TfjsFormatError(f"not a {STATE_FORMAT} state (format={state.get('format')!r})")
        nodes = [Node(d["name"], d["op"], tuple(d["inputs"]), dict(d["attrs"])) for d in state["nodes"]]
        tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in state["tensors"].items()}
        return cls(nodes, tensors, list(state["inputs"]), list(state["outputs"]), dict(state.get("meta", {})))


# --- reading model.json + shards --------------------------------------------------------------------------------


def decode_attr(value: Mapping[str, Any]) -> AttrValue:
    """One GraphDef AttrValue as JSON (``{"i": "3"}``, ``{"s": base64}``, ``{"list": {...}}``...) to a plain value."""
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8", errors="replace")
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return str(value["type"])
    if "list" in value:
        lst = value["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        if "s" in lst:
            return [base64.b64decode(v).decode("utf-8", errors="replace") for v in lst["s"]]
        if "b" in lst:
            return [bool(v) for v in lst["b"]]
        if "type" in lst:
            return [str(v) for v in lst["type"]]
        return []
    if "shape" in value:
        dims = value["shape"].get("dim", [])
        return [int(d.get("size", -1)) for d in dims]
    return None  # tensors (values live in the weights), functions: not needed by the executor


def _dequantize(raw: np.ndarray, quant: Mapping[str, Any], dtype: str) -> np.ndarray:
    qdtype = quant["dtype"]
    if qdtype == "float16":
        return raw.astype(np.float32)
    scale, low = float(quant.get("scale", 1.0)), float(quant.get("min", 0.0))
    values = raw.astype(np.float32) * scale + low
    return np.round(values).astype(np.int32) if dtype == "int32" else values


def read_weights(manifest: list[Mapping[str, Any]], read_file: Callable[[str], bytes]) -> dict[str, np.ndarray]:
    """All weights of a TFJS ``weightsManifest``; ``read_file(path)`` gives a shard's bytes (path as listed)."""
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        buffer = b"".join(read_file(p) for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            name, dtype, shape = spec["name"], spec["dtype"], [int(s) for s in spec["shape"]]
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else dtype
            if stored not in _ITEM_SIZE or dtype not in _NUMPY_DTYPE:
                raise TfjsFormatError(f"weight {name!r}: unsupported dtype {dtype!r} (stored as {stored!r})")
            count = int(np.prod(shape)) if shape else 1
            nbytes = count * _ITEM_SIZE[stored]
            if offset + nbytes > len(buffer):
                raise TfjsFormatError(f"weight {name!r} runs past the end of its shards ({group['paths']})")
            raw = np.frombuffer(
                buffer, dtype=np.dtype(_NUMPY_DTYPE[stored]).newbyteorder("<"), count=count, offset=offset
            )
            offset += nbytes
            values = _dequantize(raw, quant, dtype) if quant else raw.astype(_NUMPY_DTYPE[dtype])
            out[name] = values.reshape(shape)
        if offset != len(buffer):
            raise TfjsFormatError(f"shards {group['paths']} hold {len(buffer) - offset} bytes more than listed")
    return out


def read_model(model: Mapping[str, Any], read_file: Callable[[str], bytes]) -> Graph:
    """A :class:`Graph` from a parsed model.json and a reader of its shard files."""
    if model.get("format") not in (None, "graph-model"):
        raise TfjsFormatError(f"not a graph model (format={model.get('format')!r})")
    try:
        raw_nodes = model["modelTopology"]["node"]
        manifest = model["weightsManifest"]
    except KeyError as exc:
        raise TfjsFormatError(f"model.json lacks {exc}") from exc
    weights = read_weights(manifest, read_file)
    nodes = []
    for n in raw_nodes:
        inputs = tuple(i for i in n.get("input", []) if not i.startswith("^"))
        attrs = {k: decode_attr(v) for k, v in n.get("attr", {}).items()}
        nodes.append(Node(n["name"], n["op"], inputs, attrs))
    tensors: dict[str, torch.Tensor] = {}
    for node in nodes:
        if node.op == "Const":
            if node.name not in weights:
                raise TfjsFormatError(f"Const node {node.name!r} has no weight in the manifest")
            arr = weights[node.name]
            tensors[node.name] = torch.from_numpy(np.array(arr, dtype=np.int64 if arr.dtype == np.int32 else arr.dtype))
    inputs = [n.name for n in nodes if n.op == "Placeholder"]
    signature = model.get("signature") or model.get("userDefinedMetadata", {}).get("signature") or {}
    outputs = list(signature.get("outputs", {}))
    if not outputs:
        consumed = {_split(i)[0] for n in nodes for i in n.inputs}
        outputs = [n.name for n in nodes if n.name not in consumed and n.op != "Const"]
    meta = {k: v for k, v in model.items() if isinstance(v, str)}
    return Graph(nodes, tensors, inputs, [o.removesuffix(":0") for o in outputs], meta)


def read_model_dir(model_json: str | Path) -> Graph:
    """A :class:`Graph` from a model.json file with its shards beside it."""
    path = Path(model_json)
    model = json.loads(path.read_text())
    return read_model(model, lambda p: (path.parent / p).read_bytes())


# --- executing ---------------------------------------------------------------------------------------------------


def _split(ref: str) -> tuple[str, int]:
    name, _, index = ref.partition(":")
    return name, int(index) if index else 0


def _ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF's SAME padding of one axis: output ceil(size / stride), the odd pixel after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _spatial(node: Node, key: str, nhwc: bool) -> tuple[int, int]:
    values = node.attrs.get(key) or [1, 1, 1, 1]
    assert isinstance(values, list)
    return (int(values[1]), int(values[2])) if nhwc else (int(values[2]), int(values[3]))


def _is_nhwc(node: Node) -> bool:
    return str(node.attrs.get("data_format") or "NHWC") == "NHWC"


def _pad_nchw(
    x: torch.Tensor,
    node: Node,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    value: float = 0.0,
) -> torch.Tensor:
    """Apply the node's padding (VALID / SAME / EXPLICIT) to an NCHW tensor."""
    padding = str(node.attrs.get("padding") or "VALID")
    if padding == "VALID":
        return x
    if padding == "SAME":
        top, bottom = _same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
        left, right = _same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
    elif padding == "EXPLICIT":
        p = node.attrs.get("explicit_paddings") or [0] * 8
        assert isinstance(p, list)
        (top, bottom), (left, right) = ((p[2], p[3]), (p[4], p[5])) if _is_nhwc(node) else ((p[4], p[5]), (p[6], p[7]))
    else:
        raise UnsupportedOpError(f"padding {padding!r} of node {node.name!r} ({node.op})")
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def _to_nchw(x: torch.Tensor, nhwc: bool) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if nhwc else x


def _from_nchw(x: torch.Tensor, nhwc: bool) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if nhwc else x


_FUSED_ACTIVATIONS: dict[str, Callable[[torch.Tensor, Node, list[torch.Tensor]], torch.Tensor]] = {
    "Relu": lambda x, n, a: F.relu(x),
    "Relu6": lambda x, n, a: F.hardtanh(x, 0.0, 6.0),
    "Elu": lambda x, n, a: F.elu(x),
    "Sigmoid": lambda x, n, a: torch.sigmoid(x),
    "Tanh": lambda x, n, a: torch.tanh(x),
    "LeakyRelu": lambda x, n, a: F.leaky_relu(x, float(n.attrs.get("leakyrelu_alpha") or 0.2)),
    "Prelu": lambda x, n, a: torch.where(x >= 0, x, x * a[0]),
}


class Executor:
    """Runs a :class:`Graph` in torch. Build once, call ``run`` from any thread (it keeps no per-run state)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes = {n.name: n for n in graph.nodes}
        unknown = sorted(
            {(n.op, n.name) for n in graph.nodes if n.op not in OPS and n.op not in ("Const", "Placeholder")}
        )
        if unknown:
            op, name = unknown[0]
            more = f" (and {len(unknown) - 1} more node(s))" if len(unknown) > 1 else ""
            raise UnsupportedOpError(f"TFJS op {op!r} of node {name!r} is not supported by pic's graph executor{more}")
        self._plans: dict[tuple[str, ...], list[Node]] = {}  # run order per set of outputs, computed once
        # Filters in torch's layout, prepared once: TF keeps [kh, kw, in, out] and [kh, kw, in, multiplier].
        self._filters: dict[str, torch.Tensor] = {}
        for n in graph.nodes:
            if n.op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
                ref = _split(n.inputs[1])[0]
                if ref in graph.tensors:
                    self._filters[n.name] = _torch_filter(graph.tensors[ref], depthwise="Depthwise" in n.op)

    def order(self, outputs: Iterable[str]) -> list[Node]:
        """The nodes needed for ``outputs``, each after its inputs (iterative depth-first search)."""
        seen: set[str] = set()
        ordered: list[Node] = []
        stack: list[tuple[str, bool]] = [(_split(o)[0], False) for o in outputs]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                ordered.append(self.nodes[name])
                continue
            if name in seen:
                continue
            if name not in self.nodes:
                raise TfjsFormatError(f"graph has no node {name!r}")
            seen.add(name)
            stack.append((name, True))
            stack.extend((_split(i)[0], False) for i in self.nodes[name].inputs if _split(i)[0] not in seen)
        return ordered

    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Values of ``outputs`` (default: the graph's) given the placeholder values in ``feeds``."""
        wanted = list(outputs if outputs is not None else self.graph.outputs)
        values: dict[str, list[torch.Tensor]] = {}
        remaining: dict[str, int] = {}
        plan = self._plans.get(tuple(wanted))
        if plan is None:
            plan = self._plans.setdefault(tuple(wanted), self.order(wanted))
        for node in plan:
            for i in node.inputs:
                remaining[_split(i)[0]] = remaining.get(_split(i)[0], 0) + 1
        for o in wanted:
            remaining[_split(o)[0]] = remaining.get(_split(o)[0], 0) + 1  # never freed
        for node in plan:
            if node.op == "Const":
                values[node.name] = [self.graph.tensors[node.name]]
            elif node.op == "Placeholder":
                if node.name not in feeds:
                    raise KeyError(f"no value fed for placeholder {node.name!r}")
                values[node.name] = [feeds[node.name]]
            else:
                args = [values[_split(i)[0]][_split(i)[1]] for i in node.inputs]
                values[node.name] = OPS[node.op](self, node, args)
                for i in node.inputs:  # drop intermediates as soon as nothing else reads them
                    src = _split(i)[0]
                    remaining[src] -= 1
                    if remaining[src] == 0 and self.nodes[src].op not in ("Const", "Placeholder"):
                        del values[src]
        return {o: values[_split(o)[0]][_split(o)[1]] for o in wanted}


def _torch_filter(filt: torch.Tensor, depthwise: bool) -> torch.Tensor:
    kh, kw, cin, cout = filt.shape
    if depthwise:  # output channel c * multiplier + m reads input channel c
        return filt.float().reshape(kh, kw, cin * cout).permute(2, 0, 1).unsqueeze(1).contiguous()
    return filt.float().permute(3, 2, 0, 1).contiguous()


# --- ops ---------------------------------------------------------------------------------------------------------

OpFn = Callable[[Executor, Node, list[torch.Tensor]], list[torch.Tensor]]
OPS: dict[str, OpFn] = {}


def _op(*names: str) -> Callable[[OpFn], OpFn]:
    def register(fn: OpFn) -> OpFn:
        for name in names:
            OPS[name] = fn
        return fn

    return register


def _conv(ex: Executor, node: Node, args: list[torch.Tensor], depthwise: bool) -> torch.Tensor:
    nhwc = _is_nhwc(node)
    weight = ex._filters.get(node.name)
    if weight is None:
        weight = _torch_filter(args[1], depthwise)
    x = _to_nchw(args[0], nhwc)
    stride, dilation = _spatial(node, "strides", nhwc), _spatial(node, "dilations", nhwc)
    x = _pad_nchw(x, node, (weight.shape[2], weight.shape[3]), stride, dilation)
    groups = x.shape[1] if depthwise else 1
    if not depthwise and x.shape[1] != weight.shape[1]:
        groups = x.shape[1] // weight.shape[1]  # grouped convolution (TF infers it from the filter's depth)
    y = F.conv2d(x, weight, None, stride, 0, dilation, groups)
    if node.op.startswith(("_Fused", "Fused")):
        fused = node.attrs.get("fused_ops") or []
        assert isinstance(fused, list)
        extra = args[2:]
        for step in fused:
            if step == "BiasAdd":
                y = y + extra[0].reshape(1, -1, 1, 1)
                extra = extra[1:]
            elif step in _FUSED_ACTIVATIONS:
                y = _FUSED_ACTIVATIONS[step](y, node, [e.reshape(1, -1, 1, 1) for e in extra])
            else:
                raise UnsupportedOpError(f"fused op {step!r} of node {node.name!r} ({node.op})")
    return _from_nchw(y, nhwc)


@_op("Conv2D", "_FusedConv2D")
def _conv2d(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [_conv(ex, node, args, depthwise=False)]


@_op("DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def _depthwise(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [_conv(ex, node, args, depthwise=True)]


@_op("MaxPool", "AvgPool")
def _pool(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    nhwc = _is_nhwc(node)
    kernel, stride = _spatial(node, "ksize", nhwc), _spatial(node, "strides", nhwc)
    x = _to_nchw(args[0], nhwc)
    if node.op == "MaxPool":
        x = _pad_nchw(x, node, kernel, stride, (1, 1), value=float("-inf"))
        return [_from_nchw(F.max_pool2d(x, kernel, stride), nhwc)]
    # TF's average pool divides by the number of real (unpadded) pixels under the window.
    ones = torch.ones_like(x[:, :1])
    total = F.avg_pool2d(_pad_nchw(x, node, kernel, stride, (1, 1)), kernel, stride)
    count = F.avg_pool2d(_pad_nchw(ones, node, kernel, stride, (1, 1)), kernel, stride)
    return [_from_nchw(total / count, nhwc)]


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> OpFn:
    return lambda ex, node, args: [fn(args[0], args[1])]


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> OpFn:
    return lambda ex, node, args: [fn(args[0])]


for _name, _fn in {
    "Add": torch.add,
    "AddV2": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "RealDiv": torch.div,
    "Maximum": torch.maximum,
    "Minimum": torch.minimum,
    "FloorDiv": lambda a, b: torch.div(a, b, rounding_mode="floor"),
    "FloorMod": torch.remainder,
    "SquaredDifference": lambda a, b: (a - b) ** 2,
}.items():
    OPS[_name] = _binary(_fn)

for _name, _fn1 in {
    "Identity": lambda x: x,
    "Relu": F.relu,
    "Relu6": lambda x: F.hardtanh(x, 0.0, 6.0),
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Neg": torch.neg,
    "Sqrt": torch.sqrt,
    "Rsqrt": torch.rsqrt,
    "Square": torch.square,
}.items():
    OPS[_name] = _unary(_fn1)


@_op("BiasAdd")
def _bias_add(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    x, b = args
    if _is_nhwc(node):
        return [x + b]
    return [x + b.reshape(1, -1, *([1] * (x.dim() - 2)))]


@_op("LeakyRelu")
def _leaky_relu(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [F.leaky_relu(args[0], float(node.attrs.get("alpha") or 0.2))]


@_op("Prelu")
def _prelu(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.where(args[0] >= 0, args[0], args[0] * args[1])]


@_op("Mean", "Sum", "Max")
def _reduce(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    x, axes = args
    dims = [a % x.dim() for a in _ints(axes)]
    keep = bool(node.attrs.get("keep_dims") or False)
    if not dims:
        return [x]
    if node.op == "Max":
        return [torch.amax(x, dim=dims, keepdim=keep)]
    return [(torch.mean if node.op == "Mean" else torch.sum)(x, dim=dims, keepdim=keep)]


@_op("ConcatV2")
def _concat(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    *parts, axis = args
    return [torch.cat(parts, dim=int(axis))]


@_op("Reshape")
def _reshape(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0].reshape(_ints(args[1]))]


@_op("Transpose")
def _transpose(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0].permute(_ints(args[1]))]


@_op("Squeeze")
def _squeeze(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    dims = node.attrs.get("squeeze_dims") or []
    assert isinstance(dims, list)
    x = args[0]
    if not dims:
        return [x.squeeze()]
    return [x.squeeze([d % x.dim() for d in dims])]


@_op("ExpandDims")
def _expand_dims(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    return [args[0].unsqueeze(int(args[1]))]


@_op("Cast")
def _cast(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    target = str(node.attrs.get("DstT") or "DT_FLOAT")
    dtype = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int64, "DT_INT64": torch.int64, "DT_BOOL": torch.bool}.get(
        target
    )
    if dtype is None:
        raise UnsupportedOpError(f"Cast to {target} (node {node.name!r})")
    return [args[0].to(dtype)]


@_op("Pad", "PadV2")
def _pad(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    x, paddings = args[0], args[1].reshape(-1, 2).tolist()
    value = float(args[2]) if len(args) > 2 else 0.0
    flat: list[int] = []
    for before, after in reversed(paddings):  # F.pad lists the last axis first
        flat += [int(before), int(after)]
    return [F.pad(x, flat, value=value)]


@_op("SplitV")
def _split_v(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    x, sizes, axis = args[0], _ints(args[1]), int(args[2]) % args[0].dim()
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return list(torch.split(x, sizes, dim=axis))


@_op("Split")
def _split_even(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    axis, x = int(args[0]) % args[1].dim(), args[1]
    count = int(node.attrs.get("num_split") or 1)
    return list(torch.chunk(x, count, dim=axis))


@_op("SparseToDense")
def _sparse_to_dense(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    indices, shape, values, default = args
    out = torch.full(_ints(shape), default.item(), dtype=values.dtype if values.numel() else default.dtype)
    if indices.numel():
        idx = indices.reshape(indices.shape[0], -1) if indices.dim() > 1 else indices.reshape(-1, 1)
        vals = values.expand(idx.shape[0]) if values.dim() == 0 else values
        out[tuple(idx.t().long())] = vals.to(out.dtype)
    return [out]


def _resize_axis(
    size_in: int, size_out: int, align_corners: bool, half_pixel: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (low, high) and weights of one axis, as TF's ResizeBilinear computes them."""
    scale = (size_in - 1) / (size_out - 1) if align_corners and size_out > 1 else size_in / size_out
    dst = torch.arange(size_out, dtype=torch.float64)
    src = (dst + 0.5) * scale - 0.5 if half_pixel else dst * scale
    low_f = torch.floor(src)
    frac = (src - low_f).float()
    low = low_f.long().clamp(0, size_in - 1)
    high = torch.ceil(src).long().clamp(0, size_in - 1)
    return low, high, frac


def _resize_size(node: Node, x: torch.Tensor, size: torch.Tensor) -> tuple[int, int]:
    """The output size: the node's constant, or its input's size times the scale ``follow_input_size`` set."""
    scale = node.attrs.get(SCALE_ATTR)
    if isinstance(scale, list):
        return max(1, round(x.shape[1] * scale[0])), max(1, round(x.shape[2] * scale[1]))
    out_h, out_w = _ints(size)
    return out_h, out_w


@_op("ResizeBilinear")
def _resize_bilinear(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    x, (out_h, out_w) = args[0], _resize_size(node, args[0], args[1])
    align, half = bool(node.attrs.get("align_corners")), bool(node.attrs.get("half_pixel_centers"))
    nchw = x.permute(0, 3, 1, 2)
    if align and not half:
        y = F.interpolate(nchw, size=(out_h, out_w), mode="bilinear", align_corners=True)
    elif half and not align:
        y = F.interpolate(nchw, size=(out_h, out_w), mode="bilinear", align_corners=False)
    else:  # TF's legacy mapping (src = dst * in / out), which torch has no mode for
        lo_y, hi_y, fy = _resize_axis(x.shape[1], out_h, align, half)
        lo_x, hi_x, fx = _resize_axis(x.shape[2], out_w, align, half)
        rows = nchw[:, :, lo_y] * (1 - fy)[:, None] + nchw[:, :, hi_y] * fy[:, None]
        y = rows[:, :, :, lo_x] * (1 - fx) + rows[:, :, :, hi_x] * fx
    return [y.permute(0, 2, 3, 1)]


@_op("ResizeNearestNeighbor")
def _resize_nearest(ex: Executor, node: Node, args: list[torch.Tensor]) -> list[torch.Tensor]:
    x, (out_h, out_w) = args[0], _resize_size(node, args[0], args[1])
    align, half = bool(node.attrs.get("align_corners")), bool(node.attrs.get("half_pixel_centers"))

    def index(size_in: int, size_out: int) -> torch.Tensor:
        scale = (size_in - 1) / (size_out - 1) if align and size_out > 1 else size_in / size_out
        dst = torch.arange(size_out, dtype=torch.float64)
        src = (dst + 0.5) * scale if half else dst * scale
        src = torch.round(src) if align else torch.floor(src)
        return src.long().clamp(0, size_in - 1)

    return [x[:, index(x.shape[1], out_h)][:, :, index(x.shape[2], out_w)]]


# --- graph rewriting -----------------------------------------------------------------------------------------------


def fold_constants(graph: Graph) -> Graph:
    """Evaluate every node that depends on constants only, and drop nodes the outputs do not need.

    Converters leave shape arithmetic in graphs (``SparseToDense`` of empty indices plus a constant, casts);
    folding it at conversion keeps the shipped graph to the ops that touch pixels.
    """
    ex = Executor(graph)
    plan = ex.order(graph.outputs)
    tensors = dict(graph.tensors)
    constant: set[str] = {n.name for n in plan if n.op == "Const"}
    folded: dict[str, Node] = {}
    for node in plan:
        if node.op in ("Const", "Placeholder") or node.name in graph.outputs:
            continue
        if all(_split(i)[0] in constant for i in node.inputs):
            if any(_split(i)[1] != 0 for i in node.inputs):
                continue  # a second output of a folded multi-output node: leave it to run time
            args = [tensors[_split(i)[0]] for i in node.inputs]
            result = OPS[node.op](ex, node, args)
            if len(result) == 1:
                tensors[node.name] = result[0].clone()
                constant.add(node.name)
                folded[node.name] = Node(node.name, "Const", (), {})
    nodes = [folded.get(n.name, n) for n in plan]
    reduced = Graph(nodes, tensors, list(graph.inputs), list(graph.outputs), dict(graph.meta))
    needed = {n.name for n in Executor(reduced).order(reduced.outputs)}
    return Graph(
        [n for n in nodes if n.name in needed],
        {k: v for k, v in tensors.items() if k in needed},
        [i for i in graph.inputs if i in needed],
        list(graph.outputs),
        dict(graph.meta),
    )


def follow_input_size(graph: Graph, feeds: Mapping[str, torch.Tensor]) -> Graph:
    """The graph with every constant-size resize turned into a resize by the scale it has at ``feeds``' sizes.

    Exporters freeze a network's ``interpolate(scale_factor=2)`` into ``ResizeBilinear`` to a fixed size, which
    ties a fully convolutional network to the input size it was exported at. One run at that size records each
    resize's input size; the rewritten graph then runs at any input size whose feature maps scale the same way
    (for a detector with strides up to 32: sides that are multiples of 32).
    """
    resizes = {n.name: n for n in graph.nodes if n.op in ("ResizeBilinear", "ResizeNearestNeighbor")}
    if not resizes:
        return graph
    with torch.no_grad():
        found = Executor(graph).run(feeds, [n.inputs[0] for n in resizes.values()])
    nodes = []
    for n in graph.nodes:
        if n.name in resizes:
            ref = _split(n.inputs[1])[0]
            if ref not in graph.tensors:
                raise TfjsFormatError(f"resize {n.name!r} has a computed size; nothing to rewrite")
            (out_h, out_w), x = _ints(graph.tensors[ref]), found[n.inputs[0]]
            n = Node(n.name, n.op, n.inputs, {**n.attrs, SCALE_ATTR: [out_h / x.shape[1], out_w / x.shape[2]]})
        nodes.append(n)
    return Graph(nodes, graph.tensors, list(graph.inputs), list(graph.outputs), dict(graph.meta))
