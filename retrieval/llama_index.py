"""llama-index adapters: our packed retrieval as a llama-index retriever, and our packer as a
node postprocessor that any llama-index query engine can put in its chain.

`PackedRetriever` returns the passages `Retriever.retrieve` packs, in packed order; the
`PackingPostprocessor` packs any llama-index nodes (from its own splitters and stores) to an
exact token budget: document order, touching nodes merged, duplicate texts dropped, with
our ledger. Either way the ledger rides on the first node's metadata, hidden from the LLM
and the embedder.

llama-index is the optional `llama-index` extra; nothing on the default query path (the
CLI, the API) imports this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, TextNode

from core.choices import Layout
from ingest.tokenizer import TokenCounter
from retrieval.packer import ChunkRef, Hit, Packer, Packing, Passage
from retrieval.service import Retrieval, RetrieveOptions, Retriever

LEDGER = "ledger"  # the first node's metadata key for the packing's ledger
_HIDDEN = [LEDGER, "document_id", "chunks", "node_ids"]  # kept out of prompts and embeddings
# Node counts are ours to make (llama-index's texts were not split at our token
# boundaries): a tokenizer name no chunk carries makes the packer count them afresh and
# verify the rendered context exactly.
_FOREIGN = "llama-index"


def ledger_of(retrieval: Retrieval) -> dict[str, Any]:
    """The retrieval's ledger (budget, tokens used, what was left out and why) without the
    passages, which are the nodes themselves."""
    ledger = retrieval.to_dict()
    del ledger["passages"]
    return ledger


def packing_ledger(packing: Packing) -> dict[str, Any]:
    return {
        "budget": packing.budget, "used_tokens": packing.used_tokens,
        "left_out": [x.to_dict() for x in packing.left_out], "layout": packing.layout,
        "documents": packing.documents(), "tokenizer": packing.counted_with,
        "notes": list(packing.notes),
    }


def passage_nodes(passages: Sequence[Passage], ledger: dict[str, Any],
                  node_ids: dict[tuple[str, int], str] | None = None) -> list[NodeWithScore]:
    """One node per passage, in the order given; the ledger on the first."""
    nodes = []
    for p in passages:
        metadata: dict[str, Any] = {
            "source": p.source, "title": p.title, "page": p.page_label or p.page,
            "label": p.label, "document_id": p.document_id, "chunks": [p.first, p.last],
        }
        if node_ids is not None:
            metadata["node_ids"] = [node_ids[(p.document_id, i)] for i in range(p.first, p.last + 1)
                                    if (p.document_id, i) in node_ids]
        node = TextNode(id_=f"{p.document_id}:{p.first}-{p.last}", text=p.text, metadata=metadata,
                        excluded_llm_metadata_keys=list(_HIDDEN),
                        excluded_embed_metadata_keys=list(_HIDDEN))
        nodes.append(NodeWithScore(node=node, score=p.score))
    if nodes:
        nodes[0].node.metadata[LEDGER] = ledger
    return nodes


class PackedRetriever(BaseRetriever):
    """Our hybrid search, widening and exact packing behind llama-index's retriever API.

    `retriever` is ours (`Runtime.retriever()` builds one over the configured store);
    `options` are the budget, layout, filters... of every query; `context_window` is the
    served model's (else the configured one). The last retrieval, message included (an
    empty collection, no match), is kept as `last_retrieval`."""

    def __init__(self, retriever: Retriever, options: RetrieveOptions | None = None,
                 context_window: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.retriever = retriever
        self.options = options or RetrieveOptions()
        self.context_window = context_window
        self.last_retrieval: Retrieval | None = None

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        retrieval = self.retriever.retrieve(query_bundle.query_str, self.options,
                                            self.context_window)
        self.last_retrieval = retrieval
        return passage_nodes(retrieval.packing.passages, ledger_of(retrieval))


@dataclass
class _Placed:
    """A node as a chunk of its document: positions that touch get consecutive indices."""

    node: NodeWithScore
    index: int
    core: str


class PackingPostprocessor(BaseNodePostprocessor):
    """Packs any nodes to `budget_tokens` tokens (counted exactly with `counter`, headers
    included) with our packer: best-scored first, laid out by `layout` (document order by
    default), nodes that touch in their document merged into one passage (their overlap
    once), duplicate texts dropped. Returns one node per passage; the ledger is on the first.

    A node's document is its `ref_doc_id` (else its `file_path`/`source` metadata); nodes
    touch when their character ranges meet or overlap, or when one is the other's
    PREVIOUS/NEXT relation."""

    budget_tokens: int = Field(gt=0, description="Tokens the packed passages may take.")
    layout: Layout = Field(default=Layout.DOCUMENT, description="Passage order.")
    _counter: TokenCounter = PrivateAttr()

    def __init__(self, counter: TokenCounter, budget_tokens: int,
                 layout: Layout = Layout.DOCUMENT, **kwargs: Any):
        super().__init__(budget_tokens=budget_tokens, layout=layout, **kwargs)
        self._counter = counter

    @classmethod
    def class_name(cls) -> str:
        return "PackingPostprocessor"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        hits, node_ids = self.as_hits(nodes)
        packer = Packer(self._counter, neighbours=0, layout=self.layout)
        packing = packer.pack(hits, {(h.chunk.document_id, h.chunk.index): h.chunk for h in hits},
                              self.budget_tokens)
        return passage_nodes(packing.passages, packing_ledger(packing), node_ids)

    def as_hits(self, nodes: list[NodeWithScore]) -> tuple[list[Hit], dict[tuple[str, int], str]]:
        """The nodes as scored chunks, and each chunk's node id. Nodes without scores rank
        in the order given."""
        scored = all(n.score is not None for n in nodes)
        best: dict[str, tuple[float, NodeWithScore]] = {}
        for i, n in enumerate(nodes):
            score = float(n.score) if scored and n.score is not None else float(len(nodes) - i)
            if n.node.node_id not in best or score > best[n.node.node_id][0]:
                best[n.node.node_id] = (score, n)
        by_doc: dict[str, list[NodeWithScore]] = {}
        for _, n in best.values():
            by_doc.setdefault(_document_of(n), []).append(n)
        hits: list[Hit] = []
        node_ids: dict[tuple[str, int], str] = {}
        for doc, members in by_doc.items():
            for placed in _place(members):
                ref = _chunk_ref(doc, placed)
                hits.append(Hit(ref, best[placed.node.node.node_id][0]))
                node_ids[(doc, placed.index)] = placed.node.node.node_id
        return hits, node_ids


def _document_of(n: NodeWithScore) -> str:
    meta = n.node.metadata
    return str(n.node.ref_doc_id or meta.get("file_path") or meta.get("source") or n.node.node_id)


def _place(members: list[NodeWithScore]) -> list[_Placed]:
    """A document's nodes in text order, each index one past the previous node's when the
    two touch (two past when they do not, so the packer never merges them); a node that
    overlaps the previous one keeps only the text after the overlap."""
    ordered = sorted(enumerate(members), key=lambda im: (_start(im[1]), im[0]))
    placed: list[_Placed] = []
    for _, n in ordered:
        text = n.node.get_content()
        if not placed:
            placed.append(_Placed(n, 0, text))
            continue
        prev = placed[-1]
        touching, overlap = _touch(prev.node, n)
        if touching and overlap < 0:
            prev.core += " "  # the separator between them, the splitter's default
        placed.append(_Placed(n, prev.index + (1 if touching else 2),
                              text[max(0, overlap):] if touching else text))
    return placed


def _start(n: NodeWithScore) -> int:
    start = n.node.start_char_idx if isinstance(n.node, TextNode) else None
    return start if start is not None else 0


def _touch(prev: NodeWithScore, n: NodeWithScore) -> tuple[bool, int]:
    """(whether `n` continues `prev` in their document, characters of `n` already in
    `prev`: -1 for the one separator between two splits that do not overlap)."""
    a, b = prev.node, n.node
    if isinstance(a, TextNode) and isinstance(b, TextNode) and None not in (
            a.start_char_idx, a.end_char_idx, b.start_char_idx):
        assert a.end_char_idx is not None and b.start_char_idx is not None
        overlap = a.end_char_idx - b.start_char_idx
        return overlap >= -1, min(overlap, len(b.get_content()))
    nxt = a.relationships.get(NodeRelationship.NEXT)
    before = b.relationships.get(NodeRelationship.PREVIOUS)
    linked = (nxt is not None and getattr(nxt, "node_id", None) == b.node_id) or (
        before is not None and getattr(before, "node_id", None) == a.node_id)
    return linked, 0


def _chunk_ref(doc: str, placed: _Placed) -> ChunkRef:
    node = placed.node.node
    meta = node.metadata
    page, page_label = _page(meta)
    text = node.get_content()
    return ChunkRef(
        id=node.node_id, document_id=doc,
        source=str(meta.get("file_path") or meta.get("source") or meta.get("file_name") or doc),
        title=str(meta.get("title") or ""), type=str(meta.get("file_type") or ""),
        page=page, section=page or 0, index=placed.index, core=placed.core, core_tokens=0,
        end_tokens=0, content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        tokenizer=_FOREIGN, page_label=page_label)


def _page(meta: dict[str, Any]) -> tuple[int | None, str | None]:
    """(page number, label) from llama-index's `page_label` (readers write "3") or `page`."""
    raw = meta.get("page", meta.get("page_label"))
    if raw is None or raw == "":
        return None, None
    text = str(raw)
    return (int(text), None) if text.isdigit() else (None, f"page {text}")
