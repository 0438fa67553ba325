"""The review page: decisions (library), the local server's security, paging at scale, the CLI, and an
end-to-end run in a real headless Chromium (Debian's, driven by Playwright).

Photos are generated; their CNN features are computed once per module and reused through a copied catalog, so
each test only pays for scoring. Servers bind 127.0.0.1 and are stopped by the tests themselves.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import REPO_ROOT, jpeg_bytes, make_photo, missing_requirement
from pic_plugin.core.geometry import Box, parse_ratio
from pic_plugin.editors import darktable
from pic_plugin.editors.sidecars import find_crops
from pic_plugin.editors.user_crop import write_user_crop
from pic_plugin.imaging import decode as decode_module
from pic_plugin.imaging.thumbnails import ThumbnailCache
from pic_plugin.library.batch import run_batch
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.options import BatchOptions
from pic_plugin.review.server import ReviewServer
from pic_plugin.review.session import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    ReviewConflict,
    ReviewError,
    ReviewOptions,
    ReviewSession,
)

USER = "me"
# Names a shell, an HTML page or a JSON encoder could get wrong.
NAMES = ["plain.jpg", "it's \"quoted\" $HOME.jpg", "new\nline.jpg", "rotated.jpg"]


def _photo_bytes() -> dict[str, bytes]:
    out = {}
    for i, name in enumerate(NAMES):
        if name == "rotated.jpg":
            upright = make_photo(400, 600, seed=i, subject=(0.5, 0.35))
            out[name] = jpeg_bytes(upright.transpose(Image.Transpose.ROTATE_90), orientation=6)
        else:
            out[name] = jpeg_bytes(make_photo(seed=i, subject=(0.3 + 0.15 * i, 0.45)))
    return out


@pytest.fixture(scope="module")
def feature_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], Path]:
    """The photos' bytes and a catalog holding their features (computed once for the module)."""
    root = tmp_path_factory.mktemp("template")
    photos = root / "photos"
    photos.mkdir()
    data = _photo_bytes()
    for name, raw in data.items():
        (photos / name).write_bytes(raw)
    with Catalog(root / "catalog.db") as catalog:
        run_batch([photos], BatchOptions(write=False, jobs=1), catalog)
        catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return data, root / "catalog.db"


@dataclass
class Env:
    photos: Path
    catalog: Catalog
    session: ReviewSession
    thumbs: ThumbnailCache

    def path(self, name: str) -> Path:
        return self.photos / name

    def id_of(self, name: str) -> int:
        rec = self.catalog.image(self.path(name))
        assert rec is not None
        return rec.id

    def originals(self) -> dict[str, str]:
        return {n: hashlib.sha256(self.path(n).read_bytes()).hexdigest() for n in NAMES}


