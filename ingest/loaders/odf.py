"""OpenDocument text (ODT) and presentations (ODP), read from their content.xml with lxml.

Not odfpy: it builds its own DOM through xml.sax (an ODT of 3,000 paragraphs and 30 tables:
odfpy 670 ms to load it and extract the paragraphs alone, this loader 140 ms for everything),
and all it would give here is the element tree lxml parses in C. The glue below is the
handful of ODF elements that carry text (headings, paragraphs, lists, tables, frames, slides,
notes), in the shape the DOCX/PPTX loaders give: headings as Markdown headings, tables as
pipe rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import LoadError
from ingest.loaders.base import (
    LoadedDocument,
    LoadOptions,
    Section,
    check_zip,
    read_member,
    table_text,
)

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
    "dc": "http://purl.org/dc/elements/1.1/",
}


def _tag(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


_H, _P, _SPAN, _S, _TAB, _BR = (_tag(t) for t in (
    "text:h", "text:p", "text:span", "text:s", "text:tab", "text:line-break"))
_LIST, _TABLE, _ROW, _CELL, _COVERED = (_tag(t) for t in (
    "text:list", "table:table", "table:table-row", "table:table-cell",
    "table:covered-table-cell"))
_NOTES, _PAGE = _tag("presentation:notes"), _tag("draw:page")
# Text that is not the document's own reading: the note's marker, a generated table of
# contents or index (it repeats the headings), deleted tracked changes, comments.
_SKIP = {_tag(t) for t in (
    "text:note-citation", "text:table-of-content", "text:alphabetical-index",
    "text:tracked-changes", "office:annotation", "text:bibliography")}
_REPEAT_CAP = 64  # repeated empty cells/rows (a styled column runs to the sheet's end)


def _inline(el: Any) -> str:
    """The text of a paragraph or heading, with ODF's encoded spaces, tabs and breaks."""
    parts = [el.text or ""]
    for child in el:
        tag = child.tag
        if tag == _S:
            parts.append(" " * int(child.get(_tag("text:c"), "1")))
        elif tag == _TAB:
            parts.append("\t")
        elif tag == _BR:
            parts.append("\n")
        elif tag not in _SKIP and isinstance(tag, str):
            parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _repeat(el: Any, attr: str) -> int:
    try:
        return max(1, min(int(el.get(_tag(attr), "1")), _REPEAT_CAP))
    except ValueError:
        return 1


def _table(el: Any) -> str:
    rows: list[list[str]] = []
    for row in el.iter(_ROW):
        if row.getparent() is not None and _nearest_table(row) is not el:
            continue  # a row of a table nested in a cell belongs to that cell's text
        cells: list[str] = []
        for cell in row:
            if cell.tag not in (_CELL, _COVERED):
                continue
            # A covered cell (under a merged one) stays an empty cell: columns do not shift.
            text = " ".join(" ".join(b.split()) for b in _blocks(cell)) if cell.tag == _CELL else ""
            cells.extend([text] * _repeat(cell, "table:number-columns-repeated"))
        while cells and not cells[-1]:
            cells.pop()
        rows.extend([cells] * _repeat(row, "table:number-rows-repeated"))
    return table_text(rows)


def _nearest_table(el: Any) -> Any:
    parent = el.getparent()
    while parent is not None and parent.tag != _TABLE:
        parent = parent.getparent()
    return parent


def _blocks(el: Any, bullet: str = "") -> list[str]:
    """The element's text as blocks in reading order: headings, paragraphs, list items,
    tables; every other container (sections, frames, text boxes) is walked through."""
    blocks: list[str] = []
    for child in el:
        tag = child.tag
        if not isinstance(tag, str) or tag in _SKIP:
            continue
        if tag == _H:
            level = child.get(_tag("text:outline-level"), "1")
            hashes = "#" * (int(level) if level.isdigit() and 0 < int(level) <= 6 else 1)
            text = " ".join(_inline(child).split())
            if text:
                blocks.append(f"{hashes} {text}")
        elif tag == _P:
            text = _inline(child).strip()
            if text:
                blocks.append(bullet + text)
        elif tag == _LIST:
            blocks.extend(_blocks(child, "- "))
        elif tag == _TABLE:
            blocks.append(_table(child))
        elif tag == _NOTES:
            notes = " ".join(_blocks(child))
            if notes:
                blocks.append("Notes: " + notes)
        else:
            blocks.extend(_blocks(child, bullet))
    return blocks


class _Package:
    def __init__(self, data: bytes, what: str, options: LoadOptions):
        self.what = what
        self.archive = check_zip(data, what, int(options.max_unzipped_mb * 2**20))
        self.content = self._xml("content.xml")

    def _xml(self, name: str) -> Any:
        from lxml import etree

        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        try:
            return etree.fromstring(read_member(self.archive, name, self.what), parser)
        except etree.XMLSyntaxError as exc:
            raise LoadError(f"corrupt {self.what}: {name} is not XML ({exc})") from None

    def body(self, kind: str) -> Any:
        found = self.content.find(f"{_tag('office:body')}/{_tag(kind)}")
        if found is None:
            raise LoadError(f"corrupt {self.what}: content.xml has no {kind} body")
        return found

    def title(self) -> str:
        if "meta.xml" not in self.archive.namelist():
            return ""
        found = self._xml("meta.xml").find(f".//{_tag('dc:title')}")
        return " ".join((found.text or "").split()) if found is not None else ""


def load_odt(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    package = _Package(data, "ODT", options)
    blocks = _blocks(package.body("office:text"))
    title = package.title() or next((b.lstrip("#").strip() for b in blocks if b.startswith("#")), "")
    return LoadedDocument(title=title, type="odt", sections=[Section("\n\n".join(blocks))])


def load_odp(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    package = _Package(data, "ODP", options)
    title = package.title()
    sections = []
    for number, page in enumerate(package.body("office:presentation").iter(_PAGE), start=1):
        if not title:
            for frame in page.iter(_tag("draw:frame")):
                if frame.get(_tag("presentation:class")) == "title":
                    title = " ".join(" ".join(_blocks(frame)).split())
                    break
        sections.append(Section("\n\n".join(_blocks(page)), number))
    return LoadedDocument(title=title, type="odp", sections=sections, pages=len(sections))
