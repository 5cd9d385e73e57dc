"""`rag mcp` with the SDK's own client: over stdio against a real `rag mcp` subprocess, and over
streamable HTTP (behind API keys) against the server on uvicorn, both over a real Qdrant Edge
store holding the built-in sample; `ask` answers with the session's llama.cpp server."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed")

import httpx2  # noqa: E402  (the MCP SDK's HTTP client)
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from support.servers import serve_in_thread  # noqa: E402

from app.mcp_server import build_server, http_app  # noqa: E402
from app.runtime import Runtime, sample_dir  # noqa: E402
from app.service import RagService  # noqa: E402
from core.settings import Settings  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
KEY = "mcp-test-key"
QUESTION = "How long can the lighthouse lamp run on its reserve batteries?"
TOOLS = {"search_documents", "ask", "list_documents"}


def payload(result: Any) -> dict[str, Any]:
    """A tool result's JSON (the text the SDK writes for a structured result)."""
    assert not result.is_error, result.content
    return dict(json.loads(result.content[0].text))


async def search_and_list(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
    assert {t.name for t in (await client.list_tools()).tools} == TOOLS
    found = payload(await client.call_tool(
        "search_documents", {"question": QUESTION, "budget_tokens": 600, "context": "retrieve"}))
    listed = payload(await client.call_tool("list_documents", {}))
    return found, listed


def check_search(found: dict[str, Any], listed: dict[str, Any]) -> None:
    sources = {Path(d["source"]).name for d in listed["documents"]}
    assert sources == {p.name for p in sample_dir().iterdir()}
    passages = found["passages"]
    assert [p["label"] for p in passages] == list(range(1, len(passages) + 1))
    assert Path(passages[0]["source"]).name == "lighthouse-maintenance.md"
    ledger = found["ledger"]
    assert 0 < ledger["used_tokens"] <= ledger["budget_tokens"] <= 600
    assert ledger["passages"] == len(passages)


def reason(result: Any) -> str:
    """A tool error's one line (the SDK puts `Error executing tool NAME: ` before it)."""
    assert result.is_error
    text = str(result.content[0].text)
    assert "\n" not in text
    return text.removeprefix("Error executing tool search_documents: ")


async def check_errors(client: Client) -> None:
    empty = await client.call_tool("search_documents", {"question": "  "})
    assert reason(empty) == "question: must not be empty"
    small = await client.call_tool("search_documents", {"question": QUESTION, "budget_tokens": -3})
    assert reason(small) == "budget_tokens: must be positive"
    layout = await client.call_tool("search_documents", {"question": QUESTION, "layout": "spiral"})
    assert reason(layout) == "layout: 'spiral' is not one of document, relevance, edges"


# -- stdio: `rag mcp` as a desktop client starts it ------------------------------------------

@pytest.fixture(scope="module")
def stdio_data(tmp_path_factory: pytest.TempPathFactory, make_settings: Any,
               embedder: Any) -> Path:
    """A data dir with the sample ingested, its store closed (the subprocess owns it)."""
    from ingest.pipeline import ingest

    settings = make_settings(tmp_path_factory.mktemp("mcp-stdio"))
    report = ingest(settings, [sample_dir()], embedder=embedder)
    assert not report.failed
    return settings.data_dir


def test_stdio_lists_searches_reads_and_reports_errors(stdio_data: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "app.cli", "--data-dir", str(stdio_data), "mcp"],
        cwd=ROOT, env={"PYTHONPATH": str(ROOT), "RAG_CHUNKING__SIZE": "64",
                       "RAG_CHUNKING__OVERLAP": "8", "RAG_RETRIEVAL__ANSWER_RESERVE": "48",
                       "HF_HUB_OFFLINE": "1"})

    async def session() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            found, listed = await search_and_list(client)
            check_search(found, listed)
            doc = next(d for d in listed["documents"] if d["source"].endswith(".txt"))
            text = await client.read_resource(f"rag://documents/{doc['document_id']}")
            assert text.contents[0].text.split() == Path(doc["source"]).read_text(
                encoding="utf-8").split()
            await check_errors(client)

    anyio.run(session)


