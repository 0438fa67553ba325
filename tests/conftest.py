"""Shared test helpers: generated images, a throw-away catalog, and requirements that skip with a reason.

A clone without ``../shared`` (or without darktable) skips the tests that need them; CI sets
``PIC_STRICT_SKIPS=1`` so such a skip becomes a failure there instead of passing silently.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pic_plugin.research.datasets import shared_data_dir

STRICT = os.environ.get("PIC_STRICT_SKIPS") == "1"
#: The repository and the tests' own small fixtures (tests mirror ``pic_plugin/``, one folder per layer).
REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"


def missing_requirement(reason: str) -> None:
    if STRICT:
        pytest.fail(f"required in CI (PIC_STRICT_SKIPS=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if root is None:
        missing_requirement("../shared/data is not present beside this checkout (set PIC_SHARED_DATA to point at it)")
    assert root is not None
    return root


@pytest.fixture(scope="session")
def darktable_cli() -> str:
    exe = shutil.which("darktable-cli")
    if exe is None:
        missing_requirement("darktable-cli is not installed (apt-get install darktable)")
    assert exe is not None
    return exe


DIGIKAM_DBCONFIG = Path("/usr/share/digikam/database/dbconfig.xml")


@pytest.fixture(scope="session")
def digikam_dbconfig() -> Path:
    """digiKam's real database schema, shipped by Debian's digikam-data package."""
    if not DIGIKAM_DBCONFIG.is_file():
        missing_requirement("digiKam's dbconfig.xml is not installed (apt-get install digikam-data)")
    return DIGIKAM_DBCONFIG


CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium for the review page's browser tests (Playwright drives it; no browser download)."""
    exe = os.environ.get("PIC_CHROMIUM") or next((c for c in CHROMIUM_CANDIDATES if os.access(c, os.X_OK)), None)
    if exe is None:
        missing_requirement("chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing_requirement("playwright is not installed (pip install -e '.[test]')")
    assert exe is not None
    return exe


def make_photo(width: int = 600, height: int = 400, seed: int = 0, subject: tuple[float, float] = (0.6, 0.45)) -> Image.Image:
    """A synthetic photo: a soft gradient background with one bright textured subject blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.stack([60 + 40 * xx / width, 80 + 30 * yy / height, np.full_like(xx, 90)], axis=-1)
    cx, cy = subject[0] * width, subject[1] * height
    r = 0.15 * min(width, height)
    blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2)))[..., None]
    texture = rng.integers(0, 60, size=(height, width, 1)).astype(np.float32)
    img = bg * (1 - blob) + (np.array([230, 120, 40], dtype=np.float32) + texture) * blob
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(img: Image.Image, orientation: int = 1, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    img.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        (d / f"img_{i}.jpg").write_bytes(jpeg_bytes(make_photo(seed=i)))
    return d


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    return tmp_path / "catalog.db"


@pytest.fixture
def net():  # type: ignore[no-untyped-def]
    """A PIC network with seeded random weights: tests of the model's mechanics, independent of the shipped file."""
    import torch

    from pic_plugin.model.network import PicNet

    torch.manual_seed(0)
    n = PicNet()
    n.eval()
    return n


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ~/.config/pic/config.toml must not change what the tests see (tests that want one set
    XDG_CONFIG_HOME themselves)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
