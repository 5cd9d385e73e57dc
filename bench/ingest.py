"""Ingestion throughput in chunks per second: our whole pipeline against the bare embedding
model on the same chunks, and against llama-index's VectorStoreIndex.from_documents.

Rows (each the median of --repeat runs, interleaved so drift hits every row alike):

  bare embedding  Embedder.embed() on exactly the chunk texts our loaders + chunker make from
                  --data, in one call, at the configured batch size: the ceiling for any
                  pipeline that uses this model on this machine.
  pipeline        ingest.pipeline.ingest() into a fresh embedded Qdrant Edge store in a
                  scratch data_dir: discover, read, parse, chunk, embed, BM25, upsert, commit,
                  optimize, close.
  llama-index     SimpleDirectoryReader + VectorStoreIndex.from_documents (default node
                  parser, SentenceSplitter) with the same weights (HuggingFaceEmbedding on the
                  shipped model directory, same batch size) into qdrant_client's local mode.
                  Formats SimpleDirectoryReader cannot parse by itself offline (PDF, DOCX,
                  PPTX, HTML without llama-index-readers-file) go through our loaders, given
                  to it as file_extractor; the output says which files took which path.

Both embedders are loaded and warmed up before any timing, so model load is excluded from
every row. The user's store is never touched: everything is written under --work (default: a
temporary folder, removed at the end).

    .venv/bin/python bench/ingest.py --data ../shared/data/docs
    .venv/bin/python bench/ingest.py --data ../shared/data/niah/essays --repeat 1 --profile

The target: pipeline / bare embedding >= 0.9. --profile adds one instrumented pipeline run
and prints where its time goes (parsing, tokenizing, embedding, BM25, upsert, commit, ...).
The llama-index row needs `make bench-deps`; --no-llama skips it.
"""

from __future__ import annotations

if __name__ == "ingest":
    # bench/ is first on sys.path for any script run from it, and there this file would hide
    # the project's `ingest` package: hand the import over to the real package.
    import importlib.util as _ilu
    import sys as _sys
    from pathlib import Path as _Path

    _pkg = _Path(__file__).resolve().parents[1] / "ingest"
    _spec = _ilu.spec_from_file_location("ingest", _pkg / "__init__.py",
                                         submodule_search_locations=[str(_pkg)])
    assert _spec is not None and _spec.loader is not None
    _real = _ilu.module_from_spec(_spec)
    _sys.modules["ingest"] = _real
    _spec.loader.exec_module(_real)

import argparse
import contextlib
import gc
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = 0.9
# Types our loaders parse from binary or markup; plain-text types are left to llama-index.
PARSED_TYPES = {"pdf", "docx", "pptx", "html"}


def _fix_path() -> None:
    """The project root before bench/ on sys.path (bench/ingest.py must not hide `ingest`)."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(ROOT))
    sys.path.append(str(HERE))


@dataclass
class Row:
    what: str
    chunks: int = 0
    runs: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def rate(self) -> float:
        return self.chunks / self.seconds if self.runs and self.seconds > 0 else float("nan")


# -- inputs ----------------------------------------------------------------------------------
def find_files(data: Path, limit: int | None, follow_symlinks: bool) -> list[Path]:
    """Files of --data that our loaders take, in the pipeline's own order."""
    from ingest.loaders import file_type
    from ingest.pipeline import discover

    files = [p for p, _ in discover([data], follow_symlinks) if file_type(p) is not None]
    return files[:limit] if limit else files


def chunk_texts(settings: Any, files: list[Path]) -> tuple[list[str], list[str]]:
    """(chunk texts, failures) exactly as the pipeline makes them: same loaders, same chunker
    and tokenizer, same settings."""
    from core.errors import LoadError
    from ingest.chunker import Chunker
    from ingest.loaders import load
    from ingest.tokenizer import load_tokenizer

    chunker = Chunker(load_tokenizer(settings.tokenizer.path), settings.chunking.size,
                      settings.chunking.overlap)
    texts: list[str] = []
    failed: list[str] = []
    for path in files:
        try:
            doc = load(path, path.read_bytes())
        except (LoadError, OSError) as exc:
            failed.append(f"{path.name}: {exc}")
            continue
        texts += [c.text for c in chunker.split(doc.sections)]
    return texts, failed


def cpu_times() -> tuple[float, float, float] | None:
    """(wall, CPU seconds busy on the whole machine, CPU seconds of this process); None where
    /proc/stat is missing."""
    import resource

    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # up to steal, not guests
    own = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), busy, own.ru_utime + own.ru_stime


