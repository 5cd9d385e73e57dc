"""File → text: every format's text, title and pages; every bad input refused by reason."""

from __future__ import annotations

import io
from pathlib import Path

import fixtures_docs as F
import pytest

from core.errors import LoadError
from ingest.loaders import LoadedDocument, file_type, load


def load_file(path: Path) -> LoadedDocument:
    return load(path, path.read_bytes())


def full_text(doc: LoadedDocument) -> str:
    return "\n\n".join(s.text for s in doc.sections)


# -- types ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "kind"), [
    ("a.pdf", "pdf"), ("A.PDF", "pdf"), ("a.docx", "docx"), ("a.pptx", "pptx"),
    ("a.html", "html"), ("a.htm", "html"), ("a.md", "markdown"), ("a.markdown", "markdown"),
    ("a.txt", "text"), ("a.rst", "text"), ("a.csv", "csv"), ("a.TSV", "csv"),
    ("a.xlsx", "xlsx"), ("a.ods", "ods"), ("a.py", "code"), ("a.ts", "code"),
    ("a.yaml", "code"), ("Makefile", "code"), ("Dockerfile", "code"),
    ("a.png", "image"), ("a.TIFF", "image"), ("a.xyz", None), ("a.doc", None), ("noext", None),
])
def test_file_type(name: str, kind: str | None) -> None:
    assert file_type(Path(name)) == kind


# -- good documents ---------------------------------------------------------------------------

def test_pdf_pages_text_and_title(tmp_path: Path) -> None:
    doc = load_file(F.write_pdf(tmp_path / "almanac.pdf"))
    assert doc.type == "pdf"
    assert doc.title == F.PDF_TITLE
    assert doc.pages == len(F.PDF_PAGES) == 3
    assert [s.page for s in doc.sections] == [1, 2, 3]
    for section, lines in zip(doc.sections, F.PDF_PAGES, strict=True):
        for line in lines:
            assert line in section.text
        others = [line for page in F.PDF_PAGES if page is not lines for line in page]
        assert not any(line in section.text for line in others), "text leaked across pages"


def test_pdf_without_title_uses_file_name_and_keeps_page_numbers(tmp_path: Path) -> None:
    pages = [["Only the first page has words."], [], ["The third page has words too."]]
    doc = load_file(F.write_pdf(tmp_path / "untitled-report.pdf", pages, title=None))
    assert doc.title == "untitled-report"
    assert doc.pages == 3
    # The empty page 2 is dropped, but pages keep their real numbers.
    assert [s.page for s in doc.sections] == [1, 3]
    assert "third page" in doc.sections[1].text


