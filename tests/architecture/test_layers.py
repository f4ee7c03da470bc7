"""The import direction of the package: each layer imports only from the layers below it.

Data flows one way (records -> views -> token batches -> log-probs -> loss -> step), and the
packages are stacked the same way; docs/architecture.md draws the stack. Every import counts,
including the lazy ones inside functions (the CLI imports heavy modules late on purpose).
"""

from __future__ import annotations

import ast
from pathlib import Path

import preftune

# Lowest first. A package may import packages of lower layers only, never its own layer's
# neighbours or anything above. `preftune` itself (the version) and `testing` are exempt.
LAYERS = [
    {"errors"},
    {"io"},
    {"data", "losses", "tasks"},
    {"config"},
    {"models"},
    {"generate"},
    {"judges"},
    {"evaluate"},
    {"train"},
    {"experiments"},
    {"integrations"},
    {"commands"},
    {"cli"},
]
EXEMPT = {"preftune", "testing"}
PACKAGE_ROOT = Path(preftune.__file__).parent


def _layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(
        f"'{package}' is in no layer: add it to LAYERS here and to docs/architecture.md"
    )


def _package_of(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").parts[0]


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "preftune":
                found.add(parts[1] if len(parts) > 1 else "preftune")
    return found


def import_violations(root: Path = PACKAGE_ROOT) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        package = _package_of(path, root)
        if package in EXEMPT or package == "__init__":
            continue
        layer = _layer_of(package)
        for imported in sorted(_imported_packages(path) - EXEMPT - {package}):
            if _layer_of(imported) >= layer:
                problems.append(f"{path.relative_to(root)} imports preftune.{imported}")
    return problems


def test_every_package_imports_only_from_lower_layers():
    assert import_violations() == []


def test_the_check_catches_an_upward_import(tmp_path):
    fake_root = tmp_path / "preftune"
    (fake_root / "losses").mkdir(parents=True)
    (fake_root / "losses" / "bad.py").write_text("def f():\n    from preftune.train import loop\n")
    assert import_violations(fake_root) == ["losses/bad.py imports preftune.train"]