@pytest.fixture
def env(tmp_path: Path, feature_template: tuple[dict[str, bytes], Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data, template = feature_template
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, raw in data.items():
        (photos / name).write_bytes(raw)
    shutil.copyfile(template, tmp_path / "catalog.db")
    catalog = Catalog(tmp_path / "catalog.db")
    # The same pipeline as `pic review` runs first: features come from the copied cache, nothing is written.
    run_batch([photos], BatchOptions(user=USER, write=False, jobs=1), catalog)
    session = ReviewSession.for_paths(catalog, [photos], ReviewOptions(user=USER))
    try:
        yield Env(photos, catalog, session, ThumbnailCache(tmp_path / "thumbs"))
    finally:
        catalog.close()


def _near(a: Box | list[float], b: Box | list[float], tol: float = 0.01) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _first_real_crop(alternatives: list[dict[str, Any]]) -> int:
    """Index of the first alternative that is a crop (the learned scorer may also offer the uncropped frame)."""
    return next(i for i, a in enumerate(alternatives) if Box(*a["crop"]).area < 0.99)


def _user_darktable_crops(image: Path) -> list[Box]:
    return [f.crop for f in find_crops(image, 1) if f.source == "darktable" and not f.is_pic_suggestion]


# --- decisions (library) ---------------------------------------------------------------------------------------


def test_session_lists_the_folder_in_order(env: Env) -> None:
    page = env.session.page(0)
    assert [p["name"] for p in page["photos"]] == sorted(NAMES)
    assert page["total"] == 4 and page["pages"] == 1
    p = page["photos"][0]
    assert p["status"] == "suggested" and len(p["alternatives"]) == 2 and 0 <= p["score"] <= 1
    rotated = env.session.photo(env.id_of("rotated.jpg"))
    assert rotated["size"] == [400, 600]  # displayed frame


def test_accept_writes_the_users_crop_and_a_later_batch_keeps_it(env: Env) -> None:
    before = env.originals()
    image = env.path(NAMES[1])
    photo = env.session.photo(env.id_of(NAMES[1]))
    index = _first_real_crop(photo["alternatives"])
    alt = photo["alternatives"][index]["crop"]
    out = env.session.accept(photo["id"], index=index + 1)
    assert out["status"] == "accepted" and out["decision"]["crop"] == alt
    mine = _user_darktable_crops(image)
    assert len(mine) == 1 and _near(mine[0], alt)
    row = env.catalog.user_crop(USER, photo["key"], "review")
    assert row is not None and row["weight"] == 0.5 and row["detail"]["decision"] == "accepted"
    assert env.catalog.suggestion(photo["id"], USER, "free")["status"] == "accepted"
    # pic batch later (even with another ratio, forcing a new suggestion) keeps the user's crop.
    run_batch([env.photos], BatchOptions(user=USER, ratio=parse_ratio("1:1"), jobs=1), env.catalog)
    mine = _user_darktable_crops(image)
    assert len(mine) == 1 and _near(mine[0], alt)
    assert env.originals() == before


def test_adjust_keeps_the_locked_ratio_and_counts_more(env: Env) -> None:
    pid = env.id_of("rotated.jpg")
    shown = env.session.set_ratio(pid, "4:5")
    assert shown["ratio"] == "4:5"
    out = env.session.adjust(pid, [0.1, 0.1, 0.83, 0.7])
    crop = Box(*out["decision"]["crop"])
    w, h = crop.width * 400, crop.height * 600
    assert abs(w / h - 0.8) < 0.01
    row = env.catalog.user_crop(USER, shown["key"], "review")
    assert row["weight"] == 1.0 and row["detail"]["decision"] == "adjusted"
    assert env.catalog.suggestion(pid, USER, "4:5")["status"] == "adjusted"
    # darktable gets the crop in its own frame; read back in pic's displayed frame it is the same box.
    (found,) = [f for f in find_crops(env.path("rotated.jpg"), 6) if f.source == "darktable"]
    assert _near(found.crop, crop) and not found.is_pic_suggestion


def test_reject_is_recorded_and_demotes_an_applied_crop(env: Env) -> None:
    image = env.path("plain.jpg")
    run_batch([env.photos], BatchOptions(user=USER, jobs=1), env.catalog)  # pic batch applies its crops
    assert [f for f in find_crops(image, 1) if f.source == "darktable" and f.is_pic_suggestion]
    pid = env.id_of("plain.jpg")
    out = env.session.reject(pid)
    assert out["status"] == "rejected"
    assert not [f for f in find_crops(image, 1) if f.source == "darktable"]  # no enabled crop any more
    row = env.catalog.user_crop(USER, out["key"], "review")
    assert row["weight"] == 0.0 and row["detail"]["decision"] == "rejected" and _near(row["crop"], out["crop"])
    with pytest.raises(ReviewConflict):  # an accepted crop is not rejected by accident
        env.session.accept(pid)
        env.session.reject(pid)


def test_a_later_batch_never_applies_a_crop_the_user_turned_down(env: Env) -> None:
    """Rejected on the page, or left uncropped: a later `pic batch` (even --refresh, even another ratio) offers its
    new crop in pic's metadata but does not apply it in darktable."""
    run_batch([env.photos], BatchOptions(user=USER, jobs=1), env.catalog)
    rejected, uncropped, other = env.path("plain.jpg"), env.path("rotated.jpg"), env.path(NAMES[1])
    env.session.reject(env.id_of("plain.jpg"))
    env.session.adjust(env.id_of("rotated.jpg"), [0.0, 0.0, 1.0, 1.0])
    for ratio in ("free", "4:5"):
        run_batch([env.photos], BatchOptions(user=USER, ratio=parse_ratio(ratio), refresh=True, jobs=1), env.catalog)
        for image in (rejected, uncropped):
            assert not [f for f in find_crops(image, 1) if f.source == "darktable" and f.is_pic_suggestion], image
            assert [f for f in find_crops(image, 1) if f.source == "pic"], image  # still offered
        assert [f for f in find_crops(other, 1) if f.source == "darktable" and f.is_pic_suggestion]  # applied
        sugg = env.catalog.suggestion(env.id_of("plain.jpg"), USER, ratio)
        assert sugg["status"] == "rejected" and sugg["written"]["held_back"] == "rejected"
        assert env.catalog.suggestion(env.id_of("rotated.jpg"), USER, ratio)["written"]["held_back"] == "uncropped"
    # --force is the way to apply anyway
    run_batch([env.photos], BatchOptions(user=USER, refresh=True, force=True, jobs=1), env.catalog)
    assert [f for f in find_crops(rejected, 1) if f.source == "darktable" and f.is_pic_suggestion]


def test_undo_restores_sidecars_and_catalog(env: Env) -> None:
    # A sidecar that did not exist before the decision is removed again.
    fresh = env.path(NAMES[1])
    env.session.accept(env.id_of(NAMES[1]))
    assert darktable.sidecar_path(fresh).exists()
    env.session.undo()
    assert not darktable.sidecar_path(fresh).exists()
    # One that existed gets its exact bytes back; decisions are undone last first.
    run_batch([env.photos], BatchOptions(user=USER, jobs=1), env.catalog)
    image = env.path("plain.jpg")
    sidecar = darktable.sidecar_path(image)
    before = sidecar.read_bytes()
    pid = env.id_of("plain.jpg")
    env.session.adjust(pid, [0.2, 0.2, 0.9, 0.9])
    env.session.reject(env.id_of("rotated.jpg"))
    assert sidecar.read_bytes() != before
    undone = env.session.undo()
    assert undone["id"] == env.id_of("rotated.jpg") and undone["status"] == "suggested"
    undone = env.session.undo()
    assert undone["id"] == pid and undone["status"] == "suggested" and undone["decision"] is None
    assert sidecar.read_bytes() == before
    assert env.catalog.user_crop(USER, undone["key"], "review") is None
    with pytest.raises(ReviewConflict, match="nothing to undo"):
        env.session.undo()


def test_undo_refuses_when_the_sidecar_changed_since(env: Env) -> None:
    pid = env.id_of("plain.jpg")
    env.session.accept(pid)
    sidecar = darktable.sidecar_path(env.path("plain.jpg"))
    edited = sidecar.read_bytes().replace(b"</x:xmpmeta>", b"<!-- edited in darktable --></x:xmpmeta>")
    sidecar.write_bytes(edited)
    with pytest.raises(ReviewConflict, match="changed since"):
        env.session.undo()
    assert sidecar.read_bytes() == edited
    assert env.catalog.suggestion(pid, USER, "free")["status"] == "accepted"


def test_a_crop_made_elsewhere_is_only_replaced_when_asked(env: Env) -> None:
    image = env.path("new\nline.jpg")  # a newline in the name, too
    write_user_crop(image, Box(0.05, 0.05, 0.6, 0.6), 1)  # as if the user had cropped in darktable
    pid = env.id_of("new\nline.jpg")
    with pytest.raises(ReviewConflict, match="your own crop"):
        env.session.accept(pid)
    assert _near(_user_darktable_crops(image)[0], [0.05, 0.05, 0.6, 0.6])
    env.session.accept(pid, replace=True)
    assert _near(_user_darktable_crops(image)[0], env.session.photo(pid)["crop"])


def test_accepting_beside_a_lightroom_crop_darktable_imports_adds_no_darktable_crop(env: Env) -> None:
    image = env.path("plain.jpg")
    lr = image.with_suffix(".xmp")  # Lightroom's IMG.xmp, which darktable imports on the first darkroom load
    lr.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/" crs:Version="15.0"'
        ' crs:CropTop="0.1" crs:CropLeft="0.1" crs:CropBottom="0.9" crs:CropRight="0.7" crs:CropAngle="0"'
        ' crs:HasCrop="True"/></rdf:RDF></x:xmpmeta>')
    lr_before = lr.read_bytes()
    pid = env.id_of("plain.jpg")
    with pytest.raises(ReviewConflict, match="your own crop"):
        env.session.accept(pid)
    out = env.session.accept(pid, replace=True)
    dt = out["written"]["targets"]["darktable"]
    assert dt["status"] == "skipped" and "crop twice" in dt["message"] and "plain.xmp" in dt["message"]
    assert "darktable" not in out["written"]["written"] and out["written"]["notes"]
    assert not [f for f in find_crops(image, 1) if f.source == "darktable"]  # darktable would crop twice
    assert lr.read_bytes() == lr_before
    assert out["decision"]["decision"] == "accepted"  # the decision is recorded all the same
    assert env.catalog.suggestion(pid, USER, "free")["status"] == "accepted"
    assert env.catalog.user_crops(USER)


def test_ratio_change_uses_cached_features(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded although features are cached")

    monkeypatch.setattr(decode_module, "decode", no_decode)
    monkeypatch.setattr("pic_plugin.library.analyze.decode", no_decode)
    out = env.session.set_ratio(env.id_of("plain.jpg"), "1:1")
    crop = Box(*out["crop"])
    assert out["ratio"] == "1:1" and abs(crop.width * 600 - crop.height * 400) <= 1


def test_without_a_user_decisions_are_written_but_not_learned(env: Env) -> None:
    session = ReviewSession.for_paths(env.catalog, [env.photos], ReviewOptions(user=None))
    run_batch([env.photos], BatchOptions(write=False, jobs=1), env.catalog)
    pid = env.id_of("plain.jpg")
    out = session.accept(pid)
    assert out["decision"]["decision"] == "accepted" and _user_darktable_crops(env.path("plain.jpg"))
    assert env.catalog.users() == [] and not env.catalog.user_crops(USER)
    assert session.state()["learns"] is False


def test_list_api_is_paged_on_5000_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = Catalog(tmp_path / "big.db")
    crop = json.dumps([0.1, 0.1, 0.9, 0.9])
    alts = json.dumps([{"crop": [0.0, 0.0, 0.8, 1.0], "score": 0.1}])
    with catalog.transaction():
        catalog.db.conn.executemany(
            "INSERT INTO images (id, path, file_size, mtime_ns, content_key, width, height, orientation, format)"
            " VALUES (?, ?, 1, 1, ?, 6000, 4000, 1, 'jpeg')",
            [(i, f"/photos/{i:05d}.jpg", f"{i:032x}") for i in range(1, 5001)],
        )
        catalog.db.conn.executemany(
            "INSERT INTO suggestions (image_id, user, ratio, model, crop, score, alternatives, top_k, status)"
            " VALUES (?, '', 'free', 'm', ?, 0.5, ?, 2, 'suggested')",
            [(i, crop, alts) for i in range(1, 5001)],
        )
    session = ReviewSession(catalog, range(1, 5001), ReviewOptions())
    serialized: list[int] = []
    original = ReviewSession._photo_json

    def counting(self: ReviewSession, image_id: int) -> dict[str, Any]:
        serialized.append(image_id)
        return original(self, image_id)

    monkeypatch.setattr(ReviewSession, "_photo_json", counting)
    with _serve(session, tmp_path) as server:
        status, _, body = _api(server, "GET", "api/photos?page=10")
        assert status == 200
        page = json.loads(body)
        assert page["total"] == 5000 and page["pages"] == 5000 // PAGE_SIZE + 1
        assert [p["id"] for p in page["photos"]] == list(range(601, 601 + PAGE_SIZE))
        assert serialized == list(range(601, 601 + PAGE_SIZE))  # only that page was read and serialized
        assert len(body) < PAGE_SIZE * 600
        serialized.clear()
        status, _, body = _api(server, "GET", "api/photos?page=0&size=1000000")
        assert len(json.loads(body)["photos"]) == MAX_PAGE_SIZE == len(serialized)
        status, _, body = _api(server, "GET", "api/photos?page=999")
        assert status == 200 and json.loads(body)["photos"] == []
    catalog.close()


# --- the server: security --------------------------------------------------------------------------------------


@contextmanager
def _serve(session: ReviewSession, tmp_path: Path) -> Iterator[ReviewServer]:
    server = ReviewServer(session, thumbnails=ThumbnailCache(tmp_path / "thumbs")).start()
    try:
        yield server
    finally:
        server.stop()


def _request(server: ReviewServer, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A raw request: the path is sent exactly as given (no normalization of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{server.port}")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _api(server: ReviewServer, method: str, route: str, body: dict[str, Any] | None = None,
         **overrides: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"X-Pic-Token": server.token}
    data = None
    if method == "POST":
        headers.update({"Origin": server.origin, "Content-Type": "application/json"})
        data = json.dumps(body or {}).encode()
    headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
    headers = {k: v for k, v in headers.items() if v != ""}
    return _request(server, method, f"/t/{server.token}/{route}", headers, data)


def test_server_is_loopback_only_with_a_strict_policy(env: Env, tmp_path: Path) -> None:
    with _serve(env.session, tmp_path) as server:
        assert server.httpd.server_address[0] == "127.0.0.1"
        assert server.url.startswith(f"http://127.0.0.1:{server.port}/t/") and len(server.token) >= 32
        status, headers, body = _request(server, "GET", f"/t/{server.token}/")
        assert status == 200 and server.token.encode() in body
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
        for asset in ("review.js", "review.css", "icon.svg"):
            assert _request(server, "GET", f"/t/{server.token}/static/{asset}")[0] == 200
        # The page loads nothing from outside: no absolute URLs in its assets.
        for asset in ("review.html", "review.js", "review.css"):
            text = (REPO_ROOT / "pic_plugin" / "review" / "web" / asset).read_text()
            assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_requests_without_the_token_are_refused(env: Env, tmp_path: Path) -> None:
    pid = env.id_of("plain.jpg")
    with _serve(env.session, tmp_path) as server:
        t = server.token
        # A token that differs in its last character (never equal to the real one, whatever it ends with).
        wrong = t[:-1] + ("x" if t[-1] != "x" else "y")
        for path in ("/", "/api/state", f"/img/{pid}/thumb", "/static/review.js", f"/t/{wrong}/",
                     f"/t/{wrong}/api/state", f"/t/{wrong}/img/{pid}/thumb", "/t//", f"/?token={t}"):
            status, _, body = _request(server, "GET", path, {"X-Pic-Token": t})
            assert status == 403, path
            assert b"plain" not in body and t.encode() not in body
        # API calls need the header too (a plain link or <img> elsewhere cannot read the API).
        status, _, _ = _api(server, "GET", "api/state", X_Pic_Token="")
        assert status == 403
        status, _, _ = _api(server, "GET", "api/state", X_Pic_Token="wrong")
        assert status == 403
        assert _api(server, "GET", "api/state")[0] == 200


def test_paths_cannot_escape_and_only_this_reviews_photos_are_served(env: Env, tmp_path: Path) -> None:
    other = tmp_path / "other.jpg"
    other.write_bytes(jpeg_bytes(make_photo(seed=9)))
    other_id = env.catalog.upsert_image(other, content_key="ab" * 16, width=600, height=400, orientation=1)
    pid = env.id_of("plain.jpg")
    with _serve(env.session, tmp_path) as server:
        t = server.token
        status, headers, body = _request(server, "GET", f"/t/{t}/img/{pid}/thumb")
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        bad = [
            f"/t/{t}/../../../../etc/passwd",
            f"/t/{t}/static/../../review_session.py",
            f"/t/{t}/static/%2e%2e/review_session.py",
            f"/t/{t}/static/..%2freview.py",
            f"/t/{t}/static/review.html",
            f"/t/{t}//etc/passwd",
            f"/t/{t}/img/..%2f..%2fetc%2fpasswd/thumb",
            f"/t/{t}/img/{pid}/../../../etc/passwd",
            f"/t/{t}/img/{pid}/original",
            f"/t/{t}/img/{other_id}/thumb",  # in the catalog, but not part of this review
            f"/t/{t}/img/99999/thumb",
            f"/t/{t}/etc/passwd",
            f"/t/{t}/{os.fsdecode(env.path('plain.jpg'))}",
            f"/t/{t}/img/{os.fsdecode(env.path('plain.jpg'))}",
            f"/t/{t}/img/-1/thumb",
        ]
        for path in bad:
            status, _, body = _request(server, "GET", path)
            assert status in (403, 404), path
            assert b"root:" not in body and b"\xff\xd8" not in body[:2] and b"import" not in body, path
        for route in (f"api/photos/{other_id}", f"api/photos/{other_id}/accept", "api/photos/../photos"):
            method = "POST" if route.endswith("accept") else "GET"
            assert _api(server, method, route)[0] == 404, route
        # Absolute URLs with another host in the request line do not reach anything either.
        assert _request(server, "GET", f"http://evil.example/t/{t}/")[0] in (403, 404)


def test_dns_rebinding_host_headers_are_refused(env: Env, tmp_path: Path) -> None:
    with _serve(env.session, tmp_path) as server:
        for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1", f"127.0.0.1:{server.port + 1}",
                     f"localhost.evil.example:{server.port}", ""):
            status, _, _ = _request(server, "GET", f"/t/{server.token}/api/state", {"X-Pic-Token": server.token},
                                    host=host)
            assert status == 403, host
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
            assert _request(server, "GET", f"/t/{server.token}/", host=host)[0] == 200


def test_another_origin_cannot_write(env: Env, tmp_path: Path) -> None:
    pid = env.id_of("plain.jpg")
    with _serve(env.session, tmp_path) as server:
        route = f"api/photos/{pid}/accept"
        attempts = [
            {"Origin": "http://evil.example"},
            {"Origin": f"http://127.0.0.1:{server.port + 1}"},
            {"Origin": "null"},
            {"Origin": ""},  # no Origin at all
            {"Origin": f"http://localhost:{server.port}"},  # not the origin of the Host it talks to
            {"Content-Type": "text/plain"},  # a "simple" request a cross-site form or no-cors fetch can send
            {"Content-Type": "application/x-www-form-urlencoded"},
            {"Sec-Fetch-Site": "cross-site"},
            {"X-Pic-Token": ""},
        ]
        for headers in attempts:
            status, _, _ = _api(server, "POST", route, {"index": 0}, **{k.replace("-", "_"): v for k, v in headers.items()})
            assert status in (403, 415), headers
        # No CORS preflight is ever granted.
        status, headers, _ = _request(server, "OPTIONS", f"/t/{server.token}/{route}",
                                      {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert status == 405 and "Access-Control-Allow-Origin" not in headers
        assert env.catalog.suggestion(pid, USER, "free")["status"] == "suggested"
        assert not darktable.sidecar_path(env.path("plain.jpg")).exists()
        # The page's own origin can.
        status, _, body = _api(server, "POST", route, {"index": 0})
        assert status == 200, body
        assert json.loads(body)["status"] == "accepted"


def test_api_errors_are_json_without_internals(env: Env, tmp_path: Path) -> None:
    pid = env.id_of("plain.jpg")
    with _serve(env.session, tmp_path) as server:
        for route, body in ((f"api/photos/{pid}/accept", {"index": 7}), (f"api/photos/{pid}/adjust", {"crop": [1, 2]}),
                            (f"api/photos/{pid}/adjust", {"crop": [0.5, 0.5, 0.4, 0.4]}),
                            (f"api/photos/{pid}/ratio", {"ratio": "banana"})):
            status, _, data = _api(server, "POST", route, body)
            assert status == 400, route
            assert "error" in json.loads(data) and b"Traceback" not in data and b"/" not in data.split(b'"error"')[0]
        status, _, data = _api(server, "POST", "api/undo")
        assert status == 409 and json.loads(data)["error"] == "nothing to undo"
        raw = b"x" * (70 * 1024)
        status, _, _ = _request(server, "POST", f"/t/{server.token}/api/undo",
                                {"X-Pic-Token": server.token, "Origin": server.origin,
                                 "Content-Type": "application/json"}, raw)
        assert status == 413


# --- the commands ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_pic_review_command_serves_until_stopped(env: Env, tmp_path: Path, stop: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pic_cli.main", "review", str(env.photos), "--user", USER, "--no-browser",
         "--catalog", str(env.catalog.path), "-j", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        # started the way a shell starts a background job: SIGINT ignored (Ctrl-C must still stop it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        line = _readline(proc, timeout=90)
        assert line.startswith("4 photos to review at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].strip()
        port = int(url.split(":")[2].split("/")[0])
        token = url.rstrip("/").rsplit("/", 1)[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("GET", f"/t/{token}/api/state", headers={"X-Pic-Token": token})
        state = json.loads(conn.getresponse().read())
        conn.close()
        assert state["total"] == 4 and state["user"] == USER and "4:5" in state["ratios"]
        # Accept one suggestion, then stop (SIGTERM as a service manager does, or Ctrl-C): the decision
        # fine-tunes the user's model once.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("POST", f"/t/{token}/api/photos/{env.id_of('plain.jpg')}/accept", body=b'{"index": 0}',
                     headers={"X-Pic-Token": token, "Origin": f"http://127.0.0.1:{port}",
                              "Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
        # a browser tab closed while its page loads: reset before reading the answer
        import socket

        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"GET /t/{token}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        _rude_close(sock)
        time.sleep(0.5)
        env.catalog.close()  # the test's own connection must not be the one that keeps the WAL open
        proc.send_signal(getattr(signal, stop))
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        assert f"{USER}: fine-tuned on 1 crops" in err and "model version 1" in err
        catalog_path = env.catalog.path
        assert not [p.name for p in catalog_path.parent.iterdir() if p.name.startswith(catalog_path.name + "-")]
        with Catalog(catalog_path) as catalog:
            assert catalog.active_model(USER)[0] == 1  # type: ignore[index]
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=20)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_review_and_report_usage_errors_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pic_cli.main import cli

    runner = CliRunner()
    assert runner.invoke(cli, ["review"]).exit_code == 2
    assert runner.invoke(cli, ["review", str(tmp_path / "missing")]).exit_code == 2
    assert runner.invoke(cli, ["review", str(tmp_path), "--targets", "photoshop"]).exit_code == 2
    assert runner.invoke(cli, ["report", str(tmp_path)]).exit_code == 2  # --html is required
    assert runner.invoke(cli, ["report", str(tmp_path), "--html", str(tmp_path / "o"), "--ratio", "x"]).exit_code == 2


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not box:
        raise AssertionError("pic review printed no address in time")
    return box[0]


# --- a real browser ---------------------------------------------------------------------------------------------

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def _browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


def _wait(page: Any, js: str, arg: Any = None, timeout: float = 30.0) -> None:
    """Poll ``js`` (a function) until it is true. (Playwright's wait_for_function evaluates strings inside the
    page, which the review page's CSP forbids, as it should; ``evaluate`` goes through the debugger.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(js, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {js}")
        time.sleep(0.05)


def _select(page: Any, name: str) -> None:
    page.locator("figure.card", has_text=name.split("\n")[0]).first.click()
    shown = name.replace("\n", "\\n")  # control characters are shown escaped, as the CLI prints them
    _wait(page, "n => document.querySelector('figure.card.selected .name').textContent === n", shown)


@pytest.mark.slow
def test_review_page_end_to_end_in_chromium(env: Env, tmp_path: Path, chromium: str) -> None:
    before = env.originals()
    accepted = NAMES[1]  # the name with quotes and a $
    adjusted = "rotated.jpg"
    with _serve(env.session, tmp_path) as server, _browser(chromium) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(server.origin) else outside.append(r.url))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        assert page.locator("figure.card").count() == 4
        _wait(page, "() => [...document.images].filter(i => i.closest('.card')).every(i => i.complete && i.naturalWidth > 0)")

        # Keyboard: select the photo, N picks the next alternative (the first one that crops), Enter accepts it.
        _select(page, accepted)
        alternatives = env.session.photo(env.id_of(accepted))["alternatives"]
        alt = alternatives[_first_real_crop(alternatives)]["crop"]
        for _ in range(_first_real_crop(alternatives) + 1):
            page.keyboard.press("n")
        page.keyboard.press("Enter")
        page.wait_for_selector("figure.card.accepted")
        assert "accepted" in page.locator("#message").inner_text()

        # Drag: open the large view on the rotated photo, drag the bottom-right handle up and left, save.
        _select(page, adjusted)
        page.keyboard.press("Space")
        _wait(page, "() => document.getElementById('large-img').naturalWidth > 0")
        start = env.session.photo(env.id_of(adjusted))["crop"]
        handle = page.locator("#editor .handle[data-h='se']").bounding_box()
        img = page.locator("#large-img").bounding_box()
        x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 0.2 * img["width"], y - 0.15 * img["height"], steps=8)
        page.mouse.up()
        assert "adjusted" in page.locator("#large-info").inner_text()
        page.keyboard.press("Enter")
        _wait(page, "() => document.getElementById('message').textContent.startsWith('adjusted')")
        page.keyboard.press("Escape")
        page.wait_for_selector("figure.card.adjusted")

        # R twice: free -> original -> 1:1, suggested anew; a drag in the large view keeps the square.
        _select(page, "plain.jpg")
        page.keyboard.press("r")
        _wait(page, "() => document.getElementById('message').textContent.endsWith('ratio original')")
        page.keyboard.press("r")
        _wait(page, "() => document.getElementById('message').textContent.endsWith('ratio 1:1')")
        page.keyboard.press("v")
        _wait(page, "() => document.getElementById('large-img').naturalWidth > 0")
        handle = page.locator("#editor .handle[data-h='w']").bounding_box()
        x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 40, y + 25, steps=5)
        page.mouse.up()
        box = page.locator("#editor").bounding_box()
        assert abs(box["width"] - box["height"]) <= 2  # the locked ratio holds while dragging
        page.keyboard.press("Enter")
        _wait(page, "() => document.getElementById('message').textContent.startsWith('adjusted')")
        page.keyboard.press("Escape")
        square = env.catalog.user_crop(USER, env.session.photo(env.id_of("plain.jpg"))["key"], "review")["crop"]
        assert abs(square.width * 600 - square.height * 400) <= 1
        # U undoes the last decision: the photo is to review again and its new sidecar is gone.
        page.keyboard.press("u")
        _wait(page, "() => document.getElementById('message').textContent.startsWith('undone: adjusted')")
        assert not darktable.sidecar_path(env.path("plain.jpg")).exists()
        assert env.catalog.suggestion(env.id_of("plain.jpg"), USER, "1:1")["status"] == "suggested"
        page.keyboard.press("?")
        shot = tmp_path / "review.png"
        page.screenshot(path=str(shot))
        if os.environ.get("PIC_REVIEW_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["PIC_REVIEW_SCREENSHOT"])
        assert not errors and not outside

    # Sidecars: both crops are the user's own in darktable's sidecar; catalog: statuses and learning rows.
    acc_id, adj_id = env.id_of(accepted), env.id_of(adjusted)
    (acc_crop,) = _user_darktable_crops(env.path(accepted))
    assert _near(acc_crop, alt)
    (adj_found,) = [f for f in find_crops(env.path(adjusted), 6) if f.source == "darktable"]
    assert not adj_found.is_pic_suggestion
    assert adj_found.crop.left == pytest.approx(start[0], abs=0.01) and adj_found.crop.top == pytest.approx(start[1], abs=0.01)
    assert adj_found.crop.right < start[2] - 0.1 and adj_found.crop.bottom < start[3] - 0.08
    assert env.catalog.suggestion(acc_id, USER, "free")["status"] == "accepted"
    assert env.catalog.suggestion(adj_id, USER, "free")["status"] == "adjusted"
    weights = {r["path"]: (r["weight"], r["detail"]["decision"]) for r in env.catalog.user_crops(USER)}
    assert weights == {os.fsdecode(env.path(accepted)): (0.5, "accepted"),
                       os.fsdecode(env.path(adjusted)): (1.0, "adjusted")}
    assert env.originals() == before


class _AttackPage(BaseHTTPRequestHandler):
    """A page on another origin that tries to write to the review server the ways a browser allows."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802
        body = f"""<!doctype html><body><form id=f method=POST action="{self.target}" enctype="text/plain">
<input name='{{"index":0,"x":"' value='"}}'></form><script>
fetch("{self.target}", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body: '{{"index": 0}}'}}).finally(() => {{ document.title = "sent"; }});
fetch("{self.target}", {{method: "POST", headers: {{"Content-Type": "application/json", "X-Pic-Token": "guess"}},
  body: '{{"index": 0}}'}}).catch(() => {{ document.body.dataset.cors = "blocked"; }});
</script></body>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_a_page_from_another_origin_cannot_write_in_chromium(env: Env, tmp_path: Path, chromium: str) -> None:
    pid = env.id_of("plain.jpg")
    with _serve(env.session, tmp_path) as server, _browser(chromium) as browser:
        _AttackPage.target = f"{server.url}api/photos/{pid}/accept"
        attacker = ThreadingHTTPServer(("127.0.0.1", 0), _AttackPage)
        threading.Thread(target=attacker.serve_forever, daemon=True).start()
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
            _wait(page, "() => document.title === 'sent' && document.body.dataset.cors === 'blocked'")
            page.evaluate("document.getElementById('f').submit()")
            page.wait_for_load_state()
            time.sleep(0.3)
        finally:
            attacker.shutdown()
            attacker.server_close()
    assert env.catalog.suggestion(pid, USER, "free")["status"] == "suggested"
    assert not darktable.sidecar_path(env.path("plain.jpg")).exists()
    assert env.session.state()["undo"] == 0


# --- hostile requests (issue 15) -------------------------------------------------------------------------------


@pytest.mark.parametrize("crop", [[-1e308, -5, 1e308, 7], [0.1, 0.1, 0.5, 1e308], [-0.5, 0.2, 0.6, 0.9],
                                  [0.2, 0.2, 1.7, 0.9], [0.3, 0.3, 0.3005, 0.9], [0.1, 0.1, 0.9, 0.1001]])
def test_adjust_refuses_numbers_outside_the_frame_or_too_small(env: Env, tmp_path: Path, crop: list[float]) -> None:
    pid = env.id_of("plain.jpg")
    with _serve(env.session, tmp_path) as server:
        status, _, data = _api(server, "POST", f"api/photos/{pid}/adjust", {"crop": crop})
    assert status == 400 and "error" in json.loads(data)
    assert env.catalog.suggestion(pid, USER, "free")["status"] == "suggested"
    assert env.catalog.user_crops(USER) == []
    assert not darktable.sidecar_path(env.path("plain.jpg")).exists()
    for bad in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ReviewError):
            env.session.adjust(pid, [0.1, 0.1, float(bad), 0.9])


def test_deeply_nested_json_is_a_400(env: Env, tmp_path: Path) -> None:
    with _serve(env.session, tmp_path) as server:
        body = b"[" * 30000 + b"]" * 30000
        status, _, data = _request(server, "POST", f"/t/{server.token}/api/undo",
                                   {"X-Pic-Token": server.token, "Origin": server.origin,
                                    "Content-Type": "application/json"}, body)
    assert status == 400 and b"Traceback" not in data


def test_the_listen_backlog_holds_a_burst(env: Env, tmp_path: Path) -> None:
    """180 parallel POSTs reset 67 connections with the default backlog of 5 (issue 15): the listening socket's
    backlog, as the kernel reports it, must hold such a burst, and the burst itself must be answered."""
    import concurrent.futures

    ss = shutil.which("ss")
    if ss is None:
        missing_requirement("ss (iproute2) reports the listen backlog")
    with _serve(env.session, tmp_path) as server:
        out = subprocess.run([ss, "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True).stdout
        backlog = int(out.split()[2])  # State Recv-Q Send-Q(=backlog) Local Peer
        start = threading.Barrier(60)

        def state() -> int:
            start.wait()
            return _api(server, "GET", "api/state")[0]

        with concurrent.futures.ThreadPoolExecutor(60) as pool:
            statuses = [f.result() for f in [pool.submit(state) for _ in range(180)]]
    assert backlog >= 128
    assert statuses == [200] * 180


def test_the_page_says_no_crop_for_the_whole_frame_and_gives_pixels_in_chromium(env: Env, tmp_path: Path,
                                                                                 chromium: str) -> None:
    whole, cropped = env.id_of("plain.jpg"), env.id_of("rotated.jpg")
    with env.catalog.transaction():
        env.catalog.db.conn.execute("UPDATE suggestions SET crop = ?, alternatives = '[]' WHERE image_id = ?",
                                    (json.dumps([0.0, 0.0, 1.0, 1.0]), whole))
        env.catalog.db.conn.execute("UPDATE suggestions SET crop = ?, alternatives = '[]' WHERE image_id = ?",
                                    (json.dumps([0.0, 0.0, 0.5, 1.0]), cropped))
    w, h = env.session.photo(cropped)["size"]
    with _serve(env.session, tmp_path) as server, _browser(chromium) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        card = page.locator(f"figure.card[data-id='{whole}']")
        assert "no crop suggested" in card.inner_text() and "confidence" not in card.inner_text()
        assert card.locator(".crop").count() == 0  # no white border around the whole photo
        other = page.locator(f"figure.card[data-id='{cropped}']").inner_text()
        assert f"{round(w / 2)} x {h}" in other and "confidence" in other
        # the header counts the photos reviewed, and follows each decision and undo
        assert "4 photos · 0 reviewed" in page.locator("#summary").inner_text()
        _select(page, "rotated.jpg")
        page.keyboard.press("x")
        _wait(page, "() => document.getElementById('summary').textContent.includes('1 reviewed')")
        page.keyboard.press("u")
        _wait(page, "() => document.getElementById('summary').textContent.includes('0 reviewed')")


def _rude_close(sock: Any) -> None:
    """Close as a browser tab does when it goes away: a reset (RST), not a polite FIN."""
    import socket
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_browser_that_goes_away_mid_request_is_no_traceback(env: Env, tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    import socket

    with _serve(env.session, tmp_path) as server:
        host = f"Host: 127.0.0.1:{server.port}\r\n"
        photo = env.id_of("plain.jpg")
        requests = [
            f"GET /t/{server.token}/ HTTP/1.1\r\n{host}\r\n",  # the page, then gone before reading it
            f"GET /t/{server.token}/img/{photo}/preview HTTP/1.1\r\n{host}\r\n",  # a large answer
            f"GET /t/{server.token}/ HTTP/1.1\r\n{host}",  # the request cut in the middle of its headers
            f"POST /t/{server.token}/api/undo HTTP/1.1\r\n{host}Content-Length: 500\r\n\r\n{{",  # body cut short
            "GET /t/",  # the request line cut short
        ]
        for raw in requests:
            for pause in (0.0, 0.3):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.sendall(raw.encode())
                time.sleep(pause)
                _rude_close(sock)
        time.sleep(0.5)
        # The server still answers afterwards.
        status, _, _ = _api(server, "GET", "api/state")
        assert status == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err


def test_the_page_has_a_ratio_picker_and_filters(env: Env, tmp_path: Path) -> None:
    with _serve(env.session, tmp_path) as server:
        status, _, page = _api(server, "GET", "")
    assert status == 200
    html = page.decode()
    assert 'id="ratio-picker"' in html  # filled from api/state's ratios by the script
    for value, label in (("review", "to review"), ("cropped", "cropped"), ("uncropped", "uncropped"),
                         ("rejected", "rejected")):
        assert f'<option value="{value}">{label}</option>' in html


@pytest.mark.slow
def test_ratio_picker_and_filters_in_chromium(env: Env, tmp_path: Path, chromium: str) -> None:
    rejected = "plain.jpg"
    with _serve(env.session, tmp_path) as server, _browser(chromium) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        options = page.eval_on_selector_all("#ratio-picker option", "os => os.map(o => o.value)")
        assert "4:5" in options and "1:1" in options
        _select(page, rejected)
        pid = env.id_of(rejected)
        page.select_option("#ratio-picker", "1:1")  # the picker does what R does: a new suggestion in 1:1
        _wait(page, "() => document.querySelector('#message').textContent.includes('ratio 1:1')")
        assert env.session.photo(pid)["ratio"] == "1:1"
        page.keyboard.press("x")
        page.wait_for_selector("figure.card.rejected")
        visible = "() => [...document.querySelectorAll('figure.card')].filter(f => !f.hidden).length"
        for value, count in (("rejected", 1), ("review", 3), ("all", 4)):
            page.select_option("#filter", value)
            _wait(page, f"() => ({visible})() === {count}")
        assert not errors, errors


# --- the subject pic framed (issue 13) ---------------------------------------------------------------------------


def test_photos_carry_the_subject_pic_framed(env: Env, tmp_path: Path) -> None:
    pid = env.id_of("plain.jpg")
    photo = env.session.photo(pid)
    assert "subject" in photo and "subject_kind" in photo
    # Whatever the finder saw on a generated photo, the API has exactly what batch stored: a box or null.
    stored = env.catalog.suggestion(pid, USER, "free")
    assert stored is not None
    if stored["subject"] is None:
        assert photo["subject"] is None
    else:
        assert _near(photo["subject"], stored["subject"], 1e-4)
    # A box and a kind, as batch stores them, reach the page's list; null stays null.
    with env.catalog.transaction():
        env.catalog.db.conn.execute("UPDATE suggestions SET subject = ?, subject_kind = 'dog' WHERE image_id = ?",
                                    (json.dumps([0.2, 0.3, 0.6, 0.9]), pid))
        env.catalog.db.conn.execute("UPDATE suggestions SET subject = NULL, subject_kind = NULL WHERE image_id != ?",
                                    (pid,))
    with _serve(env.session, tmp_path) as server:
        status, _, body = _api(server, "GET", "api/photos")
    assert status == 200
    by_id = {p["id"]: p for p in json.loads(body)["photos"]}
    assert by_id[pid]["subject"] == [0.2, 0.3, 0.6, 0.9] and by_id[pid]["subject_kind"] == "dog"
    assert all(p["subject"] is None and p["subject_kind"] is None for i, p in by_id.items() if i != pid)


def test_a_new_ratio_keeps_the_subject(env: Env) -> None:
    pid = env.id_of("rotated.jpg")
    before = env.catalog.suggestion(pid, USER, "free")
    assert before is not None
    after = env.session.set_ratio(pid, "1:1")
    assert after["ratio"] == "1:1"
    if before["subject"] is None:
        assert after["subject"] is None
    else:
        assert _near(after["subject"], before["subject"], 1e-3) and after["subject_kind"] == before["subject_kind"]


# --- the 100% view (issue 16) -----------------------------------------------------------------------------------


def _served_image(body: bytes) -> Image.Image:
    img = Image.open(__import__("io").BytesIO(body))
    img.load()
    return img


def test_the_100_percent_view_is_full_size_and_upright(env: Env, tmp_path: Path) -> None:
    pid = env.id_of("rotated.jpg")  # stored 600x400 with EXIF orientation 6; displayed 400x600
    upright = make_photo(400, 600, seed=NAMES.index("rotated.jpg"), subject=(0.5, 0.35))
    with _serve(env.session, tmp_path) as server:
        status, headers, body = _request(server, "GET", f"/t/{server.token}/img/{pid}/full?v=x")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert "max-age" in headers["Cache-Control"] and "private" in headers["Cache-Control"]
        status, _, plan = _api(server, "GET", f"api/photos/{pid}/full")
    img = _served_image(body)
    assert img.size == (400, 600) == tuple(env.session.photo(pid)["size"])
    assert img.getexif().get(0x0112, 1) == 1  # the rotation is in the pixels: a browser must not turn it again
    import numpy as np

    served = np.asarray(img.convert("RGB"), dtype=np.float32)
    assert np.abs(served - np.asarray(upright, dtype=np.float32)).mean() < 6  # the JPEG's loss, nothing more
    flipped = np.asarray(upright.transpose(Image.Transpose.ROTATE_180), dtype=np.float32)
    assert np.abs(served - flipped).mean() > 15
    assert status == 200 and json.loads(plan) == {"size": [400, 600], "full": [400, 600], "scale": 1.0, "note": None}


def test_the_100_percent_view_serves_only_this_reviews_photos(env: Env, tmp_path: Path) -> None:
    other = tmp_path / "other.jpg"
    other.write_bytes(jpeg_bytes(make_photo(seed=9)))
    other_id = env.catalog.upsert_image(other, content_key="cd" * 16, width=600, height=400, orientation=1)
    pid = env.id_of("plain.jpg")
    with _serve(env.session, tmp_path) as server:
        t = server.token
        for path in (f"/t/{t}/img/99999/full", f"/t/{t}/img/{other_id}/full", f"/t/{t}/img/-1/full",
                     f"/t/{t}/img/{pid}/full/../../../etc/passwd", f"/t/{t}/img/..%2fother.jpg/full",
                     f"/t/{t}/img/{os.fsdecode(other)}/full"):
            status, _, body = _request(server, "GET", path)
            assert status == 404, path
            assert body[:2] != b"\xff\xd8", path
        for route in ("api/photos/99999/full", f"api/photos/{other_id}/full"):
            assert _api(server, "GET", route)[0] == 404, route
        assert _request(server, "GET", f"/t/{t[:-1]}/img/{pid}/full")[0] == 403  # the token, as everywhere
        assert _api(server, "GET", f"api/photos/{pid}/full", X_Pic_Token="")[0] == 403
        assert _api(server, "POST", f"api/photos/{pid}/full")[0] == 404  # nothing to write there


def test_the_100_percent_view_stays_within_the_decode_budget(env: Env, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    pid = env.id_of("plain.jpg")  # 600x400 RGB: 0.9 MiB to decode at full size
    png = env.photos / "huge.png"
    Image.new("RGB", (900, 700), (10, 20, 30)).save(png)
    png_id = env.catalog.upsert_image(png, content_key="ef" * 16, width=900, height=700, orientation=1)
    third = env.id_of(NAMES[1])
    session = ReviewSession(env.catalog, [pid, third, png_id], ReviewOptions(user=USER))
    monkeypatch.setattr(decode_module, "MAX_DECODE_BYTES", 600 * 400 * 4 // 2)  # the full JPEG does not fit
    with _serve(session, tmp_path) as server:
        # A JPEG is decoded reduced (DCT scaling) and the plan says so, in words.
        status, _, plan = _api(server, "GET", f"api/photos/{pid}/full")
        assert status == 200
        plan_json = json.loads(plan)
        assert plan_json["size"] == [300, 200] and plan_json["full"] == [600, 400] and plan_json["scale"] == 0.5
        assert "1/2" in plan_json["note"] and "MiB" in plan_json["note"]
        status, _, body = _request(server, "GET", f"/t/{server.token}/img/{pid}/full")
        assert status == 200 and _served_image(body).size == (300, 200)
        # A PNG cannot be decoded reduced: refused with a clear message, a JSON error, no traceback.
        for status, _, data in (_api(server, "GET", f"api/photos/{png_id}/full"),
                                _request(server, "GET", f"/t/{server.token}/img/{png_id}/full")):
            assert status == 422
            error = json.loads(data)["error"]
            assert "too large for a 100% view" in error and "MiB" in error and str(png) not in error
        # Even 1/8 over the budget: refused the same way.
        monkeypatch.setattr(decode_module, "MAX_DECODE_BYTES", 1000)
        status, _, data = _request(server, "GET", f"/t/{server.token}/img/{third}/full")
        assert status == 422 and "too large for a 100% view" in json.loads(data)["error"]
        assert _api(server, "GET", "api/state")[0] == 200  # and the server goes on
    err = capfd.readouterr().err
    assert "Traceback" not in err, err


def test_the_page_has_the_100_percent_view_and_the_subject_toggle(env: Env, tmp_path: Path) -> None:
    with _serve(env.session, tmp_path) as server:
        status, _, page = _api(server, "GET", "")
    assert status == 200
    html = page.decode()
    assert '<button id="zoom-button" type="button"' in html and ">100%</button>" in html
    assert '<button id="large-zoom" type="button"' in html and "100% (Z)" in html
    assert '<input id="show-subject" type="checkbox">' in html and "show subject" in html
    assert 'id="show-subject" type="checkbox" checked' not in html  # off by default
    assert '<section id="zoom" hidden' in html and 'id="zoom-img"' in html and 'id="zoom-crop"' in html
    assert "<dt>Z</dt>" in html and "<dt>S</dt>" in html


@pytest.mark.slow
def test_100_percent_view_and_subject_overlay_in_chromium(env: Env, tmp_path: Path, chromium: str) -> None:
    rotated, plain = env.id_of("rotated.jpg"), env.id_of("plain.jpg")
    crop, subject = [0.1, 0.2, 0.6, 0.7], [0.25, 0.3, 0.75, 0.5]
    with env.catalog.transaction():
        env.catalog.db.conn.execute("UPDATE suggestions SET crop = ?, alternatives = '[]', subject = ?,"
                                    " subject_kind = 'dog' WHERE image_id = ?",
                                    (json.dumps(crop), json.dumps(subject), rotated))
        env.catalog.db.conn.execute("UPDATE suggestions SET subject = NULL, subject_kind = NULL WHERE image_id != ?",
                                    (rotated,))
    with _serve(env.session, tmp_path) as server, _browser(chromium) as browser:
        # Smaller than the photo's 600 px height: there is something to pan.
        page = browser.new_page(viewport={"width": 640, "height": 400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        # The subject: off by default; S (or the checkbox) draws it, dashed, with its kind; none where pic saw none.
        assert page.locator(".card .subject").count() == 0
        assert not page.is_checked("#show-subject")
        page.keyboard.press("s")
        _wait(page, "() => document.querySelectorAll('.card .subject').length === 1")
        assert page.is_checked("#show-subject")
        card = page.locator(f"figure.card[data-id='{rotated}']")
        assert card.locator(".subject .subject-label").inner_text() == "dog"
        assert page.locator(f"figure.card[data-id='{plain}'] .subject").count() == 0
        assert card.locator(".subject").evaluate("e => getComputedStyle(e).borderTopStyle") == "dashed"
        page.click("#show-subject")
        _wait(page, "() => document.querySelectorAll('.card .subject').length === 0")
        page.click("#show-subject")
        _wait(page, "() => document.querySelectorAll('.card .subject').length === 1")
        # Z: the 100% view, one image pixel per CSS pixel (device pixel ratio 1 here), crop and subject in place.
        _select(page, "rotated.jpg")
        page.keyboard.press("z")
        page.wait_for_selector("#zoom:not([hidden])")
        _wait(page, "() => { const i = document.getElementById('zoom-img'); return i.complete && i.naturalWidth > 0; }")
        geometry = page.evaluate("""() => {
            const r = (id) => document.getElementById(id).getBoundingClientRect();
            const s = r('zoom-stage'), c = r('zoom-crop'), j = r('zoom-subject'), i = document.getElementById('zoom-img');
            return {natural: [i.naturalWidth, i.naturalHeight], shown: [s.width, s.height],
                    crop: [c.left - s.left, c.top - s.top, c.right - s.left, c.bottom - s.top],
                    subject: [j.left - s.left, j.top - s.top, j.right - s.left, j.bottom - s.top],
                    label: document.querySelector('#zoom-subject .subject-label').textContent,
                    info: document.getElementById('zoom-info').textContent};
        }""")
        assert geometry["natural"] == [400, 600] and geometry["shown"] == [400, 600]
        assert _near(geometry["crop"], [v * s for v, s in zip(crop, (400, 600, 400, 600), strict=True)], 1.5)
        assert _near(geometry["subject"], [v * s for v, s in zip(subject, (400, 600, 400, 600), strict=True)], 1.5)
        assert geometry["label"] == "dog" and geometry["info"].startswith("100% · 400 x 600 px")
        # It pans: arrow keys (and dragging) scroll the pane, and do not move to another photo.
        top = page.evaluate("() => document.getElementById('zoom-pane').scrollTop")
        page.keyboard.press("ArrowDown")
        _wait(page, "t => document.getElementById('zoom-pane').scrollTop > t", top)
        box = page.locator("#zoom-pane").bounding_box()
        before = page.evaluate("() => document.getElementById('zoom-pane').scrollTop")
        page.mouse.move(box["x"] + 200, box["y"] + 150)
        page.mouse.down()
        page.mouse.move(box["x"] + 200, box["y"] + 250, steps=5)
        page.mouse.up()
        _wait(page, "t => document.getElementById('zoom-pane').scrollTop < t", before)
        assert "rotated" in page.locator("figure.card.selected .name").inner_text()
        # Esc leaves it; from the large view the button opens it and Esc comes back to the large view.
        page.keyboard.press("Escape")
        page.wait_for_selector("#zoom", state="hidden")
        page.keyboard.press("v")
        page.wait_for_selector("#large:not([hidden])")
        assert page.locator("#large-subject").is_visible()
        page.click("#large-zoom")
        page.wait_for_selector("#zoom:not([hidden])")
        page.keyboard.press("z")
        page.wait_for_selector("#zoom", state="hidden")
        assert page.locator("#large").is_visible()
        page.keyboard.press("Escape")
        page.wait_for_selector("#large", state="hidden")
        # The header's button does the same from the grid.
        page.click("#zoom-button")
        page.wait_for_selector("#zoom:not([hidden])")
        page.click("#zoom-close")
        page.wait_for_selector("#zoom", state="hidden")
    assert not errors, errors


@pytest.mark.shared
def test_the_100_percent_view_of_raw_files(shared_data: Path) -> None:
    from pic_plugin.imaging import fullview

    raw = shared_data / "raw-samples"
    # A large embedded preview is shown as it is, with a note that it is not the sensor's pixels.
    plan = fullview.plan(raw / "canon_eos_d30.crw")
    assert plan.size == (1440, 960) and plan.full == (2176, 1448) and "embedded preview" in (plan.note or "")
    # No preview (or a thumbnail): a half-size demosaic, said so.
    data, view = fullview.render(raw / "blackmagic_pocket4k_nopreview.dng")
    assert view.size == (2064, 1088) == _served_image(data).size and "half-size" in (view.note or "")
    # Neither: a message, not a traceback.
    with pytest.raises(fullview.DecodeError, match="cannot decode"):
        fullview.render(raw / "gopro_hero6.gpr")
