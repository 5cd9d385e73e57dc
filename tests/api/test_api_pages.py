"""GET /v1/documents/{id}/pages/{n}.png over real HTTP: an uploaded PDF's page drawn with
the quote highlighted where it is (pixels), and every refusal in the error envelope: unknown
id, page out of range, not a PDF, bad parameters, the file gone from the uploads folder."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import assert_envelope
from fixtures_docs import PDF_PAGES, write_pdf
from test_api_documents import upload, wait_job

from app.pages import PageImage
from tests.app.test_pages import LETTER_HEIGHT, yellow_box

pytestmark = pytest.mark.slow  # an upload job each

NAME = "page-route-almanac.pdf"


@pytest.fixture
def uploaded(client: httpx.Client, tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = write_pdf(tmp_path / NAME).read_bytes()
    job = wait_job(client, upload(client, (NAME, data)).json()["job"])
    assert job["status"] == "done", job
    doc = next(d for d in client.get("/v1/documents").json()["data"]
               if d["source"].endswith(NAME))
    yield doc
    client.delete(f"/v1/documents/{doc['document_id']}")


def page_url(doc: dict[str, Any], page: int | str) -> str:
    return f"/v1/documents/{doc['document_id']}/pages/{page}.png"


def test_a_page_is_a_png_with_the_quote_highlighted(client: httpx.Client,
                                                    uploaded: dict[str, Any]) -> None:
    r = client.get(page_url(uploaded, 1), params={"highlight": PDF_PAGES[0][0], "width": 612})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-highlight"] == "exact"
    assert "max-age" in r.headers["cache-control"]
    from PIL import Image

    assert Image.open(io.BytesIO(r.content)).size == (612, LETTER_HEIGHT)
    box = yellow_box(PageImage(r.content, "exact", 612, LETTER_HEIGHT))
    assert box is not None
    left, top, _, bottom = box
    assert 50 <= left <= 58 and 60 <= top <= 66 and 72 <= bottom <= 78  # line 1's band
    again = client.get(page_url(uploaded, 1), params={"highlight": PDF_PAGES[0][0],
                                                      "width": 612})
    assert again.content == r.content  # the cached image


def test_bad_id_page_and_parameters_are_refused_in_the_envelope(
        client: httpx.Client, uploaded: dict[str, Any]) -> None:
    assert_envelope(client.get(page_url({"document_id": "no-such-doc"}, 1)), 404,
                    "document_not_found", "document_id")
    assert_envelope(client.get(page_url(uploaded, len(PDF_PAGES) + 1)), 404,
                    "page_out_of_range", "page")
    assert_envelope(client.get(page_url(uploaded, "two")), 422)
    assert_envelope(client.get(page_url(uploaded, 1), params={"width": 10}), 422)
    md = next(d for d in client.get("/v1/documents").json()["data"] if d["type"] != "pdf")
    assert_envelope(client.get(page_url(md, 1)), 422, "not_a_pdf", "document_id")


def test_a_file_gone_from_the_uploads_folder_is_410(client: httpx.Client,
                                                     uploaded: dict[str, Any]) -> None:
    path = Path(uploaded["source"])
    moved = path.with_name("moved-" + path.name)
    path.rename(moved)
    try:
        err = assert_envelope(client.get(page_url(uploaded, 1)), 410, "source_gone",
                              "document_id")
        assert NAME in err["message"] and "no longer there" in err["message"]
    finally:
        moved.rename(path)
    assert client.get(page_url(uploaded, 1)).status_code == 200
