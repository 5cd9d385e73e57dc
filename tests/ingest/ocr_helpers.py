"""Files for the OCR tests, made with the libraries that read them: a reportlab PDF drawn by
PDFium and saved back by Pillow as a PDF of page images (a scan), and text drawn by Pillow
into every image format the loaders take."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

# Small pages (4 x 3 inches) in large print: each is read by OCR in about a second.
PAGE_SIZE = (288.0, 216.0)
PAGES = [
    ["The lighthouse keeper tests the", "reserve batteries every Sunday", "before the ferry leaves."],
    ["Copper kettles from the northern", "valley were traded for barley at", "the autumn market."],
]


def write_text_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF with a text layer: each page's lines in 14 pt Helvetica."""
    from reportlab.pdfgen import canvas

    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=PAGE_SIZE)
    for lines in pages:
        c.setFont("Helvetica", 14)
        y = PAGE_SIZE[1] - 48
        for line in lines:
            c.drawString(24, y, line)
            y -= 22
        c.showPage()
    c.save()
    return path


def rasterize(pdf: Path, dpi: int = 150) -> list[object]:
    """The pages of `pdf` as images, drawn by PDFium."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    try:
        return [document[i].render(scale=dpi / 72).to_pil().convert("RGB").copy()
                for i in range(len(document))]
    finally:
        document.close()


def write_scanned_pdf(path: Path, pages: list[list[str]] | None = None, title: str = "",
                      dpi: int = 150) -> Path:
    """A PDF of page images and no text layer: `pages` drawn by reportlab, rasterized, and
    saved by Pillow. `title` changes the file's bytes without changing its pages."""
    text_pdf = write_text_pdf(path.with_suffix(".text.pdf"), pages or PAGES)
    images = rasterize(text_pdf, dpi)
    text_pdf.unlink()
    first, *rest = images
    first.save(path, "PDF", save_all=True, append_images=rest, resolution=dpi,  # type: ignore[attr-defined]
               title=title or None)
    return path


def write_stamped_scan_pdf(path: Path, stamp: str) -> Path:
    """One page: an image of text, and `stamp` (a page number, a Bates label) as real text."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=PAGE_SIZE)
    c.drawImage(ImageReader(text_image(PAGES[0])), 12, 60, width=264, height=55)
    c.setFont("Helvetica", 8)
    c.drawString(24, 20, stamp)
    c.showPage()
    c.save()
    return path


def text_image(lines: list[str], size: tuple[int, int] = (720, 150)) -> object:
    """Black text on white, 32 px high, drawn by Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=32)
    for i, line in enumerate(lines):
        draw.text((20, 20 + 42 * i), line, fill="black", font=font)
    return image


def write_image(path: Path, frames: list[list[str]], format_: str, **options: object) -> Path:
    """An image file of `format_` (PNG, JPEG, TIFF, WEBP, BMP); TIFF takes several frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first, *rest = [text_image(lines) for lines in frames]
    if rest:
        options = {**options, "save_all": True, "append_images": rest}
    first.save(path, format_, **options)  # type: ignore[attr-defined]
    return path


def write_tiff_with_damaged_frame(path: Path, frames: list[list[str]]) -> Path:
    """A deflate TIFF whose last frame's compressed pixels start with junk: every frame but
    the last decodes."""
    from PIL import Image

    write_image(path, frames, "TIFF", compression="tiff_adobe_deflate")
    with Image.open(path) as image:
        image.seek(len(frames) - 1)
        offset = image.tag_v2[273][0]  # StripOffsets: where the last frame's pixels start
    data = bytearray(path.read_bytes())
    data[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels (and holds one empty row)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b""))
