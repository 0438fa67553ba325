"""The batch pipeline and the ``pic`` commands over it (CliRunner)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import jpeg_bytes, make_photo
from pic_cli.main import cli


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file() and not p.name.endswith(".xmp")}


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_suggest_json_contract(photo_dir: Path, catalog_path: Path) -> None:
    code, out, _ = _run("suggest", str(photo_dir / "img_0.jpg"), "--top", "3", "--json", "--catalog", str(catalog_path))
    assert code == 0
    row = json.loads(out.splitlines()[0])
    assert set(row) >= {"path", "crop", "score", "ratio", "alternatives", "user", "model"}
    assert len(row["crop"]) == 4 and 0 <= row["crop"][0] < row["crop"][2] <= 1
    assert len(row["alternatives"]) == 2 and row["user"] is None
    assert 0 <= row["score"] <= 1


def test_batch_json_then_unchanged_rerun_does_no_image_work(photo_dir: Path, catalog_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    before = _hashes(photo_dir)
    code, out, _ = _run("batch", str(photo_dir), "--no-write", "--json", "-j", "1", "--catalog", str(catalog_path))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["status"] for r in rows) == ["done"] * 3

    import pic_plugin.library.pipeline as pipeline

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("image work on an unchanged folder")

    monkeypatch.setattr(pipeline, "analyze_file", boom)
    code, out, _ = _run("batch", str(photo_dir), "--no-write", "--json", "-j", "1", "--catalog", str(catalog_path))
    assert code == 0
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["unchanged"] * 3
    assert _hashes(photo_dir) == before


def test_batch_fast_skips_the_detector_and_a_full_run_redoes_it(photo_dir: Path, catalog_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pic_plugin.analysis.extract as extract

    real = extract.detect_objects

    def no_detector(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("the detector ran in a --fast batch")

    monkeypatch.setattr(extract, "detect_objects", no_detector)
    args = ("batch", str(photo_dir), "--no-write", "--json", "-j", "1", "--catalog", str(catalog_path))
    code, out, _ = _run(*args, "--fast")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["status"] for r in rows} == {"done"} and all(r["model"].endswith("+fast") for r in rows)
    code, out, _ = _run(*args, "--fast")
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["unchanged"] * len(rows)
    calls = []
    monkeypatch.setattr(extract, "detect_objects", lambda *a, **k: calls.append(1) or real(*a, **k))
    code, out, _ = _run(*args)  # a full run redoes the --fast suggestions, with the detector
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {r["status"] for r in rows} == {"done"} and len(calls) == len(rows)
    assert not any(r["model"].endswith("+fast") for r in rows)
    code, out, _ = _run(*args, "--fast")  # ... and a --fast run keeps those full suggestions
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["unchanged"] * len(rows)


def test_batch_exact_ratio_export(tmp_path: Path, photo_dir: Path, catalog_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, _ = _run(
        "batch", str(photo_dir), "--no-write", "--ratio", "4:5", "--export", str(out_dir), "--json", "-j", "1",
        "--catalog", str(catalog_path),
    )
    assert code == 0
    for row in map(json.loads, out.splitlines()):
        exported = Path(row["exported"])
        w, h = Image.open(exported).size
        assert w * 5 == h * 4, (w, h)
        assert row["ratio"] == "4:5"


def test_batch_continues_after_bad_files(tmp_path: Path, catalog_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "good.jpg").write_bytes(jpeg_bytes(make_photo()))
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.png").write_text("hello")
    data = jpeg_bytes(make_photo())
    (d / "truncated.jpg").write_bytes(data[: len(data) // 4])
    (d / "name with $(echo pwned) and\nnewline.jpg").write_bytes(jpeg_bytes(make_photo(seed=3)))
    before = _hashes(d)
    code, out, err = _run("batch", str(d), "--no-write", "--json", "-j", "1", "--catalog", str(catalog_path))
    assert code == 1  # some files failed
    statuses = {Path(r["path"]).name: r["status"] for r in map(json.loads, out.splitlines())}
    assert statuses["good.jpg"] == "done" and statuses["name with $(echo pwned) and\nnewline.jpg"] == "done"
    assert statuses["empty.jpg"] == statuses["text.png"] == statuses["truncated.jpg"] == "error"
    assert "empty.jpg" in err and "text.png" in err
    assert _hashes(d) == before
    assert not (tmp_path / "pwned").exists()


def test_batch_parallel_jobs_match_serial(photo_dir: Path, tmp_path: Path) -> None:
    serial = _run("batch", str(photo_dir), "--no-write", "--json", "-j", "1", "--catalog", str(tmp_path / "a.db"))[1]
    parallel = _run("batch", str(photo_dir), "--no-write", "--json", "-j", "2", "--catalog", str(tmp_path / "b.db"))[1]

    def crops(text: str) -> dict[str, list[float]]:
        return {r["path"]: r["crop"] for r in map(json.loads, text.splitlines())}

    assert crops(serial) == crops(parallel)


def test_shards_partition_the_batch(tmp_path: Path) -> None:
    d = tmp_path / "many"
    d.mkdir()
    for i in range(12):
        (d / f"p{i:02d}.jpg").write_bytes(jpeg_bytes(make_photo(64, 48, seed=i)))
    seen: list[str] = []
    for i in (1, 2, 3):
        out = _run("batch", str(d), "--dry-run", "--json", "--shard", f"{i}/3", "--catalog", str(tmp_path / "c.db"))[1]
        seen += [json.loads(line)["path"] for line in out.splitlines()]
    assert sorted(seen) == sorted(os.fsdecode(p) for p in d.iterdir())


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert _run("batch", str(tmp_path / "missing"))[0] == 2
    assert _run("batch", str(tmp_path), "--ratio", "banana")[0] == 2
    assert _run("batch", str(tmp_path), "--shard", "4/3")[0] == 2
    assert _run("batch", str(tmp_path), "--targets", "photoshop")[0] == 2


def test_every_command_has_help() -> None:
    for name, command in cli.commands.items():
        assert command.help, f"pic {name} has no help text"
        code, out, _ = _run(name, "--help")
        assert code == 0 and "Usage" in out


def test_demo_copies_free_samples(tmp_path: Path) -> None:
    code, out, _ = _run("demo", str(tmp_path / "demo"))
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert "lighthouse_rot90.jpg" in names and len(names) >= 5


def test_batch_writes_sidecars_and_keeps_user_crops(photo_dir: Path, catalog_path: Path) -> None:
    from pic_plugin.core.geometry import Box
    from pic_plugin.editors.darktable import sidecar_path
    from pic_plugin.editors.sidecars import find_crops

    before = _hashes(photo_dir)
    code, out, _ = _run("batch", str(photo_dir), "--json", "-j", "1", "--catalog", str(catalog_path))
    assert code == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    img = photo_dir / "img_0.jpg"
    found = {c.source: c for c in find_crops(img, 1)}
    assert found["darktable"].is_pic_suggestion and found["pic"].is_pic_suggestion
    assert list(found["darktable"].crop) == pytest.approx(rows["img_0.jpg"]["crop"], abs=2e-3)
    assert rows["img_0.jpg"]["written"]["darktable"] == "written"

    # The user makes their own crop in "darktable": a later run keeps it and records only the suggestion.
    from pic_plugin.editors.darktable import write_crop
    from pic_plugin.editors.xmp import parse_xmp, read_sidecar, write_sidecar_atomic

    side = sidecar_path(img)
    doc, stamp = read_sidecar(side)
    assert doc is not None
    write_crop(doc, Box(0.3, 0.3, 0.7, 0.9), 1, mode="apply", force=True, own=None, size=(600, 400), image_name=img.name)
    write_sidecar_atomic(side, doc.to_bytes(), stamp)
    code, out, _ = _run("batch", str(photo_dir), "--json", "-j", "1", "--catalog", str(catalog_path))
    assert code == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert rows["img_0.jpg"]["status"] == "done"  # the sidecar changed, so the photo was looked at again
    assert rows["img_0.jpg"]["written"]["darktable"] == "kept-user-crop"
    assert rows["img_1.jpg"]["status"] == "unchanged"
    user = [c for c in find_crops(img, 1) if c.source == "darktable"][0]
    assert not user.is_pic_suggestion and list(user.crop) == pytest.approx([0.3, 0.3, 0.7, 0.9], abs=2e-3)
    assert parse_xmp(side.read_bytes()) is not None
    assert _hashes(photo_dir) == before  # originals untouched


def test_batch_suggest_only_and_crs(photo_dir: Path, catalog_path: Path) -> None:
    from pic_plugin.editors.sidecars import find_crops

    code, out, _ = _run(
        "batch", str(photo_dir), "--suggest-only", "--targets", "pic,darktable,crs", "--json", "-j", "1",
        "--catalog", str(catalog_path),
    )
    assert code == 0
    row = json.loads(out.splitlines()[0])
    assert row["written"]["darktable"] == "written" and row["written"]["crs"] == "skipped"
    sources = {c.source for c in find_crops(Path(row["path"]), 1)}
    assert sources == {"pic"}  # a disabled darktable entry is not a crop; crs has no disabled crop
    code, out, _ = _run(
        "batch", str(photo_dir), "--targets", "pic,darktable,crs", "--json", "-j", "1", "--catalog", str(catalog_path)
    )
    row = json.loads(out.splitlines()[0])
    assert row["written"]["crs"] == "written"
    assert (Path(row["path"]).with_suffix(".xmp")).exists()
    # darktable imports the crs crop on the first darkroom load: its entry is left out, pic's disabled one taken out
    assert row["written"]["darktable"] == "skipped"
    assert {c.source for c in find_crops(Path(row["path"]), 1)} == {"pic", "crs"}


def test_photos_left_uncropped_are_counted_and_explained(photo_dir: Path, catalog_path: Path) -> None:
    """A generic user whose photos pic would rather leave as they are is told why and what to do, not just "done"."""
    import watch_standins  # noqa: F401  (registers the "mean-crop" stand-in: the whole frame until a model exists)

    from pic_plugin.core.geometry import parse_ratio
    from pic_plugin.library.batch import run_batch
    from pic_plugin.library.catalog import Catalog
    from pic_plugin.library.options import BatchOptions

    with Catalog(catalog_path) as cat:
        options = BatchOptions(write=False, scorer="mean-crop", refresh=True)
        summary = run_batch([photo_dir], options, cat)
        assert summary.counts["done"] == 3 and summary.uncropped == 3
        assert "3 best left uncropped" in summary.line()
        hint = summary.style_hint(options)
        assert hint is not None and "3 of 3" in hint and "--ratio" in hint and "pic learn" in hint
        # Somebody who asked for a ratio or named themselves already told pic something: no advice.
        assert summary.style_hint(BatchOptions(ratio=parse_ratio("4:5"))) is None
        assert summary.style_hint(BatchOptions(user="me")) is None
        # Nothing to say when pic cropped most of them.
        summary.uncropped = 1
        assert summary.style_hint(options) is None and "1 best left uncropped" in summary.line()


def test_cropped_suggestions_are_not_counted_as_uncropped(photo_dir: Path, catalog_path: Path) -> None:
    from pic_plugin.core.geometry import parse_ratio
    from pic_plugin.library.batch import run_batch
    from pic_plugin.library.catalog import Catalog
    from pic_plugin.library.options import BatchOptions

    with Catalog(catalog_path) as cat:
        summary = run_batch([photo_dir], BatchOptions(write=False, ratio=parse_ratio("1:2")), cat)
    assert summary.counts["done"] == 3 and summary.uncropped == 0 and "uncropped" not in summary.line()


def test_batch_prints_the_style_hint_on_stderr(photo_dir: Path, catalog_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pic_plugin.library.batch import BatchSummary

    monkeypatch.setattr(BatchSummary, "style_hint", lambda self, options: "HINT: tell pic your style")
    code, out, err = _run("batch", str(photo_dir), "--no-write", "--json", "-j", "1", "--catalog", str(catalog_path))
    assert code == 0 and "HINT: tell pic your style" in err and "HINT" not in out  # stdout stays JSON lines
    assert all(json.loads(line)["status"] == "done" for line in out.splitlines())
