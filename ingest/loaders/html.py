"""HTML with BeautifulSoup: the page's main content, headings kept as Markdown headings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ingest.loaders.base import LoadedDocument, Section, decode_text
from ingest.loaders.tables import Cell, pipe_table

_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "head"]
_CHROME_TAGS = ["nav", "footer", "aside", "form"]
# XHTML (an EPUB chapter, an SEC filing) opens with an XML declaration. The lenient HTML
# parser reads it as browsers do, but BeautifulSoup warns on the declaration (a multi-line
# XMLParsedAsHTMLWarning in the user's terminal). An HTML parser ignores the declaration
# anyway, so it goes before parsing: no global warning filter, which would race with the
# parse thread, and no strict XML parser, which drops the rest of a slightly broken file.
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*>")


def load_html(path: Path, data: bytes) -> LoadedDocument:
    from bs4 import BeautifulSoup

    text = _XML_DECLARATION.sub("", decode_text(data), count=1)
    soup = BeautifulSoup(text, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    for tag in root(_CHROME_TAGS):
        tag.decompose()
    if not title:
        h1 = root.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    for br in root.find_all("br"):
        br.replace_with("\n")
    # Innermost first, so a table nested in a cell is already text when its parent is read.
    for table in reversed(root.find_all("table")):
        if table.find_parent("table") is not None:
            # A table inside a cell: its rows on that cell's one line.
            table.replace_with(" ".join(" ".join(c.text for c in row if c.text) + ";"
                                        for row in table_cells(table)).rstrip(";"))
            continue
        # A one-column table lays out a page rather than holding data: read it as text.
        text = pipe_table(table_cells(table), min_columns=2)
        if text:
            table.replace_with(f"\n\n{text}\n\n")
    for tag in root.find_all(_BLOCK_TAGS):
        level = tag.name[1:] if tag.name in _HEADINGS else ""
        tag.insert_before("\n\n" + ("#" * int(level) + " " if level else ""))
        tag.insert_after("\n\n" if tag.name not in ("li", "tr", "td", "th") else "\n")
    lines = (" ".join(line.split()) for line in root.get_text().split("\n"))
    return LoadedDocument(title=title, type="html", sections=[Section("\n".join(lines))])


_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCK_TAGS = [
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "pre",
    "blockquote", "table", "tr", "td", "th", "figure", "figcaption", "header", "address",
    *_HEADINGS,
]


def table_cells(table: Any) -> list[list[Cell]]:
    """The table's rows (its own, not a nested table's) as grid cells: a colspan covers its
    columns, a rowspan repeats the cell in the rows below so each row reads on its own."""
    rows: list[list[Cell]] = []
    pending: dict[int, tuple[Cell, int]] = {}  # column -> (cell from above, rows to cover)
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue
        row: list[Cell] = []
        col = 0
        for td in tr.find_all(["td", "th"], recursive=False):
            col = _carry_down(pending, row, col)
            span = _span(td.get("colspan"))
            cell = Cell(td.get_text(" ", strip=True), col, span)
            row.append(cell)
            down = _span(td.get("rowspan"))
            if down > 1:
                pending[col] = (cell, down - 1)
            col += span
        _carry_down(pending, row, col, every=True)
        rows.append(row)
    return rows


def _carry_down(pending: dict[int, tuple[Cell, int]], row: list[Cell], col: int,
                every: bool = False) -> int:
    """Adds to `row` the cells spanning down into it at `col` (or, with `every`, at `col`
    and after); returns the next free column."""
    for start in sorted(c for c in pending if c >= col):
        if start != col and not every:
            break
        cell, left = pending.pop(start)
        row.append(cell)
        if left > 1:
            pending[start] = (cell, left - 1)
        col = start + cell.span
    return col


def _span(value: Any) -> int:
    """A colspan/rowspan attribute as a count, 1 when missing or malformed; bounded so a
    hostile `colspan=1000000` cannot blow up the grid."""
    try:
        return max(1, min(int(str(value).strip()), 1000))
    except ValueError:
        return 1
