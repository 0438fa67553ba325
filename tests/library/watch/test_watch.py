"""``pic watch`` on real filesystem events (inotify, and the polling fallback) in temporary folders."""

from __future__ import annotations

import errno
import os
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest
import watch_standins as ws
from watch_helpers import fast_options, running_watcher, wait_for

import pic_plugin.library.watch.daemon as watcher_mod
from conftest import jpeg_bytes, make_photo
from pic_plugin.analysis.features import FEATURE_VERSION
from pic_plugin.core.geometry import Box
from pic_plugin.editors.sidecars import find_crops, write_suggestion
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.watch import observers
from pic_plugin.library.watch.daemon import Watcher
from pic_plugin.library.watch.state import DaemonRunning, WatchState

STANDINS = dict(writer=ws.json_writer, crop_collector=ws.json_collect, learner=ws.mean_crop_learner)


def _photo(folder: Path, name: str, seed: int = 0, size: tuple[int, int] = (320, 240)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(jpeg_bytes(make_photo(*size, seed=seed)))
    return path


def _suggestion(catalog_path: Path, photo: Path, user: str = "me") -> dict | None:
    with Catalog(catalog_path, readonly=True) as cat:
        rec = cat.image(photo)
        return cat.suggestion(rec.id, user, "free") if rec else None


def test_new_photo_gets_a_suggestion_within_2s(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    _photo(root, "warm.jpg", seed=9)  # the first photo also loads the networks
    source = tmp_path / "camera"
    for i in range(5):
        _photo(source, f"new_{i}.jpg", seed=i)
    with running_watcher([root], catalog_path, fast_options(), learner=None) as run:  # real analysis and sidecars
        assert run.watcher.options.mode == "suggest"  # the watcher's default
        wait_for(lambda: "warm.jpg" in run.done_names(), 60, what="the initial scan")
        latencies = []
        for i in range(5):
            t0 = time.monotonic()
            shutil.copy(source / f"new_{i}.jpg", root / f"new_{i}.jpg")  # what a file manager / importer does
            wait_for(lambda i=i: run.first_done_at(f"new_{i}.jpg"), 20, what=f"new_{i}.jpg")
            latencies.append(run.first_done_at(f"new_{i}.jpg") - t0)  # type: ignore[operator]
    for i in range(5):
        found = find_crops(root / f"new_{i}.jpg", 1)
        assert [c.source for c in found] == ["pic"] and found[0].detail["state"] == "suggested"
    # DESIGN section 7: a new photo suggested within 2 s. The median is checked so one scheduling hiccup of a
    # shared CI machine does not fail the run; each latency is printed with -s.
    print("latencies", [round(x, 3) for x in latencies])
    assert statistics.median(latencies) < 2.0, latencies
    assert max(latencies) < 6.0, latencies


def test_user_crop_is_learned_and_changes_suggestions_for_similar_photos(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(4):
        _photo(root / "trip", f"p{i}.jpg", seed=i)
    user_crop = Box(0.05, 0.1, 0.55, 0.7)
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), **STANDINS) as run:
        wait_for(lambda: len(run.done_names()) == 4, 60, what="the initial scan")
        before = {p: ws.read_sidecar(root / "trip" / p)["pic"] for p in ("p1.jpg", "p2.jpg", "p3.jpg")}
        ws.user_edit(root / "trip" / "p0.jpg", user_crop)  # the photographer crops p0 in their editor
        edited = (root / "trip" / "p0.jpg.xmp").read_bytes()
        wait_for(lambda: all(ws.read_sidecar(root / "trip" / p).get("model") == "mean-crop-v1" for p in before), 30,
                 what="refreshed suggestions")  # fmt: skip
        run.wait_idle()
        assert (root / "trip" / "p0.jpg.xmp").read_bytes() == edited  # the user's sidecar was not written to
    with Catalog(catalog_path, readonly=True) as cat:
        crops = cat.user_crops("me")
        assert [(c["path"].endswith("p0.jpg"), c["source"], c["weight"]) for c in crops] == [(True, "darktable", 1.0)]
        assert Box(*crops[0]["crop"]) == user_crop
        assert cat.active_model("me") is not None
        state = WatchState(cat).get("finetune:me")
        assert state["version"] == 1 and state["scorer"] == "mean-crop-v1"
    for p, old in before.items():
        new = Box(*ws.read_sidecar(root / "trip" / p)["pic"])
        assert new != Box(*old)
        assert abs(new.left - user_crop.left) < 0.05 and abs(new.bottom - user_crop.bottom) < 0.05, new


@pytest.mark.slow
def test_real_darktable_crop_fine_tunes_the_model_and_moves_the_other_suggestions(tmp_path: Path,
                                                                                  catalog_path: Path) -> None:
    """Everything real: pic's darktable sidecars, the harvest readers, the PIC fine-tune and scorer. The user crops
    one photo of a series tightly on the left in darktable; the others' suggestions move toward that crop."""
    from editor_fixtures import append_user_crop

    from pic_plugin.core.geometry import iou

    root = tmp_path / "photos"
    for i in range(5):
        _photo(root / "series", f"s{i}.jpg", seed=40 + i, size=(480, 320))
    user_crop = Box(0.02, 0.15, 0.52, 0.9)
    with running_watcher([root], catalog_path, fast_options()) as run:
        wait_for(lambda: len(run.done_names()) == 5, 90, what="the initial scan")
        others = [f"s{i}.jpg" for i in range(1, 5)]
        before = {p: find_crops(root / "series" / p, 1)[0].crop for p in others}
        # darktable appends an enabled crop entry to the sidecar pic wrote (pic's own entry stays, disabled)
        sc = root / "series" / "s0.jpg.xmp"
        assert sc.read_text().count("darktable:num=") == 1  # pic's disabled suggestion is entry 0
        append_user_crop(sc, user_crop)
        edited = sc.read_bytes()
        wait_for(lambda: all("+u1" in str(find_crops(root / "series" / p, 1)[0].detail.get("model"))
                             for p in others), 60, what="suggestions from the fine-tuned model")  # fmt: skip
        run.wait_idle()
        assert sc.read_bytes() == edited  # the user's sidecar was not written to
    with Catalog(catalog_path, readonly=True) as cat:
        (row,) = cat.user_crops("me")
        assert row["source"] == "darktable" and row["weight"] == 1.0 and row["crop"].as_list(4) == list(user_crop)
        assert cat.active_model("me")[0] == 1  # type: ignore[index]
    after = {p: find_crops(root / "series" / p, 1)[0].crop for p in others}
    closer = [iou(after[p], user_crop) - iou(before[p], user_crop) for p in others]
    assert sum(closer) / len(closer) > 0.05, (before, after)


@pytest.mark.slow
def test_a_profile_edited_while_watching_moves_the_suggestions(tmp_path: Path, catalog_path: Path) -> None:
    """``pic profile --set`` in a terminal while the daemon runs: the daemon notices the new model version,
    reloads the real pic scorer and re-suggests in the profile's ratio (the profile's framing rule)."""
    root = tmp_path / "photos"
    for i in range(3):
        _photo(root, f"p{i}.jpg", seed=60 + i, size=(480, 320))
    names = [f"p{i}.jpg" for i in range(3)]
    with running_watcher([root], catalog_path, fast_options()) as run:
        wait_for(lambda: len(run.done_names()) == 3, 90, what="the initial scan")
        with Catalog(catalog_path) as other:  # what `pic profile --set ratio=1:1 --set orientation=fixed` does
            other.set_user_attributes("me", {"ratio": "1:1", "orientation": "fixed"})

        def square(name: str) -> bool:
            s = find_crops(root / name, 1)[0]
            return "+p" in str(s.detail.get("model")) and abs(s.crop.pixel_aspect((480, 320)) - 1.0) < 0.02

        wait_for(lambda: all(square(n) for n in names), 60, what="square suggestions from the edited profile")


@pytest.mark.slow
def test_burst_of_500_files_is_processed_exactly_once(tmp_path: Path, catalog_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: Counter[str] = Counter()
    real = watcher_mod.process_file

    def counting(job, *a, **k):  # type: ignore[no-untyped-def]
        calls[job.path.name] += 1
        return real(job, *a, **k)

    monkeypatch.setattr(watcher_mod, "process_file", counting)
    writes: Counter[str] = Counter()

    def writer(image, *a, **k):  # type: ignore[no-untyped-def]
        writes[image.name] += 1
        return write_suggestion(image, *a, **k)  # the real XMP writer

    source = tmp_path / "card"
    template = jpeg_bytes(make_photo(96, 64, seed=1))
    for i in range(500):  # distinct content (a different byte in the comment): no feature-cache shortcut
        (source / "DCIM").mkdir(parents=True, exist_ok=True)
        (source / "DCIM" / f"IMG_{i:04d}.jpg").write_bytes(template[:2] + b"\xff\xfe\x00\x06" + i.to_bytes(4, "big") + template[2:])
    root = tmp_path / "photos"
    root.mkdir()
    opts = fast_options(scorer="mean-crop", quiet=0.3)
    with running_watcher([root], catalog_path, opts, writer=writer, learner=None) as run:
        t0 = time.monotonic()
        shutil.copytree(source / "DCIM", root / "DCIM")  # the burst: an import of a card
        wait_for(lambda: len(run.by_status("done")) >= 500, 180, step=0.1, what="500 suggestions")
        run.wait_idle()
        took = time.monotonic() - t0
        time.sleep(1.0)  # own sidecar writes must not come back as work
        counters = dict(run.watcher.counters)
    print(f"500 files in {took:.1f}s; counters {counters}")
    assert len(calls) == 500 and set(calls.values()) == {1}
    assert len(writes) == 500 and set(writes.values()) == {1}
    assert len(run.by_status("done")) == 500
    for i in range(500):
        assert [c.source for c in find_crops(root / "DCIM" / f"IMG_{i:04d}.jpg", 1)] == ["pic"]


def test_photo_arriving_with_the_users_crop_is_learned_not_written(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    staging = tmp_path / "staging"
    photo = _photo(staging, "edited.jpg", seed=3)
    ws.user_edit(photo, Box(0.2, 0.2, 0.8, 0.9))
    sidecar_bytes = ws.sidecar(photo).read_bytes()
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop", finetune_interval=3600), **STANDINS) as run:
        shutil.copy(ws.sidecar(photo), root / "edited.jpg.xmp")
        shutil.copy(photo, root / "edited.jpg")
        wait_for(lambda: "edited.jpg" in run.done_names(), 30, what="the photo")
        run.wait_idle()
    assert (root / "edited.jpg.xmp").read_bytes() == sidecar_bytes  # never replaced the user's crop
    with Catalog(catalog_path, readonly=True) as cat:
        assert [Box(*c["crop"]) for c in cat.user_crops("me")] == [Box(0.2, 0.2, 0.8, 0.9)]
        rec = cat.image(root / "edited.jpg")
        assert rec is not None and cat.features(rec.content_key, FEATURE_VERSION) is not None  # for fine-tuning
        s = cat.suggestion(rec.id, "me", "free")
        assert s is not None and s["written"]["skipped"] == "the user's own crop"


def test_waits_while_an_editor_writes_the_sidecar(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    _photo(root, "a.jpg")
    writes: list[float] = []

    def writer(image, *a, **k):  # type: ignore[no-untyped-def]
        writes.append(time.time())
        return ws.json_writer(image, *a, **k)

    opts = fast_options(scorer="mean-crop", quiet=0.4)
    with running_watcher([root], catalog_path, opts, writer=writer, crop_collector=ws.json_collect, learner=None) as run:
        wait_for(lambda: writes, 60, what="first suggestion")
        _photo(root, "b.jpg", seed=4)
        editor_times = []
        for i in range(12):  # darktable rewriting b's sidecar again and again (rating, tags, ...)
            ws.write_json_atomic(root / "b.jpg.xmp", {"rating": i})
            editor_times.append(time.time())
            time.sleep(0.1)
        wait_for(lambda: "b.jpg" in run.done_names(), 30, what="b.jpg")
        run.wait_idle()
    b_writes = writes[1:]
    assert b_writes and min(b_writes) > editor_times[-1] + 0.3  # only once the editor was done
    assert ws.read_sidecar(root / "b.jpg")["rating"] == 11  # and its data kept


def test_own_writes_never_loop(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(3):
        _photo(root, f"{i}.jpg", seed=i)
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), **STANDINS) as run:
        wait_for(lambda: len(run.done_names()) == 3, 60, what="3 suggestions")
        run.wait_idle()
        n = len(run.results)
        time.sleep(1.5)
        assert len(run.results) == n  # nothing new happened after our own writes
        assert len(run.done_names()) == 3


def test_root_that_disappears_and_comes_back(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    _photo(root, "a.jpg")
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), **STANDINS) as run:
        wait_for(lambda: "a.jpg" in run.done_names(), 60, what="a.jpg")
        shutil.rmtree(root)  # an unmounted card or network share
        wait_for(lambda: run.watcher.roots[0].mode == "missing", 10, what="the root to be missing")
        root.mkdir()
        _photo(root, "b.jpg", seed=2)
        wait_for(lambda: "b.jpg" in run.done_names(), 30, what="b.jpg after the root came back")
        _photo(root, "c.jpg", seed=3)  # and it is watched again, not only rescanned
        wait_for(lambda: "c.jpg" in run.done_names(), 30, what="c.jpg")
        assert run.watcher.roots[0].mode == "inotify"
    with Catalog(catalog_path, readonly=True) as cat:
        assert any("disappeared" in p["message"] for p in WatchState(cat).db.query("SELECT * FROM watch_log"))


def test_symlink_loops_bad_files_and_unreadable_things_do_not_stop_it(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    (root / "loop").symlink_to(root)  # a symlink loop
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(root)
    (root / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "folder.jpg").mkdir()
    locked = _photo(root, "locked.jpg")
    locked.chmod(0)
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), **STANDINS) as run:
        (root / "empty.jpg").write_bytes(b"")
        (root / "text.png").write_text("not an image")
        data = jpeg_bytes(make_photo(seed=5))
        (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
        (root / "name with $(x) and\nnewline.jpg").write_bytes(jpeg_bytes(make_photo(seed=6)))
        _photo(root / "sub", "good.jpg", seed=7)
        wait_for(lambda: {"good.jpg", "name with $(x) and\nnewline.jpg"} <= set(run.done_names()), 60, what="good photos")
        wait_for(lambda: {"empty.jpg", "text.png", "truncated.jpg"} <= {r.path.name for r in run.by_status("error")}, 30,
                 what="the bad files to be reported")  # fmt: skip
        run.wait_idle()
        assert run.watcher.counters["errors"] >= 3
    locked.chmod(0o644)
    with Catalog(catalog_path, readonly=True) as cat:
        paths = {os.path.basename(p["path"] or "") for p in cat.db.query("SELECT path FROM watch_log WHERE level = 'error'")}
        assert {"empty.jpg", "text.png", "truncated.jpg"} <= paths
        assert cat.image(root / "loop" / "sub" / "good.jpg") is None  # no path through the loop was ever taken


def test_disk_full_keeps_the_old_sidecar_and_retries(tmp_path: Path, catalog_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pic_plugin.editors.xmp.files as xmp_mod

    root = tmp_path / "photos"
    photo = _photo(root, "a.jpg")
    sidecar = root / "a.jpg.xmp"
    sidecar.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
        ' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
        ' xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="5"/></rdf:RDF></x:xmpmeta>\n'
    )
    os.utime(sidecar, (time.time() - 60, time.time() - 60))
    old = sidecar.read_bytes()
    real_mkstemp = xmp_mod.tempfile.mkstemp
    full = {"on": True}

    def mkstemp(*a, **k):  # type: ignore[no-untyped-def]
        if not full["on"]:
            return real_mkstemp(*a, **k)
        fd, name = real_mkstemp(*a, **k)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name  # every write now fails with ENOSPC, like a full disk

    monkeypatch.setattr(xmp_mod.tempfile, "mkstemp", mkstemp)
    errors = []
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop", retry_delay=0.3), learner=None) as run:
        wait_for(lambda: run.by_status("deferred"), 60, what="a failed write")
        errors = [r.error for r in run.by_status("deferred")]
        assert sidecar.read_bytes() == old  # the old sidecar stays whole: nothing half-written
        full["on"] = False  # space freed
        wait_for(lambda: "a.jpg" in run.done_names(), 30, what="the retry")
    assert os.strerror(errno.ENOSPC) in errors[0], errors
    assert b'Rating="5"' in sidecar.read_bytes()  # the file's other data kept
    assert [c.source for c in find_crops(photo, 1)] == ["pic"]
    assert not [p for p in root.iterdir() if p.name.startswith(".pic-")]  # no temp file left behind


def test_falls_back_to_polling_when_inotify_fails(tmp_path: Path, catalog_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import watchdog.observers

    class NoInotify(watchdog.observers.Observer):  # type: ignore[misc,valid-type]
        def schedule(self, *a, **k):  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", NoInotify)
    root = tmp_path / "photos"
    root.mkdir()
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), **STANDINS) as run:
        assert run.watcher.roots[0].mode == "polling"
        assert "max_user_watches" in run.watcher.roots[0].polling_reason
        _photo(root, "a.jpg")
        wait_for(lambda: "a.jpg" in run.done_names(), 30, what="a.jpg by polling")


def test_two_daemons_never_share_a_catalog(tmp_path: Path, catalog_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), **STANDINS), Catalog(catalog_path) as cat:
        second = Watcher([root], fast_options(scorer="mean-crop"), cat, **STANDINS)
        with pytest.raises(DaemonRunning):
            second.run()
        assert WatchState(cat).get("daemon", {}).get("stopped") is None  # the running daemon's state untouched


