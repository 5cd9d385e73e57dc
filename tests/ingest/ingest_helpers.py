"""Plain helpers of the ingest tests: store invariants, and running the real `rag` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from core.settings import Settings
from ingest.store import LIVE, STAGED, Where

ROOT = Path(__file__).resolve().parents[2]
_RAG = Path(sys.executable).with_name("rag")
RAG_CMD = [str(_RAG)] if _RAG.is_file() else [sys.executable, "-m", "app.cli"]


def rag_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment without RAG_*, plus the chunking of `settings` and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["PYTHONUNBUFFERED"] = "1"
    if settings is not None:
        env["RAG_CHUNKING__SIZE"] = str(settings.chunking.size)
        env["RAG_CHUNKING__OVERLAP"] = str(settings.chunking.overlap)
    env.update(extra)
    return env


def rag(*args: str | Path, data_dir: Path | None, cwd: Path, settings: Settings | None = None,
        env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs `rag [--data-dir DIR] ARGS...` in a subprocess and returns what it did."""
    cmd = [*RAG_CMD]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, cwd=cwd, env={**rag_env(settings), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def live_points(store: Any) -> list[Any]:
    return list(store.scroll(Where(equals={"state": LIVE})))


def check_store(store: Any, *, allow_staged: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Asserts the store's invariants and returns the live payloads by document id, in chunk
    order: no two live points share (document_id, chunk_index); every live document is whole
    (indices 0..doc_chunks-1, one version, doc_tokens the sum of its core tokens); and no
    staged point is left unless `allow_staged` (a killed run may leave some)."""
    by_doc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    keys = []
    for p in live_points(store):
        keys.append((p.payload["document_id"], p.payload["chunk_index"]))
        by_doc[p.payload["document_id"]].append(p.payload)
    dupes = {k for k in keys if keys.count(k) > 1}
    assert not dupes, f"duplicate live chunks: {sorted(dupes)[:5]}"
    for doc_id, payloads in by_doc.items():
        payloads.sort(key=lambda p: p["chunk_index"])
        n = payloads[0]["doc_chunks"]
        assert [p["chunk_index"] for p in payloads] == list(range(n)), (
            f"{doc_id}: live chunks {[p['chunk_index'] for p in payloads]} of {n}")
        assert len({p["doc_hash"] for p in payloads}) == 1, f"{doc_id}: two versions live"
        assert sum(p["core_tokens"] for p in payloads) == payloads[0]["doc_tokens"]
        assert store.count(Where(equals={"document_id": doc_id, "state": LIVE})) == n
    if not allow_staged:
        assert store.count(Where(equals={"state": STAGED})) == 0, "staged points left behind"
    return dict(by_doc)


def doc_text_from_chunks(payloads: list[dict[str, Any]]) -> str:
    """The document text rebuilt from its chunks' cores (sections joined by a blank line)."""
    parts: list[str] = []
    section = None
    for p in payloads:
        if section is not None and p["section"] != section:
            parts.append("\n\n")
        parts.append(p["text"][p["core_offset"]:])
        section = p["section"]
    return "".join(parts)


DIM = 8  # the vectors store_documents writes (ensure_collection(DIM) first)


def store_documents(store: Any, names: list[str], *, chunks: int = 2, parent: str | None = None,
                    state: str = LIVE) -> list[str]:
    """Writes one document per name (`chunks` chunks each, unit vectors, keyword vectors of
    their text) straight into a real store, as a committed ingest leaves them; their ids."""
    from ingest.payload import ChunkPayload, point_id
    from ingest.sparse import SparseEncoder
    from ingest.store import PointIn

    encoder = SparseEncoder()
    points, ids = [], []
    for n, name in enumerate(names):
        doc_id = f"{n:04d}" + "".join(f"{ord(c):02x}" for c in name)[:12].ljust(12, "0")
        ids.append(doc_id)
        for i in range(chunks):
            text = f"{name} part {i}: notes about {name}."
            payload = ChunkPayload(document_id=doc_id, source=f"/docs/{name}.txt", title=name,
                                   type="text", chunk_index=i, text=text, doc_hash="v1",
                                   doc_chunks=chunks, doc_tokens=10 * chunks, state=state,
                                   parent=parent).to_payload()
            dense = [0.0] * DIM
            dense[(n + i) % len(dense)] = 1.0
            points.append(PointIn(point_id(doc_id, "v1", i), dense, encoder.document(text),
                                  payload))
    store.upsert(points)
    return ids
