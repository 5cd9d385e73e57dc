"""What every loader returns, and the small helpers they share."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field

from core.errors import LoadError


@dataclass(frozen=True)
class Section:
    """A run of text with its page (PDF page, PPTX slide, sheet) where the format has pages.
    `label` is how a citation names the place when "page N" would not (`sheet Q3`)."""

    text: str
    page: int | None = None
    label: str | None = None


@dataclass
class LoadedDocument:
    title: str
    type: str
    sections: list[Section] = field(default_factory=list)
    pages: int | None = None
    # What the loader left out on purpose (a bound hit), one line each for the ingest summary.
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadOptions:
    """The bounds a loader works within (from `ingest` settings)."""

    max_sheet_rows: int = 100_000
    max_unzipped_mb: float = 1024.0


_BLANKS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING = re.compile(r"[ \t]+\n")


def clean(text: str) -> str:
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


def short(exc: BaseException) -> str:
    """An exception as a reason of at most 160 characters on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def check_zip(data: bytes, what: str, max_bytes: int = 1024 * 2**20) -> zipfile.ZipFile:
    """`data` opened as a zip archive, refused (LoadError naming `what`) when it is not one
    or when its members would unpack to more than `max_bytes`: a zip bomb is stopped from
    the sizes in its directory, before anything is inflated. The declared sizes are what
    zipfile enforces while reading (a member that inflates past its size raises BadZipFile),
    so a lying directory cannot get past the bound either."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise LoadError(f"corrupt {what}: {short(exc)}") from None
    if total > max_bytes:
        raise LoadError(f"{what} would unpack to {total / 2**20:,.0f} MB, over the "
                        f"{max_bytes / 2**20:,.0f} MB bound (a zip bomb?)")
    return archive


TABLE_SEPARATOR = "---"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table_text(rows: list[list[str]]) -> str:
    """Rows of cells as a Markdown pipe table, one line per row: the first non-empty row is
    the header, followed by the `| --- |` separator (what the chunker recognises a table by,
    see ingest/chunker.py). Rows are padded to the widest; empty rows and columns empty in
    every row are dropped; a `|` inside a cell is escaped."""
    cells = [[_cell(c) for c in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    keep = [i for i in range(width) if any(row[i] for row in cells)]
    cells = [[row[i] for i in keep] for row in cells]
    # An empty cell is `| |`, as HTML's whitespace folding leaves it.
    lines = ["|" + "|".join(f" {c} " if c else " " for c in row) + "|" for row in cells]
    lines.insert(1, "|" + f" {TABLE_SEPARATOR} |" * len(keep))
    return "\n".join(lines)
