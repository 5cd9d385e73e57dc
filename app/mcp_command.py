"""`rag mcp`: the MCP server's command (app/mcp_server.py holds the server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from core.errors import SettingsError
from core.settings import Settings


def register(app: typer.Typer, settings_for: Callable[[str | None], Settings]) -> None:
    """Adds `rag mcp` to `app`; `settings_for(collection)` gives the command's settings."""

    @app.command("mcp")
    def mcp_command(
        http: Annotated[bool, typer.Option(
            "--http", help="Serve streamable HTTP at /mcp instead of stdio.")] = False,
        host: Annotated[str, typer.Option(help="Interface to listen on (--http).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on (--http).")] = 8765,
        collection: Annotated[str | None, typer.Option(help="Collection to serve.")] = None,
    ) -> None:
        """Serve the Model Context Protocol: tools search_documents, ask and list_documents,
        and each document's text as rag://documents/{id}. Over stdio for desktop clients
        (the default) or streamable HTTP, which needs the API's keys (RAG_API__KEYS) when
        they are set."""
        try:
            from app.mcp_server import serve
        except ImportError as exc:
            raise SettingsError("mcp", f"the MCP SDK is not installed ({exc.name}): "
                                "pip install -e '.[mcp]'") from None
        from app.service import RagService

        with RagService(settings_for(collection)) as service:
            serve(service, http, host, port)
