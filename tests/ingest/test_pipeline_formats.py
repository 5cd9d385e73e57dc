"""The newer formats through the real pipeline (loaders, Llama 3 tokenizer, MiniLM, Qdrant
Edge): their text is found by search; an e-mail's attachments and a mailbox's messages are
documents of their own that go with their parent; bad inputs cost one line and nothing
already stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fixtures_docs as F
import fixtures_formats as FF
import pytest
from ingest_helpers import check_store

from core.settings import Settings
from ingest.documents import delete_document, list_documents
from ingest.pipeline import IngestReport, document_id_for
from ingest.sparse import SparseEncoder
from ingest.store import LIVE, Where, open_store

IngestFn = Any


def results(report: IngestReport) -> dict[str, tuple[str, str]]:
    """Each result's name after the folder (a child keeps its '#name') → (status, reason)."""
    return {r.path.rsplit("/", 1)[-1]: (r.status, r.reason) for r in report.results}


def top_source(store: Any, embedder: Any, question: str) -> str:
    where = Where(equals={"state": LIVE})
    hits = store.query(dense=embedder.embed_query(question), sparse=SparseEncoder().query(question),
                       mode="hybrid", where=where, limit=1)
    return str(hits[0].payload["source"])


def children_of(store: Any, path: Path) -> dict[str, dict[str, Any]]:
    where = Where(equals={"parent": document_id_for(path), "chunk_index": 0})
    return {p.payload["source"].rsplit("#", 1)[-1]: p.payload for p in store.scroll(where)}


def write_budget_mail(root: Path, **kwargs: Any) -> Path:
    pdf = F.write_pdf(root / "pdf" / "estimate.pdf", [[FF.MAIL_ATTACHMENT_SENTENCE]]).read_bytes()
    root.joinpath("docs").mkdir(exist_ok=True)
    return FF.write_eml(root / "docs" / "budget.eml", pdf=pdf, **kwargs)


def test_every_new_format_is_found_by_search(tmp_path: Path, settings: Settings,
                                             ingest_paths: IngestFn, embedder: Any) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    writers = {"salt.epub": FF.write_epub, "mill.odt": FF.write_odt, "glass.odp": FF.write_odp,
               "ledger.rtf": FF.write_rtf, "tides.ipynb": FF.write_notebook,
               "ferry.xhtml": FF.write_xhtml}
    for name, write in writers.items():
        write(docs / name)
    report = ingest_paths([docs])
    assert {n: s for n, (s, _) in results(report).items()} == {n: "new" for n in writers}
    questions = {
        "salt.epub": "What did the Sankore scholars pay for salt?",
        "mill.odt": "Which grain did the Eling tidal mill grind?",
        "glass.odp": "Could Murano glassmakers leave the republic?",
        "ledger.rtf": "Who repaired the astronomical dial in Prague?",
        "tides.ipynb": "harmonic model of the Newlyn tide gauge readings",
        "ferry.xhtml": "How much did ferry revenue rise in fiscal 2023?",
    }
    store = open_store(settings)
    try:
        check_store(store)
        for name, question in questions.items():
            assert top_source(store, embedder, question) == str((docs / name).resolve()), name
        chapters = [p.payload for p in store.scroll(Where(equals={
            "document_id": document_id_for(docs / "salt.epub"), "state": LIVE}))]
        assert {p["page"] for p in chapters} == {1, 2, 3}
        assert {p["title"] for p in chapters} == {FF.EPUB_TITLE}
    finally:
        store.close()


def test_attachment_is_its_own_document_and_goes_with_its_parent(
        tmp_path: Path, settings: Settings, ingest_paths: IngestFn, embedder: Any) -> None:
    mail = write_budget_mail(tmp_path)
    report = ingest_paths([mail.parent])
    assert results(report) == {
        "budget.eml#estimate.pdf": ("new", ""),
        "budget.eml#plan.dwg": ("skipped", "unsupported file type '.dwg'"),
        "budget.eml": ("new", ""),
    }
    store = open_store(settings)
    try:
        check_store(store)
        source = str(mail.resolve())
        assert top_source(store, embedder, "estimate for repainting the tower") == (
            source + "#estimate.pdf")
        [child] = children_of(store, mail).values()
        assert (child["type"], child["page"], child["source"]) == ("pdf", 1, source + "#estimate.pdf")
        parent = store.scroll(Where(equals={"document_id": document_id_for(mail)}))
        assert child["doc_hash"] == next(iter(parent)).payload["doc_hash"]
        assert {d.source for d in list_documents(store)} == {source, source + "#estimate.pdf"}
    finally:
        store.close()

    # Unchanged: neither the message nor its attachment is touched (nor reported again).
    assert results(ingest_paths([mail.parent])) == {"budget.eml": ("unchanged", "")}

    # Changed, without the attachment: the child of the old version is gone.
    FF.write_eml(mail)
    assert results(ingest_paths([mail.parent]))["budget.eml"] == ("updated", "")
    store = open_store(settings)
    try:
        check_store(store)
        assert children_of(store, mail) == {}
    finally:
        store.close()

    # Deleting the parent deletes its children.
    write_budget_mail(tmp_path)
    ingest_paths([mail.parent])
    store = open_store(settings)
    try:
        assert len(children_of(store, mail)) == 1
        delete_document(store, str(mail))
        assert store.count(Where(equals={"parent": document_id_for(mail)})) == 0
        assert list_documents(store) == []
    finally:
        store.close()

    # Pruning a gone parent prunes its children; a child is never pruned on its own (its
    # source is no file).
    ingest_paths([mail.parent])
    assert results(ingest_paths([mail.parent], prune=True)) == {"budget.eml": ("unchanged", "")}
    mail.unlink()
    report = ingest_paths([mail.parent], prune=True)
    assert [(r.status, Path(r.path).name) for r in report.results] == [("removed", "budget.eml")]
    store = open_store(settings)
    try:
        assert store.count(Where(equals={"state": LIVE})) == 0
    finally:
        store.close()


