"""The UI in a real browser: `streamlit run ui/app.py` in a subprocess, driven through
Debian's headless Chromium by Playwright (no browser is downloaded), against the real API
and LLM server. Leaves screenshots in test-artifacts/ (ui.png: the chat with an answer, an
open citation and the ledger; ui-documents.png: the documents page after an upload)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ports import free_port
from support.servers import stop_process, wait_process_ready
from ui_helpers import API_KEY, FIXTURE_NAME, QUESTION, ROOT, RunningApi

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
ANSWER_TIMEOUT_MS = 240_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make install)"),
]


@pytest.fixture(scope="module")
def ui_url(api_server: RunningApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_UI__API_URL": api_server.url, "RAG_UI__API_KEY": API_KEY,
                "RAG_UI__POLL_INTERVAL_S": "0.2", "PYTHONUNBUFFERED": "1",
                # As the UI image runs it: `ui` from this checkout, not from an install.
                "PYTHONPATH": str(ROOT)})
    log = tmp_path_factory.mktemp("ui") / "streamlit.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"),
             "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_process_ready(process, f"{url}/_stcore/health", 60,
                           lambda: log.read_text(errors="replace")[-3000:])
        yield url
    finally:
        stop_process(process, timeout_s=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                               args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def test_ask_open_citation_and_upload_in_a_browser(ui_url: str, browser: object,
                                                   tmp_path: Path) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.goto(ui_url)
    expect(page.get_by_role("heading", name="Ask your documents")).to_be_visible(timeout=60_000)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Token budget")).to_be_visible()

    # Ask; the answer streams into the assistant's message, then its sources appear.
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(QUESTION)
    box.press("Enter")
    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(2, timeout=30_000)
    answer = messages.nth(1)
    citation = answer.get_by_test_id("stExpander").filter(has_text=f"[1] {FIXTURE_NAME}")
    expect(citation).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(answer.locator(".rag-ledger")).to_be_visible()
    expect(answer.locator(".rag-ledger")).to_contain_text(FIXTURE_NAME)
    # SmolLM2-135M's answer is not always right; that it came, streamed, is what counts here.
    expect(answer.get_by_test_id("stMarkdownContainer").first).to_have_text(re.compile(r"\w{3}"))
    # Every sentence is checked against the passages; the verdicts sit beside the answer.
    expect(answer.get_by_test_id("stExpander").filter(has_text="Checked sentences")).to_be_visible()

    # Open the citation: the passage shows with the quoted sentence marked.
    citation.locator("summary").click()
    mark = citation.locator(".rag-passage mark")
    expect(mark).to_be_visible()
    expect(citation.locator(".rag-passage")).to_contain_text("opened in 1931")
    # Streamlit scrolls its main area itself (full_page sees one window): a tall window
    # shows the whole conversation.
    page.set_viewport_size({"width": 1400, "height": 1500})
    expect(answer.locator(".rag-ledger")).to_be_in_viewport()
    page.screenshot(path=str(ARTIFACTS / "ui.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})

    # The documents page: upload a file and wait until the table lists it.
    sidebar.get_by_role("link", name="Documents").click()
    expect(page.get_by_role("heading", name="Documents", exact=True)).to_be_visible()
    expect(page.locator("table")).to_contain_text(FIXTURE_NAME)
    upload = tmp_path / "ferry-notes.md"
    upload.write_text("# Ferry notes\n\nThe ferry to Kelpie Point leaves at nine.\n")
    page.locator("input[type=file]").set_input_files(str(upload))
    expect(page.get_by_text("ferry-notes.md").first).to_be_visible()
    page.get_by_role("button", name="Upload and ingest").click()
    expect(page.locator("table")).to_contain_text("ferry-notes.md", timeout=120_000)
    expect(page.get_by_text("ferry-notes.md: new")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "ui-documents.png"))


def test_evaluation_page_in_a_browser(ui_url: str, browser: object) -> None:
    """Run an evaluation from the Evaluation page; its recommendation, chart and table show
    (screenshot: ui-eval.png)."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})  # type: ignore[attr-defined]
    page.goto(ui_url)
    expect(page.get_by_role("heading", name="Ask your documents")).to_be_visible(timeout=60_000)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("link", name="Evaluation").click()
    # The page's first run in this server compiles it: seconds on a loaded machine.
    expect(page.get_by_role("heading", name="Evaluation", exact=True)).to_be_visible(
        timeout=30_000)
    probes = page.get_by_label("Probes of each kind (needles, passages)")
    probes.fill("2")  # (Enter would submit the form already)
    page.get_by_role("button", name="Run the evaluation").click()
    expect(page.get_by_text("Recommended: budget")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Earlier runs")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "ui-eval.png"))
