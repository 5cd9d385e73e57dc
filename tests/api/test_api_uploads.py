"""Uploads under hostile sizes and failures: a file over the limit is refused while its
bytes still arrive (a real multipart stream over HTTP), an over-long declared body before a
byte is read, nothing is left in the uploads folder by a refused or failed upload, uploads
wait for a store that answers, and the leftovers of failed uploads can be listed and cleared."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import Api, assert_envelope
from support.ports import free_port
from support.servers import serve_in_thread
from test_api_documents import upload, wait_job

from app.api import create_app

BOUNDARY = "upload-test-boundary"
CHUNK = 64 * 1024


class MultipartStream:
    """A multipart body of one file of `size` bytes, yielded chunk by chunk; `sent` is what
    the client has handed to the connection so far."""

    def __init__(self, name: str, size: int):
        self.size = size
        self.sent = 0
        self.head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
                     f"filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n").encode()
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.total = len(self.head) + size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._count(self.head)
        left = self.size
        while left:
            piece = min(CHUNK, left)
            left -= piece
            yield self._count(b"word " * (piece // 5) + b"x" * (piece % 5))
            time.sleep(0.002)  # a client on a network, not a memory copy
        yield self._count(self.tail)

    def _count(self, data: bytes) -> bytes:
        self.sent += len(data)
        return data


def _post_stream(client: httpx.Client, body: MultipartStream, **headers: str) -> tuple[
        httpx.Response, int]:
    """The response, and the bytes the client had sent when it arrived."""
    r = client.post("/v1/documents", content=iter(body), headers={
        "content-type": f"multipart/form-data; boundary={BOUNDARY}", **headers})
    return r, body.sent


def _uploads(api: Api) -> set[str]:
    folder = Path(api.settings.data_dir) / "uploads"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_a_file_over_the_limit_is_refused_while_it_streams(sample_api: Api,
                                                           client: httpx.Client) -> None:
    # 1 MB per file, 3 per upload: a 3 MB file fits the body limit, so only the per-file
    # count can stop it, and it must do so near its first MB.
    before = _uploads(sample_api)
    body = MultipartStream("streamed-big.txt", 3 * 2**20)
    r, sent = _post_stream(client, body)
    err = assert_envelope(r, 413, code="file_too_large", param="files")
    assert "streamed-big.txt" in err["message"] and "1 MB" in err["message"]
    assert r.headers["connection"] == "close"
    assert sent < body.total - 2**20, (sent, body.total)  # a whole MB was never sent
    assert _uploads(sample_api) == before


def test_a_declared_length_over_the_limit_is_refused_before_reading(
        sample_api: Api, client: httpx.Client) -> None:
    body = MultipartStream("declared-big.txt", 6 * 2**20)  # over 3 x 1 MB + 1 MB
    r, sent = _post_stream(client, body, **{"content-length": str(body.total)})
    assert_envelope(r, 413, code="body_too_large")
    assert sent < 2 * 2**20, sent
    assert "declared-big.txt" not in _uploads(sample_api)


def test_parts_without_a_file_name_are_named(client: httpx.Client) -> None:
    def raw(disposition: str) -> bytes:
        return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n"
                f"some text\r\n--{BOUNDARY}--\r\n").encode()

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    no_name = client.post("/v1/documents", content=raw('name="files"'), headers=headers)
    err = assert_envelope(no_name, 422, code="not_a_file", param="files")
    assert "no file name" in err["message"] and "UploadFile" not in err["message"]
    empty = client.post("/v1/documents", content=raw('name="files"; filename=""'),
                        headers=headers)
    err = assert_envelope(empty, 422, param="files")
    assert "file name" in err["message"] and "UploadFile" not in err["message"]
    no_boundary = client.post("/v1/documents", content=raw('name="files"'),
                              headers={"content-type": "multipart/form-data"})
    assert "boundary" in assert_envelope(no_boundary, 422, param="files")["message"]


def test_a_failed_job_removes_its_file(sample_api: Api, client: httpx.Client) -> None:
    # Looks like a PDF (so it is accepted), fails in the job; a good file beside it stays.
    r = upload(client, ("polyglot.pdf", b"%PDF-1.4\n\x7fELF\x02\x01\x01 no pdf inside\n"),
               ("kept-beside.txt", b"a good file uploaded with a bad one\n"))
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job"])
    by_name = {Path(x["path"]).name: x["status"] for x in job["results"]}
    assert by_name == {"polyglot.pdf": "failed", "kept-beside.txt": "new"}
    assert "polyglot.pdf" not in _uploads(sample_api)
    assert "kept-beside.txt" in _uploads(sample_api)
    doc = next(x["document_id"] for x in job["results"] if x["status"] == "new")
    assert client.delete(f"/v1/documents/{doc}").status_code == 200


def test_failed_uploads_are_listed_and_cleared(sample_api: Api, client: httpx.Client) -> None:
    import json

    folder = Path(sample_api.settings.data_dir) / "uploads"
    folder.mkdir(exist_ok=True)
    # What a job cut short by a crash leaves: a file no stored document uses, its reason
    # written down by the job.
    left = folder / "left-by-crash.pdf"
    left.write_bytes(b"%PDF-1.4\nhalf")
    jobs = Path(sample_api.settings.data_dir) / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "crashed.json").write_text(json.dumps({
        "id": "crashed", "status": "done", "results": [
            {"path": str(left.resolve()), "status": "failed", "reason": "no PDF inside"}]}))
    r = upload(client, ("stored-and-kept.txt", b"a stored upload stays where it is\n"))
    job = wait_job(client, r.json()["job"])

    listed = client.get("/v1/uploads/failed")
    assert listed.status_code == 200, listed.text
    names = {x["name"]: x for x in listed.json()["data"]}
    assert names["left-by-crash.pdf"]["reason"] == "no PDF inside"
    assert names["left-by-crash.pdf"]["size"] == len(b"%PDF-1.4\nhalf")
    assert "stored-and-kept.txt" not in names and "vault-notes.md" not in names
    cleared = client.delete("/v1/uploads/failed")
    assert cleared.status_code == 200 and "left-by-crash.pdf" in cleared.json()["deleted"]
    assert not left.exists() and (folder / "stored-and-kept.txt").exists()
    assert client.get("/v1/uploads/failed").json()["data"] == []
    client.delete(f"/v1/documents/{job['results'][0]['document_id']}")


def test_failed_uploads_need_a_key_when_keys_are_set(api_settings: Callable[..., Any],
                                                     make_service: Callable[..., Any]) -> None:
    settings = api_settings(api={"keys": ["admin-key"]})
    app = create_app(settings, service=make_service(settings, with_sample=False))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert_envelope(c.get("/v1/uploads/failed"), 401, code="invalid_api_key")
        assert_envelope(c.delete("/v1/uploads/failed"), 401, code="invalid_api_key")
        ok = c.get("/v1/uploads/failed", headers={"Authorization": "Bearer admin-key"})
        assert ok.status_code == 200 and ok.json() == {"data": []}


@pytest.fixture
def store_down_api(api_settings: Callable[..., Any]) -> Iterator[Api]:
    """The API on a Qdrant server URL where nobody listens (a store that went down)."""
    from app.service import RagService

    settings = api_settings(store={"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 2})
    service = RagService(settings)
    app = create_app(settings, service=service)
    with serve_in_thread(app) as url:
        yield Api(url, settings, service, app)
    service.close()


def test_uploads_are_refused_while_the_store_is_down(store_down_api: Api) -> None:
    with store_down_api.client() as c:
        r = upload(c, ("while-down.txt", b"this must not stay in the uploads folder\n"))
        err = assert_envelope(r, 503, code="store_unavailable")
        assert "Qdrant server" in err["message"]
    assert _uploads(store_down_api) == set()


def test_concurrent_oversized_uploads_leave_nothing(sample_api: Api) -> None:
    before = _uploads(sample_api)
    statuses: list[int] = []

    def send(i: int) -> None:
        with sample_api.client() as c:
            statuses.append(_post_stream(c, MultipartStream(f"many-{i}.txt", 2 * 2**20))[0]
                            .status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [413] * 4
    assert _uploads(sample_api) == before
