"""The TFJS graph reader / executor against plain numpy references, and the shipped detector on demo photos."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pic_plugin.analysis import detector as sd
from pic_plugin.analysis.tfjs_graph import (
    Executor,
    Graph,
    TfjsFormatError,
    UnsupportedOpError,
    fold_constants,
    follow_input_size,
    read_model,
    read_model_dir,
    read_weights,
)
from pic_plugin.core.geometry import Box, iou
from pic_plugin.core.paths import DATA_DIR

DEMO = DATA_DIR / "demo"


# --- a tiny hand-made model.json --------------------------------------------------------------------------------


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(*values: int) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


class ModelBuilder:
    """Writes TFJS model.json nodes and one weight shard, the way tensorflowjs_converter lays them out."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.specs: list[dict] = []
        self.chunks: list[bytes] = []
        self.values: dict[str, np.ndarray] = {}  # what each constant holds after dequantization

    def node(self, name: str, op: str, inputs: list[str] | None = None, **attr: dict) -> str:
        self.nodes.append({"name": name, "op": op, "input": inputs or [], "attr": attr})
        return name

    def const(self, name: str, value: np.ndarray, quant: str | None = None) -> str:
        value = np.asarray(value)
        spec: dict = {"name": name, "shape": list(value.shape)}
        if value.dtype.kind in "iu":
            spec["dtype"] = "int32"
            self.chunks.append(value.astype("<i4").tobytes())
            self.values[name] = value.astype(np.int64)
        elif quant == "float16":
            spec.update(dtype="float32", quantization={"dtype": "float16"})
            half = value.astype(np.float16)
            self.chunks.append(half.astype("<f2").tobytes())
            self.values[name] = half.astype(np.float32)
        elif quant == "uint8":
            lo, hi = float(value.min()), float(value.max())
            scale = (hi - lo) / 255 or 1.0
            q = np.round((value - lo) / scale).astype(np.uint8)
            spec.update(dtype="float32", quantization={"dtype": "uint8", "scale": scale, "min": lo})
            self.chunks.append(q.tobytes())
            self.values[name] = (q.astype(np.float32) * np.float32(scale) + np.float32(lo)).astype(np.float32)
        else:
            spec["dtype"] = "float32"
            self.chunks.append(value.astype("<f4").tobytes())
            self.values[name] = value.astype(np.float32)
        self.specs.append(spec)
        return self.node(name, "Const", dtype={"type": "DT_FLOAT"})

    def model(self, outputs: list[str]) -> tuple[dict, bytes]:
        model = {
            "format": "graph-model",
            "generatedBy": "test",
            "modelTopology": {"node": self.nodes, "versions": {}},
            "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": self.specs}],
            "signature": {"outputs": {f"{o}:0": {"name": f"{o}:0"} for o in outputs}},
        }
        return model, b"".join(self.chunks)


# --- numpy references, written from TF's definitions ---------------------------------------------------------


