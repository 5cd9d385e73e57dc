"""Writers of the fixture files of the newer formats (EPUB, ODT, ODP, RTF, e-mail, mbox,
notebooks, XHTML) and of their bad inputs (zip bombs, corrupt packages), each built in the
test's tmp dir with the library that reads or writes that format (zipfile for the EPUB
container, odfpy, the stdlib's email and mailbox), never from ../shared.
"""

from __future__ import annotations

import base64
import io
import json
import mailbox
import struct
import zipfile
from email.message import EmailMessage
from pathlib import Path
from typing import Any

# -- known content ----------------------------------------------------------------------------

EPUB_TITLE = "The Salt Road Chronicle"
EPUB_CHAPTERS = [  # (title in the table of contents, heading in the XHTML or None, sentence)
    ("The Caravan Leaves", "The Caravan Leaves",
     "Forty camels left the oasis of Siwa carrying blocks of rock salt."),
    ("Night at the Well", None,
     "The caravan master traded two blocks of salt for a goatskin of sweet water."),
    ("Arrival in Timbuktu", "Arrival in Timbuktu",
     "Scholars of the Sankore mosque bought the last salt with manuscripts."),
]

ODT_TITLE = "Tidal Mill Survey"
ODT_HEADING = "Millpond and Sluice"
ODT_PARAGRAPH = "The tidal mill at Eling ground wheat on the ebb tide for nine centuries."
ODT_TABLE = [["Gate", "Width", "State"], ["North", "2.4 m", "sound"], ["South", "1.9 m", "rotten"]]
ODP_SLIDES = [
    ("Glassblowing in Murano", "Murano glassmakers were forbidden to leave the Venetian republic."),
    ("The Furnace", "A glory hole keeps the gather of glass soft at eleven hundred degrees."),
]
ODP_NOTES = "Mention the millefiori canes made since the fifteenth century."

RTF_TITLE = "Clockmaker's Ledger"
RTF_SENTENCE = "The clockmaker of Prague repaired the astronomical dial in 1865."

MAIL_SUBJECT = "Budget for the lighthouse restoration"
MAIL_FROM = "Ada Keeper <ada@harbour.example>"
MAIL_TO = "Board <board@harbour.example>"
MAIL_BODY = "The lantern room needs new brass fittings before the autumn storms."
MAIL_ATTACHMENT_SENTENCE = "The estimate for repainting the lighthouse tower is nine thousand crowns."

NOTEBOOK_TITLE = "Tide Gauge Analysis"
NOTEBOOK_MARKDOWN = "We fit a harmonic model to the hourly readings of the Newlyn tide gauge."
NOTEBOOK_CODE = "amplitude = fit_harmonics(readings, constituents=['M2', 'S2'])"
NOTEBOOK_OUTPUT = "M2 amplitude: 1.71 m"
NOTEBOOK_JSON_MARKER = "nbformat_minor"

XHTML_SENTENCE = "Net revenue from ferry operations rose by eleven percent in fiscal 2023."


# -- EPUB -------------------------------------------------------------------------------------

_CONTAINER = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf"
    media-type="application/oebps-package+xml"/></rootfiles>
