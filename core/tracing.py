"""Spans around the components' own work (parse, embed, upsert, search), made current so that
nested ones find their parent. The OpenTelemetry API alone: without a tracer provider
(app/tracing.py installs one when RAG_OTEL__ENDPOINT is set) every span is a no-op."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

TRACER = "rag"


def attributes(values: dict[str, Any]) -> dict[str, Any]:
    """Keyword names as attribute names (`rag__tokens_packed` → `rag.tokens_packed`); None
    values left out (OTel refuses them)."""
    return {k.replace("__", "."): v for k, v in values.items() if v is not None}


@contextmanager
def span(name: str, **values: Any) -> Iterator[Span]:
    """A span around a block that does not yield (it is the current span meanwhile)."""
    with trace.get_tracer(TRACER).start_as_current_span(name, attributes=attributes(values)) as s:
        yield s
