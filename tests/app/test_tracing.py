"""OpenTelemetry spans of one /v1/query, recorded by the SDK's in-memory exporter: the real API
on uvicorn, the built-in sample in Qdrant Edge, the session's llama.cpp server."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.servers import serve_in_thread  # noqa: E402

from app import tracing  # noqa: E402
from app.api import create_app  # noqa: E402
from app.runtime import Runtime, sample_dir  # noqa: E402
from app.service import RagService  # noqa: E402
from core.settings import Settings  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider (set once per process), recording into memory; the
    endpoint setting then keeps it rather than exporting anywhere."""
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture(scope="module")
def api_url(exporter: InMemorySpanExporter, make_settings: Any, llm_server: Any, embedder: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ingest.pipeline import ingest
    from serving.llamacpp import model_path

    settings: Settings = make_settings(
        tmp_path_factory.mktemp("otel"), otel={"endpoint": "http://127.0.0.1:9/v1/traces"},
        llm={"url": llm_server.url, "context_window": llm_server.settings.n_ctx,
             "tokenizer": str(model_path(llm_server.settings)), "retries": 0,
             "temperature": 0.0},
        retrieval={"answer_reserve": 32})
    runtime = Runtime(settings)
    runtime._embedder = embedder
    ingest(settings, [sample_dir()], store=runtime.store, embedder=embedder)
    with RagService(settings, runtime=runtime) as service, \
            serve_in_thread(create_app(settings, service)) as url:
        yield url
    runtime.close()


def children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def test_a_query_records_its_stages_under_the_request(api_url: str,
                                                      exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    response = httpx.post(f"{api_url}/v1/query", timeout=120, json={
        "question": "How long can the lighthouse lamp run on its reserve batteries?",
        "budget_tokens": 400})
    assert response.status_code == 200, response.text
    spans = exporter.get_finished_spans()
    query = by_name(spans, "rag.query")
    server = [s for s in spans if s.kind == trace.SpanKind.SERVER]
    assert [s.name for s in server] == ["POST /v1/query"]
    assert query.parent is not None and query.parent.span_id == server[0].context.span_id
    stages = children(spans, query)
    assert [s.name for s in sorted(stages, key=lambda s: s.start_time or 0)] == [
        "rag.retrieve", "rag.llm", "rag.citations"]
    retrieving = by_name(spans, "rag.retrieve")
    inside = {s.name for s in children(spans, retrieving)}
    assert {"rag.embed", "rag.search", "rag.pack"} <= inside
    packed = by_name(spans, "rag.pack").attributes or {}
    ledger = response.json()["ledger"]
    retrieve = retrieving.attributes or {}
    assert retrieve["rag.tokens_packed"] == ledger["used_tokens"] > 0
    assert retrieve["rag.passages"] == len(ledger["passages"])
    assert packed["rag.tokens_packed"] == ledger["used_tokens"]
    llm = by_name(spans, "rag.llm").attributes or {}
    assert llm["gen_ai.request.model"] == response.json()["model"]
    assert llm["rag.time_to_first_token_s"] > 0
    assert llm["gen_ai.usage.prompt_tokens_counted"] == response.json()["usage"][
        "prompt_tokens_counted"]
    # What the server reports (llama.cpp's stream may carry no usage: then neither has it).
    assert llm.get("gen_ai.usage.output_tokens") == response.json()["usage"]["completion_tokens"]


def test_tracing_is_off_without_an_endpoint(make_settings: Any, tmp_path: Any) -> None:
    assert tracing.enable(make_settings(tmp_path)) is False


def test_rag_ingest_records_embed_and_upsert_batches_under_one_span(
        exporter: InMemorySpanExporter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    monkeypatch.setenv("RAG_OTEL__ENDPOINT", "http://127.0.0.1:9/v1/traces")
    exporter.clear()
    done = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "ingest", "-q",
                                    str(sample_dir())])
    assert done.exit_code == 0, done.output
    spans = exporter.get_finished_spans()
    root = by_name(spans, "rag.ingest")
    below = children(spans, root)
    # Parsing runs on the pipeline's read-ahead thread, which carries the trace along.
    parsed = [s for s in spans if s.name == "rag.parse"]
    assert len(parsed) == len(list(sample_dir().iterdir()))
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in parsed)
    assert all((s.attributes or {})["rag.bytes"] > 0 for s in parsed)
    embedded = sum(int((s.attributes or {})["rag.texts"]) for s in below if s.name == "rag.embed")
    upserted = sum(int((s.attributes or {})["rag.points"]) for s in below if s.name == "rag.upsert")
    assert embedded == upserted > 0


def test_an_endpoint_exports_spans_over_otlp_http(tmp_path: Path) -> None:
    """A fresh process (a tracer provider is set once per process) with the endpoint set
    exports its spans to it: a loopback HTTP server records the OTLP request."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[str, str, int]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], len(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    code = ("from opentelemetry import trace; from app.tracing import enable; "
            "from core.settings import load_settings; from core.tracing import span; "
            f"print(enable(load_settings(data_dir={str(tmp_path)!r}, otel={{'endpoint': "
            f"{endpoint!r}}}))); "
            "s = span('rag.parse', rag__bytes=3); s.__enter__(); s.__exit__(None, None, None); "
            "trace.get_tracer_provider().force_flush()")
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=True)
    finally:
        server.shutdown()
    assert done.stdout.strip() == "True" and done.stderr == ""
    assert [(path, kind) for path, kind, _ in received] == [("/v1/traces",
                                                              "application/x-protobuf")]
    assert received[0][2] > 0


def test_an_upload_job_is_a_trace_of_its_own_with_its_batches(
        api_url: str, exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    with httpx.Client(base_url=api_url, timeout=120) as client:
        answer = client.post("/v1/documents", files=[("files", (
            "tide-table.md", b"# Tide table\n\nHigh water at the north pier is at 06:40 and 19:05.\n"))])
        assert answer.status_code == 202, answer.text
        job = answer.json()["job"]
        for _ in range(1200):
            if job["status"] not in ("queued", "running"):
                break
            threading.Event().wait(0.1)
            job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "done", job
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "rag.ingest")
    assert (root.attributes or {})["rag.job"] == job["id"]
    below = {s.name for s in children(spans, root)}
    assert {"rag.parse", "rag.embed", "rag.upsert"} <= below