</container>"""


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive of `members` (name -> bytes), stored uncompressed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _chapter_xhtml(heading: str | None, sentence: str) -> str:
    h = f"<h1>{heading}</h1>" if heading else ""
    return ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
            '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
            f"<head><title>{EPUB_TITLE}</title></head><body>{h}<p>{sentence}</p></body></html>")


def epub_bytes(chapters: list[tuple[str, str | None, str]] | None = None,
               title: str = EPUB_TITLE) -> bytes:
    """An EPUB 3 book: mimetype, container.xml, an OPF whose spine lists the chapters in an
    order different from the manifest's, a nav document, and one XHTML file per chapter."""
    chapters = EPUB_CHAPTERS if chapters is None else chapters
    names = [f"text/ch{n}.xhtml" for n in range(1, len(chapters) + 1)]
    manifest = "".join(f'<item id="c{n}" href="{name}" media-type="application/xhtml+xml"/>'
                       for n, name in reversed(list(enumerate(names, start=1))))
    spine = "".join(f'<itemref idref="c{n}"/>' for n in range(1, len(chapters) + 1))
    opf = ('<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
           '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
           f"<dc:title>{title}</dc:title><dc:language>en</dc:language></metadata>"
           f'<manifest><item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" '
           f'properties="nav"/>{manifest}</manifest><spine>{spine}</spine></package>')
    links = "".join(f'<li><a href="{name}">{toc}</a></li>'
                    for name, (toc, _, _) in zip(names, chapters, strict=True))
    nav = ('<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml" '
           'xmlns:epub="http://www.idpf.org/2007/ops"><body>'
           f'<nav epub:type="toc"><ol>{links}</ol></nav></body></html>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        z.writestr("META-INF/container.xml", _CONTAINER)
        z.writestr("OEBPS/content.opf", opf)
        z.writestr("OEBPS/nav.xhtml", nav)
        for name, (_, heading, sentence) in zip(names, chapters, strict=True):
            z.writestr(f"OEBPS/{name}", _chapter_xhtml(heading, sentence))
    return buf.getvalue()


def write_epub(path: Path) -> Path:
    path.write_bytes(epub_bytes())
    return path


# -- OpenDocument (odfpy) ---------------------------------------------------------------------

def write_odt(path: Path) -> Path:
    from odf.dc import Title
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import H, P

    doc = OpenDocumentText()
    doc.meta.addElement(Title(text=ODT_TITLE))
    doc.text.addElement(H(outlinelevel=1, text=ODT_HEADING))
    doc.text.addElement(P(text=ODT_PARAGRAPH))
    table = Table(name="Gates")
    table.addElement(TableColumn(numbercolumnsrepeated=3))
    for row in ODT_TABLE:
        tr = TableRow()
        for value in row:
            cell = TableCell()
            cell.addElement(P(text=value))
            tr.addElement(cell)
        table.addElement(tr)
    doc.text.addElement(table)
    doc.save(str(path))
    return path


def _frame(presentation_class: str) -> Any:
    from odf.draw import Frame
    from odf.namespaces import PRESENTATIONNS

    frame = Frame(width="20cm", height="3cm", x="1cm", y="1cm")
    frame.setAttrNS(PRESENTATIONNS, "class", presentation_class)
    return frame


def write_odp(path: Path) -> Path:
    from odf.draw import Page, TextBox
    from odf.opendocument import OpenDocumentPresentation
    from odf.presentation import Notes
    from odf.style import MasterPage, PageLayout
    from odf.text import P

    doc = OpenDocumentPresentation()
    layout = PageLayout(name="layout")
    doc.automaticstyles.addElement(layout)
    master = MasterPage(name="master", pagelayoutname=layout)
    doc.masterstyles.addElement(master)
    for number, (title, body) in enumerate(ODP_SLIDES, start=1):
        page = Page(name=f"slide{number}", masterpagename=master)
        for cls, text in (("title", title), ("outline", body)):
            frame = _frame(cls)
            box = TextBox()
            box.addElement(P(text=text))
            frame.addElement(box)
            page.addElement(frame)
        if number == 1:
            notes = Notes()
            frame = _frame("notes")
            box = TextBox()
            box.addElement(P(text=ODP_NOTES))
            frame.addElement(box)
            notes.addElement(frame)
            page.addElement(notes)
        doc.presentation.addElement(page)
    doc.save(str(path))
    return path


# -- RTF, notebook, XHTML ---------------------------------------------------------------------

def write_rtf(path: Path) -> Path:
    path.write_text(
        "{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0\\fswiss Helvetica;}}"
        f"{{\\info{{\\title {RTF_TITLE.replace(chr(39), chr(92) + chr(39) + '27')}}}}}"
        f"\\f0\\pard {{\\b Ledger}}\\par {RTF_SENTENCE}\\par "
        "Caf\\'e9 accounts were settled in \\u8364? euros.\\par}", encoding="ascii")
    return path


def notebook_json() -> dict[str, object]:
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": [f"# {NOTEBOOK_TITLE}\n", "\n",
                                                                 NOTEBOOK_MARKDOWN]},
            {"cell_type": "code", "metadata": {}, "execution_count": 1,
             "source": ["# comment, not a title\n", NOTEBOOK_CODE],
             "outputs": [{"output_type": "stream", "name": "stdout", "text": [NOTEBOOK_OUTPUT]},
                         {"output_type": "display_data", "metadata": {},
                          "data": {"image/png": "iVBORw0KGgo" * 500, "text/plain": ["<Figure>"]}}]},
        ],
    }


