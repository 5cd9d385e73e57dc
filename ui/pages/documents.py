"""The documents page: upload files (with progress until they are ingested), the table of
documents, delete."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui.client import ApiClient, ApiError
from ui.components import api, show_error
from ui.documents import TABLE_COLUMNS, document_rows, ingest, job_lines

PAGE_SIZE = 100  # documents per page of the table
DEFAULT_TYPES = ("PDF (scans by OCR), images (PNG, JPEG, TIFF, WEBP, BMP), DOCX, PPTX, XLSX, "
                 "ODT, ODS, ODP, CSV, EPUB, RTF, HTML, XHTML, e-mail (.eml, .mbox), "
                 "Jupyter notebooks, Markdown, text, code")


def upload(client: ApiClient, limits: dict[str, Any]) -> None:
    most_files = int(limits.get("max_files_per_upload") or 0)
    types = ", ".join(limits.get("upload_types") or []) or DEFAULT_TYPES
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader(
            "Add documents", accept_multiple_files=True,
            max_upload_size=max(1, round(float(limits.get("max_upload_mb") or 200))),
            help=f"Accepted: {types}. A file already stored is ingested again only when its "
                 "content changed.")
        submitted = st.form_submit_button("Upload and ingest", icon=":material/upload:",
                                          type="primary")
    if not submitted:
        return
    if not files:
        st.warning("Choose one or more files first.")
        return
    if most_files and len(files) > most_files:
        st.warning(f"At most {most_files} files per upload: choose fewer, then upload the rest.")
        return
    names = ", ".join(f.name for f in files)
    with st.status(f"Ingesting {names}…", expanded=True) as status:
        bar = st.progress(0.0, text="Uploading…")
        try:
            job = ingest(client, [(f.name, f.getvalue(), f.type) for f in files],
                         lambda text, share: bar.progress(share, text=text),
                         st.session_state["_ui_settings"])
        except ApiError as exc:
            status.update(label=f"Uploading {names} failed", state="error")
            show_error(exc)
            return
        failed = job.get("status") != "done" or any(
            r.get("status") == "failed" for r in job.get("results") or [])
        status.update(label=f"Ingesting {names}: some files failed" if failed
                      else f"Ingested {names}", state="error" if failed else "complete")
    st.session_state["_last_job"] = job


def pager(cursors: list[str | None], next_cursor: str | None, shown: int, total: int) -> None:
    """Buttons to the previous and next pages; the cursors of the pages seen are kept."""
    first = (len(cursors) - 1) * PAGE_SIZE
    left, middle, right = st.columns(3)
    middle.caption(f"{first + 1:,}–{first + shown:,} of {total:,}")
    if len(cursors) > 1 and left.button("Previous page", icon=":material/arrow_back:"):
        cursors.pop()
        st.rerun()
    if next_cursor and right.button("Next page", icon=":material/arrow_forward:"):
        cursors.append(next_cursor)
        st.rerun()


def table(client: ApiClient) -> None:
    cursors: list[str | None] = st.session_state.setdefault("_document_cursors", [None])
    try:
        page = client.document_page(PAGE_SIZE, cursors[-1])
    except ApiError as exc:
        show_error(exc)
        return
    documents, total = page.get("data") or [], int(page.get("total") or 0)
    st.subheader(f"{total:,} document{'s' * (total != 1)}")
    if not documents:
        st.info("No documents yet: upload some above.")
        return
    rows = document_rows(documents)
    st.table(pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).set_index("name"))
    pager(cursors, page.get("next_cursor"), len(documents), total)

    seen = [r["name"] for r in rows]
    labels = {r["id"]: r["name"] if seen.count(r["name"]) == 1 else f"{r['name']} ({r['source']})"
              for r in rows}
    with st.form("delete"):
        doomed = st.multiselect("Delete documents", list(labels), format_func=labels.__getitem__,
                                placeholder="Choose documents to delete")
        if not (st.form_submit_button("Delete", icon=":material/delete:") and doomed):
            return
    try:
        for document_id in doomed:
            client.delete_document(document_id)
    except ApiError as exc:
        show_error(exc)
        return
    st.session_state.pop("_last_job", None)
    st.session_state.pop("_document_cursors", None)
    st.toast(f"Deleted {', '.join(labels[d] for d in doomed)}")
    st.rerun()


client = api()
st.title("Documents")
try:
    config = client.config()
except ApiError as exc:
    show_error(exc)
    st.stop()
upload(client, config.get("limits") or {})
for line, ok in job_lines(st.session_state.get("_last_job") or {}):
    (st.success if ok else st.error)(line)
table(client)
