"""`rag ingest --ray ADDRESS`: the pipeline of ingest/pipeline.py as Ray Data stages.

The driver lists and hashes the files and decides, against the store, which are unchanged,
skipped or failed (Ingestor.check: the single-process pipeline's own code). The files left
to read go to the cluster: each is parsed (OCR included) and chunked by a CPU task
(`flat_map`), and the chunks are embedded by a pool of actors (`map_batches` with a class:
one model load per actor, a GPU each, or a share of one, when the cluster has GPUs and
embedding.backend is torch). The stream comes back to the driver in order
(`preserve_order`), and the driver writes it as the single-process pipeline does
(Ingestor._drain: staged points, one flip live per document, children before their
parent), so a killed job leaves the store as consistent as a killed `rag ingest`, and the
next run finishes it without a duplicate. Writes happen in the driver only: the store is a
Qdrant server (qdrant-client), never the embedded Edge store, which belongs to one process.
"""

from __future__ import annotations

import functools
import logging
import pickle
import warnings
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import RagError, SettingsError
from core.settings import EmbeddingSettings, Settings
from ingest.chunker import Chunk
from ingest.embed_cache import CachedEmbedder
from ingest.loaders import LoadedDocument
from ingest.payload import ChunkPayload
from ingest.pipeline import (
    Ingestor,
    IngestReport,
    Progress,
    Status,
    _Close,
    _Event,
    _Open,
    _Prepared,
)
from ingest.store import Sparse, Store

if TYPE_CHECKING:
    import numpy as np

FIELD = "ingest.ray_address"
INSTALL = "pip install 'rag-long-context[ray]'"
_PROJECT = Path(__file__).resolve().parents[1]  # what a local cluster's workers import
_CHUNK, _OPEN, _CLOSE, _OTHER = "chunk", "open", "close", "other"
_FILES_PER_BLOCK = 4  # files one parse task reads in turn; more blocks, more parallel tasks


def ingest_on_ray(settings: Settings, paths: list[Path], address: str, prune: bool = False,
                  progress: Progress | None = None, store: Store | None = None) -> IngestReport:
    """Ingests `paths` on the Ray cluster at `address` ('local': a new one on this machine;
    'auto': the one `ray start` runs here; ray://HOST:10001 through Ray Client) into the
    configured Qdrant server (or `store`); the report is the single-process pipeline's."""
    if store is None and not settings.store.url:
        raise SettingsError(FIELD, _EDGE_REFUSED)
    with connected(address):
        from ingest.store import open_store

        owned = store is None
        store = store or open_store(settings)
        try:
            if store.kind == "edge":
                raise SettingsError(FIELD, _EDGE_REFUSED)
            return RayIngestor(settings, store).run(paths, prune=prune, progress=progress)
        finally:
            if owned:
                store.close()


_EDGE_REFUSED = ("Ray ingests into a Qdrant server: set store.url (the embedded Qdrant Edge "
                 "store is one process's, on one machine)")


def _ray() -> Any:
    try:
        import ray
        import ray.data  # Ray Data comes with the extra's ray[data]
    except ImportError:
        raise SettingsError(FIELD, f"needs Ray: {INSTALL}") from None
    return ray


