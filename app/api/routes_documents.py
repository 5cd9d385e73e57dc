"""Documents: list, upload (ingested by a background job), job progress, delete; the
uploads whose ingest failed, listed and cleared."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from app.api.deps import ApiState, StateDep
from app.api.errors import ApiError
from app.api.jobs import Job
from app.api.multipart import FIELD, read_files
from app.api.routes_query import ERRORS
from app.api.schemas import (
    Deleted,
    DocumentList,
    ErrorEnvelope,
    JobAccepted,
    JobOut,
    LeftoverList,
    LeftoversDeleted,
)
from app.api.upload_files import Leftover, upload_folder
from app.api.uploads import check_content, safe_name
from ingest.documents import MAX_PAGE

DEFAULT_PAGE = 100  # documents per page when only a cursor is given
CURSOR = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"

router = APIRouter(tags=["documents"])
_ERRORS = {**ERRORS, 404: {"model": ErrorEnvelope}, 415: {"model": ErrorEnvelope}}


def uploads_dir(state: ApiState) -> Path:
    return upload_folder(state.settings.data_dir).folder


@router.get("/v1/documents", response_model=DocumentList, responses=ERRORS)
async def documents(state: StateDep,
                    limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE, description=(
                        "Documents per page (in store order); without it and a cursor, every "
                        f"document sorted by path; with a cursor alone, {DEFAULT_PAGE}."))]
                        = None,
                    cursor: Annotated[str | None, Query(pattern=CURSOR, description=(
                        "The previous page's next_cursor."))] = None) -> Response:
    """Stored documents: a page of `limit` from `cursor`, or every document."""
    if limit is None and cursor is not None:
        limit = DEFAULT_PAGE
    return await state.run_aside(_listing, state, limit, cursor)


def _listing(state: ApiState, limit: int | None, cursor: str | None) -> Response:
    """The listing's response, built whole on the calling thread: validated against
    DocumentList on the event loop it held the GIL there (~3 ms for 52 documents, 9% of the
    GIL samples under one client) while every other request's loop step waited for it
    (bench/README.md, "where the API's CPU goes")."""
    if limit is None:
        docs = state.service.documents()
        body = {"data": [d.to_dict() for d in docs], "total": len(docs), "next_cursor": None}
    else:
        page = state.service.document_page(limit, cursor)
        body = {"data": [d.to_dict() for d in page.documents], "total": page.total,
                "next_cursor": page.next_cursor}
    return JSONResponse(body)


_UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "array", "minItems": 1, "description": (
        "One or more files (PDF, DOCX, PPTX, HTML, Markdown, text, code)."),
        "items": {"type": "string", "format": "binary"}}}}}}}


@router.post("/v1/documents", status_code=202, response_model=JobAccepted, responses=_ERRORS,
             openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload(request: Request, state: StateDep) -> JSONResponse:
    """Upload files; they are ingested by a background job (poll GET /v1/jobs/{id}). The
    same file name uploaded again updates that document (unchanged content is skipped).
    A file over the size limit is refused (413) as soon as its bytes pass it."""
    api = state.settings.api
    # Before a byte of the body is read: a store that does not answer is a 503.
    await anyio.to_thread.run_sync(state.service.runtime.check_store)
    files = await read_files(request.headers, request.stream(),
                             int(api.max_upload_mb * 2**20), api.max_files_per_upload)
    try:
        job = await anyio.to_thread.run_sync(_accept, state, files)
    finally:
        for f in files:
            f.file.close()
    return JSONResponse({"job": job.to_dict()}, status_code=202,
                        headers={"Location": f"/v1/jobs/{job.id}"})


def _accept(state: ApiState, files: list[UploadFile]) -> Job:
    """Checks every file, then stores them all and queues their job: an upload is accepted
    whole or not at all."""
    checked: list[tuple[str, BinaryIO]] = []
    for f in files:
        name = safe_name(f.filename)
        if any(name == seen for seen, _ in checked):
            raise ApiError(422, f"files: '{name}' is sent twice", param="files",
                           code="duplicate_file")
        check_content(name, f.file, f.size if f.size is not None else _size(f))
        checked.append((name, f.file))
    paths = upload_folder(state.settings.data_dir).save(checked)
    return state.jobs.submit(paths)


def _size(f: UploadFile) -> int:
    f.file.seek(0, os.SEEK_END)
    size = f.file.tell()
    f.file.seek(0)
    return size


@router.get("/v1/uploads/failed", response_model=LeftoverList, responses=ERRORS)
def failed_uploads(state: StateDep) -> dict[str, Any]:
    """Files left in the uploads folder that no stored document and no pending job uses
    (each with its job's reason, when one was written down)."""
    return {"data": [x.to_dict() for x in _leftovers(state)]}


@router.delete("/v1/uploads/failed", response_model=LeftoversDeleted, responses=ERRORS)
def clear_failed_uploads(state: StateDep) -> dict[str, Any]:
    """Removes the files GET /v1/uploads/failed lists."""
    folder = upload_folder(state.settings.data_dir)
    return {"deleted": folder.remove([folder.folder / x.name for x in _leftovers(state)])}


def _leftovers(state: ApiState) -> list[Leftover]:
    stored = {Path(d.source) for d in state.service.documents()}
    return upload_folder(state.settings.data_dir).leftovers(stored, state.jobs.pending_paths())


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses=_ERRORS)
def job(job_id: str, state: StateDep) -> dict[str, Any]:
    """Progress and per-file results of an upload job."""
    found = state.jobs.get(job_id)
    if found is None:
        raise ApiError(404, f"no job '{job_id}' (the last {state.settings.api.jobs_kept} "
                            "jobs are kept)", param="job_id")
    return found


@router.delete("/v1/documents/{document_id}", response_model=Deleted, responses=_ERRORS)
def delete(document_id: str, state: StateDep) -> dict[str, Any]:
    """Delete a document (all its chunks) by id; an uploaded file is removed with it."""
    doc = state.service.delete_document(document_id)
    source = Path(doc.source)
    if source.parent == uploads_dir(state).resolve():
        source.unlink(missing_ok=True)
    return {"deleted": doc.to_dict()}
