"""The ingest pipeline end to end on real parts: loaders, Llama 3 tokenizer, MiniLM, BM25 and
an embedded Qdrant Edge store. Documents are built in tmp dirs by fixtures_docs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fixtures_docs as F
import pytest
from ingest_helpers import check_store, doc_text_from_chunks, live_points

from core.errors import NotFoundError
from core.settings import Settings
from ingest.documents import delete_document, list_documents
from ingest.loaders import load
from ingest.pipeline import IngestReport, document_id_for, ingest
from ingest.sparse import SparseEncoder
from ingest.store import LIVE, Where, open_store


def by_name(report: IngestReport) -> dict[str, Any]:
    return {Path(r.path).name: r for r in report.results}


def statuses(report: IngestReport) -> dict[str, str]:
    return {name: r.status for name, r in by_name(report).items()}


def search(store: Any, embedder: Any, text: str, mode: str, limit: int = 3) -> list[Any]:
    dense = embedder.embed_query(text) if mode != "keyword" else None
    sparse = SparseEncoder().query(text) if mode != "dense" else None
    return store.query(dense=dense, sparse=sparse, mode=mode,
                       where=Where(equals={"state": LIVE}), limit=limit)


def doc_points(store: Any, path: Path) -> list[Any]:
    return list(store.scroll(Where(equals={"document_id": document_id_for(path)})))


def write_corpus(root: Path) -> dict[str, Path]:
    return F.write_good_corpus(root / "docs")


# -- one corpus of every format, ingested once for the read-only tests -----------------------

class Indexed:
    def __init__(self, settings: Settings, store: Any, files: dict[str, Path],
                 report: IngestReport):
        self.settings, self.store, self.files, self.report = settings, store, files, report


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, embedder: Any,
            make_settings: Any) -> Iterator[Indexed]:
    root = tmp_path_factory.mktemp("every-format")
    files = write_corpus(root)
    settings = make_settings(root / "data")
    store = open_store(settings)
    try:
        # The folder, plus one of its files named again: each file is ingested once.
        report = ingest(settings, [root / "docs", files["bees.md"]], store=store,
                        embedder=embedder)
        yield Indexed(settings, store, files, report)
    finally:
        store.close()


def test_every_format_is_ingested_and_listed(indexed: Indexed) -> None:
    report = indexed.report
    assert statuses(report) == {name: "new" for name in F.GOOD_WRITERS}
    assert len(report.results) == len(F.GOOD_WRITERS)
    assert not report.failed
    assert report.embedded == report.chunks > len(F.GOOD_WRITERS)
    docs = list_documents(indexed.store)
    assert [d.source for d in docs] == sorted(str(p.resolve()) for p in indexed.files.values())
    info = {Path(d.source).name: d for d in docs}
    assert {n: d.type for n, d in info.items()} == F.GOOD_TYPES
    assert {n: d.pages for n, d in info.items()} == {
        n: (3 if n in ("almanac.pdf", "terns.pptx") else None) for n in F.GOOD_WRITERS}
    assert info["almanac.pdf"].title == F.PDF_TITLE
    assert info["orchard.docx"].title == F.DOCX_HEADING
    assert info["terns.pptx"].title == F.PPTX_SLIDES[0][0]
    assert info["volcano.html"].title == F.HTML_TITLE
    assert info["bees.md"].title == F.MD_TITLE
    assert info["bakery.txt"].title == "bakery"
    results = by_name(report)
    for name, d in info.items():
        assert d.document_id == document_id_for(indexed.files[name])
        assert d.chunks == results[name].chunks > 0
        assert d.tokens == results[name].tokens > 0
        assert d.ingested_at[:2] == "20"


def test_stored_chunks_rebuild_each_document(indexed: Indexed, counter: Any) -> None:
    live = check_store(indexed.store)
    assert len(live) == len(F.GOOD_WRITERS)
    size = indexed.settings.chunking.size
    for name, path in indexed.files.items():
        payloads = live[document_id_for(path)]
        loaded = load(path, path.read_bytes())
        assert doc_text_from_chunks(payloads) == "\n\n".join(s.text for s in loaded.sections)
        pages = [s.page for s in loaded.sections]
        for p in payloads:
            assert p["source"] == str(path.resolve())
            assert p["type"] == F.GOOD_TYPES[name]
            assert p["page"] == pages[p["section"]]
            assert p["tokens"] == counter.count(p["text"]) <= size
            assert p["state"] == LIVE
            assert p["doc_chunks"] == len(payloads)
    pdf_pages = {p["page"] for p in live[document_id_for(indexed.files["almanac.pdf"])]}
    assert pdf_pages == {1, 2, 3}


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_search_finds_known_sentences(indexed: Indexed, embedder: Any, mode: str) -> None:
    for name, sentence in F.GOOD_SENTENCES.items():
        hits = search(indexed.store, embedder, sentence, mode)
        assert hits, f"{mode}: nothing found for {name}"
        top = hits[0].payload
        assert sentence in top["text"], f"{mode}: {name}: top hit is {top['source']}"
        assert top["source"] == str(indexed.files[name].resolve())
        if name in ("almanac.pdf", "terns.pptx"):
            assert top["page"] == 2


def test_second_run_changes_nothing(indexed: Indexed, embedder: Any) -> None:
    before = {p.id for p in live_points(indexed.store)}
    report = ingest(indexed.settings, [indexed.files["bees.md"].parent], store=indexed.store,
                    embedder=embedder)
    assert statuses(report) == {name: "unchanged" for name in F.GOOD_WRITERS}
    assert report.embedded == 0
    first = by_name(indexed.report)
    for name, r in by_name(report).items():
        assert (r.chunks, r.tokens) == (first[name].chunks, first[name].tokens)
    assert {p.id for p in live_points(indexed.store)} == before
    check_store(indexed.store)


# -- incremental runs on their own stores ----------------------------------------------------

def test_changed_file_is_updated_and_old_chunks_are_gone(tmp_path: Path, store: Any,
                                                         ingest_paths: Any,
                                                         embedder: Any) -> None:
    files = write_corpus(tmp_path)
    docs = files["bakery.txt"].parent
    assert ingest_paths([docs], store=store).count("new") == len(files)
    bakery = files["bakery.txt"]
    old = doc_points(store, bakery)
    old_hash = old[0].payload["doc_hash"]
    others = {p.id for p in live_points(store)} - {p.id for p in old}

    new_sentence = "The bakery now also sells sourdough loaves with caraway seeds."
    F.write_text(bakery, f"{new_sentence}\n\nThe oven was rebuilt last spring by a mason.\n")
    report = ingest_paths([docs], store=store)
    assert statuses(report) == {n: "updated" if n == "bakery.txt" else "unchanged"
                                for n in files}
    assert 0 < report.embedded <= by_name(report)["bakery.txt"].chunks

    live = check_store(store)
    doc_id = document_id_for(bakery)
    assert store.count(Where(equals={"doc_hash": old_hash})) == 0
    assert store.count(Where(equals={"document_id": doc_id})) == live[doc_id][0]["doc_chunks"]
    assert live[doc_id][0]["doc_hash"] != old_hash
    assert not any(F.TXT_SENTENCE in p["text"] for p in live[doc_id])
    assert {p.id for p in live_points(store)} - {p.id for p in doc_points(store, bakery)} \
        == others
    for mode in ("dense", "keyword"):
        assert new_sentence in search(store, embedder, new_sentence, mode)[0].payload["text"]


def test_chunking_change_reingests_everything(tmp_path: Path, store: Any, settings: Settings,
                                              ingest_paths: Any) -> None:
    files = write_corpus(tmp_path)
    ingest_paths([tmp_path / "docs"], store=store)
    before = check_store(store)
    bigger = settings.model_copy(update={"chunking": settings.chunking.model_copy(
        update={"size": 256, "overlap": 32})})
    report = ingest_paths([tmp_path / "docs"], store=store, settings_=bigger)
    assert statuses(report) == {n: "updated" for n in files}
    after = check_store(store)
    assert after.keys() == before.keys()
    for doc_id, payloads in after.items():
        assert payloads[0]["doc_hash"] != before[doc_id][0]["doc_hash"]
        assert len(payloads) <= len(before[doc_id])
        assert all(p["tokens"] <= 256 for p in payloads)


def test_deleted_file_is_removed_only_with_prune(tmp_path: Path, store: Any,
                                                 ingest_paths: Any) -> None:
    files = write_corpus(tmp_path)
    docs = tmp_path / "docs"
    ingest_paths([docs], store=store)
    gone = files["bees.md"]
    doc_id = document_id_for(gone)
    gone.unlink()

    report = ingest_paths([docs], store=store)
    assert report.count("removed") == 0 and report.count("unchanged") == len(files) - 1
    assert doc_id in {d.document_id for d in list_documents(store)}
    assert store.count(Where(equals={"document_id": doc_id})) > 0

    report = ingest_paths([docs], prune=True, store=store)
    removed = [r for r in report.results if r.status == "removed"]
    assert [(r.path, r.document_id) for r in removed] == [(str(gone.resolve()), doc_id)]
    assert removed[0].chunks > 0
    assert store.count(Where(equals={"document_id": doc_id})) == 0
    assert {Path(d.source).name for d in list_documents(store)} == set(files) - {"bees.md"}
    check_store(store)


def test_prune_leaves_existing_documents_of_other_folders(tmp_path: Path, store: Any,
                                                          ingest_paths: Any) -> None:
    files = write_corpus(tmp_path)
    other = F.write_text(tmp_path / "other" / "ferry.txt",
                         "The ferry crosses the sound twice a day in winter.\n")
    ingest_paths([tmp_path / "docs"], store=store)
    report = ingest_paths([other], prune=True, store=store)
    assert statuses(report) == {"ferry.txt": "new"}
    assert len(list_documents(store)) == len(files) + 1
    # A file renamed inside a folder given to a pruning run: the old name goes.
    renamed = files["bakery.txt"].with_name("bakery-2024.txt")
    files["bakery.txt"].rename(renamed)
    report = ingest_paths([tmp_path / "docs"], prune=True, store=store)
    assert report.count("removed") == 1 and by_name(report)["bakery.txt"].status == "removed"
    assert by_name(report)["bakery-2024.txt"].status == "new"
    assert len(list_documents(store)) == len(files) + 1
    check_store(store)


def test_bad_inputs_fail_by_name_and_good_files_are_ingested(tmp_path: Path, store: Any,
                                                             ingest_paths: Any) -> None:
    files = write_corpus(tmp_path)
    docs = tmp_path / "docs"
    expected: dict[str, tuple[str, ...]] = {}
    for bad in F.BAD_BYTES:
        bad.write(docs / bad.name)
        if not bad.name.endswith(".xyz"):
            expected[bad.name] = bad.reason
    F.write_broken_symlink(docs / "dangling.txt")
    expected["dangling.txt"] = ("cannot read", "no such file")
    if F.write_unreadable(docs / "secret.txt") is not None:  # not when running as root
        expected["secret.txt"] = ("permission denied",)
    if F.write_unreadable_even_for_root(docs / "memory.txt") is not None:
        expected["memory.txt"] = ("cannot read", "input/output error")
    # Named pipes, walked and named explicitly: refused, never read (that would block).
    F.write_fifo(docs / "queue.txt")
    expected["queue.txt"] = ("not a regular file",)
    pipe = F.write_fifo(tmp_path / "elsewhere" / "pipe.md")
    expected["pipe.md"] = ("not a regular file",)
    # Named explicitly: a broken symlink, a missing path, an unsupported file.
    link = F.write_broken_symlink(tmp_path / "elsewhere" / "link.md")
    expected["link.md"] = ("cannot read", "no such file")
    missing = tmp_path / "elsewhere" / "missing.md"
    expected["missing.md"] = ("no such file",)
    unsupported = F.write_unsupported(tmp_path / "elsewhere" / "blob.bin")
    expected["blob.bin"] = ("unsupported file type", ".bin")
    # A directory named like a text file is a folder: walked, and empty.
    folder_txt = F.write_directory_named_txt(tmp_path / "elsewhere" / "folder.txt")

    report = ingest_paths([docs, pipe, link, missing, unsupported, folder_txt], store=store)
    results = by_name(report)
    assert "folder.txt" not in results
    assert {n for n, r in results.items() if r.status == "new"} == set(files)
    # Inside a folder an unsupported file is skipped, not failed.
    assert results["model.xyz"].status == "skipped"
    assert "unsupported" in results["model.xyz"].reason
    assert {Path(r.path).name for r in report.failed} == set(expected)
    for r in report.failed:
        words = expected[Path(r.path).name]
        assert any(w in r.reason.lower() for w in words), (r.path, r.reason)
        assert "\n" not in r.reason
    assert len(report.results) == len(files) + len(expected) + 1
    live = check_store(store)
    assert set(live) == {document_id_for(p) for p in files.values()}


def test_unreadable_file_fails_with_permission_denied(tmp_path: Path,
                                                     ingest_paths: Any) -> None:
    path = F.write_unreadable(tmp_path / "docs" / "secret.txt")
    if path is None:
        pytest.skip("file permissions do not stop this user (root); the unreadable case is "
                    "covered by /proc/self/mem in the batch test")
    F.write_text(tmp_path / "docs" / "open.txt")
    try:
        report = ingest_paths([tmp_path / "docs"])
    finally:
        path.chmod(0o644)
    assert statuses(report) == {"secret.txt": "failed", "open.txt": "new"}
    assert by_name(report)["secret.txt"].reason == "permission denied"


def test_failed_update_keeps_the_previous_version(tmp_path: Path, store: Any,
                                                  ingest_paths: Any, embedder: Any) -> None:
    files = write_corpus(tmp_path)
    docs = tmp_path / "docs"
    ingest_paths([docs], store=store)
    before = check_store(store)
    bakery, almanac = files["bakery.txt"], files["almanac.pdf"]
    good_bakery = bakery.read_bytes()
    F.write_binary_txt(bakery)
    F.write_garbage_pdf(almanac)

    report = ingest_paths([docs], prune=True, store=store)
    results = by_name(report)
    assert results["bakery.txt"].status == "failed"
    assert "binary content" in results["bakery.txt"].reason
    assert results["almanac.pdf"].status == "failed"
    assert "corrupt pdf" in results["almanac.pdf"].reason.lower()
    assert report.count("unchanged") == len(files) - 2
    assert report.count("removed") == 0 and report.embedded == 0
    # The previous versions are still whole, live and searchable.
    assert check_store(store) == before
    assert len(list_documents(store)) == len(files)
    for sentence, path in ((F.TXT_SENTENCE, bakery), (F.PDF_PAGES[1][0], almanac)):
        top = search(store, embedder, sentence, "dense")[0].payload
        assert sentence in top["text"] and top["source"] == str(path.resolve())

    # Restoring the old bytes brings the file back to 'unchanged' without embedding.
    bakery.write_bytes(good_bakery)
    report = ingest_paths([bakery], store=store)
    assert statuses(report) == {"bakery.txt": "unchanged"} and report.embedded == 0


def test_file_over_size_limit_is_refused(tmp_path: Path, ingest_paths: Any,
                                         make_settings: Any) -> None:
    settings = make_settings(tmp_path / "data", ingest={"max_file_mb": 0.002})  # ~2 KB
    small = F.write_text(tmp_path / "docs" / "small.txt")
    big = F.write_text(tmp_path / "docs" / "big.txt", F.TXT_SENTENCE * 60)
    assert big.stat().st_size > 0.002 * 2**20 > small.stat().st_size
    report = ingest_paths([tmp_path / "docs"], settings_=settings)
    results = by_name(report)
    assert results["small.txt"].status == "new"
    assert results["big.txt"].status == "failed"
    assert "ingest.max_file_mb" in results["big.txt"].reason


def test_empty_folder_and_only_unsupported_files(tmp_path: Path, settings: Settings,
                                                 ingest_paths: Any) -> None:
    (tmp_path / "empty").mkdir()
    F.write_unsupported(tmp_path / "odd" / "a.xyz")
    (tmp_path / "odd" / ".hidden.txt").write_text("hidden files are not walked")
    report = ingest_paths([tmp_path / "empty", tmp_path / "odd"])
    assert [(Path(r.path).name, r.status) for r in report.results] == [("a.xyz", "skipped")]
    assert report.embedded == 0 and not report.failed
    # Nothing was embedded, so no collection was created on disk.
    assert not (settings.store_path / "edge_config.json").exists()


def test_delete_document_by_path_id_and_prefix(tmp_path: Path, store: Any,
                                               ingest_paths: Any) -> None:
    files = write_corpus(tmp_path)
    ingest_paths([tmp_path / "docs"], store=store)
    count = len(files)

    cwd = os.getcwd()
    os.chdir(files["bees.md"].parent)
    try:  # a relative path, as a user would type it
        info = delete_document(store, "bees.md")
    finally:
        os.chdir(cwd)
    assert info.source == str(files["bees.md"].resolve())
    doc_id = document_id_for(files["terns.pptx"])
    assert delete_document(store, doc_id).source.endswith("terns.pptx")
    prefix = document_id_for(files["tides.py"])[:8]
    assert delete_document(store, prefix).source.endswith("tides.py")
    for name in ("bees.md", "terns.pptx", "tides.py"):
        assert store.count(Where(equals={"document_id": document_id_for(files[name])})) == 0
    assert len(list_documents(store)) == count - 3
    with pytest.raises(NotFoundError):
        delete_document(store, "no-such-document")
    with pytest.raises(NotFoundError):
        delete_document(store, str(files["bees.md"]))  # already deleted
    check_store(store)


def test_store_is_exclusive_per_process(settings: Settings, store: Any) -> None:
    from core.errors import StoreLockedError

    with pytest.raises(StoreLockedError, match="in use by another process"):
        open_store(settings)
    store.close()
    again = open_store(settings)  # released on close
    again.close()


def test_copied_folder_gives_distinct_documents(tmp_path: Path, store: Any,
                                                ingest_paths: Any) -> None:
    files = write_corpus(tmp_path)
    shutil.copytree(tmp_path / "docs", tmp_path / "copy")
    report = ingest_paths([tmp_path / "docs", tmp_path / "copy"], store=store)
    assert report.count("new") == 2 * len(files)
    # Identical chunk texts are embedded once per run.
    assert report.embedded == report.chunks // 2
    live = check_store(store)
    assert len(live) == 2 * len(files)


# -- a run that dies at the two dangerous points of a commit -----------------------------------

class _Died(BaseException):
    """Stands for SIGKILL: nothing after it runs (BaseException, so no handler catches it)."""


class DyingStore:
    """The real store, except that the run stops dead at one exact point of the commit, which a
    real signal cannot hit reliably: before the staged version is flipped live, or between
    that flip and the removal of the previous version."""

    def __init__(self, store: Any, point: str):
        self.store, self.point = store, point

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        if self.point == "before-commit":
            raise _Died
        self.store.set_payload(where, payload)

    def delete(self, where: Where) -> None:
        if self.point == "before-cleanup" and where.not_equals:
            raise _Died
        self.store.delete(where)


@pytest.mark.parametrize("point", ["before-commit", "before-cleanup"])
def test_run_dying_mid_commit_is_repaired_by_the_next_run(tmp_path: Path, store: Any,
                                                          ingest_paths: Any, embedder: Any,
                                                          point: str) -> None:
    paths = F.write_many_text_files(tmp_path / "docs", files=6, sentences=6, seed=5)
    ingest_paths([tmp_path / "docs"], store=store)
    old = check_store(store)
    for p in paths:
        p.write_text(p.read_text() + "\nA line added in the second edition.\n")
        with pytest.raises(_Died):
            ingest_paths([p], store=DyingStore(store, point))
    if point == "before-commit":
        # The old versions are still the live ones, whole and alone.
        assert check_store(store, allow_staged=True) == old
    report = ingest_paths([tmp_path / "docs"], store=store)
    assert statuses(report) == {p.name: "updated" for p in paths}
    new = check_store(store)  # no duplicate chunk, one version per document, nothing staged
    assert new.keys() == old.keys()
    for doc_id, payloads in new.items():
        assert payloads[0]["doc_hash"] != old[doc_id][0]["doc_hash"]
        assert "second edition" in payloads[-1]["text"]
    assert store.count(Where()) == sum(len(v) for v in new.values())


def test_new_store_keeps_payloads_in_the_cached_tier(tmp_path: Path, settings: Settings,
                                                      ingest_paths: Any) -> None:
    """Every search reads hundreds of payloads: a new embedded store asks Qdrant to warm
    them into memory when it opens (its default for payloads is the cold tier)."""
    (tmp_path / "one.txt").write_text("The ferry leaves the north pier at seven.\n")
    ingest_paths([tmp_path / "one.txt"])
    config = json.loads((settings.store_path / "edge_config.json").read_text())
    assert config["payload_memory"] == "cached"
