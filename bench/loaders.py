"""Loader speed and yield: pages (sheets) per second and characters per page, for each format
and each loader path.

Rows come from MEASUREMENTS, a list of named functions, each taking the run's inputs and
returning rows; add a path (OCR engines, a new format) by appending one. Each row is the
median of --repeat timings of the same files.

  pdf · text layer      PDFium text only (load_pdf(find_tables=False)): the baseline
  pdf · loader          what ingest runs: PDFium text, plus the table finder on the pages
                        whose drawn paths could rule a table
  pdf · rules check     reading the drawn rules from PDFium's path objects, every page
  pdf · table finder    rules, pdfplumber's edges → cells → tables and the cells' text,
                        on the pages whose rules could make a table
  docx/pptx/html/md     load() on the --data files of that type
  xlsx/ods/csv          load() on workbooks this script writes (--rows rows per sheet)
  rendered pdf ...      the same PDF rows on PDFs this script renders with reportlab: ruled
                        tables beside two-column text, and plain text pages
  ocr · ENGINE          the OCR engines of ingest/ocr.py on --ocr-pages PDF pages of --data
                        whose text layer is known, drawn at 200 dpi: pages/s and character
                        accuracy against that text layer in the note (bench/loaders_ocr.py
                        compares engines and resolutions at length)

    .venv/bin/python bench/loaders.py --data ../shared/data/docs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import table  # noqa: E402


@dataclass
class Inputs:
    data: Path | None
    work: Path
    repeat: int
    rows: int
    files: dict[str, list[Path]]  # by extension, without the dot
    ocr_pages: int = 2


@dataclass
class Row:
    format: str
    path: str
    files: int
    pages: int  # pages, slides, sheets
    chars: int
    seconds: float  # median of the repeats
    note: str = ""

    def cells(self) -> list[Any]:
        rate = self.pages / self.seconds if self.seconds else float("inf")
        per_page = self.chars / self.pages if self.pages else 0
        return [self.format, self.path, self.files, self.pages, f"{rate:,.1f}",
                f"{per_page:,.0f}", f"{self.seconds * 1000:,.1f}", self.note]


Measurement = Callable[[Inputs], list[Row]]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(median seconds, last result) of `repeat` calls."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def load_row(fmt: str, path_name: str, files: list[Path], repeat: int,
             loader: Callable[[Path, bytes], Any] | None = None) -> Row:
    from ingest.loaders import load

    blobs = [(f, f.read_bytes()) for f in files]
    read = loader or load

    def run() -> list[Any]:
        return [read(f, data) for f, data in blobs]

    seconds, docs = timed(run, repeat)
    pages = sum(d.pages or 1 for d in docs)
    chars = sum(len(s.text) for d in docs for s in d.sections)
    return Row(fmt, path_name, len(files), pages, chars, seconds)


def pdf_rows(label: str, files: list[Path], repeat: int) -> list[Row]:
    """Text layer against the loader with the table finder, and the finder's two steps."""
    import pypdfium2 as pdfium

    from ingest.loaders.pdf import load_pdf
    from ingest.loaders.pdf_tables import find_tables, page_rules

    if not files:
        return []
    rows = [load_row(label, "text layer", files, repeat,
                     lambda p, d: load_pdf(p, d, find_tables=False)),
            load_row(label, "loader (text + tables)", files, repeat)]
    pages = rows[0].pages
    documents = [pdfium.PdfDocument(f.read_bytes()) for f in files]

    def check() -> list[tuple[Any, Any]]:
        found = []
        for doc in documents:
            for i in range(len(doc)):
                rules = page_rules(doc[i])
                if rules.may_rule_a_table:
                    found.append((doc, i))
        return found

    seconds, candidates = timed(check, repeat)
    rows.append(Row(label, "rules check (PDFium paths)", len(files), pages, 0, seconds,
                    f"{len(candidates)} of {pages} pages pass"))

    def find() -> int:
        tables = 0
        for doc, i in candidates:
            page = doc[i]
            textpage = page.get_textpage()
            tables += len(find_tables(page_rules(page), textpage))
            textpage.close()
        return tables

    if candidates:
        seconds, tables = timed(find, repeat)
        rows.append(Row(label, "table finder (rules + cells)", len(files), len(candidates), 0,
                        seconds, f"{tables} tables"))
    for doc in documents:
        doc.close()
    return rows


def measure_pdf(inputs: Inputs) -> list[Row]:
    return pdf_rows("pdf", inputs.files.get("pdf", []), inputs.repeat)


def measure_office_and_text(inputs: Inputs) -> list[Row]:
    rows = []
    for ext in ("docx", "pptx", "html", "md"):
        if inputs.files.get(ext):
            rows.append(load_row(ext, "loader", inputs.files[ext], inputs.repeat))
    return rows


