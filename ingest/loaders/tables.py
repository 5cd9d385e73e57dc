"""Tables as one pipe row per table row, from cells placed on a column grid.

Every format that has tables (HTML, DOCX, PPTX, PDF) hands its cells here as `Cell`s: the
text and the grid columns it covers. Spreadsheet layouts split one value over several grid
columns (an SEC filing puts `$` in one cell, `16,058,714` in the next and the `)` of a
negative in a third, under a year header spanning all three). Gluing those pieces back and
giving each spanning cell the one column that holds values keeps every number under its
header: no shifted columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ingest.loaders.base import table_text


@dataclass(frozen=True)
class Cell:
    text: str
    col: int  # first grid column it covers
    span: int = 1  # grid columns covered (colspan)


# A currency sign alone belongs to the value after it; a closing bracket or a per cent
# sign alone (the end of `(835,300)` or `12.5 %`) to the value before it.
_LEADS = re.compile(r"^(?:[$€£¥]|US\$|USD|EUR)$")
_TRAILS = re.compile(r"^[)%]+$")


def glue(row: list[Cell]) -> list[Cell]:
    """The row's non-empty cells with lone signs joined to the value they belong to."""
    cells = sorted((c for c in row if c.text), key=lambda c: c.col)
    out: list[Cell] = []
    lead = ""
    for cell in cells:
        if _LEADS.match(cell.text) and cell is not cells[-1]:
            lead += cell.text
            continue
        if _TRAILS.match(cell.text) and out and not lead:
            out[-1] = replace(out[-1], text=out[-1].text + cell.text)
            continue
        out.append(replace(cell, text=lead + cell.text))
        lead = ""
    return out


def value_columns(rows: list[list[Cell]]) -> list[int]:
    """The grid columns that hold a value: each single-column cell's, plus the first column
    of a spanning cell whose span holds none (a label merged across the whole row)."""
    columns = {c.col for row in rows for c in row if c.span == 1}
    for cell in sorted((c for row in rows for c in row if c.span > 1), key=lambda c: c.span):
        if not any(cell.col <= col < cell.col + cell.span for col in columns):
            columns.add(cell.col)
    return sorted(columns)


def pipe_table(rows: list[list[Cell]], min_columns: int = 1) -> str:
    """The rows as a Markdown pipe table (see base.table_text): each cell lands in the first
    value column of its span, so a header spanning `$ | 1,234 | )` sits over the number.
    Empty when fewer than `min_columns` columns hold values."""
    glued = [glue(row) for row in rows]
    columns = value_columns(glued)
    if len(columns) < min_columns:
        return ""
    lines = []
    for row in glued:
        line = [""] * len(columns)
        for cell in row:
            i = next(i for i, col in enumerate(columns) if col >= cell.col)
            line[i] = f"{line[i]} {cell.text}".strip()
        lines.append(line)
    return table_text(lines)


def from_grid(rows: list[list[str | None]]) -> list[list[Cell]]:
    """Cells from a full grid where None marks a column covered by the cell on its left
    (pdfplumber's merged cells)."""
    out = []
    for row in rows:
        cells: list[Cell] = []
        for col, text in enumerate(row):
            if text is None and cells:
                cells[-1] = replace(cells[-1], span=cells[-1].span + 1)
            else:
                cells.append(Cell(text or "", col))
        out.append(cells)
    return out
