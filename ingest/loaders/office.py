"""Word documents and PowerPoint decks (python-docx, python-pptx)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, Section, check_zip, short, table_text


def _office_error(kind: str, exc: Exception) -> LoadError:
    return LoadError(f"corrupt {kind}: {short(exc)}")


def load_docx(path: Path, data: bytes) -> LoadedDocument:
    import zipfile

    import docx
    from docx.document import Document as DocxDocument
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(data, "DOCX")
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
            blocks.append(table_text([[c.text for c in row.cells] for row in item.rows]))
    return LoadedDocument(title=title.strip(), type="docx", sections=[Section("\n\n".join(blocks))])


def load_pptx(path: Path, data: bytes) -> LoadedDocument:
    import zipfile

    from pptx import Presentation

    check_zip(data, "PPTX")
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
                rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
                parts.append(table_text(rows))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append("Notes: " + notes.text.strip())
        sections.append(Section("\n\n".join(parts), number))
    return LoadedDocument(title=title.strip(), type="pptx", sections=sections,
                          pages=len(sections))


