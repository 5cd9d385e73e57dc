"""Documents: list, upload (ingested by a background job), job progress, delete."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import JSONResponse

from app.api.deps import ApiState, StateDep
from app.api.errors import ApiError
from app.api.routes_query import ERRORS
from app.api.schemas import Deleted, DocumentList, ErrorEnvelope, JobAccepted, JobOut
from app.api.uploads import check_content, safe_name

router = APIRouter(tags=["documents"])
_ERRORS = {**ERRORS, 404: {"model": ErrorEnvelope}, 415: {"model": ErrorEnvelope}}


def uploads_dir(state: ApiState) -> Path:
    return Path(state.settings.data_dir) / "uploads"


@router.get("/v1/documents", response_model=DocumentList, responses=ERRORS)
def documents(state: StateDep) -> dict[str, Any]:
    """Every stored document."""
    docs = state.service.documents()
    return {"data": [d.to_dict() for d in docs]}


@router.post("/v1/documents", status_code=202, response_model=JobAccepted, responses=_ERRORS)
def upload(files: Annotated[list[UploadFile], File(min_length=1, description="One or more files "
                                                   "(PDF, DOCX, PPTX, HTML, Markdown, text, code).")],
           state: StateDep) -> JSONResponse:
    """Upload files; they are ingested by a background job (poll GET /v1/jobs/{id}). The
    same file name uploaded again updates that document (unchanged content is skipped)."""
    api = state.settings.api
    if not files:
        raise ApiError(422, "files: no file was sent", param="files")
    if len(files) > api.max_files_per_upload:
        raise ApiError(422, f"files: {len(files)} files, over the limit of "
                            f"{api.max_files_per_upload} per upload", param="files",
                       code="too_many_files")
    limit = int(api.max_upload_mb * 2**20)
    checked: list[tuple[str, UploadFile]] = []
    for f in files:
        name = safe_name(f.filename)
        if any(name == seen for seen, _ in checked):
            raise ApiError(422, f"files: '{name}' is sent twice", param="files",
                           code="duplicate_file")
        size = f.size if f.size is not None else _size(f)
        if size > limit:
            raise ApiError(413, f"files: '{name}' is {size / 2**20:.1f} MB, over the limit of "
                                f"{api.max_upload_mb:g} MB", param="files", code="file_too_large")
        check_content(name, f.file, size)
        checked.append((name, f))
    # Every file is checked before any is stored: an upload is accepted whole or not at all.
    folder = uploads_dir(state)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, f in checked:
        final = folder / name
        part = folder / f".{uuid.uuid4().hex}.part"
        try:
            with part.open("wb") as out:
                f.file.seek(0)
                shutil.copyfileobj(f.file, out, 1 << 20)
            os.replace(part, final)  # atomic: a job reading the previous version sees it whole
        finally:
            part.unlink(missing_ok=True)
        paths.append(final)
    job = state.jobs.submit(paths)
    return JSONResponse({"job": job.to_dict()}, status_code=202,
                        headers={"Location": f"/v1/jobs/{job.id}"})


def _size(f: UploadFile) -> int:
    f.file.seek(0, os.SEEK_END)
    size = f.file.tell()
    f.file.seek(0)
    return size


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
