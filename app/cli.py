"""The `rag` command: a thin shell over the library; errors become one line and an exit code."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.errors import RagError, SettingsError
from app.settings import Settings, load_settings

app = typer.Typer(
    name="rag",
    help="Answer questions over your own documents with long-context Llama 3.1.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
documents_app = typer.Typer(help="List and delete stored documents.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _State:
    overrides: dict[str, Any] = {}
    settings: Settings | None = None


def settings() -> Settings:
    if _State.settings is None:
        _State.settings = load_settings(**_State.overrides)
    return _State.settings


@app.callback()
def _root(
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML settings file (default: ./rag.yaml when present).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Data directory (embedded store); overrides RAG_DATA_DIR.")] = None,
) -> None:
    _State.settings = None
    _State.overrides = {}
    if config is not None:
        _State.overrides["config_file"] = config
    if data_dir is not None:
        _State.overrides["data_dir"] = data_dir


def _with_collection(collection: str | None) -> Settings:
    s = settings()
    if collection:
        from pydantic import ValidationError

        try:
            store = s.store.model_validate({**s.store.model_dump(), "collection": collection})
        except ValidationError as exc:
            raise SettingsError(f"--collection: {exc.errors()[0]['msg']}") from None
        s = s.model_copy(update={"store": store})
        _State.settings = s
    return s


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to ingest.")],
    collection: Annotated[str | None, typer.Option(help="Collection (corpus) to write to.")] = None,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Remove stored documents whose files are gone.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Parse, chunk, embed and store documents; unchanged files are skipped.

    Exit codes: 0 every file was handled (ingested, unchanged or skipped as unsupported
    inside a folder); 1 some files failed (each is listed with its reason); 2 usage or
    settings error.
    """
    from app.console import IngestProgress, print_ingest_report
    from ingest.pipeline import ingest as run_ingest

    s = _with_collection(collection)
    with IngestProgress(err, enabled=not quiet and err.is_terminal) as progress:
        report = run_ingest(s, paths, prune=prune, progress=progress)
    print_ingest_report(out, err, report)
    raise typer.Exit(1 if report.failed else 0)


@documents_app.command("list")
def documents_list(
    collection: Annotated[str | None, typer.Option(help="Collection to list.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List stored documents."""
    from ingest.documents import list_documents
    from ingest.store import open_store

    s = _with_collection(collection)
    store = open_store(s)
    try:
        docs = list_documents(store)
    finally:
        store.close()
    if as_json:
        out.print_json(json.dumps([d.to_dict() for d in docs]))
        return
    if not docs:
        out.print(f"No documents in collection '{s.store.collection}'.")
        return
    table = Table("id", "type", "pages", "chunks", "tokens", "ingested", "source")
    table.columns[0].no_wrap = True
    table.columns[5].no_wrap = True
    table.columns[6].overflow = "fold"
    for d in docs:
        table.add_row(d.document_id, d.type, str(d.pages or ""), str(d.chunks), f"{d.tokens:,}",
                      d.ingested_at[:10], escape(d.source))
    out.print(table)


@documents_app.command("delete")
def documents_delete(
    ids: Annotated[list[str], typer.Argument(help="Document ids or file paths.")],
    collection: Annotated[str | None, typer.Option(help="Collection to delete from.")] = None,
) -> None:
    """Delete documents (all their chunks) by id or path."""
    from ingest.documents import delete_document
    from ingest.store import open_store

    s = _with_collection(collection)
    store = open_store(s)
    try:
        for ident in ids:
            doc = delete_document(store, ident)
            out.print(f"Deleted {doc.document_id} ({doc.source}, {doc.chunks} chunks).",
                      markup=False, soft_wrap=True)
    finally:
        store.close()


def _parse_filters(items: list[str]) -> Any:
    from retrieval.service import Filters

    ids: list[str] = []
    types: list[str] = []
    path: str | None = None
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not value:
            raise SettingsError(f"--filter: expected KEY=VALUE, got '{item}'")
        if key in ("document", "doc", "id", "document_id"):
            ids.append(value)
        elif key in ("type", "types"):
            types.extend(v for v in value.split(",") if v)
        elif key == "path":
            path = value
        else:
            raise SettingsError(f"--filter: unknown key '{key}' (use document=, path=, type=)")
    return Filters(tuple(ids), path, tuple(types))


@app.command()
def retrieve(
    question: Annotated[str, typer.Argument(help="The question to find passages for.")],
    budget: Annotated[int | None, typer.Option(
        "--budget", min=1, help="Requested context budget in tokens.")] = None,
    layout: Annotated[str | None, typer.Option(
        help="document | relevance | edges")] = None,
    mode: Annotated[str | None, typer.Option(
        help="Search mode: hybrid | dense | keyword")] = None,
    context: Annotated[str | None, typer.Option(
        help="auto | full | retrieve (auto: whole documents when they fit)")] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help="document=ID, path=PREFIX_OR_GLOB or type=pdf,docx; repeatable.")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection to search.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    show_text: Annotated[bool, typer.Option("--text", help="Print the passages' text.")] = False,
) -> None:
    """Find and pack the passages a question needs, with the budget ledger."""
    from app.console import print_retrieval
    from app.runtime import Runtime
    from retrieval.service import RetrieveOptions

    _check_choice("--layout", layout, ("document", "relevance", "edges"))
    _check_choice("--mode", mode, ("hybrid", "dense", "keyword"))
    _check_choice("--context", context, ("auto", "full", "retrieve"))
    s = _with_collection(collection)
    options = RetrieveOptions(budget_tokens=budget, layout=layout, search_mode=mode,  # type: ignore[arg-type]
                              context_mode=context, filters=_parse_filters(filters or []))  # type: ignore[arg-type]
    with Runtime(s) as rt:
        result = rt.retriever().retrieve(question, options)
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    print_retrieval(out, result, show_text)


def _check_choice(option: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise SettingsError(f"{option}: '{value}' is not one of {', '.join(choices)}")


@app.command()
def run() -> None:
    """The main job on embedded defaults: ingest the built-in sample when the store is empty,
    then show what retrieval packs for a sample question."""
    from app.console import print_retrieval
    from app.runtime import Runtime, sample_dir
    from ingest.pipeline import ingest as run_ingest

    s = settings()
    with Runtime(s) as rt:
        if not rt.document_count():
            out.print(f"The store is empty: ingesting the built-in sample ({sample_dir()}).")
            report = run_ingest(s, [sample_dir()], store=rt.store, embedder=rt.embedder())
            out.print(f"Ingested {report.count('new')} documents, {report.chunks} chunks.")
        question = "How long can the lighthouse lamp run on its reserve batteries?"
        result = rt.retriever().retrieve(question)
    out.print(f"\n[bold]rag retrieve[/bold] \"{question}\"")
    print_retrieval(out, result, show_text=False)
    out.print("\nReady. Try: .venv/bin/rag retrieve \"your question\" --text   "
              "·   .venv/bin/rag ingest ~/your-docs")


def main() -> None:
    try:
        app()
    except RagError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print(_INTERRUPTED, soft_wrap=True)
        sys.exit(130)
    except SystemExit as exc:
        # typer turns Ctrl-C inside a command into a silent exit 130: say what happened.
        if exc.code == 130:
            err.print(_INTERRUPTED, soft_wrap=True)
        raise


_INTERRUPTED = "interrupted: what was committed is intact; run the command again to finish."


if __name__ == "__main__":
    main()
