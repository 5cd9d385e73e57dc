"""Ruled tables in PDF pages as pipe tables: pdfplumber's table finder fed by PDFium.

pdfplumber finds a table where drawn rules cross: edges → intersections → cells → tables
(`pdfplumber.table`, after Nurminen's thesis and Tabula). Its own page model comes from
pdfminer, pure Python, which measured 100-250 ms a page on ../shared/data/docs; the rules are
read here from PDFium's path objects instead (straight segments of the page's drawing) and
each cell's text from PDFium's text page, so the finder costs about what reading the text
costs, and a page without three horizontal and three vertical rules is never handed to it.

The page's text stays PDFium's, in PDFium's reading order (column by column on a
two-column page): the characters inside a table are replaced by the table, put where the
first of them stood.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from typing import Any

from ingest.loaders.tables import from_grid, pipe_table

# A table of two rows and two columns is ruled by three horizontal and three vertical lines
# at distinct positions (a frame around text has two of each); shorter strokes are glyphs
# or ticks. Past MAX_SEGMENTS a page's drawing (a vector figure) is not looked at further.
MIN_RULES = 3
MIN_RULE_LENGTH = 8.0
MAX_SEGMENTS = 20_000
# pdfplumber's defaults for snapping, joining and crossing rules (points).
TOLERANCE = 3.0
_INSET = 2.0
# A character belongs to a table when its centre lies this close inside the table's box.
_SLACK = 1.0


@dataclass(frozen=True)
class FoundTable:
    left: float  # PDF user space: origin bottom left
    bottom: float
    right: float
    top: float
    text: str  # the pipe table

    def holds(self, x: float, y: float) -> bool:
        return (self.left - _SLACK <= x <= self.right + _SLACK
                and self.bottom - _SLACK <= y <= self.top + _SLACK)


@dataclass
class Rules:
    """The straight rules a page draws, as pdfplumber edges (top-down coordinates)."""

    height: float
    edges: list[dict[str, Any]]
    rows: set[int]  # distinct positions of horizontal rules
    cols: set[int]

    def add(self, p: tuple[float, float], q: tuple[float, float]) -> None:
        dx, dy = abs(p[0] - q[0]), abs(p[1] - q[1])
        if dy < 1 and dx >= MIN_RULE_LENGTH:
            top = self.height - p[1]
            self.rows.add(round(p[1]))
            self.edges.append({"x0": min(p[0], q[0]), "x1": max(p[0], q[0]), "top": top,
                               "bottom": top, "width": dx, "height": 0, "orientation": "h"})
        elif dx < 1 and dy >= MIN_RULE_LENGTH:
            self.cols.add(round(p[0]))
            top = self.height - max(p[1], q[1])
            self.edges.append({"x0": p[0], "x1": p[0], "top": top, "bottom": top + dy,
                               "width": 0, "height": dy, "orientation": "v"})

    @property
    def may_rule_a_table(self) -> bool:
        return len(self.rows) >= MIN_RULES and len(self.cols) >= MIN_RULES


def page_rules(page: Any) -> Rules:
    """The straight segments of the page's path objects, in page coordinates."""
    import pypdfium2.raw as pdfium_c

    rules = Rules(page.get_height(), [], set(), set())
    seen = 0
    x, y = ctypes.c_float(), ctypes.c_float()
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_PATH,), max_depth=2):
        count = pdfium_c.FPDFPath_CountSegments(obj.raw)
        seen += max(0, count)
        if seen > MAX_SEGMENTS:
            break
        a, b, c, d, e, f = obj.get_matrix().get()
        start = last = (0.0, 0.0)
        for i in range(count):
            segment = pdfium_c.FPDFPath_GetPathSegment(obj.raw, i)
            pdfium_c.FPDFPathSegment_GetPoint(segment, x, y)
            point = (a * x.value + c * y.value + e, b * x.value + d * y.value + f)
            kind = pdfium_c.FPDFPathSegment_GetType(segment)
            if kind == pdfium_c.FPDF_SEGMENT_LINETO:
                rules.add(last, point)
            elif kind == pdfium_c.FPDF_SEGMENT_MOVETO:
                start = point
            if pdfium_c.FPDFPathSegment_GetClose(segment):
                rules.add(point, start)
            last = point
    return rules


def find_tables(rules: Rules, textpage: Any) -> list[FoundTable]:
    """pdfplumber's finder on the rules; each cell's text read from PDFium inside its box.
    Only tables of two rows and two columns or more are kept."""
    from pdfplumber.table import (
        Table,
        cells_to_tables,
        edges_to_intersections,
        intersections_to_cells,
        merge_edges,
    )

    edges = merge_edges(rules.edges, TOLERANCE, TOLERANCE, TOLERANCE, TOLERANCE)
    edges = [e for e in edges if (e["width"] if e["orientation"] == "h" else e["height"]) >= 3]
    cells = intersections_to_cells(edges_to_intersections(edges, TOLERANCE, TOLERANCE))
    found = []
    for group in cells_to_tables(cells):
        table = Table(None, group)  # type: ignore[arg-type]  # rows, bbox: cells only
        grid = [[None if box is None else _cell_text(textpage, box, rules.height)
                 for box in row.cells] for row in table.rows]
        text = pipe_table(from_grid(grid), min_columns=2)
        if text.count("\n") < 2:  # a header alone: a box around text, not a table
            continue
        left, top, right, bottom = table.bbox
        found.append(FoundTable(left, rules.height - bottom, right, rules.height - top, text))
    return found


def _cell_text(textpage: Any, box: tuple[float, float, float, float], height: float) -> str:
    """PDFium's text inside the cell, the box drawn in a little: PDFium takes a character
    that touches the box, such as a descender of the line above the table."""
    left, top, right, bottom = box
    inset = min(_INSET, (right - left) / 4, (bottom - top) / 4)
    return str(textpage.get_text_bounded(left + inset, height - bottom + inset,
                                         right - inset, height - top - inset))


def page_text(page: Any, textpage: Any, find: bool = True) -> str:
    """The page's text with its ruled tables as pipe tables (PDFium's plain text when it has
    none, or with `find` off)."""
    if find:
        rules = page_rules(page)
        if rules.may_rule_a_table:
            tables = find_tables(rules, textpage)
            if tables:
                return text_around(textpage, tables)
    return str(textpage.get_text_range())


_LINE = re.compile(r"[^\n]*\n|[^\n]+$")


def text_around(textpage: Any, tables: list[FoundTable]) -> str:
    """PDFium's text of the page in its own order, the lines whose first character lies in
    a table replaced by the table, put where the first of them was. (PDFium writes a table
    row as a line of its own, and one line never runs from a table into the text beside it;
    looking at one character a line instead of every character keeps this cheap.)"""
    text = textpage.get_text_range()
    if len(text) != textpage.count_chars():  # characters outside the BMP shift the indices
        return str(text)
    parts: list[str] = []
    placed: set[int] = set()
    for m in _LINE.finditer(text):
        line = m.group()
        first = len(line) - len(line.lstrip())
        where = None
        if first < len(line):
            left, bottom, right, top = textpage.get_charbox(m.start() + first)
            x, y = (left + right) / 2, (bottom + top) / 2
            where = next((k for k, t in enumerate(tables) if t.holds(x, y)), None)
        if where is None:
            parts.append(line)
        elif where not in placed:
            parts.append(f"\n\n{tables[where].text}\n\n")
            placed.add(where)
    # A table whose characters PDFium did not report (drawn as paths) still goes in.
    parts += [f"\n\n{t.text}\n\n" for k, t in enumerate(tables) if k not in placed]
    return "".join(parts)
