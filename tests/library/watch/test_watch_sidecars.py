"""``pic watch`` with the real sidecar layer: XMP suggestions, and learning from darktable-style edits."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import watch_standins as ws
from editor_fixtures import XMP_V1
from watch_helpers import darktable_edit, fast_options, running_watcher, wait_for

from conftest import TEST_DATA, jpeg_bytes, make_photo
from pic_plugin.core.geometry import Box, iou
from pic_plugin.library.catalog import Catalog

try:
    from pic_plugin.editors import darktable as dt
    from pic_plugin.editors import xmp as xmp_mod
    from pic_plugin.editors.sidecars import find_crops

    HAVE_SIDECARS = True
except ImportError:  # pragma: no cover - until the sidecar layer is merged
    HAVE_SIDECARS = False

pytestmark = pytest.mark.skipif(not HAVE_SIDECARS, reason="pic_plugin.editors.sidecars (write_suggestion/find_crops) not present")


def _sidecar_suggestion(image: Path) -> Box | None:
    pic = [c for c in find_crops(image, 1) if c.source == "pic"]
    return pic[0].crop if pic else None


def test_darktable_edit_is_learned_and_refreshes_the_folder(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    names = [f"p{i}.jpg" for i in range(4)]
    for i, name in enumerate(names):
        (root / "trip" / name).write_bytes(jpeg_bytes(make_photo(360, 240, seed=i)))
    user_crop = Box(0.05, 0.1, 0.55, 0.75)
    opts = fast_options(scorer="mean-crop")
    with running_watcher([root], catalog_path, opts, learner=ws.mean_crop_learner) as run:  # real sidecars
        wait_for(lambda: len(run.done_names()) == 4, 60, what="the initial scan")
        run.wait_idle()
        for name in names:  # suggest-only: pic's record, and a darktable crop entry that is disabled
            found = find_crops(root / "trip" / name, 1)
            assert [c.source for c in found] == ["pic"] and found[0].detail["state"] == "suggested"
        before = {n: _sidecar_suggestion(root / "trip" / n) for n in names[1:]}
        darktable_edit(root / "trip" / "p0.jpg", user_crop)
        edited = (root / "trip" / "p0.jpg.xmp").read_bytes()
        wait_for(lambda: all(_model_of(root / "trip" / n) == "mean-crop-v1" for n in names[1:]), 30,
                 what="refreshed suggestions")  # fmt: skip
        run.wait_idle()
        assert (root / "trip" / "p0.jpg.xmp").read_bytes() == edited  # the user's edit is never written to
    with Catalog(catalog_path, readonly=True) as cat:
        crops = cat.user_crops("me")
        assert len(crops) == 1 and crops[0]["source"] == "darktable" and crops[0]["weight"] == 1.0
        assert iou(Box(*crops[0]["crop"]), user_crop) > 0.98
        rec = cat.image(root / "trip" / "p0.jpg")
        assert rec is not None and cat.suggestion(rec.id, "me", "free")["status"] == "adjusted"
    for n in names[1:]:
        after = _sidecar_suggestion(root / "trip" / n)
        assert after is not None and after != before[n] and iou(after, user_crop) > 0.8, (n, after)


def test_turning_on_the_suggestion_counts_as_accepted(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    image = root / "a.jpg"
    image.write_bytes(jpeg_bytes(make_photo(360, 240, seed=1)))
    opts = fast_options(finetune_interval=3600)  # the composition scorer: a real crop, not the full frame
    with running_watcher([root], catalog_path, opts, learner=ws.mean_crop_learner) as run:
        wait_for(lambda: "a.jpg" in run.done_names(), 60, what="a.jpg")
        run.wait_idle()
        suggested = _sidecar_suggestion(image)
        assert suggested is not None and suggested != Box(0, 0, 1, 1)
        darktable_edit(image, suggested)  # the user switches pic's (disabled) crop on, unchanged
        wait_for(lambda: run.by_status("learned"), 20, what="the accepted crop")
    with Catalog(catalog_path, readonly=True) as cat:
        crops = cat.user_crops("me")
        assert len(crops) == 1 and crops[0]["weight"] == pytest.approx(0.3)
        rec = cat.image(image)
        assert rec is not None and cat.suggestion(rec.id, "me", "free")["status"] == "accepted"


def _model_of(image: Path) -> str | None:
    pic = [c for c in find_crops(image, 1) if c.source == "pic"]
    return pic[0].detail.get("model") if pic else None


def test_sidecars_stay_valid_xmp_after_bursts(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    with Catalog(catalog_path) as cat:  # the stand-in's "model": a real crop (the whole frame adds no entry)
        cat.save_model("me", json.dumps([0.1, 0.1, 0.9, 0.85]).encode(), {}, note="stand-in")
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), learner=None) as run:
        for i in range(20):
            (root / f"b{i}.jpg").write_bytes(jpeg_bytes(make_photo(200, 150, seed=i)))
        wait_for(lambda: len(run.done_names()) == 20, 60, what="20 suggestions")
        run.wait_idle()
    for side in root.glob("*.xmp"):
        xmp_mod.parse_xmp(side.read_bytes(), source=os.fsdecode(side))
        assert dt.read_crop(xmp_mod.parse_xmp(side.read_bytes()), 1) is not None


@pytest.mark.parametrize(("stop", "status"), [("SIGINT", 130), ("SIGTERM", 0)])
def test_pic_watch_command_runs_and_stops_on_ctrl_c(tmp_path: Path, catalog_path: Path, stop: str, status: int) -> None:
    import signal
    import subprocess
    import sys

    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg_bytes(make_photo(seed=1)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pic_cli.main", "watch", str(root), "--catalog", str(catalog_path), "--user", "me",
         "--json", "--jobs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the scan's result for a.jpg, as a JSON line
        assert '"status": "done"' in line and "a.jpg" in line, (line, proc.stderr.read() if proc.poll() else "")  # type: ignore[union-attr]
        proc.send_signal(getattr(signal, stop))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err  # Ctrl-C: 130, as a shell reports it; SIGTERM, a service's stop: 0
    assert "pic watch: stopped" in err and "Traceback" not in err
    assert [c.source for c in find_crops(root / "a.jpg", 1)] == ["pic"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(("-wal", "-shm"))]


def test_a_digikam_version_teaches_the_crop_of_its_original(tmp_path: Path, catalog_path: Path) -> None:
    fixture = TEST_DATA / "digikam-real"  # real showfoto 7.9 output (see its PROVENANCE.md)
    root = tmp_path / "photos"
    root.mkdir()
    shutil.copy(fixture / "IMG_0001.JPG", root / "IMG_0001.JPG")
    opts = fast_options(finetune_interval=3600)
    with running_watcher([root], catalog_path, opts, learner=None) as run:
        wait_for(lambda: "IMG_0001.JPG" in run.done_names(), 60, what="the original")
        shutil.copy(fixture / "IMG_0001_v1.png", root / "IMG_0001_v1.png")  # the user saves a cropped version
        wait_for(lambda: run.watcher.counters["crops_learned"] >= 1, 30, what="the version's crop")
        run.wait_idle()
    with Catalog(catalog_path, readonly=True) as cat:
        crops = cat.user_crops("me")
        assert [(Path(c["path"]).name, c["source"]) for c in crops] == [("IMG_0001.JPG", "digikam#IMG_0001_v1.png")]
        assert crops[0]["detail"]["editor"] == "digikam" and crops[0]["weight"] > 0




def test_an_unsupported_sidecar_is_reported_once_and_tried_again_when_it_changes(tmp_path: Path,
                                                                                 catalog_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    image = root / "old.jpg"
    image.write_bytes(jpeg_bytes(make_photo(360, 240, seed=3)))
    sidecar = root / "old.jpg.xmp"
    sidecar.write_text(XMP_V1)
    opts = fast_options(scorer="mean-crop", max_attempts=3, retry_delay=0.1)

    def errors(run: object) -> list[object]:
        return [r for r in run.by_status("error") if r.path == image]  # type: ignore[attr-defined]

    with running_watcher([root], catalog_path, opts) as run:
        wait_for(lambda: errors(run), 30, what="the refusal")
        run.wait_idle()
        time.sleep(1.0)  # where retries would come (0.1 s, then 0.2 s)
        run.wait_idle()
        assert len(errors(run)) == 1 and "xmp_version 1" in (errors(run)[0].error or "")
        assert not [r for r in run.by_status("deferred") if r.path == image]  # no "will retry"
        after_refusal = sidecar.read_bytes()
        assert b"xmp_version=\"1\"" in after_refusal
        st = image.stat()
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))  # an event, nothing changed
        time.sleep(1.0)
        run.wait_idle()
        assert len(errors(run)) == 1
    stamp = sidecar.stat().st_mtime_ns
    with running_watcher([root], catalog_path, opts) as run:  # a restart: the scan looks at it again
        wait_for(lambda: [r for r in run.by_status("unchanged") if r.path == image], 30, what="the rescan")
        run.wait_idle()
        assert errors(run) == [] and sidecar.stat().st_mtime_ns == stamp  # not reported, not rewritten
        # The user's darktable rewrites the sidecar (still version 1): pic tries again, and says so once more.
        sidecar.write_bytes(sidecar.read_bytes().replace(b"</x:xmpmeta>", b"<!-- darktable --></x:xmpmeta>"))
        wait_for(lambda: errors(run), 30, what="the second refusal")
        time.sleep(1.0)
        run.wait_idle()
        assert len(errors(run)) == 1
