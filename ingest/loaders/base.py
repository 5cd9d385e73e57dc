"""What every loader returns, and the small helpers they share."""

from __future__ import annotations

import codecs
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from core.errors import LoadError

if TYPE_CHECKING:
    from PIL.Image import Image

# (page number from 1, dpi) -> the page as an image, for OCR; dpi applies to formats without
# pixels of their own (PDF pages).
PageRenderer = Callable[[int, int], "Image"]


@dataclass(frozen=True)
class Section:
    """A run of text with its page (PDF page, PPTX slide, sheet) where the format has pages.
    `label` is how a citation names the place when "page N" would not (`sheet Q3`)."""

    text: str
    page: int | None = None
    label: str | None = None  # how citations name the page (`sheet Q3`), when not "page N"
    ocr: bool = False  # read by OCR from an image of the page
    more: bool = False  # the text goes on in the next Section (a long text read in pieces)
    scan: bool = False  # a streamed page without a text layer, for OCR (ingest/ocr.py)


@dataclass(frozen=True)
class Attachment:
    """A file carried inside another (an e-mail's attachment, a mailbox's message), ingested
    as a document of its own. `size` is known before `read()` decodes it, so an oversized one
    is refused without being decoded."""

    name: str
    size: int
    read: Callable[[], bytes]


@dataclass
class LoadedDocument:
    title: str
    type: str
    sections: list[Section] = field(default_factory=list)
    pages: int | None = None
    attachments: list[Attachment] = field(default_factory=list)
    # Pages (from 1) that have no text layer, and how to draw any page: ingest/ocr.py reads
    # them and puts their text among `sections`.
    scans: list[int] = field(default_factory=list)
    render: PageRenderer | None = None
    # One line each, shown with the file's result: what a loader left out on purpose (a bound
    # hit), pages OCR could not read.
    notes: list[str] = field(default_factory=list)
    # Sections still to be read, after `sections` (a long text file read as it is chunked);
    # a LoadError from it fails the document.
    stream: Iterable[Section] | None = None

    def close(self) -> None:
        """Ends `stream` where it is, closing the file it reads."""
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()
        self.stream = None


@dataclass(frozen=True)
class LoadOptions:
    """The bounds a loader works within (from `ingest` settings)."""

    max_sheet_rows: int = 100_000
    max_unzipped_mb: float = 512.0


def no_text_error(type_: str) -> LoadError:
    """Why a document with no text, and no page for OCR to read, fails."""
    hint = " (no text layer, and no images for OCR to read)" if type_ == "pdf" else ""
    return LoadError(f"no text could be extracted{hint}")


_BLANKS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING = re.compile(r"[ \t]+\n")


def clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _TRAILING.sub("\n", text)
    return _BLANKS.sub("\n\n", text).strip()


TEXT_HEAD = 1 << 20  # the bytes a text file's encoding is told from


def utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when `head` looks like UTF-16 text without a byte-order
    mark: a zero in nearly every other byte (the high byte of Latin letters) and almost none
    in the others."""
    pairs = len(head) // 2
    if pairs < 1:
        return None
    even, odd = head[0:pairs * 2:2].count(0), head[1:pairs * 2:2].count(0)
    if odd >= pairs * 0.6 and even <= pairs * 0.05:
        return "utf-16-le"
    if even >= pairs * 0.6 and odd <= pairs * 0.05:
        return "utf-16-be"
    return None


def _controls(text: str) -> int:
    return sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t\f")


def text_encoding(head: bytes) -> str:
    """The encoding of a text file from its first bytes (up to TEXT_HEAD); a LoadError for
    binary content whatever the extension says."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    encoding = utf16_without_bom(head[:8192])
    if encoding is None:
        if b"\x00" in head[:8192]:
            raise LoadError("binary content in a text file")
        encoding = _eight_bit_encoding(head)
    sample = head[:8192].decode(encoding, errors="replace")
    if _controls(sample) > len(sample) * 0.05:
        raise LoadError("binary content in a text file")
    return encoding


def _eight_bit_encoding(head: bytes) -> str:
    try:
        head.decode("utf-8-sig")
        return "utf-8-sig"
    except UnicodeDecodeError as exc:
        # A character cut by the end of the head is still UTF-8.
        if exc.reason == "unexpected end of data":
            return "utf-8-sig"
    from charset_normalizer import from_bytes

    best = from_bytes(head).best()
    if best is None:
        raise LoadError("binary content in a text file (no text encoding fits)")
    return str(best.encoding)


def decode_text(data: bytes) -> str:
    """Bytes of a text file → str, in the encoding its first bytes show (bytes past them
    that do not fit it become U+FFFD); refuses binary content whatever the extension says."""
    return data.decode(text_encoding(data[:TEXT_HEAD]), errors="replace")


