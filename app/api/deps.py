"""What every route needs: the one service of this process, its jobs and metrics."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from app.api.jobs import JobManager
from app.api.metrics import Metrics
from app.service import RagService
from core.errors import RagError
from core.settings import Settings

log = logging.getLogger("rag.api")


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

    def warm_up(self) -> None:
        """Loads the embedder and reaches the LLM in the background after startup, so the
        first question does not pay for both."""
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
        finally:
            self.warm.set()


def get_state(request: Request) -> ApiState:
    return request.app.state.api  # type: ignore[no-any-return]


StateDep = Annotated[ApiState, Depends(get_state)]
