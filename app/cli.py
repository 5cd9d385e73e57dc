"""The `rag` command: a thin shell over the library; errors become one line and an exit code."""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from app.cli_consoles import deferred_console
from app.cli_help import tidy as tidy_help
from app.cli_lazy import LazyGroup, lazy_command
from app.mcp_command import register as register_mcp
from app.terminal import printable, printable_text
from core import heap
from core.choices import ContextMode, Layout, SearchMode
from core.errors import RagError, SettingsError
from core.settings import Settings, load_settings

EXIT_CODES = (
    "Exit codes: 0 done; 1 some files failed (each is named) or another error; 2 usage or "
    "settings error (the option, variable or YAML line is named); 3 the embedded store is in "
    "use by another process (send the work through the running `rag api`); 4 the Qdrant "
    "server cannot be reached or refused the request (store.url); 128+N a signal N ended it "
    "(130: Ctrl-C).")

app = typer.Typer(
    name="rag",
    help="Answer questions over your own documents with long-context Llama 3.1.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog=EXIT_CODES,
    cls=LazyGroup,
)
documents_app = typer.Typer(help="List and delete stored documents.", no_args_is_help=True)
app.add_typer(documents_app, name="documents")

_C = TypeVar("_C", bound=StrEnum)
LAYOUT_HELP = " | ".join(Layout)
MODE_HELP = "Search mode: " + " | ".join(SearchMode)
CONTEXT_HELP = " | ".join(ContextMode)
FILTER_HELP = ("document=ID, path=PATTERN or type=pdf,docx; repeatable. A path glob (* ? [) "
               "matches the whole path when absolute, else its end ('*report*', "
               "'docs/*.pdf'); without one, path= is a folder or file prefix.")

out = deferred_console(highlight=False)
err = deferred_console(stderr=True, highlight=False)


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
            raise SettingsError("--collection", exc.errors()[0]["msg"]) from None
        s = s.model_copy(update={"store": store})
        _State.settings = s
    return s


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(
        metavar="PATH", help="Files and folders to ingest.")],
    collection: Annotated[str | None, typer.Option(help="Collection (corpus) to write to.")] = None,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Remove stored documents whose files are gone.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Then keep watching: changed files are ingested, deleted ones removed, "
        "moved ones renamed (nothing embedded again), one line each; Ctrl-C stops.")] = False,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="Run on a Ray cluster: local, auto or ray://HOST:10001 "
        "(ingest.ray_address; needs store.url and the 'ray' extra).")] = None,
) -> None:
    """Parse, chunk, embed and store documents; unchanged files are skipped.

    Exit codes: 0 every file was handled (ingested, unchanged or skipped as unsupported
    inside a folder); 1 some files failed (each is listed with its reason); 2 usage or
    settings error. With --watch: 0 when Ctrl-C stops it.
    """
    from app import tracing
    from app.console import IngestProgress, print_ingest_report
    from core.tracing import span
    from ingest.pipeline import ingest as run_ingest

    if watch:
        from app.watch import check_watchable

        check_watchable(paths)
    s = _with_collection(collection)
    tracing.enable(s)
    with IngestProgress(err, enabled=not quiet and err.is_terminal) as progress, \
            span("rag.ingest", rag__paths=len(paths)):
        if ray or s.ingest.ray_address:
            from ingest.ray_pipeline import ingest_on_ray

            report = ingest_on_ray(s, paths, ray or s.ingest.ray_address, prune, progress)
        else:
            report = run_ingest(s, paths, prune=prune, progress=progress)
    print_ingest_report(out, err, report)
    if watch:
        from app.watch import watch as watch_paths

        watch_paths(s, paths, out, err)
        raise typer.Exit(0)
    raise typer.Exit(1 if report.failed else 0)


