"""Image files (PNG, JPEG, TIFF, WEBP, BMP) as documents of one page per frame, decoded by
Pillow. They carry no text of their own: every page is left to OCR (ingest/ocr.py)."""

from __future__ import annotations

import ctypes
import functools
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import LoadError
from ingest.loaders.base import LoadedDocument, short

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_EXTENSIONS = ".png .jpg .jpeg .tif .tiff .webp .bmp"
# Only these decoders may run, whatever the file's name says: Pillow would otherwise hand an
# EPS to Ghostscript, or try a dozen rarer formats on arbitrary bytes. (A camera's MPO comes
# out of the JPEG decoder.)
_DECODERS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")


def load_image(path: Path, data: bytes) -> LoadedDocument:
    image = _open(data)
    try:
        frames = int(getattr(image, "n_frames", 1))
    except (OSError, ValueError, EOFError, SyntaxError) as exc:  # a broken chain of TIFF frames
        raise LoadError(f"damaged image: {short(exc)}") from None
    return LoadedDocument(title="", type="image", pages=frames,
                          scans=list(range(1, frames + 1)), render=_FrameRenderer(data))


def _strict_pillow() -> None:
    """Pillow warns of a decompression bomb and raises only past twice its pixel limit; the
    warning becomes the error, so an oversized image is the file's one-line reason. Its other
    warnings (odd EXIF, palette transparency) say nothing about the text and are silenced.
    These are process-wide filters on Pillow's own warnings: `warnings.catch_warnings` is
    not safe on the parse thread."""
    from PIL import Image

    Image.init()  # registers TIFF and WEBP, which `Image.open(formats=...)` needs first
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    _quiet_libtiff()


@functools.cache
def _quiet_libtiff() -> None:
    """libtiff prints a damaged frame's decoding error on stderr, while Pillow raises it as an
    OSError too (the page's listed reason): its printing handlers are switched off, in the
    libtiff that Pillow loaded (found in this process's map of loaded files, Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libtiff" in line and "/" in line}
        for path in paths:
            lib = ctypes.CDLL(path)
            lib.TIFFSetErrorHandler(None)
            lib.TIFFSetWarningHandler(None)
    except (OSError, AttributeError):
        pass  # elsewhere the message is printed; the file's reason is the same


def _open(data: bytes) -> Image:
    from PIL import Image, UnidentifiedImageError

    _strict_pillow()
    try:
        return Image.open(io.BytesIO(data), formats=_DECODERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LoadError(f"image refused: {short(exc)}") from None
    except UnidentifiedImageError:
        raise LoadError("not an image Pillow can read (PNG, JPEG, TIFF, WEBP, BMP), "
                        "or a damaged one") from None
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise LoadError(f"damaged image: {short(exc)}") from None


class _FrameRenderer:
    """One frame as a grey image for OCR. The file stays open between frames, so the frames of
    a long TIFF are reached in one pass instead of seeking from the start for each."""

    def __init__(self, data: bytes):
        self.data = data
        self._image: Image | None = None

    def __call__(self, number: int, dpi: int) -> Image:
        from PIL import Image, ImageOps

        if self._image is None:
            self._image = _open(self.data)
        image = self._image
        image.seek(number - 1)
        # Pillow checks only the first frame's size against its limit.
        if image.width * image.height > (Image.MAX_IMAGE_PIXELS or 0) > 0:
            raise LoadError(f"frame of {image.width} x {image.height} pixels is over Pillow's "
                            f"limit of {Image.MAX_IMAGE_PIXELS:,}")
        frame = ImageOps.exif_transpose(image)  # a phone photo taken sideways
        if frame.mode in ("RGBA", "LA", "PA", "P") or "transparency" in frame.info:
            # Transparent pixels would turn black, under black text.
            rgba = frame.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            frame = Image.alpha_composite(white, rgba)
        return frame.convert("L")