def other_cpu_share(start: tuple[float, float, float] | None) -> float | None:
    """Share of the machine's CPUs that other processes used since `start`."""
    end = cpu_times()
    if start is None or end is None or end[0] <= start[0]:
        return None
    others = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, others / ((end[0] - start[0]) * (os.cpu_count() or 1)))


# -- our pipeline ----------------------------------------------------------------------------
def run_pipeline(settings: Any, files: list[Path], embedder: Any,
                 data_dir: Path) -> tuple[float, Any]:
    from ingest.pipeline import ingest

    run_settings = settings.model_copy(update={"data_dir": data_dir})
    started = time.perf_counter()
    report = ingest(run_settings, files, embedder=embedder)
    return time.perf_counter() - started, report


def warm_up_pipeline(settings: Any, embedder: Any, work: Path) -> None:
    """One tiny ingest first, so lazy imports and first-call costs stay out of the timings."""
    src = work / "warm-up-src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "warm-up.txt").write_text("A short text. It warms up the store and the encoder.\n")
    run_pipeline(settings, [src / "warm-up.txt"], embedder, work / "warm-up")


# -- llama-index baseline --------------------------------------------------------------------
@contextlib.contextmanager
def no_network(attempts: list[str]) -> Iterator[None]:
    """Any TCP/UDP connection or DNS lookup fails at once (and is recorded): the baseline must
    run offline, and a silent download would distort its timing."""
    import socket

    connect, lookup = socket.socket.connect, socket.getaddrinfo

    def refuse_connect(self: socket.socket, address: Any) -> Any:
        if self.family == getattr(socket, "AF_UNIX", None):
            return connect(self, address)
        attempts.append(f"connect {address}")
        raise OSError(f"bench/ingest.py: network disabled (connect {address})")

    def refuse_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(f"getaddrinfo {host}")
        raise OSError(f"bench/ingest.py: network disabled (lookup {host})")

    socket.socket.connect = refuse_connect  # type: ignore[method-assign]
    socket.getaddrinfo = refuse_lookup  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.getaddrinfo = lookup


