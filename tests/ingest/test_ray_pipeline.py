"""`rag ingest --ray` on a real local Ray cluster (2 CPUs, started once for the module) into
a real store through qdrant-client (its local mode stands in for the Qdrant server): the
same files give the same points as the single-process pipeline, reruns skip and prune, bad
files fail by name, and a job whose driver is killed midway leaves whole documents that a
rerun completes (skipping them, updating and pruning as any rerun does)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fixtures_docs as F
import fixtures_formats as FF
import pytest
from ingest_helpers import ROOT, check_store, rag, rag_env

from core.errors import SettingsError
from core.settings import Settings
from ingest.pipeline import IngestReport, Progress, document_id_for, ingest
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


# The driver of a Ray job in a process of its own, writing to a local-mode store on disk; it
# prints a line per committed document, so the test can kill it midway.
DRIVER = """
import sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from qdrant_client import QdrantClient
from core.settings import load_settings
from ingest.pipeline import Progress
from ingest.ray_pipeline import ingest_on_ray
from ingest.store.server import ServerStore

class Committed(Progress):
    def file_done(self, result):
        print("committed", result.status, flush=True)

address, store_dir, data_dir, docs = sys.argv[1:]
settings = load_settings(data_dir=data_dir, chunking={"size": 64, "overlap": 8},
                         embedding={"batch_size": 8})
store = ServerStore(QdrantClient(path=store_dir), "docs")
ingest_on_ray(settings, [Path(docs)], address, store=store, progress=Committed())
"""


def kill_after_commits(address: str, store_dir: Path, settings: Settings, docs: Path,
                       commits: int) -> int:
    """Runs DRIVER and SIGKILLs it once `commits` documents are live; the lines it printed."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(store_dir),
                             str(settings.data_dir), str(docs)], cwd=ROOT,
                            env={**rag_env(), "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen += line.startswith("committed new")
            if seen >= commits:
                proc.send_signal(signal.SIGKILL)
                break
        assert proc.wait(timeout=120) == -signal.SIGKILL, "the job ended before it was killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return seen


@pytest.mark.slow
def test_killed_ray_driver_leaves_whole_documents_and_a_rerun_finishes_it(
        cluster: Any, tmp_path: Path, make_settings: Any) -> None:
    docs = tmp_path / "docs"
    files = F.write_many_text_files(docs, files=10, sentences=16, seed=10)
    settings = make_settings(tmp_path / "data", embedding={"batch_size": 8})
    address = cluster.get_runtime_context().gcs_address
    assert kill_after_commits(address, tmp_path / "store", settings, docs, commits=3) == 3

    from qdrant_client import QdrantClient

    store = ServerStore(QdrantClient(path=str(tmp_path / "store")), "docs")
    live = check_store(store, allow_staged=True)
    assert 3 <= len(live) < len(files)
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
    store.close()


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
