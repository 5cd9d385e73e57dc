"""`rag ingest --ray` on a real local Ray cluster (2 CPUs, started once for the module) into
a real store through qdrant-client (its local mode stands in for the Qdrant server): the
same files give the same points as the single-process pipeline, reruns skip and prune, bad
files fail by name, and an interrupted job leaves whole documents that a rerun completes
(skipping them, updating and pruning as any rerun does)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fixtures_docs as F
import fixtures_formats as FF
import pytest
from ingest_helpers import check_store, rag

from core.errors import SettingsError
from core.settings import Settings
from ingest.pipeline import FileResult, IngestReport, Progress, document_id_for, ingest
from ingest.ray_pipeline import connected, ingest_on_ray
from ingest.store import Where
from ingest.store.server import ServerStore

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with connected("local", num_cpus=2, _node_ip_address="127.0.0.1") as ray:
        yield ray


def server_store() -> ServerStore:
    from qdrant_client import QdrantClient

    return ServerStore(QdrantClient(location=":memory:"), "docs")


def on_ray(settings: Settings, paths: list[Path], store: Any, prune: bool = False,
           progress: Progress | None = None) -> IngestReport:
    return ingest_on_ray(settings, paths, "auto", prune=prune, progress=progress, store=store)


def results(report: IngestReport) -> dict[str, tuple[str, str, int, int]]:
    return {Path(r.path).name: (r.status, r.reason, r.chunks, r.tokens) for r in report.results}


def points(store: Any) -> dict[str, dict[str, Any]]:
    return {p.id: {k: v for k, v in p.payload.items() if k != "ingested_at"}
            for p in store.scroll(Where())}


def corpus(root: Path) -> list[Path]:
    """Every good format, the bad ones, and an e-mail whose attachment is a document."""
    docs = root / "docs"
    F.write_good_corpus(docs)
    for bad in F.BAD_BYTES:
        bad.write(docs / bad.name)
    FF.write_eml(docs / "estimate.eml", pdf=F.write_pdf(root / "estimate.pdf").read_bytes())
    return [docs, F.write_unsupported(root / "blob.bin"), root / "missing.md"]


@pytest.mark.slow
def test_ray_ingest_stores_what_one_process_stores(cluster: Any, tmp_path: Path,
                                                   make_settings: Any, embedder: Any,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    paths = corpus(tmp_path)
    settings = make_settings(tmp_path / "data")
    ray_store, one_store = server_store(), server_store()
    capfd.readouterr()
    report = on_ray(settings, paths, ray_store)
    printed = capfd.readouterr()
    assert printed.out == printed.err == "", "Ray wrote to the terminal"
    single = ingest(settings, paths, store=one_store, embedder=embedder)

    assert results(report) == results(single)
    assert report.count("new") == len(F.GOOD_WRITERS) + 2  # the e-mail and its PDF
    assert {Path(r.path).name for r in report.failed} == {
        b.name for b in F.BAD_BYTES if not b.name.endswith(".xyz")} | {"blob.bin", "missing.md"}
    assert all("\n" not in r.reason for r in report.failed)
    assert report.chunks == single.chunks > len(F.GOOD_WRITERS)
    assert report.embedded == single.embedded
    assert points(ray_store) == points(one_store)
    assert check_store(ray_store).keys() == check_store(one_store).keys()
    signatures = {p.payload["embedding"] for p in ray_store.scroll(Where())}
    assert signatures == {embedder.signature}


class StopAfterCommits(Progress):
    """Ctrl-C, as the driver sees it, once `commits` documents are live."""

    def __init__(self, commits: int):
        self.left = commits

    def file_done(self, result: FileResult) -> None:
        if result.status == "new":
            self.left -= 1
            if self.left == 0:
                raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupted_ray_job_leaves_whole_documents_and_a_rerun_finishes_it(
        cluster: Any, tmp_path: Path, make_settings: Any) -> None:
    docs = tmp_path / "docs"
    files = F.write_many_text_files(docs, files=10, sentences=16, seed=10)
    settings = make_settings(tmp_path / "data", embedding={"batch_size": 8})
    store = server_store()
    with pytest.raises(KeyboardInterrupt):
        on_ray(settings, [docs], store, progress=StopAfterCommits(4))
    live = check_store(store, allow_staged=True)
    assert 4 <= len(live) < len(files)
    committed = [f for f in files if document_id_for(f) in live]
    edited, deleted = committed[:2]
    edited.write_text("The ferry leaves the north pier at dawn.\n" * 30)
    deleted.unlink()

    # The rerun skips what was committed, and updates and prunes as any rerun does.
    report = on_ray(settings, [docs], store, prune=True)
    status = {Path(r.path).name: r.status for r in report.results}
    assert status == {edited.name: "updated", deleted.name: "removed",
                      **{f.name: "unchanged" for f in committed[2:]},
                      **{f.name: "new" for f in files if f not in committed}}
    final = check_store(store)  # no staged leftovers, no duplicates
    assert set(final) == {document_id_for(f) for f in files if f != deleted}
    for f in committed[2:]:
        assert final[document_id_for(f)] == live[document_id_for(f)]
    assert store.count(Where()) == sum(len(v) for v in final.values())


def test_edge_store_is_refused_in_one_line(tmp_path: Path, settings: Settings) -> None:
    F.write_text(tmp_path / "a.txt")
    with pytest.raises(SettingsError) as caught:
        ingest_on_ray(settings, [tmp_path / "a.txt"], "local")
    assert str(caught.value).startswith("ingest.ray_address: Ray ingests into a Qdrant server")
    assert "\n" not in str(caught.value)


def test_without_ray_the_extra_to_install_is_named(tmp_path: Path, settings: Settings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # an import of it fails, as when absent
    store = server_store()
    with pytest.raises(SettingsError, match=r"needs Ray: pip install 'rag-long-context\[ray\]'"):
        on_ray(settings, [tmp_path], store)


@pytest.mark.slow
def test_cli_ray_flag_without_a_server_fails_in_one_line(tmp_path: Path, settings: Settings) -> None:
    F.write_text(tmp_path / "docs" / "a.txt")
    r = rag("ingest", "--ray", "local", tmp_path / "docs", data_dir=settings.data_dir,
            cwd=tmp_path, settings=settings)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1 and "store.url" in lines[0], lines
