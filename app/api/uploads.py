"""Uploaded files: a safe base name, and a look at the bytes before anything is stored.

The extension picks the loader (ingest/loaders/); the content must agree with it: a PDF
starts with %PDF-, DOCX, PPTX, XLSX, EPUB, ODT, ODS and ODP are ZIP packages holding their
format's parts (word/, ppt/, xl/, META-INF/container.xml, content.xml), an image starts with
its format's signature (PNG, JPEG, TIFF, WEBP, BMP), an RTF starts with {\rtf, an mbox with
a "From " line, and text types (text, CSV, markdown, HTML, code, e-mail, notebooks) must
decode as text. Anything else is refused with 415 before it reaches the uploads folder.
"""

from __future__ import annotations

import codecs
import unicodedata
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from app.api.errors import ApiError
from ingest.loaders import file_type
from ingest.loaders.base import utf16_without_bom

_HEAD = 8192
# Formats that start with printable bytes, so the text test alone would let them through.
_BINARY_MAGIC = (b"%PDF-", b"PK\x03\x04", b"\x89PNG", b"GIF87a", b"GIF89a", b"\xff\xd8\xff",
                 b"\x1f\x8b", b"\x7fELF", b"Rar!", b"\xd0\xcf\x11\xe0")
_ZIP_PART = {"docx": "word/", "pptx": "ppt/", "xlsx": "xl/", "epub": "META-INF/container.xml",
             "odt": "content.xml", "odp": "content.xml", "ods": "content.xml"}
# Image signatures: PNG, JPEG, TIFF (both byte orders), BMP; WEBP is checked at offset 8.
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")
_TEXT_MAGIC = {"rtf": b"{\\rtf", "mbox": b"From "}


def safe_name(raw: str | None) -> str:
    """The base name of a client's file name: no folders, no traversal, no control chars."""
    name = (raw or "").replace("\\", "/")
    name = PurePosixPath(name).name if name else ""
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if not name or name in (".", "..") or name.startswith("."):
        raise ApiError(422, f"files: '{raw}' is not a usable file name", param="files",
                       code="invalid_file_name")
    if len(name.encode("utf-8")) > 200:
        stem, suffix = Path(name).stem, Path(name).suffix
        name = stem.encode("utf-8")[: 200 - len(suffix.encode())].decode("utf-8", "ignore") + suffix
    return name


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or utf16_without_bom(head):
        return True  # UTF-16, with or without a byte-order mark (the loader decodes it)
    if b"\x00" in head or head.startswith(_BINARY_MAGIC):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return True
    except UnicodeDecodeError:
        pass
    # Another 8-bit encoding (Latin-1, cp1252...): few control bytes, unlike binary data.
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls <= len(head) * 0.01


def check_content(name: str, file: BinaryIO, size: int) -> str:
    """The document type of `name` when its bytes agree with its extension; else ApiError."""
    kind = file_type(Path(name))
    if kind is None:
        raise ApiError(415, f"files: '{name}' has an unsupported file type "
                            f"'{Path(name).suffix or name}'", param="files",
                       code="unsupported_file_type")
    if size == 0:
        raise ApiError(422, f"files: '{name}' is empty", param="files", code="empty_file")
    file.seek(0)
    head = file.read(_HEAD)
    file.seek(0)
    ok = True
    if kind == "pdf":
        ok = b"%PDF-" in head[:1024]
    elif kind == "image":
        ok = head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    elif kind in _ZIP_PART:
        ok = head.startswith(b"PK\x03\x04") and _zip_has(file, _ZIP_PART[kind])
    elif kind in _TEXT_MAGIC:
        ok = head.lstrip().startswith(_TEXT_MAGIC[kind]) and _looks_like_text(head)
    else:
        ok = _looks_like_text(head)
    if not ok:
        raise ApiError(415, f"files: the content of '{name}' is not {kind} "
                            f"(its bytes do not match the '{Path(name).suffix}' extension)",
                       param="files", code="content_mismatch")
    return kind


def _zip_has(file: BinaryIO, prefix: str) -> bool:
    try:
        with zipfile.ZipFile(file) as z:
            return any(n.startswith(prefix) for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    finally:
        file.seek(0)
