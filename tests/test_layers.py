"""The dependency direction, kept true by parsing every import (lazy ones too).

ui talks HTTP only (it imports nothing of ours but ui); app sits on retrieval and serving;
retrieval and serving sit on ingest; everything sits on core, which imports nothing of ours.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each package may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "ingest": {"core"},
    "serving": {"core", "ingest"},
    "retrieval": {"core", "ingest", "serving"},
    "app": {"core", "ingest", "retrieval", "serving"},
    "ui": set(),
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def upward_edges(package: str) -> list[str]:
    ours = set(ALLOWED)
    edges = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, target in imported_packages(path):
            if target in ours and target != package and target not in ALLOWED[package]:
                edges.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return edges


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_climbs_back_up(package: str) -> None:
    assert upward_edges(package) == []


def test_the_check_sees_a_lazy_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from app.service import RagService\n    import core.settings\n")
    assert imported_packages(module) == [(2, "app"), (3, "core")]