@documents_app.command("list")
def documents_list(
    collection: Annotated[str | None, typer.Option(help="Collection to list.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List stored documents.

    On a terminal, a table fitted to its width (paths relative to the current folder or
    their common folder); in a pipe, one tab-separated line per document, written page by
    page as the store is read: id, type, pages, chunks, tokens, ingested, source (absolute)."""
    from app.console import stream_rows
    from ingest.documents import iter_documents, list_documents
    from ingest.store import open_store

    s = _with_collection(collection)
    store = open_store(s)
    try:
        # A pipe gets each page's rows as they are read (store order), not all at the end.
        if not as_json and not out.is_terminal and stream_rows(out, iter_documents(store)):
            return
        docs = list_documents(store)
    finally:
        store.close()
    if as_json:
        out.print_json(json.dumps([d.to_dict() for d in docs]))
        return
    if not docs:
        out.print(f"No documents in collection '{s.store.collection}'.")
        return
    from app.console import print_documents

    print_documents(out, docs, os.getcwd())


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
            out.print(f"Deleted {doc.document_id} ({printable(doc.source)}, {doc.chunks} chunks).",
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
            raise SettingsError("--filter", f"expected KEY=VALUE, got '{item}'")
        if key in ("document", "doc", "id", "document_id"):
            ids.append(value)
        elif key in ("type", "types"):
            types.extend(v for v in value.split(",") if v)
        elif key == "path":
            path = value
        else:
            raise SettingsError("--filter", f"unknown key '{key}' (use document=, path=, type=)")
    return Filters(tuple(ids), path, tuple(types))


@app.command()
def retrieve(
    question: Annotated[str, typer.Argument(help="The question to find passages for.")],
    budget: Annotated[int | None, typer.Option(
        "--budget", min=1, help="Requested context budget in tokens.")] = None,
    layout: Annotated[str | None, typer.Option(help=LAYOUT_HELP)] = None,
    mode: Annotated[str | None, typer.Option(help=MODE_HELP)] = None,
    context: Annotated[str | None, typer.Option(
        help=CONTEXT_HELP + " (auto: whole documents when they fit)")] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help=FILTER_HELP)] = None,
    collection: Annotated[str | None, typer.Option(help="Collection to search.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    show_text: Annotated[bool, typer.Option("--text", help="Print the passages' text.")] = False,
) -> None:
    """Find and pack the passages a question needs, with the budget ledger."""
    from app.runtime import Runtime

    options = _options(budget, layout, mode, context, filters)
    s = _with_collection(collection)
    with Runtime(s) as rt:
        result = rt.retriever().retrieve(question, options)
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    from app.console import print_retrieval  # not before: it imports the ingest pipeline

    print_retrieval(out, result, show_text)


def _options(budget: int | None, layout: str | None, mode: str | None, context: str | None,
             filters: list[str] | None) -> Any:
    from retrieval.service import RetrieveOptions

    return RetrieveOptions(budget_tokens=budget, layout=_choice("--layout", layout, Layout),
                           search_mode=_choice("--mode", mode, SearchMode),
                           context_mode=_choice("--context", context, ContextMode),
                           filters=_parse_filters(filters or []))


def _stream_answer(service: Any, question: str, history: tuple[Any, ...], options: Any,
                   as_json: bool) -> Any:
    """Prints the answer as it streams (unless --json), then its sources."""
    from app.console import print_citations

    answer = None
    for event in service.stream(question, history, options):
        if event.kind == "retrieval" and not as_json and event.retrieval.message:
            err.print(f"note: {printable(event.retrieval.message)}", markup=False, soft_wrap=True)
        elif event.kind == "delta" and not as_json:
            out.print(printable_text(event.text), end="", markup=False, soft_wrap=True)
            out.file.flush()
        elif event.kind == "done":
            answer = event.answer
    assert answer is not None
    if as_json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
    else:
        out.print()
        print_citations(out, answer)
    return answer


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer from your documents.")],
    budget: Annotated[int | None, typer.Option(
        "--budget", min=1, help="Requested context budget in tokens.")] = None,
    layout: Annotated[str | None, typer.Option(help=LAYOUT_HELP)] = None,
    mode: Annotated[str | None, typer.Option(help=MODE_HELP)] = None,
    context: Annotated[str | None, typer.Option(help=CONTEXT_HELP)] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help=FILTER_HELP)] = None,
    collection: Annotated[str | None, typer.Option(help="Collection to search.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end.")] = False,
) -> None:
    """Answer a question from your documents: streams the answer, then lists its sources."""
    from app.service import RagService

    options = _options(budget, layout, mode, context, filters)
    with RagService(_with_collection(collection)) as service:
        _stream_answer(service, question, (), options, as_json)


@app.command()
def chat(
    budget: Annotated[int | None, typer.Option(
        "--budget", min=1, help="Requested context budget in tokens.")] = None,
    layout: Annotated[str | None, typer.Option(help=LAYOUT_HELP)] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help=FILTER_HELP)] = None,
    collection: Annotated[str | None, typer.Option(help="Collection to search.")] = None,
) -> None:
    """An interactive conversation; follow-up questions see the history. /new starts over,
    /exit (or Ctrl-D) leaves."""
    from app.service import RagService
    from retrieval.prompt import Message

    options = _options(budget, layout, None, None, filters)
    history: list[Message] = []
    with RagService(_with_collection(collection)) as service:
        info = service.served()
        err.print(f"chat with {info.model} ({info.context_window:,}-token window). "
                  "/new starts over, /exit leaves.", markup=False)
        while True:
            try:
                question = input("\nyou> ").strip()
            except EOFError:
                out.print()
                return
            if question in ("/exit", "/quit"):
                return
            if question == "/new":
                history.clear()
                err.print("(new conversation)")
                continue
            if not question:
                continue
            out.print("rag> ", end="")
            try:
                answer = _stream_answer(service, question, tuple(history), options, False)
            except RagError as exc:
                err.print(f"error: {printable(exc)}", markup=False, soft_wrap=True)
                continue
            history += [Message("user", question), Message("assistant", answer.answer)]


serve_app = typer.Typer(help="Run an LLM server: llama.cpp on the CPU, or vLLM on GPUs.",
                        no_args_is_help=True)
app.add_typer(serve_app, name="serve")


@serve_app.command("cpu")
def serve_cpu(
    model: Annotated[str | None, typer.Option(help="A GGUF file (default: the shipped SmolLM2).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads.")] = None,
    n_ctx: Annotated[int | None, typer.Option("--n-ctx", help="Context window in tokens.")] = None,
) -> None:
    """The OpenAI-compatible llama.cpp server with a small GGUF model (the CPU default)."""
    from serving import llamacpp

    s = settings()
    update = {k: v for k, v in {"model_path": model, "host": host, "port": port,
                                "threads": threads, "n_ctx": n_ctx}.items() if v is not None}
    cfg = _validated(s.cpu_server, update, "cpu_server")
    raise typer.Exit(llamacpp.serve(cfg))


@serve_app.command("vllm")
def serve_vllm(
    preset: Annotated[str | None, typer.Option(
        help="8b | 70b (4 GPUs) | 405b-fp8 (8 GPUs); default: the vllm settings.")] = None,
    dry_run: Annotated[bool, typer.Option("--print", help="Print the command line only.")] = False,
) -> None:
    """Llama 3.1 on vLLM with FlashAttention at 128k (needs the gpu extra and NVIDIA GPUs)."""
    import shlex

    from serving import vllm

    s = settings()
    cfg = s.vllm
    if preset:
        chosen = {k: v for k, v in s.vllm.model_dump().items()
                  if k not in ("model", "tensor_parallel_size", "quantization", "kv_cache_dtype")}
        cfg = vllm.preset(preset, **chosen)
    if dry_run:
        out.print(shlex.join(vllm.render_command(cfg)), markup=False, soft_wrap=True)
        return
    raise typer.Exit(vllm.serve(cfg))


def _validated(section: Any, update: dict[str, Any], name: str) -> Any:
    from pydantic import ValidationError

    try:
        return section.model_validate({**section.model_dump(), **update})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(f"{name}.{'.'.join(map(str, first['loc']))}", first["msg"]) from None


def _choice(option: str, value: str | None, choices: type[_C]) -> _C | None:
    """The option's value as its choice; our one-line error (not click's box) otherwise."""
    if value is None:
        return None
    try:
        return choices(value)
    except ValueError:
        raise SettingsError(option, f"'{value}' is not one of {', '.join(choices)}") from None


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (api.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (api.port).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes (api.workers); more than one needs RAG_STORE__URL.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the REST API (FastAPI on uvicorn): /v1/query, /v1/chat/completions, /docs..."""
    import os

    import uvicorn

    s = settings()
    update = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items()
              if v is not None}
    cfg = _validated(s.api, update, "api")
    s = s.model_copy(update={"api": cfg})
    if cfg.workers > 1:
        if not s.store.url:
            raise SettingsError(
                "api.workers", f"{cfg.workers} worker processes need a Qdrant server "
                "(RAG_STORE__URL): the embedded store belongs to one process; use 1 worker")
        if not (s.llm.url or s.llm.urls):
            raise SettingsError(
                "api.workers", f"{cfg.workers} worker processes need an LLM server URL "
                "(RAG_LLM__URL): start one with `rag serve cpu` (or vLLM) first")
        # Each worker builds its settings anew (the factory below): the command line's
        # overrides travel to them in the environment.
        for key, name in (("config_file", "RAG_CONFIG_FILE"), ("data_dir", "RAG_DATA_DIR")):
            if key in _State.overrides:
                os.environ[name] = str(_State.overrides[key])
        for key, value in update.items():
            os.environ[f"RAG_API__{key.upper()}"] = str(value)
        uvicorn.run("app.api.main:create_app", factory=True, host=cfg.host, port=cfg.port,
                    workers=cfg.workers, log_level=log_level,
                    http="app.api.server:EnvelopeHTTPProtocol")
        return
    from app.api import create_app

    uvicorn.run(create_app(s), host=cfg.host, port=cfg.port, log_level=log_level,
                http="app.api.server:EnvelopeHTTPProtocol")


@app.command()
def run(
    ui_port: Annotated[int, typer.Option(help="Port of the web UI.")] = 8501,
    no_ui: Annotated[bool, typer.Option("--no-ui", help="Start the API only.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Ingest the sample, answer one question and exit (no servers kept).")] = False,
) -> None:
    """The main job on embedded defaults: ingest the built-in sample when the store is empty,
    start the CPU LLM server (unless RAG_LLM__URL is set), the REST API and the web UI, and
    print the UI's address. Ctrl-C stops them all."""
    import subprocess

    from serving.orphan_guard import guarded

    s = settings()
    _ingest_sample_if_empty(s)
    if check:
        from app.service import RagService

        with RagService(s) as service:
            _stream_answer(service, "How long can the lighthouse lamp run on its reserve batteries?",
                           (), _options(None, None, None, None, None), False)
        return

    if not (s.llm.url or s.llm.urls):
        from serving import llamacpp

        out.print("Starting the CPU LLM server (llama.cpp, "
                  f"{llamacpp.model_path(s.cpu_server).name}) ...")
        url = llamacpp.ensure_running(s.cpu_server)
        s = s.model_copy(update={"llm": s.llm.model_copy(update={"url": url})})

    import uvicorn

    from app.api import create_app

    api_host = "127.0.0.1" if s.api.host in ("0.0.0.0", "::") else s.api.host
    api_url = f"http://{api_host}:{s.api.port}"
    ui = None
    if not no_ui:
        env = {**os.environ, "RAG_UI__API_URL": api_url}
        if s.api.keys:
            env.setdefault("RAG_UI__API_KEY", s.api.keys[0])
        ui_app = Path(__file__).resolve().parents[1] / "ui" / "app.py"
        ui = subprocess.Popen(guarded(
            [sys.executable, "-m", "streamlit", "run", str(ui_app), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(ui_port),
             "--browser.gatherUsageStats", "false"]),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.print(f"\n[bold]Web UI: http://127.0.0.1:{ui_port}[/bold]")
    out.print(f"REST API: {api_url}  (OpenAPI: {api_url}/docs)  ·  Ctrl-C stops everything\n")
    try:
        uvicorn.run(create_app(s), host=s.api.host, port=s.api.port, log_level="warning",
                    http="app.api.server:EnvelopeHTTPProtocol")
    finally:
        if ui is not None:
            ui.terminate()
            ui.wait(10)


register_mcp(app, _with_collection)


def _ingest_sample_if_empty(s: Settings) -> None:
    from app.runtime import Runtime, sample_dir
    from ingest.pipeline import ingest as run_ingest

    with Runtime(s) as rt:
        if not rt.document_count():
            out.print(f"The store is empty: ingesting the built-in sample ({sample_dir()}).")
            report = run_ingest(s, [sample_dir()], store=rt.store, embedder=rt.embedder())
            out.print(f"Ingested {report.count('new')} documents, {report.chunks} chunks.")
        else:
            out.print(f"{rt.document_count()} documents in collection '{s.store.collection}'.")


def _silence_warnings() -> None:
    """Third-party warnings (qdrant-client's, torch's...) are not for a user's terminal;
    `python -W ...` or PYTHONWARNINGS still shows them."""
    if sys.warnoptions:
        return
    warnings.simplefilter("ignore")
    # A library that adds its own "always" filter later is silenced here too.
    warnings.showwarning = lambda *args, **kwargs: None


class _Terminated(SystemExit):
    """SIGTERM or SIGHUP arrived: unwind (finally blocks stop what the command started),
    then end by the same signal, as supervisors expect."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def _on_terminate(signum: int, _frame: object) -> None:
    raise _Terminated(signum)


def _install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_terminate)
    # As SIGTERM: while uvicorn runs it catches SIGTERM and shuts down gracefully first.
    signal.signal(signal.SIGHUP, lambda *_: signal.raise_signal(signal.SIGTERM))


def _end_by_signal(signum: int) -> None:
    from serving import llamacpp

    llamacpp.stop_all()  # atexit does not run when a signal ends the process
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _register_eval(holder: typer.Typer) -> None:
    from app import cli_eval  # ~1 s of imports (the OpenAI SDK, the pipeline): only for `eval`

    cli_eval.register(holder, _with_collection, out, err)


lazy_command("eval", _register_eval)


def main() -> None:
    heap.limit_arenas()  # before any thread: memory freed after a job goes back
    _silence_warnings()
    _install_signal_handlers()
    try:
        command = typer.main.get_command(app)
        tidy_help(command)
        command(prog_name="rag")
    except RagError as exc:
        err.print(f"error: {printable(exc)}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print(_INTERRUPTED, soft_wrap=True)
        sys.exit(130)
    except _Terminated as exc:
        _end_by_signal(exc.signum)
    except SystemExit as exc:
        # typer turns Ctrl-C inside a command into a silent exit 130: say what happened.
        if exc.code == 130:
            err.print(_INTERRUPTED, soft_wrap=True)
        raise


_INTERRUPTED = "interrupted: what was committed is intact; run the command again to finish."


if __name__ == "__main__":
    main()
