"""An upload whose text the store has seen before: the job result counts its chunks as
coming from the embedding cache."""

from __future__ import annotations

import httpx
from test_api_documents import upload, wait_job

TEXT = ("# Lighthouse log\n\nThe keeper of the north light counted forty-one ships passing "
        "in the great autumn storm, and wrote each name in the log by lamplight.\n")


def test_a_copy_under_another_name_comes_from_the_cache(client: httpx.Client) -> None:
    first = wait_job(client, upload(client, ("log-a.md", TEXT.encode())).json()["job"])
    assert first["status"] == "done" and first["chunks_cached"] == 0
    copy = wait_job(client, upload(client, ("log-b.md", TEXT.encode())).json()["job"])
    assert copy["status"] == "done" and [r["status"] for r in copy["results"]] == ["new"]
    assert copy["chunks_cached"] == copy["chunks_embedded"] == first["chunks_embedded"] >= 1
    for job in (first, copy):
        assert client.delete(f"/v1/documents/{job['results'][0]['document_id']}").status_code == 200