def write_sheets(work: Path, rows: int) -> dict[str, Path]:
    """An XLSX and an ODS of three sheets of `rows` rows, and a CSV of `rows` rows."""
    import openpyxl
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    def values(r: int) -> list[Any]:
        return [f"item {r}", r * 3, f"harbour {r % 11}", round(r * 1.25, 2), f"note {r}"]

    book = openpyxl.Workbook(write_only=True)
    ods = OpenDocumentSpreadsheet()
    for name in ("Q1", "Q2", "Q3"):
        sheet = book.create_sheet(name)
        odt = Table(name=name)
        for r in range(rows):
            sheet.append(values(r))
            tr = TableRow()
            for v in values(r):
                cell = TableCell(valuetype="float", value=v) if isinstance(v, int | float) \
                    else TableCell(valuetype="string")
                cell.addElement(P(text=str(v)))
                tr.addElement(cell)
            odt.addElement(tr)
        ods.spreadsheet.addElement(odt)
    out = {"xlsx": work / "sheets.xlsx", "ods": work / "sheets.ods", "csv": work / "sheet.csv"}
    book.save(str(out["xlsx"]))
    ods.save(str(out["ods"]))
    out["csv"].write_text("".join(",".join(map(str, values(r))) + "\n" for r in range(rows)))
    return out


def measure_sheets(inputs: Inputs) -> list[Row]:
    made = write_sheets(inputs.work, inputs.rows)
    rows = [load_row(ext, f"loader ({inputs.rows:,} rows/sheet)", [path], inputs.repeat)
            for ext, path in made.items()]
    for ext in ("xlsx", "ods", "csv"):
        if inputs.files.get(ext):
            rows.append(load_row(ext, "loader (--data)", inputs.files[ext], inputs.repeat))
    return rows


def render_pdfs(work: Path, pages: int) -> tuple[Path, Path]:
    """(two-column pages each with a ruled table, plain single-column text pages)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import (
        BaseDocTemplate,
        Frame,
        PageBreak,
        PageTemplate,
        Paragraph,
        SimpleDocTemplate,
        TableStyle,
    )
    from reportlab.platypus import Table as RLTable

    styles = getSampleStyleSheet()
    width, height = letter
    col = (width - 126) / 2
    tables = work / "rendered-tables.pdf"
    doc = BaseDocTemplate(str(tables), pagesize=letter)
    doc.addPageTemplates([PageTemplate(frames=[Frame(54, 54, col, height - 108),
                                               Frame(72 + col, 54, col, height - 108)])])
    story: list[Any] = []
    for p in range(pages):
        story.append(Paragraph(f"Page {p} opens with a paragraph on the harbour accounts. " * 4,
                               styles["BodyText"]))
        grid = [["Port", "Tonnes", "Year"], *[[f"port {p}-{r}", f"({r * 1000:,})", str(1900 + r)]
                                               for r in range(8)]]
        t = RLTable(grid)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
        story += [t, Paragraph("The table above lists the tonnage per port. " * 12,
                               styles["BodyText"]), PageBreak()]
    doc.build(story)
    plain = work / "rendered-plain.pdf"
    simple = SimpleDocTemplate(str(plain), pagesize=letter)
    simple.build([x for p in range(pages) for x in (
        Paragraph(f"Plain page {p}: a long paragraph about ferries and tides. " * 40,
                  styles["BodyText"]), PageBreak())])
    return tables, plain


def measure_rendered_pdf(inputs: Inputs) -> list[Row]:
    tables, plain = render_pdfs(inputs.work, 20)
    return (pdf_rows("rendered pdf, ruled tables", [tables], inputs.repeat)
            + pdf_rows("rendered pdf, plain text", [plain], inputs.repeat))


def measure_ocr(inputs: Inputs) -> list[Row]:
    import loaders_ocr as lo

    if inputs.data is None or inputs.ocr_pages < 1:
        return []
    pages = lo.text_layer_pages(inputs.data, 300, inputs.ocr_pages)
    engines = lo.available_engines(["tesseract", "rapidocr"])
    if not pages or not engines:
        return []
    lo.warm_up(engines, pages[0])
    rows = []
    for r in lo.measure(engines, pages, [200], timeout_s=300):
        if r.what == "render":
            continue
        chars = sum(len(p.reference) for p in pages)
        acc = statistics.mean(r.accuracy)
        rows.append(Row("pdf (scanned)", f"ocr · {r.what}", len({p.name for p in pages}),
                        len(r.seconds), chars, sum(r.seconds), f"char accuracy {acc:.3f}"))
    return rows


MEASUREMENTS: list[tuple[str, Measurement]] = [
    ("pdf", measure_pdf),
    ("rendered pdf", measure_rendered_pdf),
    ("office, html, markdown", measure_office_and_text),
    ("spreadsheets", measure_sheets),
    ("ocr", measure_ocr),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, help="folder of documents (e.g. ../shared/data/docs)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per row (median)")
    parser.add_argument("--rows", type=int, default=5000, help="rows per generated sheet")
    parser.add_argument("--only", help="comma-separated measurement names to run")
    parser.add_argument("--ocr-pages", type=int, default=2,
                        help="PDF pages of --data read by each OCR engine (0: no OCR rows)")
    args = parser.parse_args(argv)
    files: dict[str, list[Path]] = {}
    if args.data:
        for f in sorted(args.data.rglob("*")):
            if f.is_file():
                files.setdefault(f.suffix.lower().lstrip("."), []).append(f)
    only = set(args.only.split(",")) if args.only else None
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-loaders-") as work:
        inputs = Inputs(args.data, Path(work), max(1, args.repeat), args.rows, files,
                        args.ocr_pages)
        for name, measure in MEASUREMENTS:
            if only is None or name in only:
                rows += measure(inputs)
    print(table(["format", "path", "files", "pages", "pages/s", "chars/page", "ms", "note"],
                [r.cells() for r in rows], right=[False, False, True, True, True, True, True, False]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
