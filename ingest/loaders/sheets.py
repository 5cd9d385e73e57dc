"""Spreadsheets and delimited text: XLSX and ODS with calamine, CSV/TSV with the csv module.

Each sheet becomes one section: its name as a heading and as the place a citation names
(`sheet Q3`), its rows a pipe table (first row the header). Formulas give the value the
spreadsheet program cached when it saved the file; nothing is recomputed.

calamine (python-calamine, MIT, the Rust reader) over openpyxl/odfpy: measured on 20,000 rows
of 6 cells, XLSX 0.29 s against openpyxl read-only's 6.2 s, ODS 0.09 s against odfpy's 7.8 s.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

from core.errors import LoadError
from ingest.loaders.base import (
    LoadedDocument,
    LoadOptions,
    Section,
    check_zip,
    decode_text,
    short,
    table_text,
)

# An OLE2 compound file: what Office writes for a password-protected XLSX (and for .xls).
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Cells past this column are dropped: the row bound then bounds the cells too.
MAX_COLUMNS = 512


def cell_text(value: Any) -> str:
    """A cell's cached value as the text a reader expects: 12 not 12.0, dates without a
    midnight time, booleans as the spreadsheet shows them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def sheet_section(number: int, name: str, rows: list[list[str]]) -> Section | None:
    table = table_text([row[:MAX_COLUMNS] for row in rows])
    if not table:
        return None
    return Section(f"# {name}\n\n{table}", number, label=f"sheet {name}")


def cut_note(where: str, kept: int, total: int | None, options: LoadOptions) -> str:
    of = f" of {total:,}" if total else ""
    return (f"{where}: kept the first {kept:,} rows{of} (ingest.max_sheet_rows "
            f"{options.max_sheet_rows:,})")


def load_workbook(path: Path, data: bytes, options: LoadOptions, kind: str) -> LoadedDocument:
    from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum

    what = kind.upper()
    if data.startswith(_OLE_MAGIC):
        if "EncryptionInfo".encode("utf-16-le") in data:
            raise LoadError(f"encrypted {what}: a password is needed to read it")
        raise LoadError(f"not an {what} file: an old binary Office file (save it as {what})")
    check_zip(data, what, int(options.max_unzipped_mb * 2**20))
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
        sheets = [m.name for m in book.sheets_metadata if m.typ == SheetTypeEnum.WorkSheet]
        sections, notes = [], []
        for number, name in enumerate(sheets, start=1):
            sheet = book.get_sheet_by_name(name)
            limit = options.max_sheet_rows
            rows = sheet.to_python(skip_empty_area=True, nrows=limit + 1)
            if len(rows) > limit:
                rows = rows[:limit]
                notes.append(cut_note(f"sheet {name}", limit, sheet.height, options))
            section = sheet_section(number, name, [[cell_text(v) for v in r] for r in rows])
            if section is not None:
                sections.append(section)
    except (CalamineError, ValueError, OSError) as exc:
        raise LoadError(f"corrupt {what}: {short(exc)}") from None
    return LoadedDocument(title="", type=kind, sections=sections, pages=len(sheets), notes=notes)


def load_xlsx(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return load_workbook(path, data, options, "xlsx")


def load_ods(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    return load_workbook(path, data, options, "ods")


def load_csv(path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
    """A CSV (delimiter sniffed: comma, semicolon, tab or bar) or TSV file as one table."""
    text = decode_text(data)
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:16384], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    rows: list[list[str]] = []
    notes = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for row in reader:
            if len(rows) == options.max_sheet_rows:
                rest = sum(1 for _ in reader) + 1
                notes.append(cut_note(path.name, len(rows), len(rows) + rest, options))
                break
            rows.append(row)
    except csv.Error as exc:
        raise LoadError(f"malformed CSV at line {reader.line_num}: {short(exc)}") from None
    table = table_text([row[:MAX_COLUMNS] for row in rows])
    return LoadedDocument(title=path.stem, type="csv", sections=[Section(table)], notes=notes)
