"""The personalization commands through click's CliRunner, on a throw-away catalog and generated photos."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import jpeg_bytes, make_photo
from pic_cli.model_commands import COMMANDS
from pic_plugin.library.catalog import Catalog
from pic_plugin.model.network import load_prior


@pytest.fixture
def pic() -> click.Group:
    @click.group()
    def group() -> None:
        pass

    for command in COMMANDS:
        group.add_command(command)
    return group


def test_every_command_has_help(pic: click.Group) -> None:
    runner = CliRunner()
    for name in ("profile", "learn", "eval", "train", "model"):
        result = runner.invoke(pic, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "--catalog" in result.output or name == "train"
        assert len(pic.commands[name].help or "") > 20


def test_profile_set_show_unset(pic: click.Group, catalog_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(
        pic,
        [
            "profile",
            "--user",
            "me",
            "--set",
            "ratio=4:5",
            "--set",
            "framing=tight",
            "--set",
            "genre=birds",
            "--catalog",
            str(catalog_path),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "ratio = 4:5" in r.output and "not used by the model" in r.output
    # What the profile says becomes a framing rule the user can read back.
    assert "framing habit: 4:5 (turned with the photo); room around the subject 1.30x" in r.output
    r = runner.invoke(pic, ["profile", "--user", "me", "--unset", "genre", "--json", "--catalog", str(catalog_path)])
    data = json.loads(r.output)
    assert data["attributes"] == {"ratio": "4:5", "framing": "tight"}
    assert data["ignored_by_model"] == []
    assert data["framing_habit"].endswith("from your profile")
    r = runner.invoke(pic, ["profile", "--user", "me", "--set", "oops", "--catalog", str(catalog_path)])
    assert r.exit_code == 2


def _crop_csv(tmp_path: Path, n: int = 4) -> Path:
    lines = ["path,left,top,right,bottom"]
    for i in range(n):
        name = f"img {i}.jpg"  # a space in the name on purpose
        cx = 0.25 + 0.5 * i / max(n - 1, 1)
        (tmp_path / name).write_bytes(jpeg_bytes(make_photo(480, 320, seed=i, subject=(cx, 0.5))))
        lines.append(f"{name},{cx - 0.2:.3f},0.2,{cx + 0.2:.3f},0.8")
    f = tmp_path / "crops.csv"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_learn_versions_and_rollback(pic: click.Group, tmp_path: Path, catalog_path: Path) -> None:
    load_prior()  # the shipped weights must be there
    runner = CliRunner()
    crops = _crop_csv(tmp_path)
    r = runner.invoke(pic, ["learn", "--user", "me", "--crops", str(crops), "--json", "--catalog", str(catalog_path)])
    assert r.exit_code == 0, r.output
    first = json.loads(r.output.strip().splitlines()[-1])
    assert first["added"] == 4 and first["k"] == 4 and first["version"] == 1
    assert "fits your 4 crops" in first["framing_habit"]
    # Same crops again: nothing new, but a new version is fitted (idempotent crops).
    r = runner.invoke(pic, ["learn", "--user", "me", "--crops", str(crops), "--json", "--catalog", str(catalog_path)])
    assert json.loads(r.output.strip().splitlines()[-1])["added"] == 0
    r = runner.invoke(pic, ["model", "--user", "me", "--json", "--catalog", str(catalog_path)])
    versions = json.loads(r.output)
    assert [v["version"] for v in versions] == [1, 2] and versions[1]["active"]
    r = runner.invoke(pic, ["model", "--user", "me", "--rollback", "--catalog", str(catalog_path)])
    assert r.exit_code == 0 and "* v1" in r.output and "framing habit (active):" in r.output
    with Catalog(catalog_path) as cat:
        assert cat.active_model("me")[0] == 1  # type: ignore[index]
        assert len(cat.user_crops("me")) == 4
    r = runner.invoke(pic, ["model", "--user", "me", "--rollback", "--catalog", str(catalog_path)])
    assert r.exit_code == 2  # nothing older than v1


def test_learn_rejects_bad_files(pic: click.Group, tmp_path: Path, catalog_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text("path,left,top\nx.jpg,0,0\n")
    r = runner.invoke(pic, ["learn", "--user", "me", "--crops", str(bad), "--catalog", str(catalog_path)])
    assert r.exit_code == 2 and "header" in r.output
    bad.write_text("path,left,top,right,bottom\nx.jpg,0.5,0,0.2,1\n")
    r = runner.invoke(pic, ["learn", "--user", "me", "--crops", str(bad), "--catalog", str(catalog_path)])
    assert r.exit_code == 2 and ":2:" in r.output
    r = runner.invoke(pic, ["learn", "--user", "me", "--catalog", str(catalog_path)])
    assert r.exit_code == 2


def test_learn_reports_unreadable_photos(pic: click.Group, tmp_path: Path, catalog_path: Path) -> None:
    (tmp_path / "ok.jpg").write_bytes(jpeg_bytes(make_photo(320, 240)))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    f = tmp_path / "crops.jsonl"
    f.write_text(
        '{"path": "ok.jpg", "left": 0.1, "top": 0.1, "right": 0.9, "bottom": 0.9}\n'
        '{"path": "broken.jpg", "left": 0.1, "top": 0.1, "right": 0.9, "bottom": 0.9}\n'
    )
    r = CliRunner().invoke(pic, ["learn", "--user", "me", "--crops", str(f), "--catalog", str(catalog_path)])
    assert r.exit_code == 1
    assert "broken.jpg" in r.output and "fine-tuned on 1 crops" in r.output


def test_eval_on_a_users_own_crops(pic: click.Group, tmp_path: Path, catalog_path: Path) -> None:
    runner = CliRunner()
    crops = _crop_csv(tmp_path, n=8)
    assert (
        runner.invoke(pic, ["learn", "--user", "me", "--crops", str(crops), "--catalog", str(catalog_path)]).exit_code
        == 0
    )
    r = runner.invoke(pic, ["eval", "--user", "me", "--heldout", "0.4", "--json", "--catalog", str(catalog_path)])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["train_crops"] + report["heldout_crops"] == 8
    assert set(report["methods"]) == {"centre", "user-mean", "prior", "pic"}
    assert all(0 <= m["iou"] <= 1 for m in report["methods"].values())


def test_learn_from_library_reads_the_editors(pic: click.Group, tmp_path: Path, catalog_path: Path) -> None:
    """`pic learn --from-library` harvests real digiKam versions (and re-reading changes nothing)."""
    from editor_fixtures import digikam_library

    lib = digikam_library(tmp_path)
    args = ["learn", "--user", "me", "--from-library", str(lib), "--json", "--catalog", str(catalog_path)]
    r = CliRunner().invoke(pic, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["harvested"] == {"photos": 3, "crops": 2, "by_source": {"digikam": 2}}
    assert out["added"] == 2 and out["k"] == 2 and out["version"] == 1
    again = json.loads(CliRunner().invoke(pic, args).output.strip().splitlines()[-1])
    assert again["added"] == 0 and again["k"] == 2 and again["version"] == 2


def test_rejected_suggestions_are_not_learned_as_crops(tmp_path: Path, catalog_path: Path) -> None:
    from pic_plugin.core.geometry import Box
    from pic_plugin.library.learn import add_crops, user_examples

    photos = []
    for i in range(2):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(jpeg_bytes(make_photo(320, 240, seed=i)))
        photos.append(p)
    with Catalog(catalog_path) as cat:
        add_crops(cat, "me", [(photos[0], Box(0.1, 0.1, 0.8, 0.8), "cli", 1.0),
                              (photos[1], Box(0.2, 0.2, 0.9, 0.9), "review", 0.0)])  # fmt: skip
        examples, errors = user_examples(cat, "me")
    assert errors == [] and len(examples) == 1 and examples[0].crop == Box(0.1, 0.1, 0.8, 0.8)


def test_from_library_takes_several_paths_after_one_flag(pic: click.Group, tmp_path: Path, catalog_path: Path) -> None:
    """`pic learn --from-library A B` (DESIGN section 3) reads both; a bare path without the flag is refused."""
    from editor_fixtures import digikam_library

    a, b = digikam_library(tmp_path / "a"), digikam_library(tmp_path / "b")
    r = CliRunner().invoke(
        pic, ["learn", "--user", "me", "--from-library", str(a), str(b), "--json", "--catalog", str(catalog_path)]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["harvested"]["photos"] == 6 and out["harvested"]["crops"] == 4
    r = CliRunner().invoke(pic, ["learn", "--user", "me", str(a), "--catalog", str(catalog_path)])
    assert r.exit_code == 2 and "--from-library" in r.output
