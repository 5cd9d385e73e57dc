"""OpenTelemetry traces: off by default; `otel.endpoint` (RAG_OTEL__ENDPOINT) exports the
spans over OTLP/HTTP. The code that makes spans uses the API alone (`opentelemetry-api`,
a no-op without a provider); the SDK and the exporter are the `otel` extra, imported only
when tracing is switched on.

Spans of a question (parents given explicitly: an answer is a generator that the API may
resume on another thread, so only blocks that do not yield are made current):
`rag.query` > `rag.retrieve` (budget, tokens packed, candidates, passages; inside it the
components' `rag.embed`, `rag.search` and `rag.pack`, core/tracing.py), `rag.llm` (model, tokens,
cached tokens, time to first token) and `rag.citations`. HTTP routes get FastAPI's own
server spans, the parent of `rag.query`. `rag ingest` is `rag.ingest` > `rag.parse` per
file, `rag.embed` and `rag.upsert` per batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from core.errors import SettingsError
from core.settings import Settings
from core.tracing import TRACER, attributes


def enable(settings: Settings) -> bool:
    """Installs the OTLP exporter when `otel.endpoint` is set (once per process: a provider
    already installed, by this function or by `opentelemetry-instrument`, is kept). Whether
    spans are recorded."""
    if not settings.otel.endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise SettingsError("otel.endpoint", f"tracing needs the otel extra ({exc.name} is "
                            "missing): pip install -e '.[otel]'") from None
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=Resource.create(
            {"service.name": settings.otel.service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otel.endpoint)))
        trace.set_tracer_provider(provider)
    return True


def instrument_api(app: Any, settings: Settings) -> None:
    """FastAPI's server span for every route, when tracing is on."""
    if enable(settings):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")


def start(name: str, parent: Span | None = None, **values: Any) -> Span:
    """A started span: a child of `parent`, else of the current span (the HTTP request's)."""
    context = trace.set_span_in_context(parent) if parent is not None else None
    return trace.get_tracer(TRACER).start_span(name, context=context,
                                               attributes=attributes(values))


@contextmanager
def stage(name: str, parent: Span, current: bool = False, **values: Any) -> Iterator[Span]:
    """A child span of `parent` around a block; an exception marks it failed. With
    `current` (only for a block that does not yield) it is the current span meanwhile, so
    the components' spans inside it (embed, search) are its children."""
    span = start(name, parent, **values)
    try:
        if current:
            with trace.use_span(span, end_on_exit=False, record_exception=False,
                                set_status_on_exception=False):
                yield span
        else:
            yield span
    except BaseException as exc:
        fail(span, exc)
        raise
    finally:
        span.end()


def fail(span: Span, exc: BaseException) -> None:
    if isinstance(exc, GeneratorExit):
        return  # the client went away: not an error of ours
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)))


def annotate(span: Span, **values: Any) -> None:
    span.set_attributes(attributes(values))
