"""The Model Context Protocol server (`rag mcp`), on the official `mcp` SDK: over stdio for
desktop clients, over streamable HTTP (behind the API's keys when they are set) for remote
ones.

Tools: `search_documents` (packed passages and the ledger's summary), `ask` (an answer with
citations) and `list_documents`; each document's text is the resource
`rag://documents/{document_id}`. Like the REST routes they are thin over `RagService` and
speak its shapes; a `RagError` comes back as a tool error carrying its one-line message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from app.api.middleware import AuthMiddleware
from app.service import Answer, RagService
from core.choices import ContextMode, Layout, SearchMode
from core.errors import NotFoundError, RagError, SettingsError
from ingest.documents import resolve_document
from ingest.payload import ChunkPayload
from ingest.store import LIVE, Where
from retrieval.service import Filters, Retrieval, RetrieveOptions

DOCUMENT_URI = "rag://documents/{document_id}"
HEALTH_PATH = "/healthz"
INSTRUCTIONS = (
    "Searches and answers from the user's own documents. search_documents returns numbered "
    "passages packed to a token budget (cite them as [n]); ask answers with citations; "
    "list_documents lists what is stored; rag://documents/{id} is a document's text.")

_T = TypeVar("_T")
_C = TypeVar("_C", bound=StrEnum)


def ledger_summary(retrieval: Retrieval) -> dict[str, Any]:
    """What went into the context and what did not, without the passages' text."""
    left_out: dict[str, int] = {}
    for x in retrieval.packing.left_out + retrieval.filtered_out:
        left_out[x.reason] = left_out.get(x.reason, 0) + 1
    return {
        "budget_tokens": retrieval.budget.available, "used_tokens": retrieval.packing.used_tokens,
        "passages": len(retrieval.packing.passages), "documents": retrieval.packing.documents(),
        "left_out": left_out, "mode": retrieval.packing.mode, "layout": retrieval.packing.layout,
        "message": retrieval.message,
    }


def search_result(retrieval: Retrieval) -> dict[str, Any]:
    passages = [{k: v for k, v in p.to_dict().items() if k != "ocr"}
                for p in retrieval.packing.passages]
    return {"passages": passages, "ledger": ledger_summary(retrieval)}


def answer_result(answer: Answer) -> dict[str, Any]:
    return {
        "answer": answer.answer, "citations": [c.to_dict() for c in answer.citations],
        "invalid_citations": answer.invalid_citations, "model": answer.model,
        "ledger": ledger_summary(answer.retrieval),
    }


def document_text(service: RagService, id_or_path: str) -> str:
    """A stored document's text (its chunks' cores in order: exactly what was ingested)."""
    runtime = service.runtime
    with runtime.lock.read():
        doc = resolve_document(runtime.store, id_or_path)
        points = list(runtime.store.scroll(
            Where(equals={"document_id": doc.document_id, "state": LIVE})))
    chunks = sorted((ChunkPayload.from_payload(p.payload) for p in points),
                    key=lambda c: c.chunk_index)
    return "".join(c.core for c in chunks)


def choice(name: str, value: str | None, choices: type[_C]) -> _C | None:
    """The value as one of `choices`, or a one-line error naming the argument. (Typed as
    plain strings, a bad choice would fail the SDK's schema check with pydantic's
    several-line report instead.)"""
    if value is None:
        return None
    try:
        return choices(value)
    except ValueError:
        raise SettingsError(name, f"'{value}' is not one of {', '.join(choices)}") from None


def options_for(budget_tokens: int | None, layout: str | None, mode: str | None,
                context: str | None, document_ids: list[str] | None, path: str | None,
                types: list[str] | None) -> RetrieveOptions:
    return RetrieveOptions(budget_tokens=budget_tokens, layout=choice("layout", layout, Layout),
                           search_mode=choice("mode", mode, SearchMode),
                           context_mode=choice("context", context, ContextMode),
                           filters=Filters(tuple(document_ids or ()), path, tuple(types or ())))


