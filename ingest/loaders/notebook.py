"""Jupyter notebooks: Markdown cells as they are, code cells as fenced blocks, short text
outputs after them; never the JSON around them (nbformat 4, and 3's worksheets)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, Section

MAX_OUTPUT_CHARS = 1000  # an output is evidence of what the code did, not a data dump
_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _source(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _output_text(output: dict[str, Any]) -> str:
    if output.get("output_type") == "stream":
        text = _source(output.get("text"))
    elif output.get("output_type") in ("execute_result", "display_data", "pyout"):
        data = output.get("data") or output
        text = _source(data.get("text/plain") or data.get("text"))
    else:  # errors carry ANSI-coloured tracebacks: their last line is the message
        text = str(output.get("evalue") or "")
    text = text.strip()
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + " …"


def _cells(notebook: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(notebook.get("cells"), list):
        return [c for c in notebook["cells"] if isinstance(c, dict)]
    worksheets = notebook.get("worksheets") or [{}]
    return [c for c in worksheets[0].get("cells", []) if isinstance(c, dict)]


def _language(notebook: dict[str, Any]) -> str:
    meta = notebook.get("metadata") or {}
    lang = (meta.get("kernelspec") or {}).get("language") or (meta.get("language_info") or {}).get("name")
    return str(lang or "python")


def load_notebook(path: Path, data: bytes) -> LoadedDocument:
    try:
        notebook = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoadError(f"corrupt notebook: not JSON ({exc})") from None
    if not isinstance(notebook, dict) or not ("cells" in notebook or "worksheets" in notebook):
        raise LoadError("corrupt notebook: no cells")
    fence = "```" + _language(notebook)
    blocks = []
    title = ""
    for cell in _cells(notebook):
        source = _source(cell.get("source", cell.get("input"))).strip()
        if cell.get("cell_type") == "code":
            if source:
                blocks.append(f"{fence}\n{source}\n```")
            outputs = [t for t in map(_output_text, cell.get("outputs") or []) if t]
            if outputs:
                blocks.append("Output:\n" + "\n".join(outputs))
        elif source:
            blocks.append(source)
            match = _MD_TITLE.search(source) if cell.get("cell_type") == "markdown" else None
            title = title or (match.group(1) if match else "")
    title = title or str((notebook.get("metadata") or {}).get("title") or "")
    return LoadedDocument(title=title, type="notebook", sections=[Section("\n\n".join(blocks))])
