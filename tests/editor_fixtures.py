"""Test helpers that build editor databases from the editors' REAL schemas (no hand-made imitations).

digiKam: the ``CreateDB``, ``CreateIndices`` and ``CreateTriggers`` statements of the ``QSQLITE`` section of
digiKam's own ``dbconfig.xml`` (Debian's digikam-data), then the ``Settings`` rows digiKam 7.9 writes itself
(copied from a database the real digiKam 7.9 created here, ``tests/data/digikam-real/digikam4.db``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import defusedxml.ElementTree as DET

from pic_plugin.core.geometry import Box

REAL = Path(__file__).parent / "data" / "digikam-real"


def digikam_schema(dbconfig: Path) -> list[str]:
    root = DET.parse(str(dbconfig)).getroot()
    db = next(d for d in root.iter("database") if d.get("name") == "QSQLITE")
    out: list[str] = []
    for action in ("CreateDB", "CreateIndices", "CreateTriggers"):
        node = next(a for a in db.iter("dbaction") if a.get("name") == action)
        out.extend((s.text or "").strip() for s in node.iter("statement") if (s.text or "").strip())
    return out


@dataclass
class DkImage:
    name: str
    album: str  # relative path, "/" = root
    unique_hash: str | None = None
    size: int | None = None
    orientation: int | None = 1
    width: int | None = None
    height: int | None = None
    status: int = 1


def make_digikam_db(path: Path, dbconfig: Path, root: str, images: list[DkImage],
                    histories: dict[int, tuple[str, str]] | None = None,
                    relations: list[tuple[int, int]] | None = None) -> dict[str, int]:
    """A digikam4.db with one album root at ``root``; returns image ids by name (1-based, in order)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # test databases: no fsync per statement
    conn.execute("BEGIN")
    for stmt in digikam_schema(dbconfig):
        conn.execute(stmt)
    real = sqlite3.connect(f"file:{REAL / 'digikam4.db'}?mode=ro", uri=True)
    conn.executemany("INSERT INTO Settings VALUES (?, ?)", real.execute("SELECT keyword, value FROM Settings"))
    real.close()
    conn.execute("INSERT INTO AlbumRoots VALUES (1, 'photos', 0, 1, ?, '/')", ["volumeid:?path=" + root])
    albums: dict[str, int] = {}
    ids: dict[str, int] = {}
    for i, im in enumerate(images, start=1):
        if im.album not in albums:
            albums[im.album] = len(albums) + 1
            conn.execute("INSERT INTO Albums (id, albumRoot, relativePath, date) VALUES (?, 1, ?, '2024-01-01')",
                         [albums[im.album], im.album])
        conn.execute(
            "INSERT INTO Images (id, album, name, status, category, modificationDate, fileSize, uniqueHash)"
            " VALUES (?, ?, ?, ?, 1, '2024-01-01T00:00:00', ?, ?)",
            [i, albums[im.album], im.name, im.status, im.size, im.unique_hash],
        )
        conn.execute(
            "INSERT INTO ImageInformation (imageid, rating, orientation, width, height, format) VALUES"
            " (?, -1, ?, ?, ?, 'JPG')", [i, im.orientation, im.width, im.height])
        ids[im.name] = i
    for iid, (uuid, xml) in (histories or {}).items():
        conn.execute("INSERT INTO ImageHistory (imageid, uuid, history) VALUES (?, ?, ?)", [iid, uuid, xml])
    for subject, obj in relations or []:
        conn.execute("INSERT INTO ImageRelations (subject, object, type) VALUES (?, ?, 1)", [subject, obj])
    conn.execute("COMMIT")
    conn.close()
    return ids


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` with its size and SHA-256: compare before/after to prove nothing changed."""
    import hashlib

    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                data = fh.read()
            out[os.path.relpath(p, folder)] = (len(data), hashlib.sha256(data).digest())
    return out


# --- darktable ------------------------------------------------------------------------------------------------

import contextlib  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402


def crop_params(left: float, top: float, right: float, bottom: float) -> str:
    """darktable crop v1 params (24 bytes, lowercase hex): cx, cy, cw, ch (right/bottom edges), ratio 0/0."""
    return struct.pack("<ffffii", left, top, right, bottom, 0, 0).hex()


def append_user_crop(sidecar: Path, box: tuple[float, float, float, float]) -> None:
    """What darktable writes when the user crops: an enabled crop entry appended to the history (at its end)."""
    text = sidecar.read_text()
    num = text.count("darktable:num=")
    assert f'darktable:history_end="{num}"' in text, "the history must end at its last entry"
    end = text.index("</rdf:Seq>", text.index("<darktable:history>"))
    text = (text[:end] + f'<rdf:li darktable:num="{num}" darktable:operation="crop" darktable:enabled="1" '
            f'darktable:modversion="1" darktable:params="{crop_params(*box)}" darktable:multi_name="" '
            'darktable:multi_priority="0"/>\n' + text[end:])  # fmt: skip
    sidecar.write_text(text.replace(f'darktable:history_end="{num}"', f'darktable:history_end="{num + 1}"'))


def flip_params(bits: int) -> str:
    return struct.pack("<i", bits).hex()


def darktable_sidecar(entries: list[tuple[str, int, str, bool]], history_end: int | None = None) -> str:
    """A darktable xmp_version 5 sidecar with history ``entries`` (operation, modversion, params hex, enabled)."""
    lis = "\n".join(
        f'     <rdf:li darktable:num="{i}" darktable:operation="{op}" darktable:enabled="{int(on)}"'
        f' darktable:modversion="{ver}" darktable:params="{params}" darktable:multi_name=""'
        f' darktable:multi_priority="0"/>'
        for i, (op, ver, params, on) in enumerate(entries)
    )
    end = len(entries) if history_end is None else history_end
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:darktable="http://darktable.sf.net/"
   darktable:xmp_version="5" darktable:raw_params="0" darktable:auto_presets_applied="1"
   darktable:history_end="{end}" darktable:iop_order_version="3">
   <darktable:history>
    <rdf:Seq>
{lis}
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


@dataclass
class DtCase:
    """One photo for the darktable library: its EXIF orientation and the sidecars of the image and duplicates."""

    name: str
    orientation: int
    sidecars: dict[int, str]  # duplicate number -> sidecar text
    expect: dict[int, tuple[float, float, float, float] | None]  # duplicate -> displayed-frame crop (None: none)


def darktable_cases() -> list[DtCase]:
    c = crop_params
    return [
        DtCase("plain.jpg", 1, {0: darktable_sidecar([("crop", 1, c(0.1, 0.05, 0.9, 0.95), True)])},
               {0: (0.1, 0.05, 0.9, 0.95)}),
        # EXIF 6, flip left at -1 (= EXIF): the crop frame is the displayed frame.
        DtCase("rot6.jpg", 6, {0: darktable_sidecar([("flip", 2, flip_params(-1), True),
                                                    ("crop", 1, c(0.2, 0.1, 0.7, 0.8), True)])},
               {0: (0.2, 0.1, 0.7, 0.8)}),
        # Two duplicates with different crops, EXIF 8.
        DtCase("dups.jpg", 8, {0: darktable_sidecar([("crop", 1, c(0.0, 0.25, 0.5, 1.0), True)]),
                               1: darktable_sidecar([("crop", 1, c(0.25, 0.25, 0.75, 0.75), True)])},
               {0: (0.0, 0.25, 0.5, 1.0), 1: (0.25, 0.25, 0.75, 0.75)}),
        # The last crop entry wins; one beyond history_end (redo area) does not count.
        DtCase("redo.jpg", 3, {0: darktable_sidecar([("crop", 1, c(0.1, 0.1, 0.5, 0.5), True),
                                                    ("crop", 1, c(0.3, 0.3, 0.9, 0.9), True),
                                                    ("crop", 1, c(0.0, 0.0, 0.2, 0.2), True)], history_end=2)},
               {0: (0.3, 0.3, 0.9, 0.9)}),
        # A disabled crop is no crop.
        DtCase("off.jpg", 1, {0: darktable_sidecar([("crop", 1, c(0.1, 0.1, 0.5, 0.5), False)])}, {0: None}),
        # The user turned the photo (flip bits 6 = rotate CCW on an upright photo): crop is in the turned frame.
        DtCase("turned.jpg", 1, {0: darktable_sidecar([("flip", 2, flip_params(6), True),
                                                      ("crop", 1, c(0.1, 0.2, 0.6, 0.9), True)])},
               {0: None}),  # expected filled in by the test from orientation maps (see test)
    ]


@contextlib.contextmanager
def _xvfb():
    """A private X server. ``-displayfd`` lets Xvfb pick a free display itself: ``xvfb-run -a`` trusts lock files
    in /tmp, which other sessions sharing /tmp can make stale or steal (a darktable then lands on a stranger's
    screen and waits there)."""
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as fh:
            number = fh.readline().strip().decode()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        _end(xvfb)


def _end(proc: subprocess.Popen) -> None:
    """End a process group this module started (by its id): TERM, then KILL if it does not go."""
    import signal

    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def build_darktable_library(work: Path, darktable: str, timeout: float = 300) -> Path:
    """Import the ``darktable_cases`` photos with the REAL darktable (under Xvfb) into ``work/cfg/library.db``.

    darktable reads each sidecar on import and stores the history in its database, as it does for a user.
    Returns the database path. darktable 4.2 does not quit on ``dt.control.quit()`` promptly, so the process group
    this function started is ended once the marker file written by ``--luacmd`` appears.
    """
    import numpy as np
    from PIL import Image

    img_dir, cfg = work / "photos", work / "cfg"
    img_dir.mkdir(parents=True)
    cfg.mkdir()
    (cfg / "darktablerc").write_text("write_sidecar_files=never\nrun_crawler_on_start=FALSE\n")
    rng = np.random.default_rng(11)
    for case in darktable_cases():
        arr = np.asarray(Image.fromarray(rng.integers(0, 255, (8, 12, 3)).astype(np.uint8)).resize((240, 160)))
        exif = Image.Exif()
        exif[0x0112] = case.orientation
        Image.fromarray(arr).save(img_dir / case.name, quality=92, exif=exif.tobytes())
        stem, ext = case.name.rsplit(".", 1)
        for dup, text in case.sidecars.items():
            name = f"{case.name}.xmp" if dup == 0 else f"{stem}_{dup:02d}.{ext}.xmp"
            (img_dir / name).write_text(text)
    marker = work / "imported"
    lua = f'local dt = require "darktable"; local f = io.open("{marker}", "w"); f:write(#dt.database); f:close()'
    with _xvfb() as display, open(work / "darktable.log", "wb") as log:
        proc = subprocess.Popen(
            [darktable, "--configdir", str(cfg), "--library", str(cfg / "library.db"), "--luacmd", lua, str(img_dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "DISPLAY": display},
        )
        try:
            deadline = time.monotonic() + timeout
            while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.25)
            if not marker.exists():
                tail = (work / "darktable.log").read_bytes()[-2000:].decode("utf-8", "replace")
                raise RuntimeError(f"darktable did not import the photos (exit {proc.poll()}); output:\n{tail}")
            time.sleep(0.5)
        finally:
            _end(proc)
    return cfg / "library.db"


def digikam_library(root: Path) -> Path:
    """The real digiKam fixtures (original + two showfoto versions) in a folder with an awkward name."""
    lib = root / "My \"Photos\" $HOME"
    lib.mkdir(parents=True)
    for name in ("IMG_0001.JPG", "IMG_0001_v1.png", "IMG_0001_v2.JPG"):
        shutil.copy(REAL / name, lib / name)
    return lib


# --- a Lightroom sidecar with a crop (issue 15.7: darktable imports it on the first darkroom load) ----------------

LR_SIZE = (600, 400)
LR_CROP = Box(0.1, 0.1, 0.7, 0.9)  # 360 x 320 px of the 600 x 400 photo


def lightroom_xmp(has_crop: str = "True", crop: Box = LR_CROP, angle: float = 0.0) -> str:
    """What Lightroom Classic writes for a cropped JPEG (attribute form, as Lr <= 6 and Lr Classic do)."""
    return f"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
 xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
 xmp:CreatorTool="Adobe Photoshop Lightroom Classic 12.0 (Windows)"
 tiff:ImageWidth="{LR_SIZE[0]}" tiff:ImageLength="{LR_SIZE[1]}" tiff:Orientation="1"
 crs:Version="15.0" crs:ProcessVersion="11.0"
 crs:CropTop="{crop.top}" crs:CropLeft="{crop.left}" crs:CropBottom="{crop.bottom}" crs:CropRight="{crop.right}"
 crs:CropAngle="{angle}" crs:CropConstrainToWarp="0" crs:HasCrop="{has_crop}" crs:HasSettings="True"/>
</rdf:RDF></x:xmpmeta>
"""


#: darktable 2.x's history format (``xmp_version`` 1): pic does not append to it (``UnsupportedSidecarError``).
XMP_V1 = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" darktable:xmp_version="1"
 darktable:raw_params="0" darktable:history_end="1">
 <darktable:history><rdf:Seq><rdf:li darktable:num="0" darktable:operation="flip" darktable:enabled="1"
  darktable:modversion="2" darktable:params="ffffffff"/></rdf:Seq></darktable:history>
</rdf:Description></rdf:RDF></x:xmpmeta>
"""
