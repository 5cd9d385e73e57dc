"""File → text, one loader per format, built on well-tried parsing libraries: python-docx,
python-pptx and BeautifulSoup (what llama-index's own file readers use), and PDFium for PDF.
Every failure becomes a `LoadError` whose message is the one-line reason shown next to the
file name."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import LoadError


@dataclass(frozen=True)
class Section:
    """A run of text with its page (PDF page, PPTX slide) where the format has pages."""

    text: str
    page: int | None = None


@dataclass
class LoadedDocument:
    title: str
    type: str
    sections: list[Section] = field(default_factory=list)
    pages: int | None = None


TEXT_TYPES = {".txt": "text", ".text": "text", ".rst": "text", ".log": "text", ".csv": "text"}
MARKDOWN = {".md", ".markdown", ".mdx"}
HTML = {".html", ".htm", ".xhtml"}
CODE = {
    ".py", ".pyi", ".ipynb", ".js", ".jsx", ".ts", ".tsx", ".java", ".kt", ".scala", ".c",
    ".h", ".cc", ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".m", ".r",
    ".sh", ".bash", ".zsh", ".ps1", ".sql", ".lua", ".pl", ".hs", ".ex", ".exs", ".erl",
    ".clj", ".dart", ".vue", ".svelte", ".css", ".scss", ".toml", ".yaml", ".yml", ".json",
    ".ini", ".cfg", ".xml", ".proto", ".graphql", ".tf", ".dockerfile", ".mk", ".cmake",
}
CODE_NAMES = {"Makefile", "Dockerfile", "CMakeLists.txt", "Justfile"}


def file_type(path: Path) -> str | None:
    """The document type of `path`, or None when no loader takes it."""
    ext = path.suffix.lower()
    if ext == ".pdf":
        return "pdf"
    if ext == ".docx":
        return "docx"
    if ext == ".pptx":
        return "pptx"
    if ext in HTML:
        return "html"
    if ext in MARKDOWN:
        return "markdown"
    if ext in TEXT_TYPES:
        return "text"
    if ext in CODE or path.name in CODE_NAMES:
        return "code"
    return None


def load(path: Path, data: bytes) -> LoadedDocument:
    """Parses `data` (the bytes of `path`) by the file's type."""
    kind = file_type(path)
    if kind is None:
        raise LoadError(f"unsupported file type '{path.suffix or path.name}'")
    if not data:
        raise LoadError("empty file")
    loader = _LOADERS[kind]
    doc = loader(path, data)
    doc.sections = [s for s in (Section(_clean(s.text), s.page) for s in doc.sections) if s.text]
    if not doc.sections:
        hint = " (scanned pages without a text layer are not supported)" if kind == "pdf" else ""
        raise LoadError(f"no text could be extracted{hint}")
    if not doc.title:
        doc.title = path.stem
    return doc


_BLANKS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING = re.compile(r"[ \t]+\n")


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _TRAILING.sub("\n", text)
    return _BLANKS.sub("\n\n", text).strip()


