"""The newer formats' loaders: EPUB, ODT, ODP, RTF, e-mail, mbox, notebooks, XHTML; and the
bad inputs each must refuse in one line (corrupt packages, zip bombs, lying zip headers)."""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import fixtures_docs as F
import fixtures_formats as FF
import pytest

from core.errors import LoadError
from ingest.loaders import LoadedDocument, file_type, load
from ingest.loaders.base import check_zip


def load_file(path: Path) -> LoadedDocument:
    return load(path, path.read_bytes())


def full_text(doc: LoadedDocument) -> str:
    return "\n\n".join(s.text for s in doc.sections)


@pytest.mark.parametrize(("name", "kind"), [
    ("a.epub", "epub"), ("a.odt", "odt"), ("a.odp", "odp"), ("a.rtf", "rtf"), ("A.EML", "email"),
    ("a.mbox", "mbox"), ("a.ipynb", "notebook"), ("a.xhtml", "html"),
])
def test_file_type(name: str, kind: str) -> None:
    assert file_type(Path(name)) == kind


# -- good documents ---------------------------------------------------------------------------

def test_epub_chapters_in_spine_order_with_titles_as_headings(tmp_path: Path) -> None:
    doc = load_file(FF.write_epub(tmp_path / "salt.epub"))
    assert (doc.type, doc.title, doc.pages) == ("epub", FF.EPUB_TITLE, 3)
    # The manifest lists the chapters backwards: the spine's order wins.
    assert [s.page for s in doc.sections] == [1, 2, 3]
    for section, (toc, _, sentence) in zip(doc.sections, FF.EPUB_CHAPTERS, strict=True):
        assert section.text.startswith(f"# {toc}\n")  # chapter 2 has no <h1>: the nav's label
        assert sentence in section.text
        assert FF.EPUB_TITLE not in section.text  # each chapter's <title> is the book's


def test_epub2_table_of_contents_from_the_ncx(tmp_path: Path) -> None:
    data = FF.epub_bytes([("Only Chapter", None, "A single sentence about salt.")])
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    ncx = ('<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/"><navMap><navPoint id="p1">'
           '<navLabel><text>The Only Chapter</text></navLabel><content src="text/ch1.xhtml#top"/>'
           "</navPoint></navMap></ncx>")
    with zipfile.ZipFile(buf, "w") as z:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "OEBPS/content.opf":
                body = body.replace(b' properties="nav"', b"").replace(
                    b"</manifest>", b'<item id="ncx" href="toc.ncx" '
                    b'media-type="application/x-dtbncx+xml"/></manifest>')
            z.writestr(info, body)
        z.writestr("OEBPS/toc.ncx", ncx)
    path = tmp_path / "old.epub"
    path.write_bytes(buf.getvalue())
    assert load_file(path).sections[0].text.startswith("# The Only Chapter\n")


def test_odt_heading_paragraph_and_table(tmp_path: Path) -> None:
    doc = load_file(FF.write_odt(tmp_path / "mill.odt"))
    assert (doc.type, doc.title) == ("odt", FF.ODT_TITLE)
    text = full_text(doc)
    assert text.startswith(f"# {FF.ODT_HEADING}\n")
    assert FF.ODT_PARAGRAPH in text
    for row in FF.ODT_TABLE:
        assert "| " + " | ".join(row) + " |" in text.splitlines()


def test_odp_one_section_per_slide_with_notes(tmp_path: Path) -> None:
    doc = load_file(FF.write_odp(tmp_path / "glass.odp"))
    assert (doc.type, doc.title, doc.pages) == ("odp", FF.ODP_SLIDES[0][0], 2)
    assert [s.page for s in doc.sections] == [1, 2]
    for section, (title, body) in zip(doc.sections, FF.ODP_SLIDES, strict=True):
        assert title in section.text and body in section.text
    assert "Notes: " + FF.ODP_NOTES in doc.sections[0].text
    assert FF.ODP_NOTES not in doc.sections[1].text


def test_rtf_text_title_and_escaped_characters(tmp_path: Path) -> None:
    doc = load_file(FF.write_rtf(tmp_path / "ledger.rtf"))
    assert (doc.type, doc.title) == ("rtf", FF.RTF_TITLE)
    text = full_text(doc)
    assert FF.RTF_SENTENCE in text
    assert "Café accounts were settled in € euros." in text
    assert "\\par" not in text and "fonttbl" not in text and FF.RTF_TITLE not in text


