"""Helpers of the UI tests: the real REST API in a subprocess (uvicorn, the app factory),
and the fixture document. The fixtures that use them are in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.ports import free_port
from support.servers import stop_process, wait_process_ready

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "ui-test-key"
FIXTURE_NAME = "kelpie-point-museum.md"
FIXTURE_TEXT = """# The Kelpie Point Harbour Museum

The Kelpie Point Harbour Museum opened in 1931 in the old customs house on the north quay.
Its founder was the retired pilot Morag Lindqvist, who gave her collection of ship models.

The museum holds 212 ship models, the oldest a herring drifter carved in 1874.
The foghorn room is open on Saturdays from ten in the morning until four in the afternoon.

Entry is free for children under twelve; adults pay four pounds.
"""
QUESTION = "When did the Kelpie Point Harbour Museum open?"
SMALL_BUDGET = 2048


@dataclass
class RunningApi:
    url: str
    key: str | None
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> Any:
        from ui.client import ApiClient

        return ApiClient(self.url, self.key, timeout_s=300)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_api(data_dir: Path, llm_url: str, key: str | None = API_KEY,
              ready: bool = True) -> RunningApi:
    """`uvicorn app.api.main:create_app --factory` on a free port; waits for /readyz (or
    only /healthz when the LLM is meant to be down)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_DATA_DIR": str(data_dir), "RAG_LLM__URL": llm_url,
                "RAG_LLM__TIMEOUT_S": "120", "RAG_LLM__RETRIES": "0",
                "RAG_LLM__CONNECT_TIMEOUT_S": "2", "RAG_EMBEDDING__THREADS": "1",
                # llama.cpp's /v1/models does not report its window: the llm_server's n_ctx.
                "RAG_LLM__CONTEXT_WINDOW": "8192",
                # The default budget (the UI's slider starts there): small, for a CPU LLM.
                "RAG_RETRIEVAL__BUDGET_TOKENS": str(SMALL_BUDGET),
                "RAG_API__PORT": str(port), "PYTHONUNBUFFERED": "1"})
    if key:
        env["RAG_API__KEYS"] = f'["{key}"]'
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"api-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.api.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    api = RunningApi(f"http://127.0.0.1:{port}", key, data_dir, process, log)
    wait_process_ready(process, api.url + ("/readyz" if ready else "/healthz"), 180, api.tail)
    return api


def stop_api(api: RunningApi) -> None:
    stop_process(api.process)


def ingest_via_api(api: RunningApi, name: str, content: bytes) -> dict[str, Any]:
    """Uploads one file through the API and waits for its job (the UI's own code path)."""
    from ui.documents import ingest
    from ui.settings import UISettings

    with api.client() as client:
        return ingest(client, [(name, content, "text/markdown")], lambda *a: None,
                      UISettings(api_url=api.url, poll_interval_s=0.2, ingest_timeout_s=300))
