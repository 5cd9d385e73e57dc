"""What every route needs: the one service of this process, its jobs and metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
import httpx
from fastapi import Depends, Request

from app.api.jobs import JobManager
from app.api.metrics import Metrics
from app.api.readiness import ReadinessMonitor
from app.service import RagService
from core.errors import RagError
from core.settings import Settings
from serving.readiness import is_ready

log = logging.getLogger("rag.api")
T = TypeVar("T")
ASIDE_THREADS = 8


@dataclass
class ApiState:
    """One per app (so one per process): the embedded store allows a single owner."""

    settings: Settings
    service: RagService
    jobs: JobManager
    metrics: Metrics
    owns_service: bool
    created: int = field(default_factory=lambda: int(time.time()))
    warm: threading.Event = field(default_factory=threading.Event)
    warm_error: str | None = None
    aside: Any = None  # the CapacityLimiter of run_aside, made in the event loop
    retrievals: Any = None  # the CapacityLimiter of run_retrieval, made in the event loop
    readiness: ReadinessMonitor = field(init=False)
    # The readiness checks' connections to the LLM servers, kept between checks.
    llm_probe: httpx.Client = field(default_factory=httpx.Client)

    def __post_init__(self) -> None:
        self.readiness = ReadinessMonitor(
            {"qdrant": self.check_store, "llm": self.check_llm},
            before_first="starting (loading the embedder and reaching the LLM server)")

    def check_store(self) -> tuple[bool, str]:
        return True, f"{self.service.document_count()} documents"

    def check_llm(self) -> tuple[bool, str]:
        llm = self.service.llm_client()
        if llm is None:
            return False, self.warm_error or "no LLM client"
        up = [u for u in llm.urls if is_ready(u, llm.api_key, path="/models",
                                            client=self.llm_probe)]
        if not up:
            return False, f"not reachable at {', '.join(llm.urls)}"
        return True, f"{len(up)} of {len(llm.urls)} reachable"

    async def run_aside(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a blocking call on threads of its own: sync routes share one pool of 40,
        which 100 clients' retrievals fill, and health and listing must not queue there."""
        if self.aside is None:
            self.aside = anyio.CapacityLimiter(ASIDE_THREADS)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.aside)

    async def run_retrieval(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a blocking retrieval on one of `api.retrieval_threads` threads. More at once
        only queue for the GIL (the event loop with them: /readyz took seconds under 100
        clients); the rest wait in the loop, holding no thread (bench/README.md, "where the
        API's CPU goes" and "a load generator that measures the server")."""
        if self.retrievals is None:
            self.retrievals = anyio.CapacityLimiter(self.settings.api.retrieval_threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.retrievals)

    def warm_up(self) -> None:
        """Loads the embedder and reaches the LLM in the background after startup, so the
        first question does not pay for both; then checks readiness (once before `warm` is
        set, so a warm app has a report) and keeps checking it."""
        try:
            self._warm_parts()
        finally:
            self.readiness.check_now()
            self.warm.set()
            self.readiness.start()

    def _warm_parts(self) -> None:
        try:
            self.service.runtime.warm_embedder()
            self.service.start_llm()
            self.service.served(require_server=False)
        except RagError as exc:
            self.warm_error = str(exc)
            log.warning("warm-up: %s", exc)
        except Exception as exc:  # readiness reports it; requests retry
            self.warm_error = f"{type(exc).__name__}: {exc}"
            log.exception("warm-up failed")


async def get_state(request: Request) -> ApiState:
    # async: FastAPI runs a sync dependency on the shared thread pool, where it would wait
    # behind every running retrieval before even async routes (health, listing) could start.
    return request.app.state.api  # type: ignore[no-any-return]


StateDep = Annotated[ApiState, Depends(get_state)]
