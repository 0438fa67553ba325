"""``kill -9`` of ``pic batch --jobs 2``: its worker processes (and multiprocessing's resource tracker) must not
outlive it (README "Reliability")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import jpeg_bytes, make_photo


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(p)
        except OSError:
            pass
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("delay", [0.0, 2.0])  # while the workers start (import torch) / while they work
def test_workers_die_with_a_killed_batch(tmp_path: Path, delay: float) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        (photos / f"img_{i:02d}.jpg").write_bytes(jpeg_bytes(make_photo(900, 600, seed=i)))
    pic = Path(sys.executable).with_name("pic")
    proc = subprocess.Popen([str(pic), "batch", str(photos), "--jobs", "2", "--catalog", str(tmp_path / "c.db")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        children: set[int] = set()
        while len(children) < 3 and time.monotonic() < deadline and proc.poll() is None:
            children |= _children(proc.pid)  # two workers and the resource tracker
            time.sleep(0.05)
        assert len(children) >= 3, f"the batch never started its workers: {children}"
        time.sleep(delay)
        children |= _children(proc.pid)
        assert proc.poll() is None, "the batch finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _alive(children)
    finally:
        if proc.poll() is None:
            proc.kill()
    for p in _alive(children):
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} of {len(children)} child processes outlived the killed batch"
