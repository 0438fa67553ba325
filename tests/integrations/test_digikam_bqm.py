"""plugins/digikam/pic-bqm.sh run exactly the way digiKam's Batch Queue Manager runs a "User Shell Script":
``$INPUT``/``$OUTPUT`` replaced by double-quoted paths, ``/bin/sh -c TEXT``, digiKam's environment variables, a
60 s limit; hostile file names; exiv2 (digiKam's metadata engine) reads back what digiKam would read."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO_ROOT, jpeg_bytes, make_photo, missing_requirement

ROOT = REPO_ROOT
SCRIPT = ROOT / "plugins" / "digikam" / "pic-bqm.sh"
PIC = Path(sys.executable).with_name("pic")

pytestmark = pytest.mark.slow

HOSTILE = [
    "it's \"$HOME\" `touch pwned1` $(touch pwned2).jpg",
    "new\nline; touch pwned3.jpg",
    "back\\slash & | > pwned4.jpg",
    "ümlaut é 名前.jpg",
    "-leading dash.jpg",
]


def bqm_run(text: str, src: Path, out: Path, home: Path, cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """What digiKam's UserScript::toolOperations does (userscript.cpp): textual replace, then /bin/sh -c."""
    script = text.replace("$INPUT", f'"{os.fsdecode(src)}"').replace("$OUTPUT", f'"{os.fsdecode(out)}"')
    environ = dict(os.environ, HOME=str(home), COLORLABEL="0", PICKLABEL="0", RATING="3", COMMENTS="a \"comment\" $x",
                   TITLE="", TAGSPATH="People/Anna;Places/Berlin", **env)
    start = time.monotonic()
    proc = subprocess.run(["/bin/sh", "-c", script], env=environ, cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    return proc, time.monotonic() - start


@pytest.fixture
def bqm(tmp_path: Path, catalog_path: Path):
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "pic").symlink_to(PIC)  # the script's default location of pic
    album = tmp_path / "album"
    work = tmp_path / "bqm-work"
    for d in (album, work):
        d.mkdir()
    photo = jpeg_bytes(make_photo(600, 400, seed=1, subject=(0.35, 0.5)))
    for name in HOSTILE:  # one content under every name: after the first, pic answers from its catalog cache
        (album / name).write_bytes(photo)
    originals = {n: hashlib.sha256((album / n).read_bytes()).hexdigest() for n in HOSTILE}
    text = SCRIPT.read_text()

    def run(name: str, out_name: str = "BatchTool-out.jpg", settings: dict[str, str] | None = None):
        script = text
        for key, value in (settings or {}).items():  # what a user does: edit the settings lines
            script = script.replace(next(line for line in text.splitlines() if line.startswith(key + "=")),
                                    f"{key}={value}")
        return bqm_run(script, album / name, work / out_name, home, work, PIC_CATALOG=str(catalog_path))

    yield {"run": run, "album": album, "work": work, "originals": originals, "tmp": tmp_path}
    assert not list(tmp_path.rglob("pwned*")), "a file name was executed as a command"
    for n, digest in originals.items():
        assert hashlib.sha256((album / n).read_bytes()).hexdigest() == digest, "an original was modified"


def test_crop_mode_on_hostile_names(bqm) -> None:
    for name in HOSTILE:
        out = bqm["work"] / "BatchTool-out.jpg"
        out.unlink(missing_ok=True)
        proc, seconds = bqm["run"](name)
        assert proc.returncode == 0, (name, proc.stderr)
        assert seconds < 50
        with Image.open(out) as img:
            assert img.format == "JPEG"
            assert img.width / img.height == pytest.approx(4 / 5, abs=0.01)  # RATIO=4:5 of the shipped script
        assert oct(out.stat().st_mode & 0o777) != "0o600"
        assert not (bqm["album"] / (name + ".xmp")).exists()  # crop mode writes no sidecar


def test_output_file_type_other_than_input(bqm) -> None:
    proc, _ = bqm["run"](HOSTILE[0], "BatchTool-out.png", {"RATIO": "1:1"})
    assert proc.returncode == 0, proc.stderr
    with Image.open(bqm["work"] / "BatchTool-out.png") as img:
        assert img.format == "PNG" and img.width == img.height


def _exiv2(path: Path) -> str:
    exe = shutil.which("exiv2")
    if exe is None:
        missing_requirement("exiv2 is not installed (apt-get install exiv2)")
    return subprocess.run([str(exe), "-PX", str(path)], capture_output=True, text=True, check=True).stdout


def test_metadata_mode_writes_what_digikam_reads(bqm) -> None:
    for name in HOSTILE[:2]:
        proc, seconds = bqm["run"](name, settings={"MODE": "metadata"})
        assert proc.returncode == 0, (name, proc.stderr)
        out = bqm["work"] / "BatchTool-out.jpg"
        assert out.read_bytes() == (bqm["album"] / name).read_bytes()  # pixels untouched
        sidecar = bqm["album"] / (name + ".xmp")
        seen = _exiv2(sidecar)
        assert any(line.startswith("Xmp.digiKam.TagsList") and line.endswith("pic/suggested") for line in seen.splitlines())
        assert any(line.startswith("Xmp.lr.hierarchicalSubject") and line.endswith("pic|suggested")
                   for line in seen.splitlines())
        crop_line = next(line for line in seen.splitlines() if line.startswith("Xmp.pic.Crop "))
        left, top, right, bottom = map(float, crop_line.split()[-4:])
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
        assert "Xmp.pic.Ratio" in seen and "4:5" in seen