def test_pdf_encrypted_with_empty_user_password_is_readable(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    path = F.write_pdf(tmp_path / "owner-only.pdf", [["Anyone may read this page."]], None)
    writer = PdfWriter(clone_from=PdfReader(path))
    writer.encrypt(user_password="", owner_password="owner-secret")
    buf = io.BytesIO()
    writer.write(buf)
    path.write_bytes(buf.getvalue())
    doc = load_file(path)
    assert "Anyone may read this page." in doc.sections[0].text


def test_docx_heading_paragraphs_and_table(tmp_path: Path) -> None:
    doc = load_file(F.write_docx(tmp_path / "orchard.docx"))
    assert doc.type == "docx"
    assert doc.title == F.DOCX_HEADING
    assert doc.pages is None
    text = full_text(doc)
    assert text.startswith(f"# {F.DOCX_HEADING}")
    for para in F.DOCX_PARAGRAPHS:
        assert para in text
    for row in F.DOCX_TABLE:
        assert "| " + " | ".join(row) + " |" in text
    # Body order is kept: heading, paragraphs, table, closing paragraph.
    order = [text.index(s) for s in (F.DOCX_HEADING, F.DOCX_PARAGRAPHS[0], "| Fruit",
                                     "End of the orchard report.")]
    assert order == sorted(order)


def test_pptx_slides_are_pages(tmp_path: Path) -> None:
    doc = load_file(F.write_pptx(tmp_path / "terns.pptx"))
    assert doc.type == "pptx"
    assert doc.title == F.PPTX_SLIDES[0][0]
    assert doc.pages == 3
    assert [s.page for s in doc.sections] == [1, 2, 3]
    for section, (title, body) in zip(doc.sections, F.PPTX_SLIDES, strict=True):
        assert title in section.text
        assert body in section.text
    assert F.PPTX_NOTES in doc.sections[1].text
    assert F.PPTX_NOTES not in doc.sections[0].text + doc.sections[2].text


def test_html_text_without_chrome(tmp_path: Path) -> None:
    doc = load_file(F.write_html(tmp_path / "volcano.html"))
    assert doc.type == "html"
    assert doc.title == F.HTML_TITLE
    text = full_text(doc)
    for para in F.HTML_BODY:
        assert para in text
    for chrome in F.HTML_CHROME:
        assert chrome not in text
    for code in ("console.log", "color: red", "<", ">"):
        assert code not in text
    assert "# Field notes" in text
    # Block elements become separate lines.
    assert "Ash sample one\n" in text
    assert "Ash sample two" in text


def test_html_title_falls_back_to_h1(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html><body><h1>Tide Tables</h1><p>High water at noon.</p></body></html>")
    doc = load_file(path)
    assert doc.title == "Tide Tables"
    assert "High water at noon." in full_text(doc)


def test_markdown_title_and_text(tmp_path: Path) -> None:
    doc = load_file(F.write_markdown(tmp_path / "bees.md"))
    assert doc.type == "markdown"
    assert doc.title == F.MD_TITLE
    assert F.MD_SENTENCE in full_text(doc)
    assert "- Hive two: swarmed in May" in full_text(doc)


def test_markdown_without_heading_uses_file_name(tmp_path: Path) -> None:
    path = tmp_path / "loose-notes.md"
    path.write_text("Just a paragraph.\n\n## Not a title\n")
    assert load_file(path).title == "loose-notes"


def test_plain_text(tmp_path: Path) -> None:
    doc = load_file(F.write_text(tmp_path / "bakery.txt"))
    assert doc.type == "text"
    assert doc.title == "bakery"
    assert doc.pages is None
    assert len(doc.sections) == 1 and doc.sections[0].page is None
    assert doc.sections[0].text.startswith(F.TXT_SENTENCE)


def test_text_is_normalised(tmp_path: Path) -> None:
    path = tmp_path / "messy.txt"
    path.write_bytes(b"\r\n\r\nfirst line   \r\nsecond line\r\n\r\n\r\n\r\nthird\r\n  \n")
    assert load_file(path).sections[0].text == "first line\nsecond line\n\nthird"


@pytest.mark.parametrize(("encoded", "expected"), [
    ("Crème brûlée, façade, naïve café — ¿qué?".encode("utf-16"), "Crème brûlée, façade"),
    ("\ufeffBOM and ünïcödé".encode(), "BOM and ünïcödé"),
    (("Le café était très animé ce matin-là, près du marché. " * 4).encode("cp1252"),
     "Le café était très animé"),
], ids=["utf-16", "utf-8-bom", "cp1252"])
def test_text_encodings(tmp_path: Path, encoded: bytes, expected: str) -> None:
    path = tmp_path / "enc.txt"
    path.write_bytes(encoded)
    text = load_file(path).sections[0].text
    assert text.startswith(expected)
    assert "\ufeff" not in text


def test_code_file(tmp_path: Path) -> None:
    doc = load_file(F.write_code(tmp_path / "tides.py"))
    assert doc.type == "code"
    assert doc.title == "tides"
    text = full_text(doc)
    assert f"def {F.CODE_FUNCTION}(high: float, low: float) -> float:" in text
    assert "    return high - low" in text  # indentation kept
    assert F.CODE_SENTENCE in text


# -- bad inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", F.BAD_BYTES, ids=lambda b: b.name)
def test_bad_input_raises_load_error_with_reason(tmp_path: Path, bad: F.Bad) -> None:
    path = bad.write(tmp_path / bad.name)
    with pytest.raises(LoadError) as info:
        load_file(path)
    reason = str(info.value)
    assert any(word in reason.lower() for word in bad.reason), reason
    assert "\n" not in reason and 0 < len(reason) <= 200
    assert "Traceback" not in reason


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.8, 0.95])
def test_truncated_pdf_is_refused_or_partial(tmp_path: Path, keep: float) -> None:
    """Cut short, a PDF may still yield its first pages (PDFium can rebuild the xref); it
    must never yield text that is not in the document, nor raise anything but LoadError."""
    path = F.write_pdf(tmp_path / "whole.pdf")
    data = path.read_bytes()
    half = tmp_path / "half.pdf"
    half.write_bytes(data[: int(len(data) * keep)])
    known = [line for page in F.PDF_PAGES for line in page]
    try:
        doc = load_file(half)
    except LoadError as exc:
        assert "corrupt pdf" in str(exc).lower() or "no text" in str(exc).lower()
    else:
        for section in doc.sections:
            assert all(line in known for line in section.text.split("\n")), section.text


def test_office_file_that_is_not_a_zip(tmp_path: Path) -> None:
    for name, kind in (("fake.docx", "DOCX"), ("fake.pptx", "PPTX")):
        path = tmp_path / name
        path.write_bytes(b"this is plain text, not a zip archive" * 10)
        with pytest.raises(LoadError, match=f"corrupt {kind}"):
            load_file(path)


def test_whitespace_only_text_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "blank.md"
    path.write_text("   \n\n\t\n   ")
    with pytest.raises(LoadError, match="no text could be extracted"):
        load_file(path)