# -- streamable HTTP, behind the API's keys --------------------------------------------------

@pytest.fixture(scope="module")
def mcp_url(make_settings: Any, tmp_path_factory: pytest.TempPathFactory, llm_server: Any,
            embedder: Any) -> Iterator[str]:
    from ingest.pipeline import ingest
    from serving.llamacpp import model_path

    settings: Settings = make_settings(
        tmp_path_factory.mktemp("mcp-http"), api={"keys": [KEY]},
        llm={"url": llm_server.url, "context_window": llm_server.settings.n_ctx,
             "tokenizer": str(model_path(llm_server.settings)), "retries": 0,
             "temperature": 0.0},
        retrieval={"answer_reserve": 48})
    runtime = Runtime(settings)
    runtime._embedder = embedder
    ingest(settings, [sample_dir()], store=runtime.store, embedder=embedder)
    with RagService(settings, runtime=runtime) as service:
        app = http_app(build_server(service), "127.0.0.1", list(settings.api.keys))
        with serve_in_thread(app) as url:  # type: ignore[arg-type]
            yield url + "/mcp"
    runtime.close()


@asynccontextmanager
async def http_client(url: str) -> AsyncIterator[Client]:
    auth = httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    async with auth, Client(streamable_http_client(url, http_client=auth)) as client:
        yield client


def test_http_searches_asks_lists_and_reports_errors(mcp_url: str) -> None:
    async def session() -> dict[str, Any]:
        async with http_client(mcp_url) as client:
            found, listed = await search_and_list(client)
            check_search(found, listed)
            await check_errors(client)
            return payload(await client.call_tool("ask", {"question": QUESTION,
                                                          "budget_tokens": 400}))

    answer = anyio.run(session)
    assert answer["answer"].strip()
    assert 0 < answer["ledger"]["used_tokens"] <= 400
    for c in answer["citations"]:
        assert c["quote"] in c["text"] and c["source"]


def test_http_reads_documents_and_names_a_missing_one(mcp_url: str) -> None:
    async def session() -> tuple[str, str]:
        async with http_client(mcp_url) as client:
            listed = payload(await client.call_tool("list_documents", {}))
            doc = next(d for d in listed["documents"] if d["source"].endswith(".txt"))
            text = await client.read_resource(f"rag://documents/{doc['document_id']}")
            try:
                await client.read_resource("rag://documents/nothing-here")
            except Exception as exc:  # the SDK raises the server's error for a failed read
                return text.contents[0].text, str(exc)
            return text.contents[0].text, ""

    text, missing = anyio.run(session)
    original = (sample_dir() / "sourdough-notes.txt").read_text(encoding="utf-8")
    assert text.split() == original.split()
    assert "no stored document with id or path 'nothing-here'" in missing


def test_http_without_the_key_is_refused_in_the_error_envelope(mcp_url: str) -> None:
    response = httpx.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_http_lists_documents_page_by_page(mcp_url: str) -> None:
    async def session() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with http_client(mcp_url) as client:
            whole = payload(await client.call_tool("list_documents", {}))
            pages, cursor = [], None
            while True:
                args: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
                page = payload(await client.call_tool("list_documents", args))
                pages.append(page)
                cursor = page["next_cursor"]
                if cursor is None:
                    return whole, pages

    whole, pages = anyio.run(session)
    assert whole["total"] == len(whole["documents"]) and whole["next_cursor"] is None
    assert all(p["total"] == whole["total"] and len(p["documents"]) <= 2 for p in pages)
    assert sorted(d["document_id"] for p in pages for d in p["documents"]) == sorted(
        d["document_id"] for d in whole["documents"])