def test_metadata_mode_keeps_existing_tags_and_compatible_naming(bqm) -> None:
    name = HOSTILE[3]
    sidecar = bqm["album"] / (Path(name).stem + ".xmp")  # "compatible with commercial programs": IMG.xmp
    sidecar.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4">'
        "<digiKam:TagsList><rdf:Seq><rdf:li>People/Anna</rdf:li></rdf:Seq></digiKam:TagsList>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>\n"
    )
    for _ in range(2):  # a second run must not add the tag twice
        proc, _ = bqm["run"](name, settings={"MODE": "metadata", "SIDECAR": "base"})
        assert proc.returncode == 0, proc.stderr
    seen = _exiv2(sidecar)
    tags = next(line for line in seen.splitlines() if line.startswith("Xmp.digiKam.TagsList"))
    assert tags.endswith("People/Anna, pic/suggested")
    assert "Xmp.xmp.Rating" in seen and "Xmp.pic.Crop" in seen
    assert not (bqm["album"] / (name + ".xmp")).exists()


def test_timeout_still_writes_output(bqm) -> None:
    proc, seconds = bqm["run"](HOSTILE[1], settings={"TIMEOUT": "0.01"})
    assert proc.returncode == 0, proc.stderr
    assert "no suggestion within" in proc.stderr
    assert (bqm["work"] / "BatchTool-out.jpg").read_bytes() == (bqm["album"] / HOSTILE[1]).read_bytes()
    assert seconds < 60


def test_placeholders_only_inside_the_here_document() -> None:
    """digiKam replaces them everywhere, comments included: one elsewhere would put a name into live shell text."""
    text = SCRIPT.read_text()
    assert text.count("$INPUT") == 1 and text.count("$OUTPUT") == 1
    body = text.split("<<'PIC_BQM_PATHS_END'\n", 1)[1]
    assert body == "$INPUT\n$OUTPUT\nPIC_BQM_PATHS_END\nexit $?\n"
    # on Linux the shell exits before it reaches them (pic reads them from /proc/$$/cmdline)
    before = text.split("<<'PIC_BQM_PATHS_END'\n", 1)[0].splitlines()
    assert 'if [ -r "/proc/$$/cmdline" ]; then "$PIC" "$@" --bqm-script-of "$$"; exit $?; fi' in before


#: Issue 15.10: names that used to end the here-document (or would end any shell text) and run what follows.
INJECTING = [
    "a\nPIC_BQM_PATHS_END\ntouch pwned-term\n.jpg",
    "b\nPIC_BQM_PATHS_END\nexit 0\ntouch pwned-exit\n.jpg",
    "c\nPIC_BQM_PATHS_END\n$(touch pwned-sub) `touch pwned-tick`\n.jpg",
    "d\nexit\n\"; touch pwned-quote; \".jpg",
]


@pytest.mark.parametrize("name", INJECTING, ids=["terminator", "terminator-exit", "substitutions", "exit-quote"])
def test_no_file_name_runs_as_shell_code(bqm, name: str) -> None:
    (bqm["album"] / name).write_bytes((bqm["album"] / HOSTILE[0]).read_bytes())
    out = bqm["work"] / "BatchTool-out.jpg"
    proc, _ = bqm["run"](name)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    assert not list(bqm["tmp"].rglob("pwned*")), "a file name was executed as a command"
    (bqm["album"] / name).unlink()


def test_without_proc_the_here_document_is_the_fallback(bqm) -> None:
    """Where /proc is missing (macOS) the script takes today's here-document form: names with quotes, dollars and
    backticks still reach pic unchanged (only a line equal to the end word is a limit there)."""
    script = SCRIPT.read_text().replace('"/proc/$$/cmdline"', '"/nonexistent/$$/cmdline"')
    out = bqm["work"] / "fallback.jpg"
    proc, _ = bqm_run(script, bqm["album"] / HOSTILE[0], out, bqm["tmp"] / "home", bqm["work"],
                      PIC_CATALOG=str(bqm["tmp"] / "c.db"))
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


def test_a_name_holding_the_output_placeholder_fails_clearly(bqm) -> None:
    name = "holiday $OUTPUT copy.jpg"
    (bqm["album"] / name).write_bytes((bqm["album"] / HOSTILE[0]).read_bytes())
    out = bqm["work"] / "BatchTool-out.jpg"
    out.unlink(missing_ok=True)
    proc, _ = bqm["run"](name)
    assert proc.returncode == 1, proc.stderr
    assert "contains the text $OUTPUT" in proc.stderr and "rename the file" in proc.stderr
    assert not out.exists()
    (bqm["album"] / name).unlink()