class LlamaBaseline:
    """llama-index set up once (imports, settings, embedding model, warm-up); `run` is one
    timed ingestion into a fresh local-mode Qdrant collection."""

    def __init__(self, settings: Any, files: list[Path], reader: str, work: Path):
        for var in ("TIKTOKEN_CACHE_DIR", "NLTK_DATA"):
            # llama-index falls back to its bundled tiktoken/NLTK data only while these are
            # unset; set elsewhere, it would try to download into them.
            if os.environ.pop(var, None) is not None:
                print(f"note: {var} unset for the llama-index baseline", file=sys.stderr)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.network: list[str] = []
        self.work = work
        self.files = files
        with no_network(self.network), contextlib.redirect_stdout(sys.stderr), \
                warnings.catch_warnings():
            # qdrant_client's local mode ignores the payload indexes llama-index asks for.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            self._setup(settings, reader)

    def _setup(self, settings: Any, reader: str) -> None:
        from llama_index.core import Document, SimpleDirectoryReader, VectorStoreIndex
        from llama_index.core import Settings as LlamaSettings
        from llama_index.core.readers.base import BaseReader
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        from core.settings import SHIPPED
        from ingest.embedder import shipped_model_path
        from ingest.loaders import file_type, load
        from ingest.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(settings.tokenizer.path).tokenizer

        def llama_tokens(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False).ids

        LlamaSettings.llm = None  # MockLLM: nothing may call OpenAI
        LlamaSettings.tokenizer = llama_tokens  # not tiktoken (no download, our token counts)

        class OurLoaders(BaseReader):
            """ingest.loaders as a llama-index reader: one Document per section (PDF page,
            slide), as llama-index's own PDF and PPTX readers return."""

            def load_data(self, file: Any, extra_info: dict | None = None,
                          **kwargs: Any) -> list[Any]:
                path = Path(file)
                doc = load(path, path.read_bytes())
                docs = []
                for section in doc.sections:
                    meta = dict(extra_info or {})
                    if section.page is not None:
                        meta["page_label"] = str(section.page)
                    docs.append(Document(text=section.text, metadata=meta))
                return docs

        own = SimpleDirectoryReader.supported_suffix_fn()  # {} without llama-index-readers-file
        ours = OurLoaders()
        self.extractor: dict[str, Any] = {}
        self.by_llama: list[str] = []
        for path in self.files:
            suffix = path.suffix.lower()
            if reader == "ours" or (file_type(path) in PARSED_TYPES and suffix not in own):
                self.extractor[suffix] = ours
            else:
                self.by_llama.append(suffix)
        self.readers_file = bool(own)
        model_dir = (shipped_model_path() if settings.embedding.model == SHIPPED
                     else Path(settings.embedding.model))
        self.embed_model = HuggingFaceEmbedding(
            model_name=str(model_dir), device=settings.embedding.device,
            embed_batch_size=settings.embedding.batch_size, local_files_only=True)
        self.node_parser = LlamaSettings.node_parser  # what from_documents uses by default
        self._classes = (SimpleDirectoryReader, VectorStoreIndex)
        # Warm-up: model, NLTK punkt, qdrant_client local mode.
        self._index([Document(text="A short text. It warms up the splitter and the model.")],
                    self.work / "warm-up")

    def describe(self) -> str:
        by_ours = sorted(self.extractor)
        if not by_ours:
            how = "SimpleDirectoryReader (every file read by llama-index itself)"
        elif not self.by_llama:
            how = f"ingest.loaders for every file ({' '.join(by_ours)}), via SimpleDirectoryReader"
        else:
            why = "" if self.readers_file else ": llama-index-readers-file is not installed"
            how = (f"SimpleDirectoryReader ({' '.join(sorted(set(self.by_llama)))} read by "
                   f"llama-index itself; {' '.join(by_ours)} through ingest.loaders as "
                   f"file_extractor{why})")
        p = self.node_parser
        parser = (f"{type(p).__name__}(chunk_size={getattr(p, 'chunk_size', '?')}, "
                  f"chunk_overlap={getattr(p, 'chunk_overlap', '?')}), Llama 3 tokenizer")
        batch = self.embed_model.embed_batch_size
        return (f"llama-index documents: {how}; node parser: {parser}; embedding: "
                f"HuggingFaceEmbedding(shipped model dir, batch {batch}); "
                f"store: QdrantVectorStore on qdrant_client local mode (on disk)")

    def _index(self, documents: list[Any], path: Path) -> int:
        from llama_index.core import StorageContext
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient

        _, index_cls = self._classes
        client = QdrantClient(path=str(path))
        try:
            store = QdrantVectorStore(client=client, collection_name="bench")
            index_cls.from_documents(
                documents, storage_context=StorageContext.from_defaults(vector_store=store),
                embed_model=self.embed_model, show_progress=False)
            return int(client.count("bench").count)
        finally:
            client.close()

    def run(self, path: Path) -> tuple[float, int, int]:
        """(seconds, chunks, documents) of reading the files and building the index."""
        reader_cls, _ = self._classes
        with no_network(self.network), contextlib.redirect_stdout(sys.stderr), \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            started = time.perf_counter()
            documents = reader_cls(input_files=[str(f) for f in self.files],
                                   file_extractor=dict(self.extractor)).load_data()
            chunks = self._index(documents, path)
            seconds = time.perf_counter() - started
        return seconds, chunks, len(documents)


# -- profile ---------------------------------------------------------------------------------
class Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)
        return timed