def test_notebook_cells_not_json(tmp_path: Path) -> None:
    doc = load_file(FF.write_notebook(tmp_path / "tides.ipynb"))
    assert (doc.type, doc.title) == ("notebook", FF.NOTEBOOK_TITLE)
    text = full_text(doc)
    assert FF.NOTEBOOK_MARKDOWN in text
    assert f"```python\n# comment, not a title\n{FF.NOTEBOOK_CODE}\n```" in text
    assert FF.NOTEBOOK_OUTPUT in text
    for json_only in (FF.NOTEBOOK_JSON_MARKER, "cell_type", "iVBORw0KGgo", '"source"'):
        assert json_only not in text


def test_xhtml_with_xml_declaration_parses_without_warnings(tmp_path: Path) -> None:
    path = FF.write_xhtml(tmp_path / "annual-report.xhtml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        doc = load_file(path)
        also_html = load(tmp_path / "annual-report.html", path.read_bytes())
    assert [str(w.message)[:80] for w in caught] == []
    assert doc.title == also_html.title == "Ferry Company Annual Report"
    assert FF.XHTML_SENTENCE in full_text(doc)


def test_eml_headers_first_then_body_and_attachments(tmp_path: Path) -> None:
    pdf = F.write_pdf(tmp_path / "estimate.pdf", [[FF.MAIL_ATTACHMENT_SENTENCE]]).read_bytes()
    doc = load_file(FF.write_eml(tmp_path / "budget.eml", pdf=pdf))
    assert (doc.type, doc.title) == ("email", FF.MAIL_SUBJECT)
    lines = full_text(doc).splitlines()
    assert lines[:5] == [f"From: {FF.MAIL_FROM}", f"To: {FF.MAIL_TO}",
                         "Date: Tue, 01 Oct 2024 09:30:00 +0000", f"Subject: {FF.MAIL_SUBJECT}",
                         "Attachments: estimate.pdf, plan.dwg"]
    assert FF.MAIL_BODY in lines
    assert [a.name for a in doc.attachments] == ["estimate.pdf", "plan.dwg"]
    estimate = doc.attachments[0]
    assert estimate.read() == pdf
    assert abs(estimate.size - len(pdf)) <= 4  # known from the base64 length, before decoding


def test_eml_html_body_goes_through_the_html_loader(tmp_path: Path) -> None:
    doc = load_file(FF.write_eml(tmp_path / "html.eml", html=True))
    text = full_text(doc)
    assert FF.MAIL_BODY in text and "<p>" not in text


def test_eml_attachment_names_are_made_safe_and_unique(tmp_path: Path) -> None:
    extra = [("../../etc/notes.txt", b"one", "text/plain"), ("notes.txt", b"two", "text/plain")]
    doc = load_file(FF.write_eml(tmp_path / "odd.eml", extra=extra))
    assert [a.name for a in doc.attachments] == ["plan.dwg", "notes.txt", "notes-2.txt"]
    assert [a.read() for a in doc.attachments[1:]] == [b"one", b"two"]


def test_a_50_mb_attachment_is_neither_parsed_line_by_line_nor_decoded(tmp_path: Path) -> None:
    path = FF.write_eml_with_big_attachment(tmp_path / "logbook.eml", megabytes=50)
    data = path.read_bytes()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        doc = load(path, data)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [big] = doc.attachments
    assert big.name == "logbook.txt" and big.size == 50 * 2**20
    # Measured: 13 s and 520 MB through the stdlib parser alone; 0.5 s and 0.1 MB cut out.
    assert seconds < 5 and peak < 20 * 2**20, (seconds, peak)
    assert FF.MAIL_BODY in full_text(doc)
    assert big.read()[:40] == b"lighthouse log line\n" * 2


def test_a_forwarded_message_keeps_its_big_attachment(tmp_path: Path) -> None:
    big = bytes(range(256)) * (6 * 2**12)  # 1.5 MB: its base64 is cut out of the outer message
    inner = FF.mail_message(subject="Tower survey", attachments=[
        ("survey.bin", big, "application/octet-stream")])
    outer = FF.mail_message(subject="Fwd: Tower survey")
    outer.add_attachment(inner)
    path = tmp_path / "fwd.eml"
    path.write_bytes(outer.as_bytes())
    [forwarded] = load_file(path).attachments
    assert forwarded.name == "Tower survey.eml" and forwarded.size > len(big)
    inner_doc = load(Path(forwarded.name), forwarded.read())
    assert inner_doc.title == "Tower survey"
    [survey] = inner_doc.attachments
    assert survey.read() == big


def test_mbox_index_and_one_attachment_per_message(tmp_path: Path) -> None:
    messages = [FF.mail_message(subject=f"Tide table {n}", body=f"High water at {n} o'clock.")
                for n in range(1, 4)]
    doc = load_file(FF.write_mbox(tmp_path / "inbox.mbox", list(messages)))
    assert doc.type == "mbox"
    assert "Tide table 2" in full_text(doc).splitlines()[2]
    assert [a.name for a in doc.attachments] == ["message-1.eml", "message-2.eml", "message-3.eml"]
    second = load(Path(doc.attachments[1].name), doc.attachments[1].read())
    assert second.title == "Tide table 2" and "High water at 2 o'clock." in full_text(second)


# -- bad input --------------------------------------------------------------------------------

def _refused(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(LoadError) as caught:
        load_file(path)
    reason = str(caught.value)
    assert "\n" not in reason and len(reason) <= 200
    return reason


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("book.epub", b"PK\x03\x04 not really a zip", "corrupt EPUB: not a zip archive"),
    ("book.epub", FF.zip_bytes({"mimetype": b"application/epub+zip"}), "'META-INF/container.xml' is missing"),
    ("book.epub", FF.zip_bytes({"META-INF/container.xml": b"<container/>"}), "names no package"),
    ("book.epub", FF.epub_bytes()[:2000], "corrupt EPUB"),
    ("mill.odt", b"plain words", "corrupt ODT: not a zip archive"),
    ("mill.odt", FF.zip_bytes({"mimetype": b"application/vnd.oasis.opendocument.text"}),
     "'content.xml' is missing"),
    ("mill.odt", FF.zip_bytes({"content.xml": b"<office:document-content"}), "content.xml is not XML"),
    ("glass.odp", FF.zip_bytes({"content.xml": b"<a/>"}), "no office:presentation body"),
    ("ledger.rtf", b"just text, no rtf", "corrupt RTF: no {\\rtf header"),
    ("tides.ipynb", b"{not json", "corrupt notebook: not JSON"),
    ("tides.ipynb", json.dumps({"a": 1}).encode(), "corrupt notebook: no cells"),
    ("note.eml", b"\x00\x01\x02 binary junk \xff\xfe", "not an e-mail"),
    ("inbox.mbox", b"Subject: no From_ line\n\nbody\n", "corrupt mbox"),
])
def test_corrupt_files_are_refused_in_one_line(tmp_path: Path, name: str, data: bytes,
                                               expected: str) -> None:
    assert expected in _refused(tmp_path, name, data)


