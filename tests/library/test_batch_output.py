"""Issue 15, point 8: what ``pic batch`` says is true and its ``--json`` is valid.

* one target's failure still lists (and remembers) what the other targets wrote;
* a darktable sidecar pic cannot append to (``xmp_version 1``) says so, not "sidecar not written", and is not
  rewritten on every run;
* a file name that is not UTF-8 gives valid UTF-8 JSON from which the name's bytes come back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from editor_fixtures import XMP_V1

from conftest import jpeg_bytes, make_photo
from pic_cli.main import cli
from pic_plugin.core import jsontext
from pic_plugin.library.catalog import Catalog


def batch(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(cli, ["batch", *args, "--json", "-j", "1", "--fast"], catch_exceptions=False)
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def one_photo(folder: Path, name: str = "IMG.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    img = folder / name
    img.write_bytes(jpeg_bytes(make_photo(600, 400, seed=2, subject=(0.3, 0.4))))
    return img


def test_a_failed_crs_write_still_lists_pic_and_darktable(tmp_path: Path) -> None:
    img = one_photo(tmp_path / "p")
    (tmp_path / "p" / "IMG.xmp").write_text("<x:xmpmeta not xml")  # Lightroom's sidecar is unreadable
    cat = tmp_path / "cat.db"
    code, rows, err = batch(str(img), "--targets", "pic,darktable,crs", "--catalog", str(cat))
    assert code != 0
    row = rows[0]
    assert row["status"] == "error"
    assert row["error"].startswith("crs not written: ") and row["error"].endswith("(pic, darktable written)"), row
    assert "sidecar not written" not in row["error"]
    assert row["written"]["pic"] == "written" and row["written"]["darktable"] == "written"
    assert row["written"]["crs"] == "error"
    with Catalog(cat) as catalog:  # the darktable entry pic wrote stays known as pic's (library route, re-runs)
        record = catalog.image(img)
        assert record is not None
        saved = catalog.suggestions_for_image(record.id)[0]["written"]
    assert saved["darktable_entry"] and saved["error"] == row["error"]


def test_an_xmp_version_1_sidecar_says_what_was_written_and_is_not_rewritten_each_run(tmp_path: Path) -> None:
    img = one_photo(tmp_path / "p")
    side = tmp_path / "p" / "IMG.jpg.xmp"
    side.write_text(XMP_V1)
    cat = ["--catalog", str(tmp_path / "cat.db")]
    code, rows, _ = batch(str(img), *cat)
    row = rows[0]
    assert code != 0 and row["status"] == "error"
    assert row["error"].startswith("darktable not written: darktable:xmp_version 1 is not supported"), row
    assert row["error"].endswith("(pic written)") and "sidecar not written" not in row["error"]
    assert row["written"]["pic"] == "written"
    stamp = (side.stat().st_mtime_ns, side.read_bytes())
    time.sleep(1.1)  # pic's record holds its creation time in seconds: a rewrite would change the file
    code, rows, _ = batch(str(img), *cat)
    assert code != 0 and rows[0]["status"] == "error"
    assert rows[0]["error"].endswith("unchanged since the last run") and "xmp_version 1" in rows[0]["error"]
    assert (side.stat().st_mtime_ns, side.read_bytes()) == stamp
    # a transient failure is retried: once the user changes the sidecar, pic looks again
    side.write_text(XMP_V1.replace('xmp_version="1"', 'xmp_version="5"'))
    code, rows, _ = batch(str(img), *cat)
    assert code == 0 and rows[0]["status"] == "done" and rows[0]["written"]["darktable"] == "written"


def test_jsontext_escapes_lone_surrogates_losslessly() -> None:
    name = os.fsdecode(b"caf\xe9 \xff\xfe.jpg")
    text = jsontext.dumps({"path": name, "note": "ünï \u2713"})
    text.encode("utf-8")  # no lone surrogate left
    assert "\\udce9" in text and "ünï ✓" in text  # valid characters stay readable
    assert os.fsencode(json.loads(text)["path"]) == b"caf\xe9 \xff\xfe.jpg"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="non-UTF-8 file names need a POSIX file system")
@pytest.mark.parametrize("command", ["batch", "suggest"])
def test_json_for_a_non_utf8_file_name_is_valid_utf8(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    raw = b"caf\xe9\xff.jpg"
    with open(os.path.join(os.fsencode(folder), raw), "wb") as f:
        f.write(jpeg_bytes(make_photo(600, 400, seed=3)))
    target = str(folder) if command == "batch" else os.fsdecode(os.path.join(os.fsencode(folder), raw))
    args = [command, target, "--json", "--catalog", str(tmp_path / "c.db")] + (
        ["--fast", "-j", "1"] if command == "batch" else [])
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"}
    proc = subprocess.run([sys.executable, "-m", "pic_cli.main", *args], capture_output=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    line = proc.stdout.decode("utf-8").splitlines()[0]  # strict: raw \xe9 / \xff bytes would fail here
    assert "\\udce9\\udcff" in line
    assert os.fsencode(json.loads(line)["path"]).endswith(b"/" + raw)