def same_pad(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = math.ceil(n / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def ref_conv(
    x: np.ndarray, w: np.ndarray, stride: int, dilation: int, padding: str, depthwise: bool = False
) -> np.ndarray:
    """NHWC convolution by its definition; depthwise output channel c * m + j reads input channel c."""
    n, h, wd, cin = x.shape
    kh, kw = w.shape[:2]
    (pt, pb), (pl, pr) = (
        (same_pad(h, kh, stride, dilation), same_pad(wd, kw, stride, dilation))
        if padding == "SAME"
        else ((0, 0), (0, 0))
    )
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (h + pt + pb - (kh - 1) * dilation - 1) // stride + 1
    ow = (wd + pl + pr - (kw - 1) * dilation - 1) // stride + 1
    cout = cin * w.shape[3] if depthwise else w.shape[3]
    out = np.zeros((n, oh, ow, cout), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    pix = xp[:, i * stride + a * dilation, j * stride + b * dilation, :]  # n x cin
                    if depthwise:
                        out[:, i, j, :] += (pix[:, :, None] * w[a, b][None]).reshape(n, -1)
                    else:
                        out[:, i, j, :] += pix @ w[a, b]
    return out


def ref_resize(x: np.ndarray, oh: int, ow: int, align: bool, half: bool) -> np.ndarray:
    n, h, w, c = x.shape

    def src(o: int, size_in: int, size_out: int) -> tuple[int, int, float]:
        scale = (size_in - 1) / (size_out - 1) if align and size_out > 1 else size_in / size_out
        v = (o + 0.5) * scale - 0.5 if half else o * scale
        lo = math.floor(v)
        return min(max(lo, 0), size_in - 1), min(max(math.ceil(v), 0), size_in - 1), v - lo

    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        y0, y1, fy = src(i, h, oh)
        for j in range(ow):
            x0, x1, fx = src(j, w, ow)
            top = x[:, y0, x0] * (1 - fx) + x[:, y0, x1] * fx
            bottom = x[:, y1, x0] * (1 - fx) + x[:, y1, x1] * fx
            out[:, i, j] = top * (1 - fy) + bottom * fy
    return out


def ref_max_pool_same(x: np.ndarray, k: int, s: int) -> np.ndarray:
    n, h, w, c = x.shape
    (pt, pb), (pl, pr) = same_pad(h, k, s, 1), same_pad(w, k, s, 1)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
    oh, ow = math.ceil(h / s), math.ceil(w / s)
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = xp[:, i * s : i * s + k, j * s : j * s + k].max(axis=(1, 2))
    return out


# --- the hand-made graph -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelBuilder, Path]:
    rng = np.random.default_rng(7)
    m = ModelBuilder()
    m.node("x", "Placeholder", shape={"shape": {"dim": [{"size": "1"}, {"size": "6"}, {"size": "7"}, {"size": "3"}]}})
    m.const("w1", rng.normal(size=(3, 3, 3, 4)), quant="float16")
    m.const("b1", rng.normal(size=(4,)), quant="uint8")
    m.node(
        "c1",
        "Conv2D",
        ["x", "w1"],
        padding=_s("SAME"),
        strides=_ints(1, 2, 2, 1),
        dilations=_ints(1, 1, 1, 1),
        data_format=_s("NHWC"),
    )
    m.node("a1", "Add", ["c1", "b1"])
    m.node("r1", "Relu6", ["a1"])
    m.const("wd", rng.normal(size=(3, 3, 4, 2)))
    m.node(
        "dw",
        "DepthwiseConv2dNative",
        ["r1", "wd"],
        padding=_s("SAME"),
        strides=_ints(1, 1, 1, 1),
        dilations=_ints(1, 2, 2, 1),
    )
    m.const("w2", rng.normal(size=(1, 1, 3, 8)))
    m.const("b2", rng.normal(size=(8,)))
    m.node(
        "f2",
        "_FusedConv2D",
        ["x", "w2", "b2"],
        padding=_s("VALID"),
        strides=_ints(1, 2, 2, 1),
        fused_ops={"list": {"s": [_s("BiasAdd")["s"], _s("Relu")["s"]]}},
        num_args={"i": "1"},
    )
    m.node("sum", "AddV2", ["dw", "f2"])  # 1 x 3 x 4 x 8
    m.const("size", np.array([5, 9], dtype=np.int32))
    m.node("rz_half", "ResizeBilinear", ["sum", "size"], half_pixel_centers={"b": True}, align_corners={"b": False})
    m.node("rz_align", "ResizeBilinear", ["sum", "size"], half_pixel_centers={"b": False}, align_corners={"b": True})
    m.node("rz_legacy", "ResizeBilinear", ["sum", "size"], half_pixel_centers={"b": False}, align_corners={"b": False})
    m.const("axis", np.array(3, dtype=np.int32))
    m.node("cat", "ConcatV2", ["rz_half", "rz_align", "rz_legacy", "axis"], N={"i": "3"})
    m.node(
        "mp",
        "MaxPool",
        ["cat"],
        ksize=_ints(1, 3, 3, 1),
        strides=_ints(1, 2, 2, 1),
        padding=_s("SAME"),
        data_format=_s("NHWC"),
    )
    m.const("axes", np.array([1, 2], dtype=np.int32))
    m.node("mean", "Mean", ["mp", "axes"], keep_dims={"b": True})
    # NCHW branch in the onnx-tf style: transpose, pad, leaky relu, split, sigmoid, reshape
    m.const("perm", np.array([0, 3, 1, 2], dtype=np.int32))
    m.node("nchw", "Transpose", ["sum", "perm"])
    m.const("pads", np.array([[0, 0], [0, 0], [1, 0], [0, 2]], dtype=np.int32))
    m.node("padded", "Pad", ["nchw", "pads"])
    m.node("leaky", "LeakyRelu", ["padded"], alpha={"f": 0.1})
    m.const("splits", np.array([3, -1], dtype=np.int32))
    m.const("split_dim", np.array(1, dtype=np.int32))
    m.node("parts", "SplitV", ["leaky", "splits", "split_dim"], num_split={"i": "2"})
    m.node("sig", "Sigmoid", ["parts"])
    # the shape arrives through converter-style constant arithmetic that fold_constants removes
    m.const("base_shape", np.array([1, 5, 24], dtype=np.int32))
    m.const("empty_idx", np.zeros((0, 1), dtype=np.int32))
    m.const("dense_shape", np.array([3], dtype=np.int32))
    m.const("no_values", np.zeros((0,), dtype=np.int32))
    m.const("zero", np.array(0, dtype=np.int32))
    m.node("sparse", "SparseToDense", ["empty_idx", "dense_shape", "no_values", "zero"])
    m.node("shape", "AddV2", ["base_shape", "sparse"])
    m.node("flat", "Reshape", ["parts:1", "shape"])
    model, shard = m.model(["mean", "cat", "mp", "sig", "flat"])
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "model.json").write_text(json.dumps(model))
    (folder / "group1-shard1of1.bin").write_bytes(shard)
    return m, folder / "model.json"


def test_graph_matches_numpy_references(tiny: tuple[ModelBuilder, Path]) -> None:
    m, path = tiny
    graph = read_model_dir(path)
    x = np.random.default_rng(3).normal(size=(1, 6, 7, 3)).astype(np.float32)
    out = Executor(graph).run({"x": torch.from_numpy(x)})
    v = m.values
    c1 = ref_conv(x.astype(np.float64), v["w1"], 2, 1, "SAME")
    assert c1.shape == (1, 3, 4, 4)
    r1 = np.clip(c1 + v["b1"], 0, 6)
    dw = ref_conv(r1, v["wd"], 1, 2, "SAME", depthwise=True)
    f2 = np.maximum(ref_conv(x.astype(np.float64), v["w2"], 2, 1, "VALID") + v["b2"], 0)
    total = dw + f2
    cat = np.concatenate(
        [ref_resize(total, 5, 9, align, half) for align, half in ((False, True), (True, False), (False, False))], axis=3
    )
    np.testing.assert_allclose(out["cat"].numpy(), cat, rtol=1e-4, atol=1e-4)
    mp = ref_max_pool_same(cat, 3, 2)
    np.testing.assert_allclose(out["mp"].numpy(), mp, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["mean"].numpy(), mp.mean(axis=(1, 2), keepdims=True), rtol=1e-4, atol=1e-4)
    nchw = np.pad(total.transpose(0, 3, 1, 2), ((0, 0), (0, 0), (1, 0), (0, 2)))
    leaky = np.where(nchw >= 0, nchw, 0.1 * nchw)
    np.testing.assert_allclose(out["sig"].numpy(), 1 / (1 + np.exp(-leaky[:, :3])), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["flat"].numpy(), leaky[:, 3:].reshape(1, 5, 24), rtol=1e-4, atol=1e-4)


def test_resize_flags_differ_and_follow_tf() -> None:
    """The three ResizeBilinear mappings give different values; a 2x upsample of a ramp shows each one."""
    m = ModelBuilder()
    m.node("x", "Placeholder")
    m.const("size", np.array([1, 4], dtype=np.int32))
    for name, align, half in (("half", False, True), ("align", True, False), ("legacy", False, False)):
        m.node(name, "ResizeBilinear", ["x", "size"], align_corners={"b": align}, half_pixel_centers={"b": half})
    model, shard = m.model(["half", "align", "legacy"])
    graph = read_model(model, lambda p: shard)
    ramp = torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1)
    out = {k: v.reshape(-1).tolist() for k, v in Executor(graph).run({"x": ramp}).items()}
    assert out["half"] == pytest.approx([0.0, 0.25, 0.75, 1.0])
    assert out["align"] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert out["legacy"] == pytest.approx([0.0, 0.5, 1.0, 1.0])


def test_frozen_resize_follows_the_input_size() -> None:
    """An export froze a 2x upsample to 4 x 4; rewritten at the 2 x 2 it was made for, it doubles any input."""
    m = ModelBuilder()
    m.node("x", "Placeholder")
    m.const("size", np.array([4, 4], dtype=np.int32))
    m.node("up", "ResizeBilinear", ["x", "size"], align_corners={"b": False}, half_pixel_centers={"b": True})
    model, shard = m.model(["up"])
    graph = read_model(model, lambda p: shard)
    wide = torch.arange(12.0).reshape(1, 2, 6, 1)
    assert Executor(graph).run({"x": wide})["up"].shape == (1, 4, 4, 1)  # frozen: any input gives 4 x 4
    follows = follow_input_size(graph, {"x": torch.zeros(1, 2, 2, 1)})
    out = Executor(follows).run({"x": wide})["up"]
    assert out.shape == (1, 4, 12, 1)
    expected = torch.nn.functional.interpolate(wide.permute(0, 3, 1, 2), scale_factor=2, mode="bilinear")
    torch.testing.assert_close(out, expected.permute(0, 2, 3, 1))
    # At the size it was exported for, nothing changes.
    x = torch.rand(1, 2, 2, 1)
    torch.testing.assert_close(Executor(follows).run({"x": x})["up"], Executor(graph).run({"x": x})["up"])


def test_weights_dequantize_float16_and_uint8() -> None:
    manifest = [
        {
            "paths": ["a.bin"],
            "weights": [
                {"name": "h", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
                {
                    "name": "q",
                    "shape": [3],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
                },
                {"name": "i", "shape": [], "dtype": "int32"},
            ],
        }
    ]
    data = np.array([1.5, -2.25], dtype="<f2").tobytes() + bytes([0, 2, 255]) + np.array([7], dtype="<i4").tobytes()
    w = read_weights(manifest, lambda p: data)
    assert w["h"].tolist() == [1.5, -2.25]
    assert w["q"].tolist() == [-1.0, 0.0, 126.5]
    assert int(w["i"]) == 7
    with pytest.raises(TfjsFormatError, match="bytes more"):
        read_weights(manifest, lambda p: data + b"\0")


def test_unknown_op_is_named() -> None:
    m = ModelBuilder()
    m.node("x", "Placeholder")
    m.node("y", "Erfinv", ["x"])
    model, shard = m.model(["y"])
    with pytest.raises(UnsupportedOpError, match="'Erfinv' of node 'y'"):
        Executor(read_model(model, lambda p: shard))


def test_state_round_trip_and_folding(tiny: tuple[ModelBuilder, Path]) -> None:
    _, path = tiny
    graph = read_model_dir(path)
    folded = fold_constants(graph)
    ops = {n.op for n in folded.nodes}
    assert "SparseToDense" not in ops and "AddV2" in ops  # the shape arithmetic went, the pixel AddV2 stayed
    buf = io.BytesIO()
    torch.save(folded.to_state(torch.float32), buf)
    loaded = Graph.from_state(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    x = torch.randn(1, 6, 7, 3)
    a, b = Executor(graph).run({"x": x}), Executor(loaded).run({"x": x})
    for k in a:
        torch.testing.assert_close(a[k], b[k])


# --- the shipped detector --------------------------------------------------------------------------------------

# Recorded with the converted NanoDet-g (detector.pt sha256 in DETECTOR-PROVENANCE.md), min_score 0.3.
ASTRONAUT_PERSON = Box(0.030, 0.028, 0.712, 0.994)
PARROT_BIRD = Box(0.517, 0.201, 1.0, 0.987)
CAT = Box(0.005, 0.002, 0.965, 0.986)


def _demo(name: str) -> np.ndarray:
    from pic_plugin.imaging.decode import decode

    return decode(DEMO / name).pixels  # upright (cat_upside_down.jpg carries EXIF orientation 3)


def test_detector_file_is_small_and_plain() -> None:
    assert sd.DETECTOR_FILE.stat().st_size < 8 * 1024 * 1024
    state = torch.load(sd.DETECTOR_FILE, map_location="cpu", weights_only=True)
    assert {t.dtype for t in state["tensors"].values()} <= {torch.float16, torch.int64}
    assert len(state["meta"]["classes"]) == 80


@pytest.mark.parametrize(
    ("photo", "label", "box"),
    [
        ("astronaut.jpg", "person", ASTRONAUT_PERSON),
        ("parrots.jpg", "bird", PARROT_BIRD),
        ("cat_upside_down.jpg", "cat", CAT),
    ],
)
def test_detector_finds_recorded_objects(photo: str, label: str, box: Box) -> None:
    dets = sd.detect_objects(_demo(photo))
    assert dets, photo
    best = dets[0]
    assert best.label == label
    assert iou(best.box, box) > 0.8, (best, box)
    assert all(0.0 <= v <= 1.0 for d in dets for v in d.box)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)


def test_detector_boxes_follow_the_image_not_the_letterbox() -> None:
    """The same photo padded with black on the right: the person box keeps its pixels, so it shrinks in x."""
    rgb = _demo("astronaut.jpg")
    h, w = rgb.shape[:2]
    wide = np.concatenate([rgb, np.zeros((h, w, 3), dtype=np.uint8)], axis=1)
    person = next(d for d in sd.detect_objects(wide) if d.label == "person")
    expected = Box(ASTRONAUT_PERSON.left / 2, ASTRONAUT_PERSON.top, ASTRONAUT_PERSON.right / 2, ASTRONAUT_PERSON.bottom)
    assert iou(person.box, expected) > 0.7, person


@pytest.mark.parametrize("photo", ["astronaut.jpg", "parrots.jpg", "cat_upside_down.jpg"])
def test_short_side_padding_finds_what_the_square_finds(photo: str) -> None:
    """``square=False`` pads the short side only to a multiple of 32 (a 3:2 photo runs on 416 x 288, not 416 x 416
    of which a third is black); the network is fully convolutional, so it finds the same main object."""
    rgb = _demo(photo)
    canvas, place = sd.letterbox(rgb, 416, sd.STRIDE_MULTIPLE)
    assert max(canvas.shape[:2]) == 416 and all(side % 32 == 0 for side in canvas.shape[:2])
    assert canvas.shape[0] * canvas.shape[1] < 416 * 416 or rgb.shape[0] == rgb.shape[1]
    square, short = sd.detect_objects(rgb)[0], sd.detect_objects(rgb, square=False)[0]
    assert short.label == square.label
    assert iou(short.box, square.box) > 0.9, (short, square)
    assert abs(short.score - square.score) < 0.1


def test_pick_rules() -> None:
    dets = [
        sd.Detection(Box(0.1, 0.1, 0.5, 0.9), 0.8, "person"),
        sd.Detection(Box(0.4, 0.5, 0.9, 0.95), 0.5, "dog"),
        sd.Detection(Box(0.0, 0.0, 0.05, 0.05), 0.9, "cup"),
    ]
    assert sd.pick_subject(dets, "top_score") == Box(0.0, 0.0, 0.05, 0.05)
    assert sd.pick_subject(dets, "score_sqrt_area") == Box(0.1, 0.1, 0.5, 0.9)
    assert sd.pick_subject(dets, "union_overlapping") == Box(0.1, 0.1, 0.9, 0.95)
    assert sd.pick_subject(dets, "union_strong") == Box(0.0, 0.0, 0.9, 0.95)
    assert sd.pick_subject(dets, min_score=0.95) is None
    with pytest.raises(ValueError, match="unknown rule"):
        sd.pick_subject(dets, "nope")


def test_detector_is_thread_safe() -> None:
    """Two threads detecting at once (the watcher analyses in threads) get what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    rgb = _demo("parrots.jpg")
    alone = sd.detect_objects(rgb)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(sd.detect_objects, [rgb, rgb, rgb, rgb]))
    for r in results:
        assert [d.label for d in r] == [d.label for d in alone]
        for a, b in zip(r, alone, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-5)
            assert iou(a.box, b.box) > 0.999