def test_scan_resumes_after_a_crash(tmp_path: Path, catalog_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "photos"
    for d in ("a", "b", "c"):
        for i in range(4):
            _photo(root / d, f"{i}.jpg", seed=i, size=(64, 48))
    calls: Counter[str] = Counter()
    real = watcher_mod.process_file

    def counting(job, *a, **k):  # type: ignore[no-untyped-def]
        calls[os.fsdecode(job.path)] += 1
        return real(job, *a, **k)

    monkeypatch.setattr(watcher_mod, "process_file", counting)
    cat = Catalog(catalog_path)
    first = Watcher([root], fast_options(scorer="mean-crop", scan_chunk=5), cat, **STANDINS)
    first.start()
    first._advance_scans()  # the scan queues a first slice and records where it is ...
    for r in first.roots:
        r.disarm()
    first._pool.shutdown(wait=True)  # type: ignore[union-attr]
    first._lock.release()  # type: ignore[union-attr]  # ... and the process dies (nothing else ran)
    queued = WatchState(cat).pending()
    saved = WatchState(cat).get(f"scan:{root}")
    assert 0 < queued < 12 and not saved["complete"] and saved["after"]
    cat.close()
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), **STANDINS) as run:
        wait_for(lambda: len(run.done_names()) == 12, 60, what="all 12 photos")
        run.wait_idle()
    assert len(calls) == 12 and set(calls.values()) == {1}
    with Catalog(catalog_path, readonly=True) as cat:
        assert WatchState(cat).get(f"scan:{root}")["complete"]


def test_network_filesystems_are_polled(tmp_path: Path, catalog_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(observers, "filesystem_type", lambda path: "nfs4")
    root = tmp_path / "nas"
    root.mkdir()
    with running_watcher([root], catalog_path, fast_options(scorer="mean-crop"), **STANDINS) as run:
        assert run.watcher.roots[0].mode == "polling" and "nfs4" in run.watcher.roots[0].polling_reason
        _photo(root, "a.jpg")
        wait_for(lambda: "a.jpg" in run.done_names(), 30, what="a.jpg by polling")
