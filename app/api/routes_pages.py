"""GET /v1/documents/{id}/pages/{n}.png: a stored PDF's page with a quote highlighted."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app.api.deps import StateDep
from app.api.errors import ApiError
from app.api.routes_query import ERRORS
from app.api.schemas import ErrorEnvelope
from app.pages import (
    MAX_WIDTH,
    MIN_WIDTH,
    NotRenderableError,
    PageOutOfRangeError,
    SourceGoneError,
)
from core.errors import NotFoundError

router = APIRouter(tags=["documents"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 404: {"model": ErrorEnvelope}, 410: {"model": ErrorEnvelope}}


@router.get("/v1/documents/{document_id}/pages/{page}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "The page as PNG; "
                             "`X-Highlight` says whether the quote was found (exact, partial, "
                             "none)."}, **_ERRORS})
def page_png(document_id: Annotated[str, Path(max_length=200)],
             page: Annotated[int, Path(description="1-based page number.")],
             state: StateDep,
             highlight: Annotated[str, Query(max_length=4000, description="Text to mark on "
                                             "the page (a citation's quote).")] = "",
             width: Annotated[int, Query(ge=MIN_WIDTH, le=MAX_WIDTH,
                                         description="Image width in pixels.")] = 1000) -> Response:
    """A page of a stored PDF drawn by PDFium, with the quote's characters highlighted. Only
    the document's own file, unchanged since it was ingested, is read: 410 when it was
    moved, deleted or changed (show the passage text instead)."""
    try:
        image = state.service.page_image(document_id, page, highlight, width)
    except PageOutOfRangeError as exc:
        raise ApiError(404, str(exc), param="page", code="page_out_of_range") from None
    except NotFoundError as exc:
        raise ApiError(404, str(exc), param="document_id", code="document_not_found") from None
    except NotRenderableError as exc:
        raise ApiError(422, str(exc), param="document_id", code="not_a_pdf") from None
    except SourceGoneError as exc:
        raise ApiError(410, str(exc), param="document_id", code="source_gone",
                       type_="not_found_error") from None
    return Response(image.png, media_type="image/png", headers={
        "Cache-Control": "private, max-age=300", "X-Highlight": image.highlight or "none"})
