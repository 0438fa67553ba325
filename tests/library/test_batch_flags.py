"""``pic batch --force`` / ``--refresh`` do what their help says, and a read-only sidecar is a per-file message."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pic_cli.main import cli
from pic_plugin.core.geometry import Box
from pic_plugin.editors.darktable import sidecar_path, write_crop
from pic_plugin.editors.sidecars import find_crops
from pic_plugin.editors.xmp import read_sidecar, write_sidecar_atomic


def _batch(*args: str) -> tuple[int, dict[str, dict], str]:
    result = CliRunner().invoke(cli, ["batch", *args, "--json", "-j", "1"], catch_exceptions=False)
    rows = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    return result.exit_code, rows, result.stderr


def _user_crop(img: Path, box: Box) -> None:
    side = sidecar_path(img)
    doc, stamp = read_sidecar(side)
    assert doc is not None
    write_crop(doc, box, 1, mode="apply", force=True, own=None, size=(600, 400), image_name=img.name)
    write_sidecar_atomic(side, doc.to_bytes(), stamp)


def test_force_replaces_a_kept_user_crop_after_a_normal_run(photo_dir: Path, catalog_path: Path) -> None:
    cat = ["--catalog", str(catalog_path)]
    assert _batch(str(photo_dir), *cat)[0] == 0
    img = photo_dir / "img_0.jpg"
    _user_crop(img, Box(0.3, 0.3, 0.7, 0.9))
    code, rows, _ = _batch(str(photo_dir), *cat)
    assert code == 0 and rows["img_0.jpg"]["written"]["darktable"] == "kept-user-crop"
    code, rows, _ = _batch(str(photo_dir), *cat)  # nothing changed since: all unchanged
    assert {r["status"] for r in rows.values()} == {"unchanged"}

    code, rows, _ = _batch(str(photo_dir), *cat, "--force")  # no --refresh: --force alone must do it
    assert code == 0 and rows["img_0.jpg"]["status"] == "done"
    assert rows["img_0.jpg"]["written"]["darktable"] == "written"
    dt = [c for c in find_crops(img, 1) if c.source == "darktable"]
    assert dt and dt[0].is_pic_suggestion


def test_help_says_what_force_and_refresh_do() -> None:
    out = CliRunner().invoke(cli, ["batch", "--help"]).stdout
    text = " ".join(out.split())
    assert "--force" in text and "implies --refresh" in text
    assert "cached features" in text


def test_read_only_sidecar_is_a_per_file_message(photo_dir: Path, catalog_path: Path) -> None:
    side = photo_dir / "img_1.jpg.xmp"
    side.write_bytes(b"")
    side.unlink()
    assert _batch(str(photo_dir), "--catalog", str(catalog_path))[0] == 0
    before = side.read_bytes()
    side.chmod(0o444)
    code, rows, err = _batch(str(photo_dir), "--catalog", str(catalog_path), "--refresh")
    assert code == 1 and rows["img_0.jpg"]["status"] == "done" and rows["img_2.jpg"]["status"] == "done"
    assert "read-only, not written" in err and "img_1.jpg.xmp" in err
    assert side.read_bytes() == before
