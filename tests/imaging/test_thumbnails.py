"""Thumbnail cache: upright, small, made once, atomic, keyed by content."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import jpeg_bytes, make_photo
from pic_plugin.imaging import thumbnails
from pic_plugin.imaging.thumbnails import ThumbnailCache, default_cache_dir
from pic_plugin.library.scan import content_key


def test_thumbnail_is_upright_small_and_made_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upright = make_photo(400, 600, subject=(0.5, 0.2))
    photo = tmp_path / "rotated photo $x.jpg"
    photo.write_bytes(jpeg_bytes(upright.transpose(Image.Transpose.ROTATE_90), orientation=6))
    before = hashlib.sha256(photo.read_bytes()).hexdigest()
    cache = ThumbnailCache(tmp_path / "cache")
    key = content_key(photo)
    thumb = cache.get(photo, key, 300)
    assert thumb == cache.path_for(key, 300) and thumb.is_relative_to(tmp_path / "cache")
    with Image.open(thumb) as im:
        assert im.size == (200, 300)  # displayed frame: portrait, long side 300
        assert im.getpixel((100, 60))[0] > 150  # the bright subject is at the top, as the user sees it
    assert not list(thumb.parent.glob(".pic-*"))  # no temp files left behind

    def boom(*args: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(thumbnails, "render", boom)
    assert cache.get(photo, key, 300) == thumb
    assert hashlib.sha256(photo.read_bytes()).hexdigest() == before


def test_thumbnail_names_cannot_escape_the_cache(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "cache")
    for key in ("../../etc/passwd", "/abs/path", "a" * 32 + "/.."):
        assert cache.path_for(key, 100).resolve().is_relative_to((tmp_path / "cache").resolve())


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "pic" / "thumbs"


def test_concurrent_requests_render_a_thumbnail_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg_bytes(make_photo()))
    calls: list[int] = []
    real = thumbnails.render

    def counting(image: Path, size: int) -> Image.Image:
        calls.append(size)
        return real(image, size)

    monkeypatch.setattr(thumbnails, "render", counting)
    cache = ThumbnailCache(tmp_path / "cache", workers=2)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(photo, "ab" * 16, 200))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8 and len(set(results)) == 1 and calls == [200]
