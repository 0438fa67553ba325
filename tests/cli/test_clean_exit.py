"""How `pic` commands end: Ctrl-C is exit status 130 after the photos in hand are finished (sidecars whole, no
temp files, workers stopped), and a clean exit leaves no catalog.db-wal / -shm behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import jpeg_bytes, make_photo
from pic_cli.main import cli
from pic_plugin.editors.xmp import parse_xmp
from pic_plugin.editors.xmp.files import is_temp_name

PHOTOS = 16
_last_group = 0


def _photos(folder: Path, n: int = PHOTOS) -> Path:
    folder.mkdir()
    for i in range(n):
        (folder / f"img_{i:02d}.jpg").write_bytes(jpeg_bytes(make_photo(seed=i)))
    return folder


def _no_wal(catalog: Path) -> None:
    left = [p.name for p in catalog.parent.iterdir() if p.name in (catalog.name + "-wal", catalog.name + "-shm")]
    assert not left, f"left behind: {left}"


def _interrupt_batch(tmp_path: Path, jobs: int, whole_group: bool) -> tuple[int, str, list[dict[str, object]], Path]:
    """`pic batch --json` on PHOTOS photos, Ctrl-C once its first result is out. ``whole_group``: as a terminal
    sends it, to the workers too."""
    photos = _photos(tmp_path / "photos")
    catalog = tmp_path / "catalog.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pic_cli.main", "batch", str(photos), "--catalog", str(catalog), "-j", str(jobs),
         "--fast", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    global _last_group
    _last_group = proc.pid  # start_new_session: the batch and its workers form this group
    lines: list[str] = []
    first = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(240), "no result within 240 s"
        if whole_group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err, [json.loads(line) for line in lines], photos


def _check_interrupted(rc: int, err: str, results: list[dict[str, object]], photos: Path) -> None:
    assert rc == 130, err
    done = [r for r in results if r["status"] == "done"]
    assert 1 <= len(done) < PHOTOS, (len(done), err)
    assert f"interrupted after {len(results)} of {PHOTOS} photos: {len(done)} done" in err, err
    assert "Traceback" not in err, err
    names = os.listdir(photos)
    assert not [n for n in names if is_temp_name(n)], names
    sidecars = sorted(photos.glob("*.xmp"))
    # a sidecar for each photo done, complete XML, and none for a photo that was not
    assert sorted(p.name.removesuffix(".xmp") for p in sidecars) == sorted(Path(str(r["path"])).name for r in done)
    for sidecar in sidecars:
        parse_xmp(sidecar.read_bytes(), source=os.fsdecode(sidecar))
    _no_wal(photos.parent / "catalog.db")


def test_ctrl_c_finishes_the_photo_in_hand_and_exits_130(tmp_path: Path) -> None:
    _check_interrupted(*_interrupt_batch(tmp_path, jobs=1, whole_group=False))


def test_ctrl_c_stops_the_workers_too(tmp_path: Path) -> None:
    # sent to the whole process group, as a terminal does: the workers must neither die mid-photo nor linger
    _check_interrupted(*_interrupt_batch(tmp_path, jobs=2, whole_group=True))
    assert not _alive(_last_group), "a worker outlived pic batch"


def _alive(group: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True


def test_a_ctrl_c_that_stops_a_command_at_once_is_130_not_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pic_plugin.library.learn as learn_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(learn_module, "learn", interrupted)
    crops = tmp_path / "crops.csv"
    crops.write_text("path,left,top,right,bottom\n")
    catalog = tmp_path / "catalog.db"
    result = CliRunner().invoke(cli, ["learn", "--user", "me", "--crops", str(crops), "--catalog", str(catalog)])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.stderr and "Aborted" not in result.stderr
    _no_wal(catalog)


def test_batch_and_learn_leave_no_wal_behind(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 2)
    catalog = tmp_path / "catalog.db"
    runner = CliRunner()
    result = runner.invoke(cli, ["batch", str(photos), "--catalog", str(catalog), "-j", "1", "--fast"])
    assert result.exit_code == 0, result.output
    _no_wal(catalog)
    crops = tmp_path / "crops.csv"
    crops.write_text("path,left,top,right,bottom\n" + "".join(f"{p},0.1,0.1,0.9,0.9\n" for p in sorted(photos.glob("*.jpg"))))
    result = runner.invoke(cli, ["learn", "--user", "me", "--crops", str(crops), "--catalog", str(catalog)])
    assert result.exit_code == 0, result.output
    _no_wal(catalog)