def test_a_50_mb_attachment_is_skipped_by_name_and_the_message_kept(
        tmp_path: Path, settings: Settings, ingest_paths: IngestFn) -> None:
    mail = FF.write_eml_with_big_attachment(tmp_path / "budget.eml", megabytes=50)
    report = ingest_paths([mail])
    assert results(report) == {
        "budget.eml#logbook.txt": ("skipped", "attachment is 50 MB, over the "
                                              "ingest.max_attachment_mb limit of 25"),
        "budget.eml": ("new", ""),
    }
    store = open_store(settings)
    try:
        check_store(store)
        assert [d.title for d in list_documents(store)] == [FF.MAIL_SUBJECT]
    finally:
        store.close()


def test_mbox_one_document_per_message_and_a_broken_one_reported(
        tmp_path: Path, settings: Settings, ingest_paths: IngestFn, embedder: Any) -> None:
    pdf = F.write_pdf(tmp_path / "estimate.pdf", [[FF.MAIL_ATTACHMENT_SENTENCE]]).read_bytes()
    messages: list[Any] = [
        FF.mail_message(subject="Keeper's rota", body="The night keeper swaps shifts on Fridays."),
        b"\x00\x01\x02 this message lost its headers \xff\n",
        FF.mail_message(attachments=[("estimate.pdf", pdf, "application/pdf")]),
    ]
    box = FF.write_mbox(tmp_path / "keepers.mbox", messages)
    report = ingest_paths([box])
    assert results(report) == {
        "keepers.mbox#message-1.eml": ("new", ""),
        "keepers.mbox#message-2.eml": ("failed",
                                       "not an e-mail: no From, To, Date or Subject header"),
        "keepers.mbox#message-3.eml": ("new", ""),
        "keepers.mbox#message-3.eml#estimate.pdf": ("new", ""),
        "keepers.mbox": ("new", ""),
    }
    store = open_store(settings)
    try:
        check_store(store)
        source = str(box.resolve())
        assert top_source(store, embedder, "When does the night keeper swap shifts?") == (
            source + "#message-1.eml")
        assert top_source(store, embedder, "estimate for repainting the lighthouse tower") == (
            source + "#message-3.eml#estimate.pdf")
        assert set(children_of(store, box)) == {"message-1.eml", "message-3.eml", "estimate.pdf"}
        titles = {d.source.rsplit("#", 1)[-1]: d.title for d in list_documents(store)}
        assert titles["message-1.eml"] == "Keeper's rota"
    finally:
        store.close()


def test_zip_bombs_and_corrupt_packages_cost_one_line_and_nothing_stored(
        tmp_path: Path, settings: Settings, ingest_paths: IngestFn) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    book, report_docx = FF.write_epub(docs / "salt.epub"), F.write_docx(docs / "orchard.docx")
    first = ingest_paths([docs])
    assert not first.failed
    store = open_store(settings)
    try:
        before = {d.source: d.chunks for d in list_documents(store)}
    finally:
        store.close()

    book.write_bytes(FF.zip_bomb("META-INF/container.xml"))
    report_docx.write_bytes(FF.zip_bomb("word/document.xml"))
    (docs / "mill.odt").write_bytes(FF.epub_bytes()[:3000])
    FF.write_rtf(docs / "ledger.rtf")
    report = ingest_paths([docs])
    assert results(report) == {
        "ledger.rtf": ("new", ""),
        "mill.odt": ("failed", results(report)["mill.odt"][1]),
        "orchard.docx": ("failed", "refused DOCX: it would unzip to 64 MB from 0.1 MB (a zip bomb?)"),
        "salt.epub": ("failed", "refused EPUB: it would unzip to 64 MB from 0.1 MB (a zip bomb?)"),
    }
    assert results(report)["mill.odt"][1].startswith("corrupt ODT")
    store = open_store(settings)
    try:
        check_store(store)
        after = {d.source: d.chunks for d in list_documents(store)}
        assert after == {**before, str((docs / "ledger.rtf").resolve()): after[
            str((docs / "ledger.rtf").resolve())]}
    finally:
        store.close()


class _DiesCommittingParent:
    """The real store, except that flipping `parent_id` live raises: a run killed after its
    children's commits and before their parent's."""

    def __init__(self, store: Any, parent_id: str):
        self.store, self.parent_id = store, parent_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        if where.equals.get("document_id") == self.parent_id:
            raise RuntimeError("killed before the parent's commit")
        self.store.set_payload(where, payload)


def test_a_run_killed_between_children_and_parent_is_finished_by_the_next(
        tmp_path: Path, settings: Settings, ingest_paths: IngestFn) -> None:
    mail = write_budget_mail(tmp_path)
    store = open_store(settings)
    try:
        with pytest.raises(RuntimeError, match="killed"):
            ingest_paths([mail], store=_DiesCommittingParent(store, document_id_for(mail)))
        assert [d.source.rsplit("/", 1)[-1] for d in list_documents(store)] == [
            "budget.eml#estimate.pdf"]  # the parent is still staged: not live, not unchanged
        report = ingest_paths([mail], store=store)
        assert results(report) == {
            "budget.eml#estimate.pdf": ("new", ""),
            "budget.eml#plan.dwg": ("skipped", "unsupported file type '.dwg'"),
            "budget.eml": ("new", ""),
        }
        check_store(store)
        assert len(list_documents(store)) == 2 and len(children_of(store, mail)) == 1
    finally:
        store.close()