def test_bqm_script_of_only_reads_its_own_shell(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pic_cli.main import cli

    # pic's own process (CliRunner runs in this one) is no ancestor of pic: its command line is never read
    result = CliRunner().invoke(cli, ["crop-file", "--bqm-script-of", str(os.getpid()),
                                      "--catalog", str(tmp_path / "c.db")])
    assert result.exit_code == 2 and "not the shell that runs pic" in result.output


def test_naive_script_line_is_what_the_here_document_avoids(tmp_path: Path) -> None:
    """Why pic-bqm.sh does not simply run  pic crop-file "$INPUT" "$OUTPUT": BQM's quoting executes names."""
    victim = tmp_path / "x $(touch pwned-naive).jpg"
    proc, _ = bqm_run('printf "%s" "$INPUT" > /dev/null', victim, tmp_path / "o.jpg", tmp_path, tmp_path)
    assert proc.returncode == 0 and (tmp_path / "pwned-naive").exists()
    (tmp_path / "pwned-naive").unlink()


def test_parse_bqm_paths_takes_any_input_name() -> None:
    from pic_plugin.core.errors import PicError
    from pic_plugin.integrations.digikam_bqm import parse_bqm_paths

    src = b'/a/"quoted"\nnew "\nline\' `x` $y.jpg'
    assert parse_bqm_paths(b'"' + src + b'"\n"/tmp/o.jpg"\n') == (Path(os.fsdecode(src)), Path("/tmp/o.jpg"))
    with pytest.raises(PicError):
        parse_bqm_paths(b"/no/quotes\n/tmp/o.jpg\n")
    with pytest.raises(PicError):
        parse_bqm_paths(b'"/only/one.jpg"\n')


GROFF_LIKE = "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'GNU pic (groff) version 1.22.4'; exit 0; }\n" \
    "echo \"$0: unrecognized option '$1'\" >&2; exit 1\n"


def test_groffs_pic_is_never_run_and_a_missing_pic_fails_in_digikam(bqm, tmp_path: Path) -> None:
    """Issue 14.5: without ~/.local/bin/pic the script used to fall back to `pic` on PATH, i.e. groff's /usr/bin/pic
    (Debian's groff-base): exit 1, which digiKam 7.9 does not count as a failure. Now it asks each candidate
    `--version`, skips groff's, and exits 127 ("command not found" in digiKam 7.9 and 8) with a clear message."""
    os.remove(bqm["tmp"] / "home" / ".local" / "bin" / "pic")
    groff_dir = tmp_path / "groff-bin"
    groff_dir.mkdir()
    (groff_dir / "pic").write_text(GROFF_LIKE)
    (groff_dir / "pic").chmod(0o755)
    path = f"{groff_dir}:/usr/bin:/bin"  # /usr/bin/pic is groff's own where groff-base is installed
    text = SCRIPT.read_text()
    out = bqm["work"] / "out.jpg"
    proc, _ = bqm_run(text, bqm["album"] / HOSTILE[0], out, bqm["tmp"] / "home", bqm["work"], PATH=path)
    assert proc.returncode == 127, (proc.returncode, proc.stderr)
    assert "pic (the crop tool) not found" in proc.stderr and "unrecognized option" not in proc.stderr
    assert not out.exists()
    # pic later on PATH than groff's: found by asking, and it runs
    proc, _ = bqm_run(text, bqm["album"] / HOSTILE[0], out, bqm["tmp"] / "home", bqm["work"],
                      PATH=f"{groff_dir}:/usr/bin:{PIC.parent}:/bin", PIC_CATALOG=str(bqm["tmp"] / "c.db"))
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


def test_metadata_mode_keeps_the_users_lightroom_keywords_visible_in_digikam(bqm) -> None:
    """Issue 14.4: a sidecar whose tags are only in lr:hierarchicalSubject. digiKam reads the first non-empty tag
    field (TagsList first), so pic's tag alone in TagsList would hide the user's tags: TagsList is seeded with them."""
    name = HOSTILE[4]
    sidecar = bqm["album"] / (name + ".xmp")
    sidecar.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:lr="http://ns.adobe.com/lightroom/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|France|Paris</rdf:li><rdf:li>People|Anna</rdf:li>"
        "</rdf:Bag></lr:hierarchicalSubject><dc:subject><rdf:Bag><rdf:li>Paris</rdf:li><rdf:li>Anna</rdf:li>"
        "</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>\n"
    )
    for _ in range(2):
        proc, _ = bqm["run"](name, settings={"MODE": "metadata"})
        assert proc.returncode == 0, proc.stderr
    seen = _exiv2(sidecar).splitlines()
    tags = next(line for line in seen if line.startswith("Xmp.digiKam.TagsList"))
    assert tags.endswith("Places/France/Paris, People/Anna, pic/suggested"), tags
    lr = next(line for line in seen if line.startswith("Xmp.lr.hierarchicalSubject"))
    assert lr.endswith("Places|France|Paris, People|Anna, pic|suggested"), lr
    subject = next(line for line in seen if line.startswith("Xmp.dc.subject"))
    assert subject.endswith("Paris, Anna")
