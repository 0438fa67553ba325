"""An editor writing a sidecar at the moment pic replaces it: the editor's write must never be lost.

The injection tests put an editor's save (by rename, or in place) exactly between pic's last check and its
replace, where a plain ``os.replace`` loses it; the stress test runs a simulated editor saving every ~1 ms while
pic rewrites the same sidecars, and counts the editor's saves that went missing (README "Reliability").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from editor_standin import counter, initial

from pic_plugin.core.errors import ConcurrentChangeError
from pic_plugin.core.geometry import Box
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors import sidecars
from pic_plugin.editors.xmp import files as xmp_files
from pic_plugin.editors.xmp import read_sidecar, write_sidecar_atomic

STANDIN = Path(__file__).resolve().parents[1] / "editor_standin.py"
#: Seconds per editor mode; CI runs 2 x 20 s (the README's figures come from longer runs: PIC_STRESS_SECONDS=60).
STRESS_SECONDS = float(os.environ.get("PIC_STRESS_SECONDS", "20"))


def _editor_save(path: Path, data: bytes, how: str) -> None:
    if how == "rename":
        tmp = path.with_name(".editor-tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:
        with open(path, "wb") as fh:
            fh.write(data)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".pic-", ".editor")) or "pic-kept" in p.name)


@pytest.mark.parametrize("how", ["rename", "inplace"])
def test_editor_write_between_check_and_replace_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        how: str) -> None:
    path = tmp_path / "IMG.jpg.xmp"
    real_check = xmp_files.check_unchanged
    for n in range(20):
        path.write_bytes(initial(n))
        doc, stamp = read_sidecar(path)
        editor = initial(1000 + n)

        def check_then_editor_saves(p: Path, expected: xmp_files.FileStamp, editor: bytes = editor) -> None:
            real_check(p, expected)
            _editor_save(path, editor, how)  # darktable saves right after pic's check

        monkeypatch.setattr(xmp_files, "check_unchanged", check_then_editor_saves)
        with pytest.raises(ConcurrentChangeError):
            write_sidecar_atomic(path, b"pic's stale rewrite", stamp)
        assert path.read_bytes() == editor
        assert _leftovers(tmp_path) == []


def test_editor_writes_twice_while_pic_swaps_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The editor's second save lands while pic is putting its first one back: the newest save ends up in place."""
    path = tmp_path / "IMG.jpg.xmp"
    path.write_bytes(initial(1))
    _, stamp = read_sidecar(path)
    real_check, real_exchange = xmp_files.check_unchanged, xmp_files.exchange
    calls = []

    def check_then_editor_saves(p: Path, expected: xmp_files.FileStamp) -> None:
        real_check(p, expected)
        _editor_save(path, initial(2), "rename")

    def exchange_then_editor_saves(a: Path, b: Path) -> bool:
        ok = real_exchange(a, b)
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.01)  # a later mtime, as a real later save has
            _editor_save(path, initial(3), "rename")
        return ok

    monkeypatch.setattr(xmp_files, "check_unchanged", check_then_editor_saves)
    monkeypatch.setattr(xmp_files, "exchange", exchange_then_editor_saves)
    with pytest.raises(ConcurrentChangeError):
        write_sidecar_atomic(path, b"pic's stale rewrite", stamp)
    assert counter(path.read_bytes()) == 3
    assert _leftovers(tmp_path) == []


def test_editor_replacing_pics_file_right_after_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save landing just after pic's replace wins (it is the newer), and pic says its own write did not stand."""
    path = tmp_path / "IMG.jpg.xmp"
    path.write_bytes(initial(1))
    _, stamp = read_sidecar(path)
    real_exchange = xmp_files.exchange

    def exchange_then_editor_saves(a: Path, b: Path) -> bool:
        ok = real_exchange(a, b)
        _editor_save(path, initial(2), "rename")
        return ok

    monkeypatch.setattr(xmp_files, "exchange", exchange_then_editor_saves)
    with pytest.raises(ConcurrentChangeError, match="replaced it"):
        write_sidecar_atomic(path, b"pic", stamp)
    assert counter(path.read_bytes()) == 2


def _pic_writes_until(proc: subprocess.Popen[str], images: list[Path]) -> dict[str, int]:
    stats = {"writes": 0, "conflicts": 0, "errors": 0}
    i = 0
    while proc.poll() is None:
        image = images[i % len(images)]
        i += 1
        f = 0.05 + 0.01 * (i % 7)  # a different crop each time, so every round really rewrites the sidecar
        s = Suggestion(str(image), Box(f, f, 1 - f, 1 - f / 2), 0.5, "free", (600, 400), "stress")
        report = sidecars.write_suggestion(image, s, 1, targets=("pic", "darktable"), retries=0)
        if report.ok:
            stats["writes"] += 1
        elif any("changed" in m or "replaced" in m for m in report.errors.values()):
            stats["conflicts"] += 1
        else:
            stats["errors"] += 1  # an in-place save caught half-written: a parse error, retried next round
    return stats


