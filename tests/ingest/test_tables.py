"""Tables kept as tables: HTML, DOCX, PPTX, CSV/TSV, XLSX and ODS give one pipe row per table
row under its header, with merged and empty cells in the right columns; spreadsheets give a
section per sheet named in citations; bounds and bad workbooks give one-line reasons."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import fixtures_docs as F
import pytest
from ingest_helpers import check_store

from core.errors import LoadError
from ingest.loaders import LoadedDocument, LoadOptions, load
from ingest.loaders.base import check_zip


def load_file(path: Path, options: LoadOptions | None = None) -> LoadedDocument:
    return load(path, path.read_bytes(), options)


def full_text(doc: LoadedDocument) -> str:
    return "\n\n".join(s.text for s in doc.sections)


def rows_of(text: str) -> list[list[str]]:
    """The cells of each pipe row of `text` (the separator row left out)."""
    out = []
    for line in text.split("\n"):
        if line.startswith("| ") and line.endswith(" |") and not re.fullmatch(r"(\| --- )+\|", line):
            out.append([c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])])
    return out


def assert_header(text: str, header: list[str]) -> None:
    lines = text.split("\n")
    at = lines.index("|" + "|".join(f" {c} " if c else " " for c in header) + "|")
    assert lines[at + 1] == "|" + " --- |" * len(header)


# -- HTML -------------------------------------------------------------------------------------

# The shape of an SEC 10-K balance sheet: spacer columns, `$` and the `)` of a negative in
# cells of their own, year headers spanning three columns, a label spanning two rows.
TEN_K = """<html><head><title>Form 10-K</title></head><body>
<p>The following table summarises the balance sheet.</p>
<table>
 <tr><td></td><td colspan="3" style="text-align:center"><b>December 31,</b></td><td></td>
     <td colspan="3"></td></tr>
 <tr><th>&#160;</th><th colspan="3">2023</th><th></th><th colspan="3">2022</th></tr>
 <tr><td>Cash and cash equivalents</td><td>$</td><td>16,058,714</td><td></td><td></td>
     <td>$</td><td>5,993,388</td><td></td></tr>
 <tr><td>Net loss</td><td></td><td>(835,300</td><td>)</td><td></td>
     <td></td><td>(1,204</td><td>)</td></tr>
 <tr><td rowspan="2">Notes payable</td><td></td><td>1,000</td><td></td><td></td>
     <td></td><td>&#8212;</td><td></td></tr>
 <tr><td></td><td>2,500</td><td></td><td></td><td></td><td>750</td><td></td></tr>
 <tr><td>Margin</td><td></td><td>12.5</td><td>%</td><td></td><td></td><td></td><td></td></tr>
