"""The UI talks only to the REST API: it imports none of the heavy or server-side parts, so
its image needs neither torch nor llama.cpp nor the store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "sentence_transformers", "llama_cpp", "qdrant_client", "qdrant_edge",
             "ingest", "retrieval", "serving", "app")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_ui_source_imports_the_server_side() -> None:
    files = sorted((ROOT / "ui").rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_importing_every_ui_module_loads_no_heavy_package() -> None:
    code = (
        "import sys, streamlit, streamlit.testing.v1\n"
        "import ui.settings, ui.client, ui.ledger, ui.conversation, ui.documents, ui.components\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