def read_text(file: BinaryIO, block: int | None = None) -> Iterator[str]:
    """A text file's text, decoded as `decode_text` does and cleaned as `clean` does, in
    pieces of about `block` bytes (TEXT_HEAD). The encoding is told (binary refused) before
    this returns."""
    block = block or TEXT_HEAD
    head = file.read(block)
    decoder = codecs.getincrementaldecoder(text_encoding(head[:TEXT_HEAD]))(errors="replace")

    def decoded() -> Iterator[str]:
        data = head
        while data:
            yield decoder.decode(data)
            data = file.read(block)
        yield decoder.decode(b"", final=True)

    return clean_pieces(decoded())


def _piece_end(text: str) -> int:
    """The last position that follows white space and starts a run of other characters:
    no pattern of `clean` spans it. 0 when there is none."""
    for i in range(len(text) - 1, 0, -1):
        if text[i - 1].isspace() and not text[i].isspace() and text[i] != "\x00":
            return i
    return 0


def _clean_inside(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return _BLANKS.sub("\n\n", _TRAILING.sub("\n", text))


def clean_pieces(pieces: Iterable[str], most: int = 4 << 20) -> Iterator[str]:
    """`clean` of the text the pieces join to, as pieces cut where no pattern of `clean`
    spans the cut (a run of white space longer than `most` characters is cut anyway)."""
    carry = ""
    held = ""  # cleaned, yielded once it is known not to be the last
    started = False
    for piece in pieces:
        text = carry + piece
        cut = _piece_end(text)
        if not cut and len(text) < most:
            carry = text
            continue
        cut = cut or len(text) - text.endswith("\r")
        out, carry = _clean_inside(text[:cut]), text[cut:]
        out = out if started else out.lstrip()
        if out:
            started = True
            if held:
                yield held
            held = out
    last = _clean_inside(carry).rstrip()
    last = last if started else last.lstrip()
    if last:
        if held:
            yield held
        yield last
    elif held:
        yield held.rstrip()


def short(exc: BaseException) -> str:
    """An exception as a reason of at most 160 characters on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


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


# Zip-based formats (DOCX, PPTX, EPUB, ODF) are refused when their central directory declares
# more than this: a real document's XML inflates 5-20 times, images not at all (a file under
# ingest.max_file_mb's 200 MB default fits with room), while a zip bomb's stream of repeated
# bytes inflates 1000 times. python-docx/pptx hold every part in memory: this bounds that.
MAX_UNZIPPED_BYTES = 512 << 20
MAX_ZIP_RATIO = 100  # checked only past MIN_RATIO_BYTES: a tiny file may compress well
MIN_RATIO_BYTES = 16 << 20
MAX_ZIP_MEMBERS = 50_000


def check_zip(data: bytes, what: str, max_bytes: int = MAX_UNZIPPED_BYTES) -> zipfile.ZipFile:
    """The zip archive in `data`, refused with a LoadError when it is not one, is encrypted,
    or declares an uncompressed size (over `max_bytes`: `ingest.max_unzipped_mb`) or ratio
    beyond the bounds above. A member whose header lies about its size cannot get past them
    either: zipfile stops inflating at the declared size and then fails the CRC check
    (BadZipFile, which the loaders report as corrupt)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise LoadError(f"corrupt {what}: not a zip archive ({short(exc)})") from None
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise LoadError(f"refused {what}: {len(members):,} files in the archive, over "
                        f"{MAX_ZIP_MEMBERS:,}")
    if any(m.flag_bits & 0x1 for m in members):
        raise LoadError(f"encrypted {what}: a password is needed to read it")
    unzipped = sum(m.file_size for m in members)
    packed = max(1, sum(m.compress_size for m in members))
    if unzipped > max_bytes:
        raise LoadError(f"refused {what}: it would unzip to {unzipped / 2**20:,.0f} MB, over the "
                        f"{max_bytes / 2**20:,.0f} MB bound (ingest.max_unzipped_mb)")
    if unzipped > MIN_RATIO_BYTES and unzipped / packed > MAX_ZIP_RATIO:
        raise LoadError(f"refused {what}: it would unzip to {unzipped / 2**20:,.0f} MB from "
                        f"{len(data) / 2**20:,.1f} MB (a zip bomb?)")
    return archive


def read_member(archive: zipfile.ZipFile, name: str, what: str) -> bytes:
    """One member's bytes; a missing or damaged member is the document's one-line reason."""
    try:
        return archive.read(name)
    except KeyError:
        raise LoadError(f"corrupt {what}: '{name}' is missing") from None
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as exc:
        raise LoadError(f"corrupt {what}: {short(exc)}") from None
