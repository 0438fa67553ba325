"""The package's layers: every import points down the tree (docs: README "Development").

``core`` <- ``imaging`` / ``editors`` <- ``analysis`` <- ``model`` <- ``library`` <- ``integrations`` / ``review`` <-
``research``. A module may import its own layer and the layers below it; ``editors`` (the file formats) needs only
``core``; nothing but ``research`` itself imports ``research`` (so ``pic learn`` and ``pic watch`` never load the
training code). Imports inside functions count too. Imports under ``if TYPE_CHECKING:`` load nothing and are
only type hints, so they may name a higher layer (``core.suggestion``'s ``Scorer`` protocol names the features
type it scores).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pic_plugin"

#: layer -> the layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "imaging": {"core"},
    "editors": {"core"},
    "analysis": {"core", "imaging"},
    "model": {"core", "imaging", "analysis"},
    "library": {"core", "imaging", "editors", "analysis", "model"},
    "integrations": {"core", "imaging", "editors", "analysis", "model", "library"},
    "review": {"core", "imaging", "editors", "analysis", "model", "library"},
    "research": {"core", "imaging", "editors", "analysis", "model", "library"},
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pic_plugin" else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every runtime import of ``pic_plugin`` in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("pic_plugin")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "pic_plugin":  # ``from pic_plugin import model``: the names are the layers
                out += [(node.lineno, f"pic_plugin.{a.name}") for a in node.names]
            elif module.startswith("pic_plugin"):
                out.append((node.lineno, module))
    return out


def layer_violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(_module_name(path))
        if layer is None:
            continue  # pic_plugin/__init__.py
        for line, module in imports_of(path):
            target = _layer(module)
            if target is None or target == layer:
                continue
            if target not in ALLOWED.get(layer, set()):
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {layer} imports {module} ({target})")
    return problems


def test_every_module_belongs_to_a_layer() -> None:
    layers = {_layer(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {None}
    assert layers == set(ALLOWED), f"a package is missing from the layer table: {layers ^ set(ALLOWED)}"


def test_imports_point_down_the_layers() -> None:
    assert layer_violations() == []


def test_the_layer_check_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: an editors module importing analysis, a relative import into research, a nested import."""
    fake = tmp_path / "pic_plugin"
    (fake / "editors").mkdir(parents=True)
    (fake / "library").mkdir()
    (fake / "editors" / "bad.py").write_text("from pic_plugin.analysis.suggest import suggest\n")
    (fake / "library" / "worse.py").write_text("def f():\n    from ..research import datasets\n")
    (fake / "library" / "fine.py").write_text(
        "from typing import TYPE_CHECKING\nfrom pic_plugin.core import geometry\n"
        "if TYPE_CHECKING:\n    from pic_plugin.review import session\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    problems = layer_violations()
    assert len(problems) == 2, problems
    assert "editors imports pic_plugin.analysis.suggest" in problems[0]
    assert "library imports pic_plugin.research" in problems[1]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    return set(out.split())


def test_the_editors_load_neither_torch_nor_numpy() -> None:
    loaded = _modules_after(
        "import pkgutil, importlib, pic_plugin.editors as e\n"
        "for m in pkgutil.walk_packages(e.__path__, 'pic_plugin.editors.'): importlib.import_module(m.name)"
    )
    assert "pic_plugin.editors.darktable.write" in loaded  # the walk did import them
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("torch", "numpy", "cv2") or m.startswith("pic_plugin.analysis"))
    assert heavy == []


def test_learn_and_watch_never_load_the_research_code() -> None:
    loaded = _modules_after(
        "import pic_cli.main, pic_plugin.library.learn, pic_plugin.library.watch.daemon as d\n"
        "import pic_plugin.model.scorers as s, pic_plugin.model.personalize\n"
        "d.default_learner(); d.default_writer(); d.default_crop_collector()\n"
        "s.load('pic')"
    )
    assert "torch" in loaded  # the scorer was really built
    assert sorted(m for m in loaded if m.startswith("pic_plugin.research")) == []