class _Proxy:
    """Times the named methods of `inner`; everything else passes through."""

    def __init__(self, inner: Any, timers: Timers, names: dict[str, str]):
        self._inner = inner
        for method, label in names.items():
            setattr(self, method, timers.wrap(label, getattr(inner, method)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# (stage, thread): the main thread embeds and writes; the ingest-parse thread reads and chunks.
MAIN, PARSE = "main", "parse"
STAGES = [
    ("open store (lock, load shard)", MAIN),
    ("list live documents (scroll)", MAIN),
    ("delete staged leftovers", MAIN),
    ("create collection + indexes", MAIN),
    ("wait for parse thread", MAIN),
    ("embed (model)", MAIN),
    ("BM25 sparse vectors", MAIN),
    ("payloads + point ids", MAIN),
    ("upsert", MAIN),
    ("commit (set live + delete old)", MAIN),
    ("optimize", MAIN),
    ("close (flush)", MAIN),
    ("read + hash file", PARSE),
    ("parse (loaders)", PARSE),
    ("chunk: tokenizer calls", PARSE),
    ("chunk: the rest", PARSE),
]


def profile_pipeline(settings: Any, files: list[Path], embedder: Any, data_dir: Path) -> dict:
    """One pipeline run with every stage timed; returns {stage: seconds} and the wall time."""
    import ingest.pipeline as pipeline
    from ingest.store import open_store
    from ingest.tokenizer import load_tokenizer

    timers = Timers()
    run_settings = settings.model_copy(update={"data_dir": data_dir})
    real_load, real_load_path = pipeline.load, pipeline.load_path
    pipeline.load = timers.wrap("parse (loaders)", real_load)
    # A text file is read as it is chunked: its reading counts under "chunk (cores)".
    pipeline.load_path = timers.wrap("parse (loaders)", real_load_path)
    try:
        started = time.perf_counter()
        store = timers.wrap("open store (lock, load shard)", open_store)(run_settings)
        store = _Proxy(store, timers, {
            "upsert": "upsert", "set_payload": "commit (set live + delete old)",
            "optimize": "optimize", "ensure_collection": "create collection + indexes",
            "scroll": "list live documents (scroll)"})
        counter = _Proxy(load_tokenizer(settings.tokenizer.path), timers, {
            m: "chunk: tokenizer calls" for m in ("token_starts", "pretoken_starts", "count_many")})
        timed_embedder = _Proxy(embedder, timers, {"embed": "embed (model)"})
        ing = pipeline.Ingestor(run_settings, store, timed_embedder, counter)  # type: ignore[arg-type]
        ing.sparse = _Proxy(ing.sparse, timers, {"document": "BM25 sparse vectors"})
        ing.chunker._cores = timers.wrap("chunk (cores)", ing.chunker._cores)  # type: ignore[method-assign]
        ing._prepare = timers.wrap("prepare (hash, load)", ing._prepare)  # type: ignore[method-assign]
        ing._payload = timers.wrap("payloads + point ids", ing._payload)  # type: ignore[method-assign]
        real_point_id = pipeline.point_id
        pipeline.point_id = timers.wrap("payloads + point ids", real_point_id)
        real_delete = store._inner.delete
        deletes = {"n": 0}

        def delete(where: Any) -> None:
            # The first delete clears a killed run's staged points; the later ones belong to
            # each document's commit (and to re-staging, a no-op on a fresh store).
            deletes["n"] += 1
            label = ("delete staged leftovers" if deletes["n"] == 1
                     else "commit (set live + delete old)")
            timers.wrap(label, real_delete)(where)

        store.delete = delete  # type: ignore[attr-defined]
        real_background = pipeline._Background

        class TimedBackground(real_background):  # type: ignore[misc,valid-type]
            def __iter__(self) -> Iterator[Any]:
                gen = super().__iter__()
                while True:
                    t = time.perf_counter()
                    try:
                        item = next(gen)
                    except StopIteration:
                        timers.add("wait for parse thread", time.perf_counter() - t)
                        return
                    timers.add("wait for parse thread", time.perf_counter() - t)
                    yield item

        pipeline._Background = TimedBackground  # type: ignore[misc]
        try:
            report = ing.run(files)
        finally:
            timers.wrap("close (flush)", store._inner.close)()
            pipeline.point_id = real_point_id
            pipeline._Background = real_background  # type: ignore[misc]
        wall = time.perf_counter() - started
    finally:
        pipeline.load, pipeline.load_path = real_load, real_load_path
    s = timers.seconds
    s["chunk: the rest"] = s.get("chunk (cores)", 0.0) - s.get("chunk: tokenizer calls", 0.0)
    s["read + hash file"] = s.get("prepare (hash, load)", 0.0) - s.get("parse (loaders)", 0.0)
    return {"seconds": {name: s.get(name, 0.0) for name, _ in STAGES}, "wall": wall,
            "chunks": report.chunks}


def print_profile(prof: dict, bare_seconds: float, table: Callable[..., str]) -> None:
    wall = prof["wall"]
    rows = []
    main_total = 0.0
    for name, thread in STAGES:
        sec = prof["seconds"][name]
        if thread == MAIN:
            main_total += sec
        rows.append([name, thread, f"{sec:.3f}", f"{100 * sec / wall:.1f}%"])
    other = wall - main_total
    rows.insert(len([s for s in STAGES if s[1] == MAIN]),
                ["other (run loop, hashing, Python)", MAIN, f"{other:.3f}",
                 f"{100 * other / wall:.1f}%"])
    print()
    print(f"profile: one instrumented pipeline run, {prof['chunks']} chunks in {wall:.2f} s "
          f"(instrumentation adds a little); main-thread rows add up to the wall time, "
          f"parse-thread rows run beside them")
    print(table(["stage", "thread", "seconds", "% of wall"], rows, [False, False, True, True]))
    embed = prof["seconds"]["embed (model)"]
    if bare_seconds > 0:
        print(f"embed inside the pipeline {embed:.2f} s vs bare embedding (median) "
              f"{bare_seconds:.2f} s: {embed / bare_seconds:.2f}x (above 1: smaller embed calls, "
              f"CPU shared with the parse thread, or noise)")


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/ingest.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None,
                    help="folder of documents to ingest (read only), e.g. ../shared/data/docs")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs per row; the table shows the median (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None,
                    help="only the first N supported files, in the pipeline's order")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="embedding batch size for every row (default: embedding.batch_size "
                         "of the settings, 64)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: embedding.threads of the settings; 0 = "
                         "torch's default)")
    ap.add_argument("--collection", default="bench-ingest",
                    help="collection name of the scratch stores (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=None,
                    help="scratch folder for the stores (default: a temporary folder, removed "
                         "at the end); never the settings' data_dir")
    ap.add_argument("--llama-reader", choices=["auto", "ours"], default="auto",
                    help="auto: SimpleDirectoryReader, with our loaders only for formats it "
                         "cannot parse offline; ours: our loaders for every file "
                         "(default: %(default)s)")
    ap.add_argument("--no-llama", action="store_true", help="skip the llama-index row")
    ap.add_argument("--profile", action="store_true",
                    help="add one instrumented pipeline run and print its time per stage")
    ap.add_argument("--edited-pdf", type=int, default=0, metavar="PAGES",
                    help="instead of the rows above: the edited-document re-ingest row on a "
                    "PDF of PAGES pages it builds (see edited_pdf_rows); --data is not read")
    ap.add_argument("--ray", action="store_true",
                    help="instead of the rows above: `rag ingest --ray` on a local Ray cluster "
                    "against the single-process pipeline, both into qdrant-client's local mode "
                    "(see ray_main)")
    ap.add_argument("--ray-cpus", type=int, default=2,
                    help="--ray: CPUs of the local Ray cluster (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ingest.json",
                    help="results JSON (default: bench/results/ingest.json)")
    ap.add_argument("--memory", action="store_true",
                    help="only the memory rows: peak RSS per MB of input for a large text file, "
                         "a large PDF and an upload through `rag api` (no --data needed)")
    ap.add_argument("--text-mb", type=float, default=200.0,
                    help="--memory: size of the text file (default: %(default)s)")
    ap.add_argument("--pdf-pages", type=int, default=2000,
                    help="--memory: pages of the PDF (default: %(default)s)")
    ap.add_argument("--pdf-photos", type=int, default=600,
                    help="--memory: pages of the PDF of photos, 100 KB each (default: "
                         "%(default)s; 0: no such row)")
    ap.add_argument("--upload-mb", type=float, default=50.0,
                    help="--memory: size of the uploaded text file (default: %(default)s)")
    ap.add_argument("--before", type=Path, default=None,
                    help="--memory: another checkout (the code before a change) to run the "
                         "same rows on, for a baseline in the same run")
    args = ap.parse_args(argv)
    if args.memory:
        return args
    if args.data is None or not args.data.is_dir():
        ap.error(f"--data {args.data}: not a folder")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


