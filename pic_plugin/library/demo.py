"""``pic demo``: a small library in which an example photographer cropped some photos, and what pic made of it.

The photos in ``pic_plugin/data/demo`` are free (SOURCES.md). Seven of them carry the darktable sidecar of
"Ada", a fictional photographer invented for this demo, who crops everything to 4:5 portrait: the sidecars are
the ones darktable 4.2 itself wrote after importing her crops (SOURCES.md says how they were made). The demo
then runs ``pic learn --from-library`` and ``pic batch`` on the folder, and ``recap`` says what pic learned and
how its suggestions for the photos she has not cropped differ from the ones it makes for nobody in particular.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.errors import PicError
from pic_plugin.core.geometry import FREE, Box, ratio_name
from pic_plugin.editors.sidecars import find_crops
from pic_plugin.library.analyze import analyze_with_catalog
from pic_plugin.library.catalog import Catalog
from pic_plugin.library.pipeline import UNCROPPED_AREA
from pic_plugin.library.scan import iter_images
from pic_plugin.model import scorers

#: The example photographer whose sidecars ship with the demo photos.
DEMO_USER = "ada"


@dataclass
class CopyResult:
    photos: int = 0
    sidecars: int = 0  # Ada's darktable sidecars
    skipped: int = 0  # already there (never overwritten: the folder may hold the user's own edits by now)


def copy_demo(folder: Path) -> CopyResult:
    """Copy the demo photos and Ada's darktable sidecars into ``folder`` (existing files are left alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = resources.files("pic_plugin") / "data" / "demo"
    result = CopyResult()
    for item in sorted(source.iterdir(), key=lambda i: i.name):
        name = item.name.lower()
        if not (name.endswith(".jpg") or name.endswith(".jpg.xmp")):
            continue
        target = folder / item.name
        if target.exists():
            result.skipped += 1
            continue
        with resources.as_file(item) as src:
            shutil.copyfile(src, target)
        if name.endswith(".xmp"):
            result.sidecars += 1
        else:
            result.photos += 1
    return result


@dataclass
class PhotoStyles:
    path: Path
    size: tuple[int, int]
    user: Box  # pic's suggestion in the user's style
    generic: Box  # pic's suggestion for nobody in particular

    @staticmethod
    def cropped(box: Box) -> bool:
        return box.area < UNCROPPED_AREA

    def ratio(self, box: Box) -> str:
        x0, y0, x1, y1 = box.to_pixels(self.size)
        return ratio_name(x1 - x0, y1 - y0)


@dataclass
class Recap:
    user: str
    own_crops: int  # photos the user cropped themselves (their crops are kept, not suggested over)
    photos: list[PhotoStyles] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def user_cropped(self) -> int:
        return sum(PhotoStyles.cropped(p.user) for p in self.photos)

    def generic_cropped(self) -> int:
        return sum(PhotoStyles.cropped(p.generic) for p in self.photos)

    def user_ratios(self) -> Counter[str]:
        return Counter(p.ratio(p.user) for p in self.photos if PhotoStyles.cropped(p.user))


def recap(catalog: Catalog, folder: Path, user: str = DEMO_USER) -> Recap:
    """pic's suggestion for every photo under ``folder`` that the user has not cropped, in the user's style and
    for nobody in particular (features come from the catalog's cache, so after ``pic batch`` this is quick)."""
    mine = scorers.load(None, catalog=catalog, user=user)
    generic = scorers.load(None, catalog=catalog, user=None)
    out = Recap(user, 0)
    for path in iter_images([folder]):
        try:
            fa = analyze_with_catalog(path, catalog)
            if any(not c.is_pic_suggestion and c.source != "pic" for c in find_crops(path, fa.orientation)):
                out.own_crops += 1
                continue
            a = suggest(fa.analysis, mine, FREE, 1, user=user)
            b = suggest(fa.analysis, generic, FREE, 1)
        except (PicError, OSError) as exc:
            out.errors.append(f"{path}: {exc}")
            continue
        out.photos.append(PhotoStyles(path, a.size, a.crop, b.crop))
    return out