def decode_text(data: bytes) -> str:
    """Bytes of a text file → str; refuses binary content whatever the extension says."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    head = data[:8192]
    if b"\x00" in head:
        raise LoadError("binary content in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise LoadError("binary content in a text file (no text encoding fits)")
    text = str(best)
    controls = sum(1 for c in text[:8192] if ord(c) < 32 and c not in "\n\r\t\f")
    if controls > len(text[:8192]) * 0.05:
        raise LoadError("binary content in a text file")
    return text


def _load_text(path: Path, data: bytes) -> LoadedDocument:
    return LoadedDocument(title=path.stem, type=file_type(path) or "text",
                          sections=[Section(decode_text(data))])


_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _load_markdown(path: Path, data: bytes) -> LoadedDocument:
    text = decode_text(data)
    match = _MD_TITLE.search(text)
    return LoadedDocument(title=match.group(1) if match else path.stem, type="markdown",
                          sections=[Section(text)])


_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one document at a time per process
_PDFIUM_PASSWORD = 4  # FPDF_ERR_PASSWORD
# Control characters: glyphs of symbol fonts without a Unicode mapping (bullets, ticks).
_PDF_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


def _load_pdf(path: Path, data: bytes) -> LoadedDocument:
    """Text per page with PDFium (pypdfium2, the Chromium PDF engine): about ten times
    faster than pure-Python parsers on the sample documents, and it releases the GIL while
    it works, so parsing runs beside the embedding model."""
    import pypdfium2 as pdfium

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise LoadError("corrupt PDF: no PDF header")
    with _PDFIUM:
        try:
            # An empty user password (owner-only encryption) opens without asking.
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == _PDFIUM_PASSWORD:
                raise LoadError("encrypted PDF: a password is needed to read it") from None
            raise LoadError(f"corrupt PDF: {_short(exc)}") from None
        try:
            sections = []
            for number in range(1, len(document) + 1):
                page = document[number - 1]
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_range()
                finally:
                    textpage.close()
                    page.close()
                text = _PDF_CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
                # PDFium marks a hyphen it found at a line end with U+FFFE.
                text = text.replace("\ufffe", "-")
                sections.append(Section(text, number))
            title = str(document.get_metadata_dict().get("Title") or "")
        except pdfium.PdfiumError as exc:
            raise LoadError(f"corrupt PDF: {_short(exc)}") from None
        finally:
            document.close()
    return LoadedDocument(title=title.strip(), type="pdf", sections=sections,
                          pages=len(sections))


def _office_error(kind: str, exc: Exception) -> LoadError:
    return LoadError(f"corrupt {kind}: {_short(exc)}")


def _load_docx(path: Path, data: bytes) -> LoadedDocument:
    import zipfile

    import docx
    from docx.document import Document as DocxDocument
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document: DocxDocument = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise _office_error("DOCX", exc) from None
    blocks: list[str] = []
    title = document.core_properties.title or ""
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            text = item.text.strip()
            style = (item.style.name or "") if item.style is not None else ""
            if text and style.startswith("Heading"):
                level = style.removeprefix("Heading").strip()
                hashes = "#" * (int(level) if level.isdigit() else 1)
                blocks.append(f"{hashes} {text}")
                title = title or text
            elif text and style == "Title":
                blocks.append(f"# {text}")
                title = title or text
            elif text:
                blocks.append(text)
        elif isinstance(item, Table):
            blocks.append(_table_text([[c.text for c in row.cells] for row in item.rows]))
    return LoadedDocument(title=title.strip(), type="docx", sections=[Section("\n\n".join(blocks))])


def _table_text(rows: list[list[str]]) -> str:
    lines = []
    for row in rows:
        cells = [" ".join(c.split()) for c in row]
        if any(cells):
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load_pptx(path: Path, data: bytes) -> LoadedDocument:
    import zipfile

    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise _office_error("PPTX", exc) from None
    sections = []
    title = deck.core_properties.title or ""
    for number, slide in enumerate(deck.slides, start=1):
        parts: list[str] = []
        for shape in slide.shapes:
            if shape.has_text_frame:
                text = shape.text_frame.text.strip()
                if text:
                    parts.append(text)
                    if not title and shape == getattr(slide.shapes, "title", None):
                        title = text
            elif getattr(shape, "has_table", False) and shape.has_table:
                rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
                parts.append(_table_text(rows))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append("Notes: " + notes.text.strip())
        sections.append(Section("\n\n".join(parts), number))
    return LoadedDocument(title=title.strip(), type="pptx", sections=sections,
                          pages=len(sections))


_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "head"]
_CHROME_TAGS = ["nav", "footer", "aside", "form"]


def _load_html(path: Path, data: bytes) -> LoadedDocument:
    from bs4 import BeautifulSoup

    text = decode_text(data)
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


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


_LOADERS: dict[str, Callable[[Path, bytes], LoadedDocument]] = {
    "pdf": _load_pdf,
    "docx": _load_docx,
    "pptx": _load_pptx,
    "html": _load_html,
    "markdown": _load_markdown,
    "text": _load_text,
    "code": _load_text,
}