</table>
<table><tr><td><p>A layout table of one column is read as text.</p></td></tr></table>
<p>Amounts in US dollars | unaudited.</p>
</body></html>"""


def test_html_10k_table_rows_keep_their_columns(tmp_path: Path) -> None:
    path = tmp_path / "10k.html"
    path.write_text(TEN_K)
    text = full_text(load_file(path))
    assert rows_of(text) == [
        ["", "December 31,", ""],
        ["", "2023", "2022"],
        ["Cash and cash equivalents", "$16,058,714", "$5,993,388"],
        ["Net loss", "(835,300)", "(1,204)"],
        ["Notes payable", "1,000", "—"],
        ["Notes payable", "2,500", "750"],
        ["Margin", "12.5%", ""],
    ]
    assert text.index("summarises the balance sheet.") < text.index("| Cash and cash")
    # The layout table is plain text, and prose after the tables stays prose.
    assert "\nA layout table of one column is read as text.\n" in text
    assert "Amounts in US dollars | unaudited." in text


def test_html_header_cells_nested_tables_and_pipes(tmp_path: Path) -> None:
    path = tmp_path / "t.html"
    path.write_text("""<table><thead><tr><th>Port</th><th>Cargo | kind</th></tr></thead>
      <tbody><tr><td>Hull</td><td><table><tr><td>coal</td><td>9</td></tr></table></td></tr>
      <tr><td>Leith</td></tr></tbody></table>""")
    text = full_text(load_file(path))
    assert_header(text, ["Port", "Cargo \\| kind"])
    assert rows_of(text)[1] == ["Hull", "coal 9"]
    assert "| Leith | |" in text  # a short row is padded, not shifted


# -- DOCX and PPTX ----------------------------------------------------------------------------

def test_docx_merged_cells_span_without_shifting(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=4, cols=3)
    for r, row in enumerate([["Quarter", "", "Region"], ["Q1", "10", "North"],
                             ["", "12", "South"], ["Q2", "", "East"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(0, 0).merge(table.cell(0, 1)).text = "Quarter and sales"
    table.cell(1, 0).merge(table.cell(2, 0)).text = "Q1"
    path = tmp_path / "merged.docx"
    document.save(str(path))
    text = full_text(load_file(path))
    assert rows_of(text) == [["Quarter and sales", "", "Region"], ["Q1", "10", "North"],
                             ["Q1", "12", "South"], ["Q2", "", "East"]]
    assert_header(text, ["Quarter and sales", "", "Region"])


def test_pptx_table_with_merged_cells(tmp_path: Path) -> None:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    table = slide.shapes.add_table(3, 3, Inches(1), Inches(1), Inches(6), Inches(2)).table
    values = [["Tern", "Count", "Site"], ["Arctic", "40", "Farne"], ["Common", "12", ""]]
    for r, row in enumerate(values):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(1, 2).merge(table.cell(2, 2))
    table.cell(1, 2).text = "Farne"
    path = tmp_path / "terns.pptx"
    deck.save(str(path))
    doc = load_file(path)
    assert rows_of(doc.sections[0].text) == [["Tern", "Count", "Site"], ["Arctic", "40", "Farne"],
                                             ["Common", "12", "Farne"]]


# -- CSV and TSV ------------------------------------------------------------------------------

def test_csv_is_a_table_with_sniffed_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "tides.csv"
    path.write_text('port;height;note\nHull;"6,5";"spring\ntide"\nLeith;4,1;\n')
    doc = load_file(path)
    assert doc.type == "csv" and doc.title == "tides"
    assert rows_of(doc.sections[0].text) == [["port", "height", "note"], ["Hull", "6,5", "spring tide"],
                                             ["Leith", "4,1", ""]]
    tsv = tmp_path / "tides.tsv"
    tsv.write_text("port\theight\nHull\t6,5\n")
    assert rows_of(load_file(tsv).sections[0].text) == [["port", "height"], ["Hull", "6,5"]]


def test_csv_rows_are_bounded_and_the_cut_is_noted(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("n,square\n" + "".join(f"{i},{i * i}\n" for i in range(500)))
    doc = load_file(path, LoadOptions(max_sheet_rows=100))
    assert len(rows_of(doc.sections[0].text)) == 100
    assert doc.notes == ["big.csv: kept the first 100 rows of 501 (ingest.max_sheet_rows 100)"]


# -- XLSX and ODS -----------------------------------------------------------------------------

def write_xlsx(path: Path, sheets: dict[str, list[list[Any]]],
               cached: dict[str, str] | None = None) -> Path:
    """A workbook of `sheets`; `cached` maps a formula (as openpyxl writes it, without `=`)
    to the value a spreadsheet program would have cached for it when saving."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    data = buf.getvalue()
    if cached:
        # openpyxl cannot compute formulas and writes them with an empty cached value.
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                body = src.read(info)
                for formula, value in cached.items():
                    body = body.replace(f"<f>{formula}</f><v></v>".encode(),
                                        f"<f>{formula}</f><v>{value}</v>".encode())
                dst.writestr(info, body)
        data = out.getvalue()
    path.write_bytes(data)
    return path


BUDGET = {
    "Q3": [["Item", "Cost", "Owner"], ["Lanterns", 1250, "harbour office"],
           ["Rope", 87.5, "the ferry crew"], ["Total", "=SUM(B2:B3)", None]],
    "Notes": [["Note"], ["The copper beacon was repainted in September."]],
    "Empty": [],
}


def test_xlsx_sheets_are_sections_with_labels_and_cached_formula_values(tmp_path: Path) -> None:
    import datetime as dt

    sheets = {**BUDGET, "Dates": [["When", "Done"], [dt.datetime(2024, 3, 1), True]]}
    doc = load_file(write_xlsx(tmp_path / "budget.xlsx", sheets, {"SUM(B2:B3)": "1337.5"}))
    assert doc.type == "xlsx" and doc.title == "budget"
    assert doc.pages == 4
    assert [(s.page, s.label) for s in doc.sections] == [
        (1, "sheet Q3"), (2, "sheet Notes"), (4, "sheet Dates")]  # the empty sheet is dropped
    q3 = doc.sections[0].text
    assert q3.startswith("# Q3\n\n| Item | Cost | Owner |\n| --- | --- | --- |\n")
    assert rows_of(q3)[1:] == [["Lanterns", "1250", "harbour office"], ["Rope", "87.5", "the ferry crew"],
                               ["Total", "1337.5", ""]]
    assert rows_of(doc.sections[2].text)[1] == ["2024-03-01", "TRUE"]


