"""Decoding within a memory budget: a PNG of zeros under a megabyte that would decode to gigabytes (issue 15,
point 6), in-process and in ``pic suggest`` / ``pic watch`` measured against the service's 1 GiB cap."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import jpeg_bytes, make_photo
from pic_plugin.core.errors import DecodeError
from pic_plugin.imaging import decode as decode_mod

#: MemoryMax of contrib/systemd/pic-watch.service.
SERVICE_CAP = 1 << 30


def zero_png(path: Path, width: int, height: int, mode: str = "RGB") -> Path:
    """A PNG of zeros written row by row (never the raster in memory): 15000x15000 RGB is about 650 KB."""
    channels, color = {"RGB": (3, 2), "L": (1, 0)}[mode]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = bytes(1 + width * channels)
    idat = bytearray()
    for start in range(0, height, 256):
        idat += comp.compress(row * min(256, height - start))
    idat += comp.flush()
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)))
        fh.write(chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b""))
    return path


def test_decode_is_refused_by_its_cost_not_only_its_pixel_count(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_mod, "MAX_DECODE_BYTES", 1 << 20)
    rgb = zero_png(tmp_path / "rgb.png", 1000, 1000)  # 4 MB as Pillow's raster
    with pytest.raises(DecodeError, match=r"refused: decoding this 1000x1000 RGB image would take 3 MiB"):
        decode_mod.decode(rgb)
    gray = zero_png(tmp_path / "gray.png", 1000, 1000, "L")  # 1 MB: reduced before it becomes RGB
    out = decode_mod.decode(gray)
    assert out.size == (1000, 1000) and out.pixels.shape == (512, 512, 3)
    big_jpeg = tmp_path / "big.jpg"  # a JPEG is judged at its reduced (draft) size
    big_jpeg.write_bytes(jpeg_bytes(make_photo(2400, 1600)))
    assert decode_mod.decode(big_jpeg).size == (2400, 1600)


def test_the_budget_keeps_large_real_photos() -> None:
    assert decode_mod.decode_cost("RGB", (14000, 9300)) <= decode_mod.MAX_DECODE_BYTES  # 130 MP
    assert decode_mod.decode_cost("RGB", (15000, 15000)) > decode_mod.MAX_DECODE_BYTES
    assert decode_mod.decode_cost("L", (15000, 15000)) <= decode_mod.MAX_DECODE_BYTES
    assert Image.MAX_IMAGE_PIXELS == decode_mod.MAX_PIXELS


PEAK = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
print(proc.returncode)
print(proc.stdout + proc.stderr)
"""


@pytest.mark.slow
def test_pic_suggest_on_a_memory_bomb_stays_far_under_the_cap(tmp_path: Path) -> None:
    bomb = zero_png(tmp_path / "bomb.png", 15000, 15000)
    assert bomb.stat().st_size < 1 << 20
    pic = Path(sys.executable).with_name("pic")
    out = subprocess.run([sys.executable, "-c", PEAK, str(pic), "suggest", str(bomb), "--catalog",
                          str(tmp_path / "c.db")], capture_output=True, text=True, timeout=300).stdout
    peak, code, text = out.split("\n", 2)
    print(f"pic suggest on a 15000x15000 zero PNG: peak RSS {int(peak) >> 20} MiB")
    assert int(code) != 0 and "refused: decoding this 15000x15000 RGB image" in text
    assert int(peak) < SERVICE_CAP // 2


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_pic_watch_meets_a_memory_bomb_under_the_service_cap(tmp_path: Path) -> None:
    """The daemon as the service runs it, a bomb and an ordinary photo in its folder: the bomb is one error line,
    the photo is done, and the process's peak resident memory stays under MemoryMax."""
    folder = tmp_path / "photos"
    folder.mkdir()
    zero_png(folder / "bomb.png", 15000, 15000)
    (folder / "ok.jpg").write_bytes(jpeg_bytes(make_photo()))
    pic = Path(sys.executable).with_name("pic")
    proc = subprocess.Popen([str(pic), "watch", str(folder), "--json", "--jobs", "1", "--catalog",
                             str(tmp_path / "c.db")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**__import__("os").environ, "HOME": str(tmp_path)})
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + 240
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline and len(seen) < 2:
            line = proc.stdout.readline()
            if not line:
                break
            row = json.loads(line)
            if row.get("status") in ("done", "error"):
                seen[Path(row["path"]).name] = row
        peak = _vm_hwm(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"pic watch with a 15000x15000 zero PNG: peak RSS {peak >> 20} MiB")
    assert seen["bomb.png"]["status"] == "error" and "refused: decoding" in seen["bomb.png"]["error"]
    assert seen["ok.jpg"]["status"] == "done"
    assert peak < SERVICE_CAP
