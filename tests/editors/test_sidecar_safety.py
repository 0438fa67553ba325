"""Sidecars pic must leave alone or clean up: read-only ones, symlinks leading out of the folder, and the temp
files a killed write left behind (README "Reliability")."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from conftest import jpeg_bytes, make_photo
from pic_plugin.core.errors import ReadOnlySidecarError, SidecarError
from pic_plugin.core.geometry import Box
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors.sidecars import write_suggestion
from pic_plugin.editors.xmp import files as xmp_files
from pic_plugin.editors.xmp import read_sidecar, write_sidecar_atomic
from pic_plugin.library.scan import iter_images

XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description rdf:about="" xmlns:e="http://e/" e:v="1"/></rdf:RDF></x:xmpmeta>')


def _photo(folder: Path, name: str = "IMG.jpg") -> Path:
    path = folder / name
    path.write_bytes(jpeg_bytes(make_photo(120, 80)))
    return path


def _suggestion(image: Path) -> Suggestion:
    return Suggestion(str(image), Box(0.1, 0.1, 0.7, 0.9), 0.5, "free", (120, 80), "test")


@pytest.mark.parametrize("mode", [0o444, 0o400])
def test_read_only_sidecar_is_not_written(tmp_path: Path, mode: int) -> None:
    """Even for root (who may write anything), a sidecar without a write bit is the user's "do not touch"."""
    image = _photo(tmp_path)
    sidecar = tmp_path / "IMG.jpg.xmp"
    sidecar.write_bytes(XMP)
    sidecar.chmod(mode)
    ino = sidecar.stat().st_ino
    report = write_suggestion(image, _suggestion(image), 1, targets=("pic", "darktable"))
    assert not report.ok and report.files == []
    for target in ("pic", "darktable"):
        assert report.results[target].status == "error"
        assert report.results[target].message.endswith("read-only, not written")
    assert sidecar.read_bytes() == XMP and sidecar.stat().st_ino == ino  # not renamed over
    assert stat.S_IMODE(sidecar.stat().st_mode) == mode
    _, stamp = read_sidecar(sidecar)
    with pytest.raises(ReadOnlySidecarError):
        write_sidecar_atomic(sidecar, b"x", stamp)


def test_read_only_crs_sidecar_is_not_written_but_the_others_are(tmp_path: Path) -> None:
    image = _photo(tmp_path)
    crs = tmp_path / "IMG.xmp"
    crs.write_bytes(XMP)
    crs.chmod(0o444)
    report = write_suggestion(image, _suggestion(image), 1, targets=("pic", "darktable", "crs"))
    assert report.status("crs") == "error" and "read-only, not written" in report.results["crs"].message
    assert report.status("pic") == "written" and report.status("darktable") == "written"
    assert crs.read_bytes() == XMP


def test_symlinked_sidecar_outside_the_folder_is_refused(tmp_path: Path) -> None:
    """Decision (README "Reliability"): a link to a file in the photo's own folder is written through, a link
    to anywhere else is not written (a planted link must not make pic rewrite another file)."""
    photos, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    photos.mkdir()
    elsewhere.mkdir()
    image = _photo(photos)
    outside = elsewhere / "victim.xmp"
    outside.write_bytes(XMP)
    (photos / "IMG.jpg.xmp").symlink_to(outside)
    report = write_suggestion(image, _suggestion(image), 1)
    assert report.status("pic") == "error" and "outside the photo's folder" in report.results["pic"].message
    assert outside.read_bytes() == XMP and (photos / "IMG.jpg.xmp").is_symlink()

    inside = photos / "shared.xmp"
    inside.write_bytes(XMP)
    (photos / "IMG.jpg.xmp").unlink()
    (photos / "IMG.jpg.xmp").symlink_to("shared.xmp")
    report = write_suggestion(image, _suggestion(image), 1)
    assert report.ok and (photos / "IMG.jpg.xmp").is_symlink() and b"pic:Crop" in inside.read_bytes()
    with pytest.raises(SidecarError, match="outside"):
        (photos / "IMG.jpg.xmp").unlink()
        (photos / "IMG.jpg.xmp").symlink_to(outside)
        write_sidecar_atomic(photos / "IMG.jpg.xmp", b"x", read_sidecar(outside)[1])


def test_stale_temp_files_are_removed_by_the_next_walk(tmp_path: Path) -> None:
    _photo(tmp_path)
    (tmp_path / "sub").mkdir()
    _photo(tmp_path / "sub", "B.jpg")
    old = time.time() - 2 * xmp_files.STALE_TEMP_SECONDS
    stale = [tmp_path / ".pic-abc12345.xmp.tmp", tmp_path / "sub" / ".pic-zz_9a8b7.xmp.tmp"]
    for p in stale:
        p.write_bytes(b"")  # kill -9 right after mkstemp: an empty one
        os.utime(p, (old, old))
    fresh = tmp_path / ".pic-live0000.xmp.tmp"  # another pic writing right now: left alone
    fresh.write_bytes(XMP)
    foreign = [tmp_path / ".pic-notes.txt", tmp_path / "pic-abc12345.xmp.tmp", tmp_path / ".pic-.xmp.tmp"]
    for p in foreign:
        p.write_bytes(b"not ours")
        os.utime(p, (old, old))
    assert len(list(iter_images([tmp_path]))) == 2
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and all(p.exists() for p in foreign)
