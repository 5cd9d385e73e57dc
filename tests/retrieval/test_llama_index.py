"""The llama-index adapters (retrieval/llama_index.py) with llama-index itself: its query engine
over our retriever and our llama.cpp server, and our packer after its own SentenceSplitter.
Real tokenizer, real store, real server; nothing reaches the network."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core", reason="the llama-index extra is not installed")

from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import Document, NodeWithScore  # noqa: E402

from ingest.tokenizer import TokenCounter  # noqa: E402
from retrieval.llama_index import LEDGER, PackedRetriever, PackingPostprocessor  # noqa: E402
from retrieval.packer import header_for  # noqa: E402
from retrieval.service import RetrieveOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How does the lighthouse keeper test the reserve batteries?"


def sentences(doc: int, n: int) -> str:
    rng = random.Random(doc)
    words = ["harbour", "lamp", "keeper", "storm", "ledger", "tide", "beacon", "rope", "gull"]
    return " ".join(f"Line {i} of volume {doc} notes the {rng.choice(words)} and the "
                    f"{rng.choice(words)} at hour {rng.randint(1, 24)}." for i in range(n))


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    docs = [Document(text=sentences(d, 250), id_=f"volume-{d}",
                     metadata={"file_path": f"/archive/volume-{d}.txt"}) for d in range(3)]
    # A copy of volume 0 under another name: its texts are duplicates.
    docs.append(Document(text=docs[0].text, id_="volume-0-copy",
                         metadata={"file_path": "/archive/copy/volume-0.txt"}))
    return docs


def split(documents: list[Document], counter: TokenCounter, overlap: int) -> list[NodeWithScore]:
    """llama-index's own splitter (counting with our tokenizer: no tiktoken), scored at
    random as a vector store would."""
    def encode(text: str) -> list[int]:
        return list(counter.tokenizer.encode(text, add_special_tokens=False).ids)

    splitter = SentenceSplitter(chunk_size=96, chunk_overlap=overlap, tokenizer=encode)
    rng = random.Random(3)
    return [NodeWithScore(node=n, score=rng.random())
            for n in splitter.get_nodes_from_documents(documents)]


def rendered(nodes: list[NodeWithScore]) -> str:
    """The context as our prompt lays it out: numbered header, text, blank line."""
    return "".join(header_for(n.node.metadata["label"], _as_passage(n)) + n.node.get_content()
                   + "\n\n" for n in nodes)


def _as_passage(n: NodeWithScore) -> Any:
    from types import SimpleNamespace

    m = n.node.metadata
    return SimpleNamespace(source=m["source"], document_id=m["document_id"], page=m["page"],
                           page_label=None, title=m["title"])


@pytest.mark.parametrize("overlap", [0, 24])
def test_postprocessor_packs_splitter_nodes_to_the_budget_in_document_order(
        documents: list[Document], counter: TokenCounter, overlap: int) -> None:
    nodes = split(documents, counter, overlap)
    budget = 3000
    packed = PackingPostprocessor(counter, budget).postprocess_nodes(nodes)
    ledger = packed[0].node.metadata[LEDGER]
    # Exact: the context the packer counted is the one these nodes render.
    assert counter.count(rendered(packed)) == ledger["used_tokens"] <= budget
    assert ledger["used_tokens"] > budget - 200, "the budget is filled up to about a node"
    texts = {d.doc_id: d.text for d in documents}
    seen_docs: list[str] = []
    last_chunk: dict[str, int] = {}
    for n in packed:
        doc = n.node.metadata["document_id"]
        first, last = n.node.metadata["chunks"]
        # Merged neighbours read as the document does: their overlap once, nothing lost.
        assert n.node.get_content().strip() in texts[doc]
        assert first > last_chunk.get(doc, -1), "each document in reading order"
        last_chunk[doc] = last
        if doc not in seen_docs:
            seen_docs.append(doc)
        assert seen_docs[-1] == doc, "a document's passages stay together"
    assert any(n.node.metadata["chunks"][1] > n.node.metadata["chunks"][0] for n in packed), \
        "touching nodes were merged into one passage"
    assert len({n.node.get_content() for n in packed}) == len(packed)
    assert any(x["reason"] == "duplicate" for x in ledger["left_out"])
    assert {x["reason"] for x in ledger["left_out"]} <= {"duplicate", "budget"}


def test_postprocessor_keeps_the_best_nodes(documents: list[Document], counter: TokenCounter) -> None:
    nodes = split(documents, counter, 0)
    packed = PackingPostprocessor(counter, 800).postprocess_nodes(nodes)
    kept = {i for n in packed for i in n.node.metadata["node_ids"]}
    best = max(nodes, key=lambda n: n.score or 0.0)
    assert best.node.node_id in kept
    assert packed[0].node.metadata[LEDGER]["used_tokens"] <= 800


def test_postprocessor_rejects_a_budget_below_one(counter: TokenCounter) -> None:
    with pytest.raises(ValueError, match="budget_tokens"):
        PackingPostprocessor(counter, 0)


def test_retriever_returns_our_packed_passages_in_packed_order(library: Any) -> None:
    ours = library.retriever(answer_reserve=0)
    options = RetrieveOptions(budget_tokens=1500, context_mode="retrieve")
    expected = ours.retrieve(QUESTION, options)
    nodes = PackedRetriever(ours, options).retrieve(QUESTION)
    assert [n.node.get_content() for n in nodes] == [p.text for p in expected.packing.passages]
    assert [n.node.metadata["label"] for n in nodes] == list(range(1, len(nodes) + 1))
    first = nodes[0].node.metadata
    assert first["source"].endswith("lighthouse.md")
    assert first["chunks"] == [expected.packing.passages[0].first,
                               expected.packing.passages[0].last]
    assert first[LEDGER]["used_tokens"] == expected.packing.used_tokens
    assert "passages" not in first[LEDGER]
    # The ledger is for the application, not the model's prompt.
    assert "used_tokens" not in nodes[0].node.get_content(metadata_mode="llm")


@pytest.mark.slow
def test_query_engine_answers_with_our_retriever_and_llamacpp(library: Any, llm_server: Any) -> None:
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model=llm_server.model, api_base=llm_server.url, api_key="unused",
                     is_chat_model=True, context_window=llm_server.settings.n_ctx,
                     max_tokens=48, temperature=0.0, max_retries=0)
    retriever = PackedRetriever(library.retriever(),
                                RetrieveOptions(budget_tokens=1200, context_mode="retrieve"),
                                context_window=llm_server.settings.n_ctx)
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    response = engine.query(QUESTION)
    assert str(response).strip()
    assert response.source_nodes[0].node.metadata["source"].endswith("lighthouse.md")
    assert retriever.last_retrieval is not None
    assert [n.node.get_content() for n in response.source_nodes] == [
        p.text for p in retriever.last_retrieval.packing.passages]


def test_the_default_query_path_does_not_import_llama_index() -> None:
    code = ("import sys, app.cli, app.api.main, app.service; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'llama_index', 'mcp'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"