@contextmanager
def connected(address: str, **local: Any) -> Iterator[Any]:
    """Ray, connected to `address` for the block (a cluster this process already joined is
    used as it is and left running). Ray's own logs stay in its log files: nothing of them
    reaches the terminal. `local`: ray.init's resources for a new local cluster."""
    ray = _ray()
    _quiet(ray)
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = dict(logging_level=logging.ERROR, log_to_driver=False,
                                  configure_logging=True)
    if not address.startswith("ray://"):
        # A cluster on this machine: its workers import this checkout, as the driver does.
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": str(_PROJECT)}}
    if address == "local":
        kwargs.update(include_dashboard=False, **local)
    try:
        ray.init(address=address, **kwargs)
    except RagError:
        raise
    except Exception as exc:  # ConnectionError, a bad address...: one line
        raise SettingsError(FIELD, f"cannot connect to Ray at {address!r}: "
                            f"{' '.join(str(exc).split())[:200]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _quiet(ray: Any) -> None:
    """Ray Data's progress bars and start lines off; Ray's loggers write errors to their
    log files only (a logger left with no handler would fall back to stderr)."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray", "ray.data", "ray.util", "ray._private"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        logger.propagate = False
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                    handler, logging.FileHandler):
                logger.removeHandler(handler)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())


class RayIngestor(Ingestor):
    """The Ingestor whose files are read and embedded on the Ray cluster; checks,
    writes, commits and prune are its parent's."""

    def __init__(self, settings: Settings, store: Store):
        self.vectors = ClusterVectors()
        super().__init__(settings, store)
        # The cluster's embedders made the vectors: the driver's embedding cache is not asked.
        self._embedder = CachedEmbedder(self.vectors, Path(), 0)

    def _write_all(self, files: list[tuple[Path, bool]], live: dict[str, ChunkPayload],
                   seen: set[str], report: IngestReport, progress: Progress) -> None:
        checked = [self.check(path, explicit, live) for path, explicit in files]
        decided = [prep for prep, status in checked if status is None]
        todo = [(prep, status) for prep, status in checked if status is not None]
        batches = self._batches(todo)
        replay = Replay(batches if todo else iter(()), self.vectors)
        try:
            self._drain(chain(decided, replay), replay.idle, seen, report, progress)
        finally:
            batches.close()  # an interrupted job stops the cluster's work now, not at exit

    def _write(self, items: list[tuple[_Prepared, Chunk]],
               cache: dict[str, tuple[Any, Sparse]], progress: Progress) -> int:
        try:
            return super()._write(items, cache, progress)
        finally:
            self.vectors.release(chunk.text for _, chunk in items)

    def _batches(self, todo: list[tuple[_Prepared, Status]]) -> Generator[dict[str, Any], None, None]:
        """The cluster's output for the files to read, in their order, a batch at a time."""
        ray = _ray()
        s = self.settings
        items = [{"file": pickle.dumps(item)} for item in todo]
        embedders, gpus = embedder_pool(ray.cluster_resources(), s)
        with warnings.catch_warnings():  # max_restarts: deprecated as a keyword from Ray 2.64 on
            warnings.simplefilter("ignore")
            ds = self._dataset(ray, items, embedders, gpus)
        try:
            yield from ds.iter_batches(batch_size=s.embedding.batch_size, batch_format="numpy",
                                       prefetch_batches=2)
        except ray.exceptions.RayError as exc:
            raise _one_line(exc) from None

    def _dataset(self, ray: Any, items: list[dict[str, bytes]], embedders: int,
                 gpus: float) -> Any:
        """The stages: parse tasks over the files, then the embedder actors."""
        s = self.settings
        blocks = max(1, -(-len(items) // _FILES_PER_BLOCK))
        embedding = _actor_embedding(s.embedding, gpus, s.ingest.ray_embedder_cpus)
        resources = {"num_gpus": gpus} if gpus else {"num_cpus": s.ingest.ray_embedder_cpus}
        # In file order, so the driver commits as one process does (children, then parent).
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        files = ray.data.from_items(items, override_num_blocks=blocks)
        chunks = files.flat_map(functools.partial(parse_file, settings=s), num_cpus=1)
        return chunks.map_batches(
            ClusterEmbedder, fn_constructor_kwargs={"settings": embedding},
            batch_size=s.embedding.batch_size, batch_format="numpy", concurrency=embedders,
            # A lost embedder fails the job (a rerun finishes it): with restarts, Ray's core
            # logs a warning to the terminal.
            max_restarts=0, **resources)


def _one_line(exc: BaseException) -> RagError:
    """A failure on the cluster as the error a user reads: ours as it was raised, any
    other as one line."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, RagError):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = " ".join(str(exc).split("\n")[0].split())[:200]
    return RagError(f"Ray ingest failed: {type(exc).__name__}: {text}")


def embedder_pool(resources: dict[str, float], settings: Settings) -> tuple[int, float]:
    """(embedder actors, GPUs each): ingest.ray_embedders, or one per GPU share
    (ingest.ray_gpus_per_embedder) when the cluster has GPUs and embedding.backend is torch,
    else one per ingest.ray_embedder_cpus on half the CPUs (the other half parse)."""
    s = settings.ingest
    gpus = resources.get("GPU", 0.0)
    if gpus and settings.embedding.backend == "torch":
        return s.ray_embedders or max(1, int(gpus / s.ray_gpus_per_embedder)), s.ray_gpus_per_embedder
    cpus = int(resources.get("CPU", 1))
    return s.ray_embedders or max(1, cpus // (2 * s.ray_embedder_cpus)), 0.0


def _actor_embedding(settings: EmbeddingSettings, gpus: float, cpus: int) -> EmbeddingSettings:
    """An embedder actor's settings: on its GPU, or with as many threads as its CPUs."""
    if gpus:
        return settings.model_copy(update={"device": "cuda"})
    return settings.model_copy(update={"threads": settings.threads or cpus})


# -- on the cluster ------------------------------------------------------------------------

_PARSERS: dict[str, Ingestor] = {}


def _parser(settings: Settings) -> Ingestor:
    """One parser per worker process and settings (tokenizer and OCR loaded once)."""
    key = settings.model_dump_json()
    if key not in _PARSERS:
        _PARSERS.clear()
        _PARSERS[key] = Ingestor(settings, store=None)  # type: ignore[arg-type]  # reads files only
    return _PARSERS[key]


def parse_file(row: dict[str, Any], settings: Settings) -> Iterator[dict[str, Any]]:
    """A Ray task: one checked file read, OCR'd and chunked into rows (see `to_row`)."""
    prep, status = pickle.loads(row["file"])
    parser = _parser(settings)
    if parser.load_file(prep, Progress()):
        prep.result.status = status
    for event in parser.document_events(prep, Progress()):
        yield to_row(event)


def to_row(event: _Event) -> dict[str, Any]:
    """One pipeline event as a row: its kind, the text to embed, the event pickled (a
    chunk's with its document id only; a document's without its loaded text)."""
    if isinstance(event, tuple):
        prep, chunk = event
        return {"kind": _CHUNK, "text": chunk.text,
                "event": pickle.dumps((prep.result.document_id, chunk))}
    if isinstance(event, _Open):
        doc = event.prep.doc
        assert doc is not None
        light = LoadedDocument(doc.title, doc.type, pages=doc.pages)
        return {"kind": _OPEN, "text": "", "event": pickle.dumps(_Open(replace(event.prep, doc=light)))}
    if isinstance(event, _Close):
        return {"kind": _CLOSE, "text": "", "event": pickle.dumps(_Close(replace(event.prep, doc=None)))}
    return {"kind": _OTHER, "text": "", "event": pickle.dumps(event)}


class ClusterEmbedder:
    """A Ray actor: the configured embedder, loaded once, embedding the chunk rows of each
    batch; its signature goes with the vectors."""

    def __init__(self, settings: EmbeddingSettings):
        from ingest.embedder import Embedder

        self.embedder = Embedder(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        kinds = batch["kind"]
        rows = [i for i, kind in enumerate(kinds) if kind == _CHUNK]
        vectors = [b""] * len(kinds)
        if rows:
            made = self.embedder.embed([str(batch["text"][i]) for i in rows])
            for i, vector in zip(rows, made, strict=True):
                vectors[i] = np.asarray(vector, dtype=np.float32).tobytes()
        return {"kind": kinds, "event": batch["event"],
                "vector": np.array(vectors, dtype=object),
                "signature": np.array([self.embedder.signature] * len(kinds), dtype=object)}


# -- back on the driver ----------------------------------------------------------------------

class ClusterVectors:
    """The embedder's interface for the driver's writes: the vectors the cluster made, by
    text, each kept until the chunks that carry it are written."""

    def __init__(self) -> None:
        self.dim = 0
        self.signature: str | None = None
        self._by_text: dict[str, np.ndarray] = {}
        self._holders: Counter[str] = Counter()

    def add(self, text: str, vector: np.ndarray, signature: str) -> None:
        self.dim, self.signature = len(vector), signature
        self._by_text[text] = vector
        self._holders[text] += 1

    def release(self, texts: Iterable[str]) -> None:
        for text in texts:
            self._holders[text] -= 1
            if self._holders[text] <= 0:
                del self._holders[text]
                self._by_text.pop(text, None)

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        return np.stack([self._by_text[t] for t in texts])


class Replay:
    """The cluster's rows back as the pipeline's events; a document's events share one
    _Prepared, as the single-process pipeline's do. `idle` is true at the end of each
    batch, so what is pending is written then."""

    def __init__(self, batches: Iterator[dict[str, Any]], vectors: ClusterVectors):
        self.batches = batches
        self.vectors = vectors
        self.left = 0
        self.open: dict[str, _Prepared] = {}

    def idle(self) -> bool:
        return self.left == 0

    def __iter__(self) -> Iterator[_Event]:
        import numpy as np

        for batch in self.batches:
            self.left = len(batch["kind"])
            for kind, blob, vector, signature in zip(batch["kind"], batch["event"],
                                                     batch["vector"], batch["signature"],
                                                     strict=True):
                self.left -= 1
                event = pickle.loads(blob)
                if kind == _CHUNK:
                    doc_id, chunk = event
                    self.vectors.add(chunk.text, np.frombuffer(vector, dtype=np.float32),
                                     str(signature))
                    yield self.open[doc_id], chunk
                elif kind == _OPEN:
                    self.open[event.prep.result.document_id] = event.prep
                    yield event
                elif kind == _CLOSE:
                    prep = self.open.pop(event.prep.result.document_id)
                    prep.result = event.prep.result
                    yield _Close(prep)
                else:
                    yield event
