"""One image for digiKam's Batch Queue Manager "User Shell Script" tool (``pic crop-file``).

How BQM runs a user script (digiKam ``core/dplugins/bqm/custom/userscript/userscript.cpp``): the script text has
every ``$INPUT``, then every ``$OUTPUT``, replaced by the path wrapped in double quotes, then runs as
``/bin/sh -c TEXT`` with TITLE, COMMENTS, COLORLABEL, PICKLABEL, RATING and TAGSPATH in the environment; after 60 s
it is killed and the image fails; the script must create ``$OUTPUT``.

Wrapping in ``"..."`` does not protect a path containing ``"``, ``$``, a backtick or ``\\``: the shell expands them
before any program starts. pic's BQM script (plugins/digikam/pic-bqm.sh) therefore keeps ``$INPUT`` and
``$OUTPUT`` at its very end, after the line that runs pic and exits. On Linux pic reads them from the script text
itself, the ``-c`` argument in ``/proc/PID/cmdline`` of the shell (``--bqm-script-of PID``,
``paths_from_script``): a shell runs ``-c`` text one command at a time and stops at ``exit``, so it never parses
them and no name can be forged into shell code. Where there is no ``/proc`` the same lines are a *quoted
here-document* read from stdin (``--bqm-paths -``, ``parse_bqm_paths``); there a name holding a line that equals
the here-document's end word still ends it early. A name holding the text ``$OUTPUT`` reaches pic with the output
path in its place (digiKam's second replace): ``check_substitution`` fails that image with a clear message.

Two modes: ``crop`` writes the cropped image to OUTPUT (exact ratio, quality/ICC/EXIF kept, via
``export.export_crop``); ``metadata`` leaves the pixels alone, copies INPUT to OUTPUT and records the suggestion in
the sidecar digiKam reads for INPUT (tag ``pic/suggested`` + pic's namespace). Whatever happens inside the time
limit, OUTPUT is written: when the suggestion is not ready in time the uncropped copy is (``status="timeout"``).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.atomic import atomic_path
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import Ratio
from pic_plugin.core.suggestion import Suggestion
from pic_plugin.editors.digikam.tags import SidecarNaming, write_digikam_suggestion
from pic_plugin.imaging.decode import image_format
from pic_plugin.imaging.export import export_crop
from pic_plugin.library.analyze import analyze_with_catalog
from pic_plugin.library.catalog import Catalog
from pic_plugin.model import scorers

#: digiKam kills the script after 60 s; pic gives up on the suggestion well before and still writes OUTPUT.
DEFAULT_TIMEOUT = 45.0
BQM_TIMEOUT = 60.0

Mode = Literal["crop", "metadata"]


class BqmTimeout(BaseException):
    """The time limit ran out before the suggestion was ready (a BaseException, so that no ``except Exception``
    on the way turns it into an ordinary error)."""


@dataclass
class BqmResult:
    status: str  # cropped | tagged | timeout
    output: Path
    suggestion: Suggestion | None = None
    sidecar: Path | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "output": os.fsdecode(self.output)}
        if self.suggestion is not None:
            out.update(self.suggestion.to_json())
        if self.sidecar is not None:
            out["sidecar"] = os.fsdecode(self.sidecar)
        if self.message:
            out["message"] = self.message
        return out


def parse_bqm_paths(data: bytes) -> tuple[Path, Path]:
    """INPUT and OUTPUT from the here-document body BQM produced: ``"INPUT"\\n"OUTPUT"\\n``.

    INPUT may itself contain newlines (and anything else), so OUTPUT is the *last* line (a name BQM makes up in
    its work folder) and INPUT is everything before it.
    """
    body = data[:-1] if data.endswith(b"\n") else data
    head, sep, last = body.rpartition(b"\n")
    if not sep:
        raise PicError("expected two lines from BQM: \"$INPUT\" and \"$OUTPUT\"")

    def unquote(part: bytes, what: str) -> Path:
        if len(part) < 2 or not (part.startswith(b'"') and part.endswith(b'"')):
            raise PicError(f"{what} from BQM is not a double-quoted path: {part[:80]!r}")
        return Path(os.fsdecode(part[1:-1]))

    return unquote(head, "$INPUT"), unquote(last, "$OUTPUT")


#: The script's here-document line (before the paths) and its end word (after them): pic-bqm.sh.
SCRIPT_START = b"<<'PIC_BQM_PATHS_END'\n"
SCRIPT_END = b"\nPIC_BQM_PATHS_END"


def _ancestors(depth: int = 4) -> list[int]:
    """This process's parent, grandparent, ... (Linux /proc), ``depth`` of them at most."""
    out, current = [], os.getpid()
    for _ in range(depth):
        try:
            with open(f"/proc/{current}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            break
        current = int(stat.rpartition(b")")[2].split()[1])  # the name in (...) may hold spaces
        if current <= 1:
            break
        out.append(current)
    return out


def paths_from_script(pid: int) -> tuple[Path, Path]:
    """INPUT and OUTPUT from the text of pic-bqm.sh as the shell ``pid`` (pic's parent, or a wrapper's) runs it.

    ``/proc/PID/cmdline`` is ``sh\\0-c\\0TEXT\\0``; the paths are between the script's first here-document line
    (fixed script text, before any path) and its *last* end word (fixed text after OUTPUT), so a name holding the
    end word or anything else is just part of INPUT."""
    if pid not in _ancestors():
        raise PicError(f"--bqm-script-of {pid}: not the shell that runs pic (pass $$ from pic-bqm.sh)")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError as exc:
        raise PicError(f"--bqm-script-of {pid}: cannot read its command line: {exc.strerror or exc}") from exc
    text = argv[argv.index(b"-c") + 1] if b"-c" in argv[1:-1] else b""
    _, sep, rest = text.partition(SCRIPT_START)
    body, sep_end, _ = rest.rpartition(SCRIPT_END)
    if not sep or not sep_end:
        raise PicError(f"--bqm-script-of {pid}: that shell is not running pic-bqm.sh (its paths were not found)")
    return parse_bqm_paths(body + b"\n")


def check_substitution(src: Path, out: Path) -> None:
    """digiKam replaces ``$OUTPUT`` inside the already inserted INPUT too: such a name cannot reach pic intact."""
    if f'"{os.fsdecode(out)}"' in os.fsdecode(src):
        raise PicError("the file name contains the text $OUTPUT, which digiKam replaces by the output path before "
                       "pic sees it: rename the file (this image is not processed)")


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise ``BqmTimeout`` in this (main) thread after ``seconds``; a no-op elsewhere or without a limit."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise BqmTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _usual_mode(path: Path) -> None:
    """Temp files are created 0600; the image BQM moves into the album should get the usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _pil_format(path: Path) -> str | None:
    return Image.registered_extensions().get(path.suffix.lower())


def _atomic_copy(src: Path, out: Path) -> None:
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)


def _convert(src: Path, out: Path, fmt: str) -> None:
    """Re-save ``src`` as ``fmt`` (BQM's "Output file type"), keeping ICC profile and EXIF."""
    with atomic_path(out) as tmp, Image.open(src) as img:
        img.load()
        kwargs: dict[str, Any] = {"format": fmt}
        if img.info.get("icc_profile"):
            kwargs["icc_profile"] = img.info["icc_profile"]
        exif = img.getexif()
        if exif:
            kwargs["exif"] = exif.tobytes()
        if fmt == "JPEG":
            kwargs["quality"] = 95
            img = img.convert("RGB") if img.mode not in ("RGB", "L", "CMYK") else img
        img.save(tmp, **kwargs)


def _copy_as(src: Path, out: Path) -> None:
    """OUTPUT with the unchanged picture: the same bytes, or converted when BQM asked for another file type."""
    want = _pil_format(out)
    have = _pil_format(src)
    if want is None or want == have or image_format(src) == "raw" and image_format(out) == "raw":
        _atomic_copy(src, out)
    else:
        _convert(src, out, want)


def _write_crop(src: Path, s: Suggestion, ratio: Ratio, out: Path) -> None:
    want = _pil_format(out)
    if image_format(out) == "raw" or (image_format(src) == "raw" and want is None):
        raise PicError("BQM's output type is a RAW format: set the tool's Output file type to JPEG, PNG or TIFF")
    same = want == _pil_format(src) or (image_format(src) == "raw" and want == "JPEG")
    if same:
        export_crop(src, s.crop, ratio, out)
        return
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".pic-") as tmp:
        staged = Path(tmp) / ("crop" + (".jpg" if image_format(src) == "raw" else src.suffix))
        export_crop(src, s.crop, ratio, staged)
        _convert(staged, out, want or "JPEG")


def crop_file(
    src: Path,
    out: Path,
    catalog: Catalog,
    *,
    ratio: Ratio,
    user: str | None = None,
    mode: Mode = "crop",
    timeout: float | None = DEFAULT_TIMEOUT,
    naming: SidecarNaming = "ext",
    scorer: str | None = None,
) -> BqmResult:
    """Do what one BQM run of pic's script does for ``src``; ``out`` always exists afterwards (unless PicError)."""
    if not src.is_file():
        raise PicError(f"{os.fsdecode(src)}: not a file")
    if os.path.abspath(out) == os.path.abspath(src) or (out.exists() and out.resolve() == src.resolve()):
        raise PicError("OUTPUT is the original image; pic never writes over an original")
    if not out.parent.is_dir():
        raise PicError(f"{os.fsdecode(out.parent)}: the output folder does not exist")
    suggestion: Suggestion | None = None
    try:
        with deadline(timeout):
            model = scorers.load(scorer, catalog=catalog, user=user)
            fa = analyze_with_catalog(src, catalog)
            suggestion = suggest(fa.analysis, model, ratio, 3, user=user, path=os.fsdecode(src), user_name=user)
            if mode == "crop":
                _write_crop(src, suggestion, ratio, out)
                _usual_mode(out)
                return BqmResult("cropped", out, suggestion)
            sidecar = write_digikam_suggestion(src, suggestion, fa.orientation, naming)
        _copy_as(src, out)
        _usual_mode(out)
        return BqmResult("tagged", out, suggestion, sidecar=sidecar)
    except BqmTimeout:
        _copy_as(src, out)
        _usual_mode(out)
        what = "uncropped copy" if mode == "crop" else "copy without the suggestion"
        return BqmResult("timeout", out, None, message=f"no suggestion within {timeout:g} s: wrote the {what}")