async def _in_thread(call: Callable[[], _T]) -> _T:
    """Runs a blocking service call off the event loop; our errors as tool errors (the SDK
    prefixes them with `Error executing tool NAME: `)."""
    try:
        return await anyio.to_thread.run_sync(call)
    except RagError as exc:
        raise ToolError(str(exc)) from None


def build_server(service: RagService) -> MCPServer:
    """The MCP server over `service` (which the caller owns and closes)."""
    server = MCPServer(name="rag", instructions=INSTRUCTIONS, log_level="ERROR")

    @server.tool()
    async def search_documents(
            question: str, budget_tokens: int | None = None, layout: str | None = None,
            mode: str | None = None, context: str | None = None,
            document_ids: list[str] | None = None, path: str | None = None,
            types: list[str] | None = None) -> dict[str, Any]:
        """Find and pack the passages a question needs, up to `budget_tokens` tokens. Returns
        numbered passages (label, source, page, chunks, text) and the ledger: tokens used of
        the budget, per-document tokens, what was left out and why. layout: document |
        relevance | edges; mode: hybrid | dense | keyword; context: auto | full | retrieve.
        Filters: document_ids, path (prefix or glob), types (pdf, docx...)."""
        retrieval = await _in_thread(lambda: service.retrieve(question, options_for(
            budget_tokens, layout, mode, context, document_ids, path, types)))
        return search_result(retrieval)

    @server.tool()
    async def ask(
            question: str, budget_tokens: int | None = None, layout: str | None = None,
            document_ids: list[str] | None = None, path: str | None = None,
            types: list[str] | None = None) -> dict[str, Any]:
        """Answer a question from the stored documents. Returns the answer with [n] markers,
        the citations they point to (source, page, passage text, quoted sentence) and the
        ledger's summary. layout and filters as for search_documents."""
        answer = await _in_thread(lambda: service.ask(question, options=options_for(
            budget_tokens, layout, None, None, document_ids, path, types)))
        return answer_result(answer)

    @server.tool()
    async def list_documents(limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """The stored documents: id, source path, title, type, pages, chunks, tokens. With
        limit (1-1000), a page in store order: pass next_cursor back as cursor for the next;
        without it, every document by path."""
        if limit is None:
            docs = await _in_thread(service.documents)
            return {"documents": [d.to_dict() for d in docs], "total": len(docs),
                    "next_cursor": None}
        page = await _in_thread(lambda: service.document_page(limit, cursor))
        return {"documents": [d.to_dict() for d in page.documents], "total": page.total,
                "next_cursor": page.next_cursor}

    @server.resource(DOCUMENT_URI, mime_type="text/plain",
                     description="A stored document's text, by id (list_documents gives ids).")
    async def document(document_id: str) -> str:
        try:
            return await anyio.to_thread.run_sync(lambda: document_text(service, document_id))
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except RagError as exc:
            raise ResourceError(str(exc)) from None

    @server.custom_route(HEALTH_PATH, methods=["GET"])
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return server


def http_app(server: MCPServer, host: str, keys: list[str]) -> ASGIApp:
    """The streamable HTTP endpoint at /mcp; with `keys`, every request but the health check
    needs `Authorization: Bearer KEY` (the REST API's middleware and error envelope)."""
    app: Starlette = server.streamable_http_app(host=host)
    return AuthMiddleware(app, keys, {HEALTH_PATH}) if keys else app


def serve(service: RagService, http: bool, host: str, port: int) -> None:
    """Serves until the client disconnects (stdio) or Ctrl-C (HTTP). The embedder loads in
    the background meanwhile, so the first search does not wait for it (and is waited for
    at the end: a process leaving while the model loads aborts in native code)."""
    warm = threading.Thread(target=service.runtime.warm_embedder, name="warm-embedder",
                            daemon=True)
    warm.start()
    server = build_server(service)
    try:
        if not http:
            server.run("stdio")
            return
        import uvicorn

        uvicorn.run(http_app(server, host, list(service.settings.api.keys)), host=host,
                    port=port, log_level="warning")
    finally:
        warm.join()
