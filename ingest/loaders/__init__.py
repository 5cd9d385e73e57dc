"""File → text, one loader module per format, built on well-tried parsing libraries
(python-docx, python-pptx, BeautifulSoup, PDFium, Pillow, lxml, striprtf, the stdlib's email).
Every failure becomes a `LoadError` whose message is the one-line reason shown next to the file
name.

A format is registered once, in `FORMATS` below: its type name, the file names it takes and
its loader. `file_type`, `load`, the API's upload check and `/v1/config` all read that table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import LoadError
from core.tracing import span
from ingest.loaders.base import (
    Attachment,
    LoadedDocument,
    LoadOptions,
    Section,
    clean,
    decode_text,
    no_text_error,
)
from ingest.loaders.epub import load_epub
from ingest.loaders.html import load_html
from ingest.loaders.images import IMAGE_EXTENSIONS, load_image
from ingest.loaders.mail import load_eml, load_mbox
from ingest.loaders.notebook import load_notebook
from ingest.loaders.odf import load_odp, load_odt
from ingest.loaders.office import load_docx, load_pptx
from ingest.loaders.pdf import load_pdf, stream_pdf
from ingest.loaders.rtf import load_rtf
from ingest.loaders.sheets import load_csv, load_ods, load_xlsx
from ingest.loaders.text import load_code, load_markdown, load_text, stream_text

__all__ = [
    "FORMATS", "Attachment", "Format", "LoadOptions", "LoadedDocument", "Section", "decode_text",
    "file_type", "load", "load_path", "supported_extensions",
]

# A loader that needs no bound takes (path, data); one that does also takes LoadOptions.
Loader = Callable[[Path, bytes], LoadedDocument]
BoundedLoader = Callable[[Path, bytes, LoadOptions], LoadedDocument]


@dataclass(frozen=True)
class Format:
    type: str  # the document type stored in the payload (filters, citations)
    extensions: frozenset[str]  # lower-case, with the dot
    loader: Loader | None
    names: frozenset[str] = frozenset()  # whole file names (Makefile) for types without suffix
    bounded: BoundedLoader | None = None  # used instead of `loader` when set

    def read(self, path: Path, data: bytes, options: LoadOptions) -> LoadedDocument:
        if self.bounded is not None:
            return self.bounded(path, data, options)
        assert self.loader is not None
        return self.loader(path, data)


def _format(type_: str, extensions: str, loader: Loader, names: str = "") -> Format:
    return Format(type_, frozenset(extensions.split()), loader, frozenset(names.split()))


def _bounded(type_: str, extensions: str, loader: BoundedLoader) -> Format:
    return Format(type_, frozenset(extensions.split()), None, bounded=loader)


CODE_EXTENSIONS = (
    ".py .pyi .js .jsx .ts .tsx .java .kt .scala .c .h .cc .cpp .hpp .cs .go .rs .rb "
    ".php .swift .m .r .sh .bash .zsh .ps1 .sql .lua .pl .hs .ex .exs .erl .clj .dart .vue "
    ".svelte .css .scss .toml .yaml .yml .json .ini .cfg .xml .proto .graphql .tf .dockerfile "
    ".mk .cmake"
)

FORMATS: tuple[Format, ...] = (
    _format("pdf", ".pdf", load_pdf),
    _bounded("docx", ".docx", load_docx),
    _bounded("pptx", ".pptx", load_pptx),
    _format("image", IMAGE_EXTENSIONS, load_image),
    _format("html", ".html .htm .xhtml", load_html),
    _bounded("epub", ".epub", load_epub),
    _bounded("odt", ".odt", load_odt),
    _bounded("odp", ".odp", load_odp),
    _format("rtf", ".rtf", load_rtf),
    _format("email", ".eml", load_eml),
    _format("mbox", ".mbox", load_mbox),
    _format("notebook", ".ipynb", load_notebook),
    _format("markdown", ".md .markdown .mdx", load_markdown),
    _format("text", ".txt .text .rst .log", load_text),
    # A table, not prose: one pipe row per record, the chunker repeats its header.
    _bounded("csv", ".csv .tsv", load_csv),
    _bounded("xlsx", ".xlsx .xlsm", load_xlsx),
    _bounded("ods", ".ods", load_ods),
    _format("code", CODE_EXTENSIONS, load_code, "Makefile Dockerfile CMakeLists.txt Justfile"),
)

_BY_EXTENSION = {ext: f for f in FORMATS for ext in f.extensions}
_BY_NAME = {name: f for f in FORMATS for name in f.names}


def _format_of(path: Path) -> Format | None:
    return _BY_EXTENSION.get(path.suffix.lower()) or _BY_NAME.get(path.name)


def file_type(path: Path) -> str | None:
    """The document type of `path`, or None when no loader takes it."""
    found = _format_of(path)
    return found.type if found else None


def supported_extensions() -> list[str]:
    """Every file suffix a loader takes, sorted (the upload form and `/v1/config` list them)."""
    return sorted(_BY_EXTENSION)


def load(path: Path, data: bytes, options: LoadOptions | None = None) -> LoadedDocument:
    """Parses `data` (the bytes of `path`) by the file's type, within `options`' bounds."""
    found = _format_of(path)
    if found is None:
        raise LoadError(f"unsupported file type '{path.suffix or path.name}'")
    if not data:
        raise LoadError("empty file")
    with span("rag.parse", rag__file_type=found.type, rag__bytes=len(data)):
        doc = found.read(path, data, options or LoadOptions())
    doc.sections = [s for s in (replace(s, text=clean(s.text)) for s in doc.sections) if s.text]
    if not doc.sections and not doc.scans:
        # Pages waiting for OCR (doc.scans) may still bring text: ingest/ocr.py decides.
        raise no_text_error(found.type)
    if not doc.title:
        doc.title = path.stem
    return doc


_STREAMED = {"text", "code", "markdown", "pdf"}  # types whose file is read as it is chunked


def load_path(path: Path, options: LoadOptions | None = None) -> LoadedDocument:
    """As `load` of the file's bytes, except that a text, code, Markdown or PDF file is read
    as it is chunked: its text comes in `doc.stream` (see ingest/loaders/text.py, and
    ingest/loaders/pdf.py for a PDF's pages, which ingest/ocr.py's `stream` finishes)."""
    found = _format_of(path)
    if found is None or found.type not in _STREAMED:
        return load(path, path.read_bytes(), options)
    size = path.stat().st_size
    if size == 0:
        raise LoadError("empty file")
    with span("rag.parse", rag__file_type=found.type, rag__bytes=size, rag__streamed=True):
        # Opened here; its text is read as it is chunked.
        doc = stream_pdf(path) if found.type == "pdf" else stream_text(path, found.type)
    if not doc.title:
        doc.title = path.stem
    return doc