@pytest.mark.parametrize(("name", "member"), [
    ("bomb.docx", "word/document.xml"), ("bomb.pptx", "ppt/presentation.xml"),
    ("bomb.epub", "META-INF/container.xml"), ("bomb.odt", "content.xml"),
    ("bomb.odp", "content.xml"),
])
def test_zip_bombs_are_refused_before_inflating(tmp_path: Path, name: str, member: str) -> None:
    reason = _refused(tmp_path, name, FF.zip_bomb(member))
    assert reason.startswith(f"refused {Path(name).suffix[1:].upper()}: it would unzip to 64 MB")


def test_a_zip_whose_header_lies_about_its_size_is_corrupt(tmp_path: Path) -> None:
    real = FF.zip_bomb("word/document.xml", size=8 * 2**20)  # small enough for the ratio rule
    with pytest.raises(zipfile.BadZipFile, match="CRC"):  # zipfile stops at the declared size
        zipfile.ZipFile(io.BytesIO(FF.lying_zip(real, "word/document.xml"))).read(
            "word/document.xml")
    docx = F.write_docx(tmp_path / "orchard.docx").read_bytes()
    lying = FF.lying_zip(docx, "word/document.xml")
    assert _refused(tmp_path, "liar.docx", lying).startswith("corrupt DOCX")
    epub = FF.lying_zip(FF.epub_bytes(), "OEBPS/text/ch1.xhtml", declared=10)
    assert "corrupt EPUB" in _refused(tmp_path, "liar.epub", epub)


def test_check_zip_bounds() -> None:
    many = FF.zip_bytes({f"f{i}": b"" for i in range(10)})
    assert len(check_zip(many, "X").infolist()) == 10
    small_but_compressible = FF.zip_bytes({"a.xml": b"<a/>" * 100_000})  # ratio high, size tiny
    check_zip(small_but_compressible, "X")
    with pytest.raises(LoadError, match="encrypted X"):
        data = bytearray(FF.zip_bytes({"a": b"x"}))
        data[6] |= 1  # the local header's flag...
        central = data.find(b"PK\x01\x02")
        data[central + 8] |= 1  # ...and the central directory's: "encrypted"
        check_zip(bytes(data), "X")
