"""PDF pages drawn by PDFium from a real ingested file, with the quote's characters
highlighted where they are on the page (checked on the pixels), and the refusals: an
unknown id, a page out of range, a file that is not a PDF, moved or changed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fixtures_docs import PDF_PAGES, write_markdown, write_pdf

from app.pages import (
    NotRenderableError,
    PageImage,
    PageOutOfRangeError,
    SourceGoneError,
    locate,
    page_image,
    stored_entry,
)
from core.errors import NotFoundError

LETTER_WIDTH = 612  # points: at width 612 one pixel is one point
LETTER_HEIGHT = 792
FIRST_BASELINE = 720  # write_pdf draws each line 18 points below the one before
LINE_STEP = 18


def yellow_box(image: PageImage) -> tuple[int, int, int, int] | None:
    """Bounding box (left, top, right, bottom) of the highlighted pixels, if any: red and
    green high, blue well below them (white paper is 255, 255, 255; text is dark)."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(image.png)).convert("RGB")).astype(int)
    ys, xs = np.nonzero((rgb[..., 0] > 200) & (rgb[..., 1] > 180) & (rgb[..., 2] < 190))
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@pytest.fixture
def pdf(tmp_path: Path, store: Any, ingest_paths: Any) -> tuple[Path, Any]:
    path = write_pdf(tmp_path / "docs" / "almanac.pdf")
    ingest_paths([path], store=store)
    (entry,) = [e for e in _entries(store) if e.source.endswith("almanac.pdf")]
    return path, entry


def _entries(store: Any) -> list[Any]:
    from ingest.payload import manifest

    return list(manifest(store))


def test_the_quote_is_highlighted_where_it_is_on_the_page(pdf: tuple[Path, Any],
                                                          store: Any) -> None:
    _, entry = pdf
    assert stored_entry(store, entry.document_id).source == entry.source
    quote = PDF_PAGES[0][1]  # the second line of page 1
    image = page_image(entry, 1, quote, width=LETTER_WIDTH)
    assert image.png.startswith(b"\x89PNG") and image.highlight == "exact"
    assert (image.width, image.height) == (LETTER_WIDTH, LETTER_HEIGHT)
    box = yellow_box(image)
    assert box is not None
    left, top, right, bottom = box
    baseline = LETTER_HEIGHT - (FIRST_BASELINE - LINE_STEP)  # pixel row of line 2's baseline
    assert 50 <= left <= 58 and right > 300  # from the left margin along the line
    assert baseline - 12 <= top <= baseline - 6 and baseline <= bottom <= baseline + 5
    # The first line, just above, is not marked.
    assert top > LETTER_HEIGHT - FIRST_BASELINE + 3


def test_no_highlight_asked_or_found_leaves_the_page_unmarked(pdf: tuple[Path, Any]) -> None:
    _, entry = pdf
    plain = page_image(entry, 2, "", width=400)
    assert plain.highlight == "" and yellow_box(plain) is None and plain.width == 400
    missing = page_image(entry, 2, "A sentence that this page does not hold anywhere at all.")
    assert missing.highlight == "none" and yellow_box(missing) is None


def test_bad_id_page_type_and_moved_or_changed_files_are_refused(
        pdf: tuple[Path, Any], store: Any, tmp_path: Path, ingest_paths: Any) -> None:
    path, entry = pdf
    with pytest.raises(NotFoundError, match="no stored document with id 'nope'"):
        stored_entry(store, "nope")
    for number in (0, len(PDF_PAGES) + 1):
        with pytest.raises(PageOutOfRangeError, match=f"page {number}: .* has 3 pages"):
            page_image(entry, number)
    md = write_markdown(tmp_path / "docs" / "notes.md")
    ingest_paths([md], store=store)
    (md_entry,) = [e for e in _entries(store) if e.source.endswith("notes.md")]
    with pytest.raises(NotRenderableError, match="is a markdown file"):
        page_image(md_entry, 1)
    path.write_bytes(path.read_bytes() + b"\n% appended after ingest\n")
    with pytest.raises(SourceGoneError, match="has changed since it was ingested"):
        page_image(entry, 1)
    path.rename(path.with_suffix(".moved"))
    with pytest.raises(SourceGoneError, match="no longer there"):
        page_image(entry, 1)


def test_locate_folds_case_spaces_and_punctuation() -> None:
    text = "Intro.\r\nThe keeper\r\nlogged FORTY storms, in 1887. End"
    start, end, how = locate(text, "the keeper logged forty storms in 1887")
    assert how == "exact" and text[start:end] == "The keeper\r\nlogged FORTY storms, in 1887"
    start, end, _ = locate(text, "The keeper logged forty storms in 1887.")
    assert text[start:end].endswith("1887.")
    start, end, how = locate(text, "The keeper logged forty gales in the year 1887")
    assert how == "partial" and text[start:end].startswith("The keeper")
    assert locate(text, "nothing of the sort here")[2] == "none"