def test_xlsx_formula_without_cached_value_is_empty_not_the_formula(tmp_path: Path) -> None:
    """A workbook saved by a program that never computed it (openpyxl) has no cached value:
    the cell is empty; the formula text never reaches the document."""
    doc = load_file(write_xlsx(tmp_path / "raw.xlsx", {"Q3": BUDGET["Q3"]}))
    assert rows_of(doc.sections[0].text)[3] == ["Total", "", ""]
    assert "SUM" not in full_text(doc)


def test_xlsx_rows_are_bounded_per_sheet(tmp_path: Path) -> None:
    rows: list[list[Any]] = [["n", "double"], *([i, 2 * i] for i in range(300))]
    doc = load_file(write_xlsx(tmp_path / "long.xlsx", {"Data": rows, "Small": rows[:5]}),
                    LoadOptions(max_sheet_rows=50))
    assert [len(rows_of(s.text)) for s in doc.sections] == [50, 5]
    assert doc.notes == ["sheet Data: kept the first 50 rows of 301 (ingest.max_sheet_rows 50)"]


def write_ods(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    doc = OpenDocumentSpreadsheet()
    for name, rows in sheets.items():
        table = Table(name=name)
        for row in rows:
            tr = TableRow()
            for value in row:
                if isinstance(value, int | float):
                    cell = TableCell(valuetype="float", value=value)
                else:
                    cell = TableCell(valuetype="string")
                cell.addElement(P(text=str(value)))
                tr.addElement(cell)
            table.addElement(tr)
        doc.spreadsheet.addElement(table)
    doc.save(str(path))
    return path


def test_ods_sheets_are_sections_with_labels(tmp_path: Path) -> None:
    doc = load_file(write_ods(tmp_path / "tides.ods", {
        "Spring": [["Port", "Height"], ["Hull", 6.5], ["Leith", 4]],
        "Neap": [["Port", "Height"], ["Hull", 3.25]],
    }))
    assert doc.type == "ods" and doc.pages == 2
    assert [s.label for s in doc.sections] == ["sheet Spring", "sheet Neap"]
    assert rows_of(doc.sections[0].text) == [["Port", "Height"], ["Hull", "6.5"], ["Leith", "4"]]
    assert doc.sections[1].text.startswith("# Neap\n\n| Port | Height |")


# -- bad workbooks ----------------------------------------------------------------------------

def encrypted_xlsx(path: Path) -> Path:
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = write_xlsx(path.with_name("plain-" + path.name), {"Q3": BUDGET["Q3"]})
    out = io.BytesIO()
    with plain.open("rb") as f:
        OOXMLFile(f).encrypt("secret", out)
    path.write_bytes(out.getvalue())
    return path


def zip_bomb(path: Path, mb: int) -> Path:
    """A zip named like a workbook whose one member inflates to `mb` MB of zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"\0" * (mb * 2**20))
    return path


def truncated(path: Path) -> Path:
    data = write_xlsx(path, {"Q3": BUDGET["Q3"]}).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(("name", "make", "reason"), [
    ("text.xlsx", lambda p: p.write_bytes(b"plain text, not a workbook" * 20) and p, "corrupt xlsx"),
    ("half.xlsx", truncated, "corrupt xlsx"),
    ("locked.xlsx", encrypted_xlsx, "encrypted xlsx: a password is needed"),
    ("bomb.xlsx", lambda p: zip_bomb(p, 8), "xlsx: it would unzip to 8 mb, over the 4 mb bound"),
    ("bomb.ods", lambda p: zip_bomb(p, 8), "ods: it would unzip"),
    ("bomb.docx", lambda p: zip_bomb(p, 8), "docx: it would unzip to 8 mb"),
    ("bomb.pptx", lambda p: zip_bomb(p, 8), "pptx: it would unzip to 8 mb"),
    ("bomb.epub", lambda p: zip_bomb(p, 8), "epub: it would unzip to 8 mb, over the 4 mb bound"),
    ("bomb.odt", lambda p: zip_bomb(p, 8), "odt: it would unzip to 8 mb, over the 4 mb bound"),
    ("bomb.odp", lambda p: zip_bomb(p, 8), "odp: it would unzip to 8 mb, over the 4 mb bound"),
    ("noise.ods", lambda p: p.write_bytes(b"PK\x03\x04" + b"\x01" * 500) and p, "corrupt ods"),
])
def test_bad_workbook_gives_one_line_reason(tmp_path: Path, name: str, make: Any,
                                            reason: str) -> None:
    path = make(tmp_path / name)
    with pytest.raises(LoadError) as info:
        load_file(path, LoadOptions(max_unzipped_mb=4))
    message = str(info.value)
    assert reason in message.lower(), message
    assert "\n" not in message and len(message) <= 200


def test_check_zip_bounds_the_declared_size_and_refuses_non_zips() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.xml", b"x" * 3000)
    assert check_zip(buf.getvalue(), "DOCX", max_bytes=3000).namelist() == ["a.xml"]
    with pytest.raises(LoadError, match="DOCX: it would unzip to 0 MB, over the 0 MB bound"):
        check_zip(buf.getvalue(), "DOCX", max_bytes=2999)
    with pytest.raises(LoadError, match="corrupt EPUB"):
        check_zip(b"not a zip", "EPUB")


# -- through the pipeline, retrieval and the CLI summary --------------------------------------

def test_workbook_ingests_and_retrieval_names_the_sheet(tmp_path: Path, settings: Any,
                                                        store: Any, ingest_paths: Any,
                                                        embedder: Any, counter: Any) -> None:
    from retrieval.service import RetrieveOptions, Retriever

    docs = tmp_path / "docs"
    docs.mkdir()
    long_rows: list[list[Any]] = [["Vessel", "Harbour", "Tonnes"]]
    long_rows += [[f"vessel {i}", f"harbour {i % 7}", 100 + i] for i in range(60)]
    write_xlsx(docs / "budget.xlsx", {**BUDGET, "Fleet": long_rows}, {"SUM(B2:B3)": "1337.5"})
    (docs / "broken.xlsx").write_bytes(b"not a workbook at all" * 10)
    encrypted_xlsx(docs / "locked.xlsx")
    report = ingest_paths([docs], store=store)
    results = {Path(r.path).name: r for r in report.results}
    assert results["budget.xlsx"].status == "new"
    assert results["plain-locked.xlsx"].status == "new"  # the batch goes on past bad files
    assert "corrupt XLSX" in results["broken.xlsx"].reason
    assert results["locked.xlsx"].reason == "encrypted XLSX: a password is needed to read it"

    live = check_store(store)
    payloads = next(p for p in live.values() if p[0]["source"].endswith("/budget.xlsx"))
    fleet = [p for p in payloads if p["page_label"] == "sheet Fleet"]
    assert len(fleet) >= 3, "the Fleet sheet should span several chunks at 64 tokens"
    for p in fleet:
        assert p["text"].startswith(("# Fleet\n\n| Vessel | Harbour | Tonnes |",
                                     "| Vessel | Harbour | Tonnes |\n| --- | --- | --- |\n"))
        assert p["tokens"] == counter.count(p["text"])
    assert {p["page_label"] for p in payloads} == {"sheet Q3", "sheet Notes", "sheet Fleet"}

    retrieval = Retriever(settings, store, embedder, counter).retrieve(
        "When was the copper beacon repainted?", RetrieveOptions(budget_tokens=1600,
                                                                   context_mode="retrieve"))
    assert retrieval.packing.passages, retrieval.to_dict()
    top = min(retrieval.packing.passages, key=lambda p: p.rank if p.rank is not None else 99)
    assert "copper beacon was repainted" in top.text
    assert top.page_label == "sheet Notes"
    assert top.header.startswith(f"[{top.label}] budget.xlsx, sheet Notes")
    assert top.to_dict()["page_label"] == "sheet Notes"

    # A passage that starts inside the Fleet table opens with its header rows, once, and the
    # packed count is still exact.
    retrieval = Retriever(settings, store, embedder, counter).retrieve(
        "vessel 47 harbour 5", RetrieveOptions(budget_tokens=1300, context_mode="retrieve",
                                               neighbours=0, search_mode="keyword"))
    fleet_passages = [p for p in retrieval.packing.passages if p.page_label == "sheet Fleet"]
    assert any("| vessel 47 | harbour 5 | 147 |" in p.text for p in fleet_passages)
    for p in fleet_passages:
        assert p.text.count("| Vessel | Harbour | Tonnes |") == 1, p.text[:200]
    used = retrieval.packing.used_tokens
    assert counter.count(retrieval.packing.context) == used


def test_ingest_summary_says_what_was_cut(tmp_path: Path, make_settings: Any, embedder: Any) -> None:
    from rich.console import Console

    from app.console import print_ingest_report
    from ingest.pipeline import ingest

    path = tmp_path / "long.csv"
    path.write_text("n,square\n" + "".join(f"{i},{i * i}\n" for i in range(40)))
    settings = make_settings(tmp_path / "data", ingest={"max_sheet_rows": 10})
    report = ingest(settings, [path], embedder=embedder)
    (result,) = report.results
    assert result.status == "new"
    assert result.notes == ["long.csv: kept the first 10 rows of 41 (ingest.max_sheet_rows 10)"]
    out, err = io.StringIO(), io.StringIO()
    print_ingest_report(Console(file=out, width=200), Console(file=err, width=200), report)
    assert err.getvalue() == f"note    {path}: {result.notes[0]}\n"


# -- PDF --------------------------------------------------------------------------------------

PDF_GRID = [["Port", "Tonnes", "Year"], ["Hull", "(835,300)", "1887"], ["Leith", "$16,058", "1901"],
            ["Wick", "", "1923"]]
LEFT_BEFORE = "The left column opens with the harbour accounts of the northern ports."
LEFT_AFTER = "Below the table the left column turns to the ferries and their crews."
RIGHT = "The right column closes with a note on copper kettles in the tavern."


def write_table_pdf(path: Path, frame_only: bool = False) -> Path:
    """Page 1: two columns, a ruled table in the left one between two paragraphs; page 2:
    plain text. With `frame_only`, the table has only an outer box (no rules inside)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import (
        BaseDocTemplate,
        Frame,
        FrameBreak,
        PageBreak,
        PageTemplate,
        Paragraph,
        TableStyle,
    )
    from reportlab.platypus import Table as RLTable

    styles = getSampleStyleSheet()["BodyText"]
    width, height = letter
    col = (width - 126) / 2
    doc = BaseDocTemplate(str(path), pagesize=letter)
    doc.addPageTemplates([PageTemplate(frames=[Frame(54, 54, col, height - 108),
                                               Frame(72 + col, 54, col, height - 108)])])
    grid = RLTable(PDF_GRID)
    style = ("BOX", (0, 0), (-1, -1), 0.5, colors.black) if frame_only else \
        ("GRID", (0, 0), (-1, -1), 0.5, colors.black)
    grid.setStyle(TableStyle([style]))
    doc.build([Paragraph(LEFT_BEFORE, styles), grid, Paragraph(LEFT_AFTER, styles), FrameBreak(),
               Paragraph(RIGHT, styles), PageBreak(),
               Paragraph("The second page has no table at all, only this sentence.", styles)])
    return path


def test_pdf_ruled_table_becomes_rows_and_text_keeps_reading_order(tmp_path: Path) -> None:
    doc = load_file(write_table_pdf(tmp_path / "ports.pdf"))
    assert [s.page for s in doc.sections] == [1, 2]
    text = doc.sections[0].text
    assert rows_of(text) == [["Port", "Tonnes", "Year"], ["Hull", "(835,300)", "1887"],
                             ["Leith", "$16,058", "1901"], ["Wick", "", "1923"]]
    assert_header(text, ["Port", "Tonnes", "Year"])
    order = [text.index(s[:40]) for s in (LEFT_BEFORE, "| Port |", "| Wick |", LEFT_AFTER, RIGHT)]
    assert order == sorted(order), text
    # The table's words are not left behind as loose text as well.
    assert text.count("Leith") == 1 and text.count("(835,300)") == 1
    assert "no table at all" in doc.sections[1].text


def test_pdf_without_rules_reads_as_before(tmp_path: Path) -> None:
    """Pages without a ruled grid (plain text, a box around a table) keep PDFium's text, the
    same as with the table finder off."""
    from ingest.loaders.pdf import load_pdf

    for path in (write_table_pdf(tmp_path / "framed.pdf", frame_only=True),
                 F.write_pdf(tmp_path / "plain.pdf")):
        data = path.read_bytes()
        assert load_pdf(path, data).sections == load_pdf(path, data, find_tables=False).sections
        assert "| --- |" not in full_text(load_pdf(path, data))


def test_pdf_table_split_across_chunks_carries_its_header(tmp_path: Path, counter: Any) -> None:
    from reportlab.lib import colors
    from reportlab.platypus import SimpleDocTemplate, TableStyle
    from reportlab.platypus import Table as RLTable

    from ingest.chunker import Chunker

    grid = [["Vessel", "Harbour", "Tonnes"], *([f"vessel {i}", f"harbour {i % 5}", str(100 + i)]
                                              for i in range(30))]
    table = RLTable(grid)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    path = tmp_path / "fleet.pdf"
    SimpleDocTemplate(str(path)).build([table])
    doc = load_file(path)
    assert len(rows_of(full_text(doc))) == 31
    chunks = Chunker(counter, 64, 8).split(doc.sections)
    assert len(chunks) >= 3
    for c in chunks:
        assert "| Vessel | Harbour | Tonnes |\n| --- | --- | --- |\n" in c.text
        assert counter.count(c.text) == c.tokens <= 64
