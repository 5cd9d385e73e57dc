"""Documents over HTTP: upload → ingest job → the text is retrievable → delete → gone;
re-upload updates; names are reduced to their base name; content is checked against the
extension; size and count limits."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import Api, assert_envelope
from fixtures_formats import zip_bytes

NEEDLE = ("The copper vault beneath the old observatory is guarded by a tortoise named "
          "Bartholomew, who accepts only blueberries as payment.")
QUESTION = "Who guards the copper vault beneath the observatory?"


def wait_job(client: httpx.Client, job: dict[str, Any], timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        r = client.get(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200, r.text
        job = r.json()
    return job


def upload(client: httpx.Client, *files: tuple[str, bytes]) -> httpx.Response:
    return client.post("/v1/documents", files=[("files", (n, d)) for n, d in files])


def retrieve_context(client: httpx.Client, question: str = QUESTION) -> str:
    r = client.post("/v1/retrieve", json={"question": question, "budget_tokens": 2048})
    assert r.status_code == 200, r.text
    return str(r.json()["context"])


def test_upload_query_delete_round_trip(sample_api: Api, client: httpx.Client) -> None:
    text = f"# Vault notes\n\nSome words about the town.\n\n{NEEDLE}\n"
    r = upload(client, ("vault-notes.md", text.encode()))
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["status"] in ("queued", "running", "done") and job["files_total"] == 1
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    job = wait_job(client, job)
    assert job["status"] == "done" and job["error"] is None
    assert job["files_done"] == 1 and job["chunks_embedded"] >= 1
    [result] = job["results"]
    assert result["status"] == "new" and result["chunks"] >= 1
    doc_id = result["document_id"]
    saved = Path(sample_api.settings.data_dir) / "uploads" / "vault-notes.md"
    assert result["path"] == str(saved.resolve()) and saved.read_text() == text

    listed = {d["document_id"]: d for d in client.get("/v1/documents").json()["data"]}
    assert listed[doc_id]["title"] == "Vault notes" and listed[doc_id]["type"] == "markdown"
    assert NEEDLE in retrieve_context(client)

    # The same name again, new content: the same document, updated in place.
    r = upload(client, ("vault-notes.md", (text + "\nThe tortoise is 80 years old.\n").encode()))
    job = wait_job(client, r.json()["job"])
    assert [(x["status"], x["document_id"]) for x in job["results"]] == [("updated", doc_id)]
    assert "80 years old" in retrieve_context(client)

    r = client.delete(f"/v1/documents/{doc_id}")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"]["document_id"] == doc_id
    assert doc_id not in {d["document_id"] for d in client.get("/v1/documents").json()["data"]}
    assert NEEDLE not in retrieve_context(client)
    assert not saved.exists()
    assert_envelope(client.delete(f"/v1/documents/{doc_id}"), 404)


def test_a_path_in_the_file_name_keeps_only_the_base_name(sample_api: Api,
                                                          client: httpx.Client) -> None:
    r = upload(client, ("../../../etc/evil-notes.txt", b"plain words about evil plans\n"),
               ("..\\..\\windows\\win-notes.txt", b"plain words about windows\n"))
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job"])
    uploads = (Path(sample_api.settings.data_dir) / "uploads").resolve()
    assert sorted(Path(x["path"]).name for x in job["results"]) == ["evil-notes.txt",
                                                                    "win-notes.txt"]
    assert all(Path(x["path"]).parent == uploads for x in job["results"])
    for x in job["results"]:
        assert client.delete(f"/v1/documents/{x['document_id']}").status_code == 200


@pytest.mark.parametrize(("name", "data", "status", "code"), [
    ("garbage.txt", os.urandom(4096), 415, "content_mismatch"),
    ("renamed.txt", b"%PDF-1.7\n" + b"x" * 100, 415, "content_mismatch"),
    ("fake.pdf", b"just some text pretending\n", 415, "content_mismatch"),
    ("fake.docx", b"not a zip at all\n", 415, "content_mismatch"),
    ("slides.pptx", zip_bytes({"word/document.xml": b"<w/>"}), 415, "content_mismatch"),
    ("book.epub", zip_bytes({"word/document.xml": b"<w/>"}), 415, "content_mismatch"),
    ("notes.odt", b"not a zip at all\n", 415, "content_mismatch"),
    ("letter.rtf", b"plain text, no rtf header\n", 415, "content_mismatch"),
    ("inbox.mbox", b"Subject: no From_ line first\n\nbody\n", 415, "content_mismatch"),
    ("mail.eml", os.urandom(4096), 415, "content_mismatch"),
    ("photo.png", b"just text named like a picture\n", 415, "content_mismatch"),
    ("scan.tiff", b"%PDF-1.7\n" + b"x" * 100, 415, "content_mismatch"),
    ("budget.xlsx", zip_bytes({"word/document.xml": b"<w/>"}), 415, "content_mismatch"),
    ("budget.ods", b"not a zip at all\n", 415, "content_mismatch"),
    ("tool.exe", b"MZ\x90\x00" + b"\x00" * 64, 415, "unsupported_file_type"),
    ("empty.md", b"", 422, "empty_file"),
    ("..", b"text", 422, "invalid_file_name"),
    (".hidden.txt", b"text", 422, "invalid_file_name"),
])
def test_uploads_are_checked_by_content_not_only_extension(
        client: httpx.Client, name: str, data: bytes, status: int, code: str) -> None:
    assert_envelope(upload(client, (name, data)), status, code=code, param="files")


def test_an_upload_is_refused_whole_when_one_file_is_bad(sample_api: Api,
                                                         client: httpx.Client) -> None:
    r = upload(client, ("good-one.txt", b"fine text\n"), ("bad.pdf", b"no pdf here"))
    assert_envelope(r, 415)
    assert not (Path(sample_api.settings.data_dir) / "uploads" / "good-one.txt").exists()


def test_upload_limits(client: httpx.Client) -> None:
    # 1 MB per file, 3 files per upload (the sample API's limits).
    big = b"word " * (2**20 // 5 + 10)
    assert_envelope(upload(client, ("big.txt", big)), 413, code="file_too_large", param="files")
    many = [(f"n{i}.txt", b"text\n") for i in range(4)]
    assert_envelope(upload(client, *many), 422, code="too_many_files", param="files")
    dup = upload(client, ("same.txt", b"a\n"), ("same.txt", b"b\n"))
    assert_envelope(dup, 422, code="duplicate_file")
    # Not multipart at all, or no files field.
    assert_envelope(client.post("/v1/documents", json={"files": []}), 422)
    assert_envelope(client.post("/v1/documents", data={"other": "x"}), 422, param="files")


def test_a_file_that_cannot_be_parsed_fails_in_the_job_with_its_reason(
        client: httpx.Client) -> None:
    # Looks like a PDF (so it is accepted), but is not one inside.
    r = upload(client, ("broken.pdf", b"%PDF-1.4\n%%EOF garbage that is no pdf\n"))
    assert r.status_code == 202
    job = wait_job(client, r.json()["job"])
    assert job["status"] == "done"
    [result] = job["results"]
    assert result["status"] == "failed" and result["reason"]


def test_unknown_job_is_a_404_envelope(client: httpx.Client) -> None:
    assert_envelope(client.get("/v1/jobs/nope"), 404, param="job_id")


def test_jobs_are_written_down_for_other_workers(sample_api: Api, client: httpx.Client) -> None:
    import json
    import subprocess

    r = upload(client, ("worker-notes.txt", b"notes for the other workers\n"))
    job = wait_job(client, r.json()["job"])
    jobs = Path(sample_api.settings.data_dir) / "jobs"
    on_disk = json.loads((jobs / f"{job['id']}.json").read_text())
    assert on_disk["status"] == "done" and on_disk["results"] == job["results"]
    client.delete(f"/v1/documents/{job['results'][0]['document_id']}")

    # A job another worker wrote down: still running while that process lives, failed once
    # it is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    for pid, status in ((os.getpid(), "running"), (dead.pid, "failed")):
        foreign = {**on_disk, "id": f"f{pid}", "status": "running", "pid": pid}
        (jobs / f"f{pid}.json").write_text(json.dumps(foreign))
        seen = client.get(f"/v1/jobs/f{pid}").json()
        assert seen["status"] == status and "pid" not in seen
    assert_envelope(client.get("/v1/jobs/..%2Fsecrets"), 404)


def test_an_uploaded_e_mail_and_its_attachment_are_two_documents(client: httpx.Client) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.example", "b@x.example", "Vault"
    message.set_content("The attachment says who guards the vault.")
    message.add_attachment(NEEDLE.encode(), maintype="text", subtype="plain",
                           filename="guard.txt")
    r = upload(client, ("vault-mail.eml", message.as_bytes()))
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job"])
    assert job["status"] == "done" and job["files_total"] == job["files_done"] == 2
    by_name = {Path(x["path"]).name: x for x in job["results"]}
    assert set(by_name) == {"vault-mail.eml", "vault-mail.eml#guard.txt"}
    assert all(x["status"] == "new" for x in by_name.values())
    assert "Bartholomew" in retrieve_context(client)
    listed = {d["source"].rsplit("/", 1)[-1] for d in client.get("/v1/documents").json()["data"]}
    assert {"vault-mail.eml", "vault-mail.eml#guard.txt"} <= listed
    parent = by_name["vault-mail.eml"]["document_id"]
    assert client.delete(f"/v1/documents/{parent}").status_code == 200
    listed = {d["source"].rsplit("/", 1)[-1] for d in client.get("/v1/documents").json()["data"]}
    assert not listed & {"vault-mail.eml", "vault-mail.eml#guard.txt"}
    assert "Bartholomew" not in retrieve_context(client)


def test_config_lists_the_new_upload_types(client: httpx.Client) -> None:
    types = client.get("/v1/config").json()["limits"]["upload_types"]
    assert {".epub", ".odt", ".odp", ".rtf", ".eml", ".mbox", ".ipynb", ".xhtml"} <= set(types)


def test_an_uploaded_workbook_and_a_scan_are_read(client: httpx.Client, tmp_path: Path) -> None:
    # A sheet's rows and an image's OCR text, uploaded as a user's browser would send them.
    import openpyxl

    from tests.ingest.ocr_helpers import write_image

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Q3"
    for row in (["Item", "Cost"], ["copper vault lock", 835], ["observatory lamp", 40]):
        sheet.append(row)
    book = tmp_path / "vault-budget.xlsx"
    workbook.save(book)
    scan = write_image(tmp_path / "vault-scan.png", [["The vault keeper is Ottoline."]], "PNG")
    r = upload(client, (book.name, book.read_bytes()), (scan.name, scan.read_bytes()))
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job"], timeout_s=300)
    assert job["status"] == "done", job
    assert {x["status"] for x in job["results"]} == {"new"}, job["results"]
    sheet = client.post("/v1/retrieve", json={"question": "copper vault lock cost",
                                              "budget_tokens": 2048}).json()
    [passage] = [p for p in sheet["passages"] if p["source"].endswith("vault-budget.xlsx")]
    assert passage["page_label"] == "sheet Q3" and "| copper vault lock | 835 |" in passage["text"]
    ocr = client.post("/v1/retrieve", json={"question": "Who is the vault keeper?",
                                            "budget_tokens": 2048}).json()
    [passage] = [p for p in ocr["passages"] if p["source"].endswith("vault-scan.png")]
    assert passage["ocr"] is True and "Ottoline" in passage["text"]
    for doc in client.get("/v1/documents").json()["data"]:
        if doc["source"].endswith(("vault-budget.xlsx", "vault-scan.png")):
            assert client.delete(f"/v1/documents/{doc['document_id']}").status_code == 200


def test_documents_are_listed_page_by_page(client: httpx.Client) -> None:
    whole = client.get("/v1/documents").json()
    assert whole["total"] == len(whole["data"]) >= 2 and whole["next_cursor"] is None
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        r = client.get("/v1/documents", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == whole["total"] and len(page["data"]) == 1
        seen += [d["document_id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(d["document_id"] for d in whole["data"])
    first = client.get("/v1/documents", params={"limit": 1}).json()
    rest = client.get("/v1/documents", params={"cursor": first["next_cursor"]}).json()
    assert [d["document_id"] for d in rest["data"]] == seen[1:101]  # a cursor alone: 100


@pytest.mark.parametrize(("params", "param"), [
    ({"limit": 2, "cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": ""}, "cursor"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
])
def test_a_bad_page_request_is_a_422_naming_its_field(client: httpx.Client, params: dict[str, Any],
                                                      param: str) -> None:
    r = client.get("/v1/documents", params=params)
    assert_envelope(r, 422)
    assert r.json()["error"]["param"] == param