def write_notebook(path: Path) -> Path:
    path.write_text(json.dumps(notebook_json(), indent=1))
    return path


def write_xhtml(path: Path) -> Path:
    """An SEC-filing-like XHTML document: an XML declaration, then generator comments long
    enough to push <html> past the first 500 characters (what makes BeautifulSoup warn)."""
    comments = "\n".join(f"<!-- Document generated by a filing tool, part {n} of the header -->"
                         for n in range(12))
    path.write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n{comments}\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:ix="http://www.xbrl.org/2013/inlineXBRL">'
        "<head><title>Ferry Company Annual Report</title></head><body>"
        f"<p><ix:nonNumeric name='dei:Text'>{XHTML_SENTENCE}</ix:nonNumeric></p></body></html>")
    return path


# -- e-mail -----------------------------------------------------------------------------------

def mail_message(subject: str = MAIL_SUBJECT, body: str = MAIL_BODY,
                 attachments: list[tuple[str, bytes, str]] | None = None,
                 html: bool = False) -> EmailMessage:
    message = EmailMessage()
    message["From"] = MAIL_FROM
    message["To"] = MAIL_TO
    message["Date"] = "Tue, 01 Oct 2024 09:30:00 +0000"
    message["Subject"] = subject
    if html:
        message.set_content("<html><body><p>" + body + "</p></body></html>", subtype="html")
    else:
        message.set_content(body)
    for name, data, mime in attachments or []:
        maintype, subtype = mime.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


def write_eml(path: Path, pdf: bytes | None = None, extra: list[tuple[str, bytes, str]] | None = None,
              html: bool = False) -> Path:
    """An e-mail with a PDF attachment (`pdf`'s bytes, if given), a drawing (an unsupported
    type) and `extra` attachments."""
    attachments = [("estimate.pdf", pdf, "application/pdf")] if pdf else []
    attachments.append(("plan.dwg", b"AC1032" + b"\x00" * 64, "application/acad"))
    attachments.extend(extra or [])
    path.write_bytes(mail_message(attachments=attachments, html=html).as_bytes())
    return path


def write_eml_with_big_attachment(path: Path, megabytes: int = 50) -> Path:
    """The budget e-mail plus `logbook.txt` of `megabytes` MB, base64-encoded in C (the email
    package would take seconds): a small placeholder attachment's encoding is swapped for it."""
    placeholder = b"PLACEHOLDER-FOR-THE-BIG-LOGBOOK"
    message = mail_message(attachments=[("logbook.txt", placeholder, "application/octet-stream")])
    big = base64.encodebytes(b"lighthouse log line\n" * (megabytes * 2**20 // 20))
    raw = message.as_bytes().replace(base64.encodebytes(placeholder), big)
    path.write_bytes(raw)
    return path


def write_mbox(path: Path, messages: list[EmailMessage | bytes]) -> Path:
    box = mailbox.mbox(str(path), create=True)
    try:
        for m in messages:
            box.add(m)
        box.flush()
    finally:
        box.close()
    return path


# -- bad inputs -------------------------------------------------------------------------------

def zip_bomb(first_member: str, size: int = 64 * 2**20) -> bytes:
    """A zip whose one member inflates from a few hundred KB to `size` bytes of zeros; its
    first member name makes it look like the format (word/document.xml, META-INF/...)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open(first_member, "w",
                                                                         force_zip64=True) as f:
        block = b"\x00" * 2**20
        for _ in range(size // 2**20):
            f.write(block)
    return buf.getvalue()


def lying_zip(real: bytes, member: str, declared: int = 100) -> bytes:
    """`real` (a zip) with `member`'s sizes in both headers rewritten to `declared` bytes."""
    data = bytearray(real)
    info = zipfile.ZipFile(io.BytesIO(real)).getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, declared)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46:central + 46 + name_len]).decode() == member:
            struct.pack_into("<I", data, central + 24, declared)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)
