"""`rag run` (what `make run` starts): sample ingested into an empty store, the CPU LLM
server, the REST API and the web UI, all on this machine; Ctrl-C stops every one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.ports import free_port

from serving.readiness import wait_ready

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def wait_for(url: str, timeout_s: float = 180) -> httpx.Response:
    assert wait_ready(url, timeout_s, path=""), f"{url} did not answer 200 within {timeout_s} s"
    return httpx.get(url, timeout=10)


def test_rag_run_starts_llm_api_and_ui_and_stops_them(tmp_path: Path) -> None:
    api, ui, llm = free_port(), free_port(), free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_API__PORT": str(api),
           "RAG_CPU_SERVER__PORT": str(llm), "PYTHONPATH": str(ROOT)}  # the UI too: this checkout
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--ui-port", str(ui)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        ready = wait_for(f"http://127.0.0.1:{api}/readyz").json()
        assert ready["checks"]["qdrant"]["detail"] == "3 documents"
        assert ready["checks"]["llm"]["ok"]
        wait_for(f"http://127.0.0.1:{ui}/_stcore/health")
        page = wait_for(f"http://127.0.0.1:{ui}/")
        assert "<title>" in page.text.lower() or "streamlit" in page.text.lower()
        body = {"question": "How long can the lighthouse lamp run on its reserve batteries?",
                "budget_tokens": 2048}
        r = httpx.post(f"http://127.0.0.1:{api}/v1/retrieve", json=body, timeout=60)
        assert r.status_code == 200
        assert any("lighthouse" in p["source"] for p in r.json()["passages"])
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert "Ingested 3 documents" in output
    assert f"Web UI: http://127.0.0.1:{ui}" in output
    for port in (api, ui, llm):  # nothing left listening
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
