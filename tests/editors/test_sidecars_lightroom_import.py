"""Cropped twice (issue 15, point 7): darktable imports a Lightroom crop from ``IMG.xmp`` on a photo's first darkroom
load and appends it after the history it has, so pic's darktable crop entry beside it would crop the Lightroom crop
again. pic leaves darktable alone for such a photo and says why."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from editor_fixtures import LR_SIZE, lightroom_xmp
from PIL import Image

from conftest import jpeg_bytes, make_photo
from pic_plugin.core.geometry import Box
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors import darktable
from pic_plugin.editors.darktable import NS_DT, read_history
from pic_plugin.editors.picns import read_record
from pic_plugin.editors.sidecars import write_suggestion
from pic_plugin.editors.xmp import parse_xmp

PIC_CROP = Box(0.2, 0.1, 0.8, 0.7)


#: darktable's own sidecar after a darkroom load: auto-presets applied (it no longer reads IMG.xmp), no crop.
DARKTABLE_LOADED = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" darktable:xmp_version="5"'
    ' darktable:raw_params="0" darktable:auto_presets_applied="1" darktable:history_end="0"'
    ' darktable:iop_order_version="2"><darktable:history><rdf:Seq/></darktable:history>'
    '</rdf:Description></rdf:RDF></x:xmpmeta>')


def photo(folder: Path, lr: str | None = None, name: str = "IMG") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    img = folder / f"{name}.jpg"
    img.write_bytes(jpeg_bytes(make_photo(*LR_SIZE, seed=1)))
    if lr is not None:
        (folder / f"{name}.xmp").write_text(lr)
    return img


def suggestion(crop: Box = PIC_CROP) -> Suggestion:
    return Suggestion(path="", crop=crop, score=1.0, ratio="free", size=LR_SIZE, model="t")


def crop_entries(img: Path) -> list[str]:
    path = darktable.sidecar_path(img)
    if not path.exists():
        return []
    hist = read_history(parse_xmp(path.read_bytes()))
    return [e.operation for e in (hist.entries if hist else []) if e.operation in ("crop", "clipping")]


def test_a_lightroom_crop_darktable_will_import_is_kept_and_no_darktable_crop_is_added(tmp_path: Path) -> None:
    img = photo(tmp_path, lightroom_xmp())
    lr_before = (tmp_path / "IMG.xmp").read_bytes()
    report = write_suggestion(img, suggestion(), 1)
    dt = report.results["darktable"]
    assert dt.status == "kept-user-crop"
    assert "Lightroom crop in IMG.xmp" in dt.message and "crop twice" in dt.message
    assert crop_entries(img) == []  # nothing darktable would stack on the imported crop
    assert report.darktable_entry is None
    rec = read_record(parse_xmp(darktable.sidecar_path(img).read_bytes()))
    assert rec is not None and rec.darktable is None and rec.state == "suggested"  # pic's record: the suggestion only
    assert (tmp_path / "IMG.xmp").read_bytes() == lr_before  # the Lightroom sidecar is never touched
    again = write_suggestion(img, suggestion(), 1)
    assert again.status("darktable") == "kept-user-crop" and crop_entries(img) == []


def test_force_does_not_stack_a_crop_either(tmp_path: Path) -> None:
    img = photo(tmp_path, lightroom_xmp())
    dt = write_suggestion(img, suggestion(), 1, force=True).results["darktable"]
    assert dt.status == "kept-user-crop" and "--targets crs" in dt.message
    assert crop_entries(img) == []


def test_pics_earlier_entry_is_taken_out_when_a_lightroom_crop_appears(tmp_path: Path) -> None:
    img = photo(tmp_path)
    assert write_suggestion(img, suggestion(), 1).status("darktable") == "written"
    assert crop_entries(img) == ["crop"]
    (tmp_path / "IMG.xmp").write_text(lightroom_xmp())  # the user crops in Lightroom before darktable saw the photo
    dt = write_suggestion(img, suggestion(), 1).results["darktable"]
    assert dt.status == "kept-user-crop" and "taken out" in dt.message
    assert crop_entries(img) == []
    doc = parse_xmp(darktable.sidecar_path(img).read_bytes())
    assert doc.get(NS_DT, "history_end") == "0"
    rec = read_record(doc)
    assert rec is not None and rec.darktable is None


@pytest.mark.parametrize("lr", [lightroom_xmp(has_crop="False"), lightroom_xmp(crop=Box(0, 0, 1, 1))],
                         ids=["HasCrop-False", "whole-frame"])
def test_no_crop_to_import_means_a_normal_write(tmp_path: Path, lr: str) -> None:
    img = photo(tmp_path, lr)
    assert write_suggestion(img, suggestion(), 1).status("darktable") == "written"
    assert crop_entries(img) == ["crop"]


def test_once_darktable_loaded_the_photo_it_no_longer_reads_img_xmp(tmp_path: Path) -> None:
    img = photo(tmp_path, lightroom_xmp())
    darktable.sidecar_path(img).write_text(DARKTABLE_LOADED)
    assert write_suggestion(img, suggestion(), 1).status("darktable") == "written"


def test_pics_own_crs_crop_is_not_doubled_by_a_darktable_entry(tmp_path: Path) -> None:
    img = photo(tmp_path)
    report = write_suggestion(img, suggestion(), 1, targets=("pic", "darktable", "crs"))
    assert report.status("crs") == "written"
    assert report.status("darktable") == "skipped" and "pic's crs crop" in report.results["darktable"].message
    assert crop_entries(img) == []
    rec = read_record(parse_xmp(darktable.sidecar_path(img).read_bytes()))
    assert rec is not None and rec.state == "applied"  # applied through the crs crop darktable imports


def test_batch_reports_the_kept_lightroom_crop(tmp_path: Path) -> None:
    from pic_cli.main import cli

    photo(tmp_path / "photos", lightroom_xmp())
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "photos"), "--catalog", str(tmp_path / "cat.db"),
                                      "--json", "--jobs", "1", "--fast"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.splitlines()[0])
    assert line["status"] == "done"
    assert line["written"]["darktable"] == "kept-user-crop"
    assert "Lightroom crop in IMG.xmp" in line["written"]["notes"]["darktable"]
    assert "1 with your own crop kept" in result.stderr


@pytest.mark.slow
@pytest.mark.darktable
def test_darktable_renders_the_lightroom_crop_not_a_crop_of_it(tmp_path: Path, darktable_cli: str) -> None:
    """Real darktable-cli: the photo rendered from the Lightroom sidecar alone, and after pic wrote its sidecar."""

    def render(img: Path, sidecar: Path | None) -> tuple[int, int]:
        out = img.parent / "out.jpg"
        args = [darktable_cli, str(img)] + ([str(sidecar)] if sidecar else []) + [
            str(out), "--core", "--configdir", str(img.parent / "dtconf"), "--cachedir", str(img.parent / "dtcache")]
        proc = subprocess.run(args, capture_output=True, timeout=240, check=False)
        assert out.exists(), proc.stderr.decode(errors="replace")[-2000:]
        with Image.open(out) as im:
            return im.size

    lr_only = render(photo(tmp_path / "lr", lightroom_xmp()), None)
    assert abs(lr_only[0] - 360) <= 1 and abs(lr_only[1] - 320) <= 1  # darktable did import the Lightroom crop
    img = photo(tmp_path / "pic", lightroom_xmp())
    assert write_suggestion(img, suggestion(), 1).status("darktable") == "kept-user-crop"
    assert render(img, darktable.sidecar_path(img)) == lr_only  # was 215 x 191: PIC_CROP of the Lightroom crop


# --- the review page's accepted crop (write_user_crop) follows the same rule ---------------------------------------


def test_an_accepted_crop_beside_an_imported_lightroom_crop_adds_no_darktable_entry(tmp_path: Path) -> None:
    from pic_plugin.editors.user_crop import write_user_crop

    img = photo(tmp_path)
    assert write_suggestion(img, suggestion(), 1).status("darktable") == "written"  # pic's entry, before Lightroom
    (tmp_path / "IMG.xmp").write_text(lightroom_xmp())
    lr_before = (tmp_path / "IMG.xmp").read_bytes()
    report = write_user_crop(img, PIC_CROP, 1, size=LR_SIZE, force=True)  # as the review page writes it
    dt = report.results["darktable"]
    assert report.ok and dt.status == "skipped"
    assert "Lightroom crop in IMG.xmp" in dt.message and "crop twice" in dt.message and "taken out" in dt.message
    assert crop_entries(img) == []  # neither pic's old entry nor the accepted crop: darktable would crop twice
    rec = read_record(parse_xmp(darktable.sidecar_path(img).read_bytes()))
    assert rec is not None and rec.state == "accepted" and rec.darktable is None  # the decision stays recorded
    assert report.status("pic") == "written"
    assert (tmp_path / "IMG.xmp").read_bytes() == lr_before


def test_an_accepted_crop_written_to_crs_is_not_doubled_by_a_darktable_entry(tmp_path: Path) -> None:
    from pic_plugin.editors.user_crop import write_user_crop

    img = photo(tmp_path, lightroom_xmp())
    report = write_user_crop(img, PIC_CROP, 1, targets=("pic", "darktable", "crs"), size=LR_SIZE, force=True)
    assert report.status("crs") == "written" and report.status("darktable") == "skipped"
    assert "takes this crop from IMG.xmp" in report.results["darktable"].message
    assert crop_entries(img) == []


def test_an_accepted_crop_once_darktable_loaded_the_photo_is_a_darktable_entry(tmp_path: Path) -> None:
    from pic_plugin.editors.user_crop import write_user_crop

    img = photo(tmp_path, lightroom_xmp())
    darktable.sidecar_path(img).write_text(DARKTABLE_LOADED)
    assert write_user_crop(img, PIC_CROP, 1, size=LR_SIZE, force=True).status("darktable") == "written"
    assert crop_entries(img) == ["crop"]
