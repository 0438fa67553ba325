"""The watcher's pure parts: event routing, debouncing, own-write memory, the persisted queue and the lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pic_plugin.library.catalog import Catalog
from pic_plugin.library.scan import iter_images, walk_key
from pic_plugin.library.watch.daemon import dedupe_roots, filesystem_type
from pic_plugin.library.watch.events import Debouncer, EventRouter, OwnWrites, photos_for_sidecar
from pic_plugin.library.watch.state import (
    EVENT,
    REFRESH,
    SCAN,
    DaemonLock,
    DaemonRunning,
    WatchState,
    lock_path,
    read_daemon,
)


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_router_maps_photos_and_every_sidecar_naming(tmp_path: Path) -> None:
    nef = _touch(tmp_path / "IMG_0001.NEF")
    jpg = _touch(tmp_path / "IMG_0001.JPG")
    dup_base = _touch(tmp_path / "DSC_7.cr2")
    router = EventRouter()
    assert [r.photo for r in router.route(nef)] == [nef]
    assert [(r.photo, r.kind) for r in router.route(tmp_path / "IMG_0001.NEF.xmp")] == [(nef, "sidecar")]
    assert [r.photo for r in router.route(tmp_path / "DSC_7_01.cr2.xmp")] == [dup_base]  # darktable duplicate
    assert [r.photo for r in router.route(tmp_path / "DSC_7_123.cr2.xmp")] == [dup_base]
    assert sorted(r.photo for r in router.route(tmp_path / "IMG_0001.xmp")) == sorted([nef, jpg])  # crs / digiKam
    assert router.route(tmp_path / "missing.jpg.xmp") == []  # no photo: nothing to do
    for noise in (".pic-abc.xmp.tmp", ".hidden.jpg", "IMG_0001.NEF.xmp~", "notes.txt", "x.jpg.part"):
        assert router.route(tmp_path / noise) == [], noise


def test_sidecar_lookup_without_existing_photo(tmp_path: Path) -> None:
    assert photos_for_sidecar(tmp_path / "a_01.jpg.xmp", must_exist=False) == [tmp_path / "a_01.jpg", tmp_path / "a.jpg"]


def test_own_writes_are_recognised_until_someone_else_writes(tmp_path: Path) -> None:
    side = _touch(tmp_path / "a.jpg.xmp", b"ours")
    _touch(tmp_path / "a.jpg")
    own = OwnWrites()
    router = EventRouter(own)
    own.remember(side)
    assert own.is_ours(side) and router.route(side) == []
    side.write_bytes(b"the editor's, longer")
    assert not own.is_ours(side) and [r.photo.name for r in router.route(side)] == ["a.jpg"]


def test_own_writes_memory_is_bounded(tmp_path: Path) -> None:
    own = OwnWrites(capacity=10)
    for i in range(50):
        own.remember(_touch(tmp_path / f"{i}.xmp"))
    assert len(own) == 10


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_debouncer_collapses_bursts_and_waits_for_quiet() -> None:
    clock = Clock()
    d = Debouncer(quiet=0.5, max_delay=3.0, clock=clock)
    for _ in range(10):  # an editor writing the same sidecar ten times
        d.poke("a", frozenset({"a.xmp"}))
        clock.t += 0.1
    assert d.due() == []  # last poke 0.1 s ago
    clock.t += 0.45
    assert d.due() == [("a", frozenset({"a.xmp"}))]
    assert d.due() == [] and len(d) == 0


def test_debouncer_max_delay_and_photo_wins() -> None:
    clock = Clock()
    d = Debouncer(quiet=0.5, max_delay=2.0, clock=clock)
    d.poke("a", frozenset({"a.xmp"}))
    d.poke("a", "photo")
    d.poke("a", frozenset({"a2.xmp"}))
    while clock.t < 1.9:  # written non-stop
        clock.t += 0.2
        d.poke("a")
        if clock.t < 1.9:
            assert d.due() == []
    clock.t = 2.01
    assert d.due() == [("a", "photo")]


def test_debouncer_drain_returns_everything() -> None:
    d = Debouncer(quiet=10)
    for i in range(5):
        d.poke(i, "photo")
    assert sorted(k for k, _ in d.drain()) == list(range(5)) and len(d) == 0


def test_walk_key_orders_like_the_walk(tmp_path: Path) -> None:
    for rel in ("b.jpg", "a/z.jpg", "a/b/c.jpg", "a/a.jpg", "c/x.jpg", "0.jpg", "a/b/a.jpg", "ä/é.jpg"):
        _touch(tmp_path / rel)
    walked = list(iter_images([tmp_path], dedupe=False))
    assert len(walked) == 8
    assert sorted(walked, key=lambda p: walk_key(p, tmp_path)) == walked


def test_iter_images_reports_unreadable_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "ok" / "a.jpg")
    seen: list[Path] = []
    gone = tmp_path / "gone"
    list(iter_images([gone], dedupe=False, on_error=lambda p, e: seen.append(p)))
    assert seen == [gone]


def test_queue_priorities_retry_and_done(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.db") as cat:
        st = WatchState(cat)
        a, b, c = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "caf\udce9.jpg"  # c: not UTF-8
        st.enqueue([(a, "refresh", REFRESH), (b, "scan", SCAN), (c, "scan", SCAN)])
        st.enqueue([(a, "event", EVENT)])  # a live event makes a waiting refresh urgent
        items = st.claim(10, set())
        assert [i.path for i in items][:1] == [a] and items[0].reason == "event"
        assert {i.path for i in items} == {a, b, c}  # the non-UTF-8 name survives the round trip
        assert [i.path for i in st.claim(10, {os.fsencode(a), os.fsencode(b)})] == [c]
        assert st.retry(b, "disk full", delay=60) == 1
        assert b not in [i.path for i in st.claim(10, set())]
        st.enqueue([(b, "event", EVENT)])  # ... until something happens to it
        assert b in [i.path for i in st.claim(10, set())]
        for p in (a, b, c):
            st.done(p)
        assert st.pending() == 0


def test_state_and_log(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pic_plugin.library.watch.state as watch_state

    monkeypatch.setattr(watch_state, "LOG_KEEP", 50)
    with Catalog(tmp_path / "c.db") as cat:
        st = WatchState(cat)
        st.set("scan:/x", {"after": [[1, "a"], [0, "b.jpg"]]})
        assert st.get("scan:/x") == {"after": [[1, "a"], [0, "b.jpg"]]} and st.get("nope", 3) == 3
        for i in range(205):
            st.log("warning", f"w{i}", tmp_path / "p\udce9.jpg")
        n = cat.db.execute("SELECT COUNT(*) FROM watch_log").fetchone()[0]
        assert n <= 150


def test_one_daemon_per_catalog(tmp_path: Path) -> None:
    cat = tmp_path / "c.db"
    assert read_daemon(lock_path(cat)) is None
    with DaemonLock(cat) as first:
        first.acquire({"pid": 123, "roots": ["/x"]})
        assert read_daemon(lock_path(cat)) == {"pid": 123, "roots": ["/x"]}
        with pytest.raises(DaemonRunning, match="pid 123"):
            DaemonLock(cat).acquire({"pid": 456})
    assert read_daemon(lock_path(cat)) is None
    DaemonLock(cat).acquire({"pid": 789})  # released: a new daemon may start (the kernel frees it on exit)


def test_roots_are_deduplicated(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    roots = dedupe_roots([tmp_path / "a", tmp_path / "a" / "b", tmp_path / "c", tmp_path / "a", tmp_path / "link"])
    assert tmp_path / "a" in roots and tmp_path / "c" in roots and tmp_path / "a" / "b" not in roots
    assert tmp_path / "link" not in roots
    assert filesystem_type(tmp_path) is not None


def test_default_learner_fine_tunes_the_users_model(tmp_path: Path) -> None:
    """The watcher's learner is the real per-user fine-tune: the user's crops in the catalog -> model version 1."""
    from conftest import jpeg_bytes, make_photo
    from pic_plugin.core.geometry import Box
    from pic_plugin.library.learn import add_crops
    from pic_plugin.library.watch.daemon import default_learner

    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg_bytes(make_photo(320, 240)))
    with Catalog(tmp_path / "c.db") as catalog:
        assert add_crops(catalog, "me", [(photo, Box(0.1, 0.1, 0.7, 0.9), "darktable", 1.0)]) == (1, [])
    learner = default_learner()
    assert learner is not None
    result = learner(tmp_path / "c.db", "me")
    assert result is not None and result["version"] == 1 and result["k"] == 1 and result["errors"] == []
    assert 0 < result["seconds"] < 30
    with Catalog(tmp_path / "c.db") as catalog:
        assert catalog.active_model("me")[0] == 1  # type: ignore[index]