def memory_main(args: argparse.Namespace) -> int:
    """The --memory rows, each command in a process of its own (bench/ingest_memory.py)."""
    from _common import environment, log, table, write_results
    from ingest_memory import api_row, ingest_row, write_pdf, write_photo_pdf, write_text_file

    work = (args.work or Path(tempfile.mkdtemp(prefix="bench-ingest-memory-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        log(f"writing a {args.text_mb:g} MB text file and a {args.pdf_pages}-page PDF ...")
        text = write_text_file(work / "big.txt", args.text_mb)
        upload = write_text_file(work / "upload.txt", args.upload_mb)
        pdf = write_pdf(work / "big.pdf", args.pdf_pages)
        photos = write_photo_pdf(work / "photos.pdf", args.pdf_photos) if args.pdf_photos else None
        roots = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
        rows = []
        for label, root in roots:
            cases = [("rag ingest, text", ingest_row, text),
                     (f"rag ingest, PDF {args.pdf_pages} pages", ingest_row, pdf),
                     ("rag api, upload of text", api_row, upload)]
            if photos is not None:
                cases.insert(2, (f"rag ingest, PDF {args.pdf_photos} pages of photos",
                                 ingest_row, photos))
            for n, (what, measure, file) in enumerate(cases):
                log(f"{label}: {what} ...")
                scratch = work / f"{label}-{n}"
                scratch.mkdir(exist_ok=True)
                rows.append(measure(f"{label}: {what}", file, root, scratch))
        print("peak RSS (MB, VmHWM from /proc) per MB of input, each command in its own "
              "process; idle: the same command on a one-line file (API: the ready process); "
              "anon: RssAnon, the heap without the store's memory-mapped files")
        print(table(["what", "input MB", "idle", "peak", "peak - idle", "per input MB",
                     "after job", "anon peak - idle", "anon per input MB", "anon after job"],
                    [[r.what, f"{r.input_mb:.1f}", f"{r.idle_mb:.0f}", f"{r.peak_mb:.0f}",
                      f"{r.peak_mb - r.idle_mb:.0f}", f"{r.per_input_mb:.2f}",
                      "" if r.after_mb is None else f"{r.after_mb:.0f}",
                      f"{r.anon_peak_mb - r.anon_idle_mb:.0f}", f"{r.anon_per_input_mb:.2f}",
                      "" if r.anon_after_mb is None else f"{r.anon_after_mb:.0f}"]
                     for r in rows]))
        payload = {"rows": [vars(r) for r in rows], "environment": environment()}
        log(f"results: {write_results(args.out.with_name('ingest_memory.json'), payload)}")
        return 0
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _fix_path()
    if args.memory:
        return memory_main(args)
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    from _common import environment, log, table, write_results

    from core.settings import load_settings
    from ingest.embedder import Embedder

    if args.edited_pdf:
        return edited_pdf_main(args)
    if args.ray:
        return ray_main(args)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    settings = load_settings(data_dir=work / "settings", store={"url": None,
                                                                "collection": args.collection})
    if args.batch_size:
        settings.embedding.batch_size = args.batch_size
    if args.threads is not None:
        settings.embedding.threads = args.threads
    try:
        data = args.data.resolve()
        files = find_files(data, args.limit, settings.ingest.follow_symlinks)
        if not files:
            log(f"no supported files under {data}")
            return 2
        log(f"{len(files)} files; chunking them once for the bare-embedding row ...")
        texts, failed = chunk_texts(settings, files)
        for line in failed:
            log(f"  cannot load {line} (skipped by every row)")
        started = time.perf_counter()
        embedder = Embedder(settings.embedding)
        model_load = time.perf_counter() - started
        embedder.embed(texts[: settings.embedding.batch_size] or ["warm up"])
        warm_up_pipeline(settings, embedder, work / "warm-up")
        import torch

        llama = None
        if not args.no_llama:
            log("setting up llama-index (imports, embedding model, warm-up) ...")
            try:
                llama = LlamaBaseline(settings, files, args.llama_reader, work / "llama-warm-up")
            except ImportError as exc:
                log(f"llama-index row skipped: {exc} (run `make bench-deps`)")

        cpu_start = cpu_times()
        bare = Row("bare embedding (Embedder.embed on our chunks)", len(texts))
        ours = Row("pipeline (ingest.pipeline.ingest, Qdrant Edge)")
        base = Row("llama-index (reader + VectorStoreIndex.from_documents)")
        llama_docs = 0
        for r in range(args.repeat):
            log(f"run {r + 1}/{args.repeat}: bare embedding ...")
            gc.collect()  # before every timed row: no row pays for another's garbage
            t = time.perf_counter()
            embedder.embed(texts)
            bare.runs.append(time.perf_counter() - t)
            log(f"run {r + 1}/{args.repeat}: pipeline ...")
            gc.collect()
            seconds, report = run_pipeline(settings, files, embedder, work / f"pipeline-{r}")
            ours.runs.append(seconds)
            ours.chunks = report.chunks
            for res in report.failed:
                if r == 0:
                    log(f"  pipeline: {Path(res.path).name} failed: {res.reason}")
            if llama is not None:
                log(f"run {r + 1}/{args.repeat}: llama-index ...")
                gc.collect()
                seconds, base.chunks, llama_docs = llama.run(work / f"llama-{r}")
                base.runs.append(seconds)
        if ours.chunks != len(texts):
            log(f"warning: the pipeline wrote {ours.chunks} chunks, the chunker made {len(texts)}")

        rows = [bare, ours] + ([base] if llama is not None else [])
        limited = f", --limit {args.limit}" if args.limit else ""
        print(f"ingest throughput: {data} ({len(files)} files{limited}), "
              f"median of {args.repeat} run(s); {embedder.name}, batch {embedder.batch_size}, "
              f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; model load "
              f"({model_load:.1f} s) excluded")
        print(table(["what", "chunks", "seconds", "chunks/s", "ratio vs bare embedding"],
                    [[r.what, r.chunks, f"{r.seconds:.2f}", f"{r.rate:.1f}",
                      f"{r.rate / bare.rate:.2f}"] for r in rows]))
        # Each pipeline run against the bare run just before it: drift (other processes on the
        # machine) hits both alike, so the median of these pairs is the steadier number.
        pairs = [b / p for b, p in zip(bare.runs, ours.runs, strict=True)]
        ratio = statistics.median(pairs) * ours.chunks / bare.chunks
        print(f"pipeline / bare embedding \u2265 {TARGET}: {ratio:.2f} "
              f"{'PASS' if ratio >= TARGET else 'FAIL'} (median over {len(pairs)} paired run(s): "
              f"{' '.join(f'{x * ours.chunks / bare.chunks:.2f}' for x in pairs)})")
        others = other_cpu_share(cpu_start)
        if others is not None:
            print(f"other processes used {100 * others:.0f}% of the {os.cpu_count()} CPUs during "
                  "the timed runs" + (" (the timings are noisy)" if others > 0.05 else ""))
        print("runs (s): " + "; ".join(
            f"{r.what.split(' (')[0]} " + " ".join(f"{s:.2f}" for s in r.runs) for r in rows))
        if llama is not None:
            print(llama.describe() + f"; {llama_docs} llama-index documents")
            if llama.network:
                print(f"warning: llama-index tried the network: {sorted(set(llama.network))}")

        prof = None
        if args.profile:
            log("profiling one pipeline run ...")
            try:
                prof = profile_pipeline(settings, files, embedder, work / "profile")
            except AttributeError as exc:  # it times Ingestor internals by name
                log(f"--profile no longer matches ingest/pipeline.py ({exc}): update "
                    "profile_pipeline in bench/ingest.py")
            else:
                print_profile(prof, bare.seconds, table)

        payload = {
            "data": str(data), "files": len(files), "repeat": args.repeat, "limit": args.limit,
            "batch_size": embedder.batch_size, "model_load_seconds": model_load,
            "rows": [{"what": r.what, "chunks": r.chunks, "runs": r.runs, "seconds": r.seconds,
                      "chunks_per_s": r.rate, "ratio_vs_bare": r.rate / bare.rate} for r in rows],
            "pipeline_over_bare": ratio, "paired_ratios": pairs,
            "other_cpu_share": others, "target": TARGET, "pass": ratio >= TARGET,
            "llama_index": llama.describe() if llama is not None else None,
            "llama_network_attempts": sorted(set(llama.network)) if llama is not None else None,
            "profile": prof, "environment": environment(),
        }
        log(f"results: {write_results(args.out, payload)}")
        return 0 if ratio >= TARGET else 1
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


# -- edited-document re-ingest, with and without the embedding cache -------------------------
EDITED_TARGET = 20.0  # re-ingest with the cache >= 20x faster than a full re-embed
_WORDS = ["harbour", "keeper", "ledger", "storm", "ferry", "market", "winter", "tide",
          "lantern", "bell", "school", "mill", "river", "bridge", "council", "orchard",
          "quarry", "chapel", "letter", "census", "railway", "flood"]


def write_book(path: Path, pages: int, edited: bool) -> None:
    """A PDF of `pages` pages of distinct prose (three paragraphs each, ~350 words a page);
    `edited`: the middle page's second paragraph reworded, nothing else."""
    import random

    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    rng = random.Random(14)
    style = getSampleStyleSheet()["BodyText"]
    story: list[Any] = []
    for page in range(1, pages + 1):
        for para in range(3):
            words = [rng.choice(_WORDS) for _ in range(115)]
            text = f"Page {page}, part {para}: " + " ".join(words) + "."
            if edited and page == pages // 2 and para == 1:
                text = f"Page {page}, part {para} was rewritten: the ferry now runs twice a day."
            story.append(Paragraph(text, style))
        story.append(PageBreak())
    SimpleDocTemplate(str(path)).build(story)


def edited_pdf_rows(settings: Any, embedder: Any, work: Path, pages: int) -> dict[str, Any]:
    """Seconds to re-ingest the book after one paragraph changed: with the embedding and
    chunk caches (only the changed chunks embedded, the changed page cut) and without them
    (embedding.cache_mb=0, chunking.cache_mb=0: every chunk of the changed document cut and
    embedded again). Same store, same file, same run."""
    from ingest.pipeline import ingest

    book = work / "book" / "book.pdf"
    book.parent.mkdir(parents=True, exist_ok=True)
    data = settings.model_copy(update={"data_dir": work / "edited"})
    off = data.model_copy(update={
        "embedding": data.embedding.model_copy(update={"cache_mb": 0}),
        "chunking": data.chunking.model_copy(update={"cache_mb": 0})})
    timed: dict[str, Any] = {}
    # Original in (cache filled), edited without the cache (timed), original back (from the
    # cache), edited with the cache (timed): both timed runs replace the same old version.
    for name, edited, cfg in (("first", False, data), ("without cache", True, off),
                              ("restore", False, data), ("with cache", True, data)):
        write_book(book, pages, edited)
        gc.collect()
        t = time.perf_counter()
        report = ingest(cfg, [book], embedder=embedder)
        timed[name] = {"seconds": time.perf_counter() - t, "chunks": report.chunks,
                       "embedded": report.embedded, "cached": report.cached}
    return timed


def edited_pdf_main(args: argparse.Namespace) -> int:
    from _common import log, table, write_results

    from core.settings import load_settings
    from ingest.embedder import Embedder

    work = (args.work or Path(tempfile.mkdtemp(prefix="bench-edited-"))).resolve()
    try:
        settings = load_settings(data_dir=work / "settings", store={"url": None})
        embedder = Embedder(settings.embedding)
        embedder.embed(["warm up"])
        log(f"building and ingesting a {args.edited_pdf}-page PDF (four runs) ...")
        rows = edited_pdf_rows(settings, embedder, work, args.edited_pdf)
        without, with_ = rows["without cache"], rows["with cache"]
        print(table(["re-ingest of the edited PDF", "chunks", "embedded", "from cache", "seconds"],
                    [[n, r["chunks"], r["embedded"], r["cached"], f"{r['seconds']:.2f}"]
                     for n, r in rows.items() if n in ("without cache", "with cache")]))
        speedup = without["seconds"] / with_["seconds"]
        print(f"{args.edited_pdf} pages, one paragraph changed: with the cache {speedup:.1f}x "
              f"faster (target ≥ {EDITED_TARGET:g}x: {'PASS' if speedup >= EDITED_TARGET else 'FAIL'})")
        log(f"results: {write_results(args.out.with_name('ingest_edited.json'), rows)}")
        return 0 if speedup >= EDITED_TARGET else 1
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


# -- Ray Data on a local cluster against the single-process pipeline ---------------------------
def ray_main(args: argparse.Namespace) -> int:
    """Rows, alternated --repeat times: the single-process pipeline with the embedder loaded
    beforehand, and `ingest_on_ray` on a local cluster of --ray-cpus CPUs (started once,
    outside the timings) whose actors load the model inside each run, as a job does. Both
    write to a fresh qdrant-client local-mode store (the stand-in for a Qdrant server that
    Ray needs), with the embedding cache off: Ray's embedders have none."""
    from _common import log, table, write_results
    from qdrant_client import QdrantClient

    from core.settings import load_settings
    from ingest.embedder import Embedder
    from ingest.pipeline import ingest
    from ingest.ray_pipeline import connected, ingest_on_ray
    from ingest.store.server import ServerStore

    warnings.filterwarnings("ignore", message="Payload indexes have no effect")
    work = (args.work or Path(tempfile.mkdtemp(prefix="bench-ingest-ray-"))).resolve()
    try:
        settings = load_settings(data_dir=work / "settings",
                                 embedding={"cache_mb": 0, **({"batch_size": args.batch_size}
                                                              if args.batch_size else {})})
        files = find_files(args.data.resolve(), args.limit, settings.ingest.follow_symlinks)
        embedder = Embedder(settings.embedding)
        embedder.embed(["warm up"])
        one = Row("pipeline, one process")
        ray = Row(f"Ray Data, local cluster of {args.ray_cpus} CPUs")
        with connected("local", num_cpus=args.ray_cpus, _node_ip_address="127.0.0.1"):
            for r in range(args.repeat):
                for row in (one, ray):
                    log(f"run {r + 1}/{args.repeat}: {row.what} ...")
                    store = ServerStore(QdrantClient(location=":memory:"), args.collection)
                    run_settings = settings.model_copy(update={"data_dir": work / f"{r}-{len(row.runs)}"})
                    gc.collect()
                    started = time.perf_counter()
                    if row is one:
                        report = ingest(run_settings, files, store=store, embedder=embedder)
                    else:
                        report = ingest_on_ray(run_settings, files, "auto", store=store)
                    row.runs.append(time.perf_counter() - started)
                    row.chunks = report.chunks
                    store.close()
        print(f"ingest on Ray: {args.data} ({len(files)} files), median of {args.repeat} run(s), "
              f"{os.cpu_count()} CPUs on this machine; both rows into qdrant-client local mode")
        print(table(["what", "chunks", "seconds", "chunks/s", "ratio vs one process"],
                    [[r.what, r.chunks, f"{r.seconds:.2f}", f"{r.rate:.1f}",
                      f"{r.rate / one.rate:.2f}"] for r in (one, ray)]))
        payload = {"data": str(args.data), "files": len(files), "ray_cpus": args.ray_cpus,
                   "rows": [{"what": r.what, "chunks": r.chunks, "runs": r.runs,
                             "chunks_per_s": r.rate} for r in (one, ray)]}
        log(f"results: {write_results(args.out.with_name('ingest_ray.json'), payload)}")
        return 0
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
