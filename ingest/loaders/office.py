"""Word documents and PowerPoint decks (python-docx, python-pptx)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, LoadOptions, Section, check_zip, short
from ingest.loaders.tables import Cell, pipe_table


def _office_error(kind: str, exc: Exception) -> LoadError:
    return LoadError(f"corrupt {kind}: {short(exc)}")


def load_docx(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    import zipfile

    import docx
    from docx.document import Document as DocxDocument
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(data, "DOCX", int(options.max_unzipped_mb * 2**20))
    try:
        document: DocxDocument = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, OSError) as exc:
        raise _office_error("DOCX", exc) from None
    blocks: list[str] = []
    title = document.core_properties.title or ""
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            text = item.text.strip()
            style = (item.style.name or "") if item.style is not None else ""
            if text and style.startswith("Heading"):
                level = style.removeprefix("Heading").strip()
                hashes = "#" * (int(level) if level.isdigit() else 1)
                blocks.append(f"{hashes} {text}")
                title = title or text
            elif text and style == "Title":
                blocks.append(f"# {text}")
                title = title or text
            elif text:
                blocks.append(text)
        elif isinstance(item, Table):
            blocks.append(pipe_table(docx_cells(item)))
    return LoadedDocument(title=title.strip(), type="docx", sections=[Section("\n\n".join(blocks))])


def load_pptx(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    import zipfile

    from pptx import Presentation

    check_zip(data, "PPTX", int(options.max_unzipped_mb * 2**20))
    try:
        deck = Presentation(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, OSError) as exc:
        raise _office_error("PPTX", exc) from None
    sections = []
    title = deck.core_properties.title or ""
    for number, slide in enumerate(deck.slides, start=1):
        parts: list[str] = []
        for shape in slide.shapes:
            if shape.has_text_frame:
                text = shape.text_frame.text.strip()
                if text:
                    parts.append(text)
                    if not title and shape == getattr(slide.shapes, "title", None):
                        title = text
            elif getattr(shape, "has_table", False) and shape.has_table:
                parts.append(pipe_table(pptx_cells(shape.table)))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append("Notes: " + notes.text.strip())
        sections.append(Section("\n\n".join(parts), number))
    return LoadedDocument(title=title.strip(), type="pptx", sections=sections,
                          pages=len(sections))


def docx_cells(table: Any) -> list[list[Cell]]:
    """python-docx repeats a merged cell in every grid column it spans: each becomes one
    spanning cell. A vertical merge keeps its text in every row (python-docx gives it so),
    like an HTML rowspan: each row reads on its own."""
    rows = []
    for row in table.rows:
        cells, col = [], row.grid_cols_before
        grid = row.cells
        while col - row.grid_cols_before < len(grid):
            cell = grid[col - row.grid_cols_before]
            span = max(1, cell.grid_span)
            cells.append(Cell(cell.text, col, span))
            col += span
        rows.append(cells)
    return rows


def pptx_cells(table: Any) -> list[list[Cell]]:
    """python-pptx leaves the cells a merge covers empty (`is_spanned`): the origin spans
    its columns, and is repeated in the rows it covers, as for DOCX and HTML."""
    below: dict[tuple[int, int], Cell] = {}
    rows = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, cell in enumerate(row.cells):
            if (r, c) in below:
                cells.append(below.pop((r, c)))
            elif cell.is_merge_origin:
                origin = Cell(cell.text, c, cell.span_width)
                cells.append(origin)
                for down in range(1, cell.span_height):
                    below[(r + down, c)] = origin
            elif not cell.is_spanned:
                cells.append(Cell(cell.text, c))
        rows.append(cells)
    return rows