@pytest.mark.parametrize("mode", ["rename", "inplace"])
def test_stress_no_editor_save_is_lost(tmp_path: Path, mode: str) -> None:
    images = [tmp_path / f"IMG_{i}.jpg" for i in range(2)]
    for image in images:
        image.write_bytes(b"not read")
        sidecars.darktable.sidecar_path(image).write_bytes(initial())
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), mode, str(STRESS_SECONDS)]
        + [str(sidecars.darktable.sidecar_path(i)) for i in images],
        stdout=subprocess.PIPE, text=True)
    try:
        stats = _pic_writes_until(proc, images)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    editor = json.loads(out)
    print(f"\n{mode}: {STRESS_SECONDS:.0f}s, editor saves {editor['saves']}, lost {editor['lost']}, "
          f"stale reads {editor['stale']}, pic {stats}")
    assert editor["saves"] > 1000 and stats["writes"] > 100  # both really ran, many times
    assert editor["lost"] == 0 and editor["unreadable"] == 0
    for image in images:  # the editor's last save is what the sidecar holds at the end
        assert counter(sidecars.darktable.sidecar_path(image).read_bytes()) == editor["last"][
            str(sidecars.darktable.sidecar_path(image))]
    assert [n for n in _leftovers(tmp_path) if not n.startswith(".ed-")] == []


# --- an editor that opens the file for writing in the swap window (README "Reliability": the lease) ------------

#: An editor that opens the sidecar for writing, and writes only when told (an open leaves no trace on disk).
_OPEN_THEN_WRITE = r"""
import os, sys
print("opening", flush=True)
fd = os.open(sys.argv[1], os.O_WRONLY)
print("opened", flush=True)
sys.stdin.readline()
data = sys.argv[2].encode()
os.write(fd, data)
os.ftruncate(fd, len(data))
os.close(fd)
"""


def _lease_breaking() -> bool:
    try:
        with open("/proc/locks") as fh:
            return any("LEASE" in line and "BREAKING" in line and f" {os.getpid()} " in line for line in fh)
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="leases and renameat2 are Linux's")
def test_editor_opening_the_file_for_writing_in_the_swap_window_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import select

    path = tmp_path / "IMG.jpg.xmp"
    path.write_bytes(b"<x:xmpmeta>original</x:xmpmeta>")
    _, stamp = xmp_files.read_bytes(path)
    real_exchange = xmp_files.exchange
    editor: list[subprocess.Popen[str]] = []

    def exchange_then_editor_opens(a: Path, b: Path) -> bool:
        ok = real_exchange(a, b)
        if not editor:
            # ``a`` now holds the file that was at ``b``: the editor opens that one, as an editor that looked the
            # name up just before the swap does.
            proc = subprocess.Popen([sys.executable, "-c", _OPEN_THEN_WRITE, str(a), "editor's save"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            editor.append(proc)
            assert proc.stdout is not None and proc.stdout.readline() == "opening\n"
            deadline = time.monotonic() + 10
            # until its open is waiting on pic's lease (or, without a lease, has gone through)
            while time.monotonic() < deadline and not _lease_breaking():
                if select.select([proc.stdout], [], [], 0.05)[0]:
                    break
        return ok

    monkeypatch.setattr(xmp_files, "exchange", exchange_then_editor_opens)
    try:
        with pytest.raises(ConcurrentChangeError, match="opened it for writing"):
            write_sidecar_atomic(path, b"<x:xmpmeta>pic's</x:xmpmeta>", stamp)
        (proc,) = editor
        assert proc.stdout is not None and proc.stdout.readline() == "opened\n"  # pic let go of the lease
        proc.communicate("go\n", timeout=30)
    finally:
        for p in editor:
            if p.poll() is None:
                p.kill()
    assert path.read_bytes() == b"editor's save"  # the editor's write landed in the file at the sidecar's name
    assert _leftovers(tmp_path) == []


def test_a_file_open_for_writing_elsewhere_is_left_to_the_editor_then_written(tmp_path: Path) -> None:
    """An editor holding the sidecar open for writing is mid-save: pic swaps nothing (an in-place write would
    land in the file pic swaps out) and writes once the editor has closed it."""
    path = tmp_path / "IMG.jpg.xmp"
    path.write_bytes(b"<x:xmpmeta>original</x:xmpmeta>")
    _, stamp = xmp_files.read_bytes(path)
    with open(path, "ab"):  # an editor keeping it open for writing: the kernel refuses the lease (EAGAIN)
        lease = xmp_files._Lease(path)
        assert lease.fd is None and lease.busy
        with pytest.raises(ConcurrentChangeError, match="open for writing"):
            write_sidecar_atomic(path, b"<x:xmpmeta>pic's</x:xmpmeta>", stamp)
        assert path.read_bytes() == b"<x:xmpmeta>original</x:xmpmeta>"
    assert _leftovers(tmp_path) == []
    write_sidecar_atomic(path, b"<x:xmpmeta>pic's</x:xmpmeta>", stamp)
    assert path.read_bytes() == b"<x:xmpmeta>pic's</x:xmpmeta>"
