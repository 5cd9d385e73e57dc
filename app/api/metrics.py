"""Prometheus metrics: requests and latency per route template, tokens packed, LLM latency
and time to first token. Each app has its own registry, so several apps (tests) never
collide in the global one."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKENS = (256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rag_http_requests", "HTTP requests by route template and status.",
                                ("method", "route", "status"), registry=r)
        self.latency = Histogram("rag_http_request_duration_seconds",
                                 "Time to the end of the response, by route template.",
                                 ("method", "route"), buckets=_LATENCY, registry=r)
        self.in_flight = Gauge("rag_http_requests_in_flight", "Requests being served.",
                               registry=r)
        self.tokens_packed = Histogram("rag_context_tokens_packed",
                                       "Context tokens packed for one question.",
                                       ("route",), buckets=_TOKENS, registry=r)
        self.llm_seconds = Histogram("rag_llm_answer_seconds",
                                     "LLM time for one answer (request to last token).",
                                     buckets=_LATENCY, registry=r)
        self.ttft = Histogram("rag_llm_time_to_first_token_seconds",
                              "LLM time to the first answer token.", buckets=_LATENCY, registry=r)
        self.completion_tokens = Counter("rag_llm_completion_tokens",
                                         "Answer tokens generated.", registry=r)
        self.jobs = Counter("rag_ingest_jobs", "Upload ingest jobs by final status.", ("status",),
                            registry=r)

    def packed(self, route: str, ledger: dict[str, Any]) -> None:
        self.tokens_packed.labels(route).observe(int(ledger.get("used_tokens") or 0))

    def answered(self, usage: dict[str, Any]) -> None:
        if usage.get("seconds") is not None:
            self.llm_seconds.observe(float(usage["seconds"]))
        if usage.get("time_to_first_token_s") is not None:
            self.ttft.observe(float(usage["time_to_first_token_s"]))
        if usage.get("completion_tokens"):
            self.completion_tokens.inc(int(usage["completion_tokens"]))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (never the raw path: ids in paths
    would make a label per document)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        m = self.metrics
        m.in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            m.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            m.requests.labels(method, template, str(status)).inc()
            m.latency.labels(method, template).observe(time.perf_counter() - started)
