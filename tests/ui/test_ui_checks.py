"""An answer's checked sentences and a PDF citation's page image in the chat, with AppTest
against the real API: the unsupported sentence is marked beside the answer with its reason,
a supported one shows its evidence, a PDF citation opens as the page drawn by the API, and a
file gone from the store's folder falls back to the passage text with a note."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_docs import PDF_PAGES, write_pdf
from streamlit.testing.v1 import AppTest
from ui_helpers import ROOT, RunningApi, ingest_via_api

from ui.conversation import Conversation, Turn

SUPPORTED = "The lighthouse keeper logged forty storms in the winter of 1887."
UNSUPPORTED = "The keeper was paid 1931 crowns a year [1]."


def _turn(doc_id: str, source: str) -> Turn:
    citation = {"label": 1, "document_id": doc_id, "source": source, "title": "", "page": 1,
                "text": "\n".join(PDF_PAGES[0]), "quote": PDF_PAGES[0][0], "quote_start": 0,
                "quote_end": len(PDF_PAGES[0][0]), "inferred": False}
    return Turn("What did the keeper log?", answer=f"{SUPPORTED} {UNSUPPORTED}",
                citations=[citation], done=True, sentences=[
                    {"text": SUPPORTED, "citations": [1], "support": "supported",
                     "evidence": {"label": 1, "quote": PDF_PAGES[0][0]}, "note": ""},
                    {"text": UNSUPPORTED, "citations": [1], "support": "unsupported",
                     "evidence": None, "note": "1931 appears in no passage of the context"}])


def _run(doc_id: str, source: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=60)
    at.session_state["conversation"] = Conversation([_turn(doc_id, source)])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_unsupported_sentence_marked_and_pdf_citation_shown_as_its_page(
        ui_env: RunningApi, tmp_path: Path) -> None:
    name = "ui-checks-almanac.pdf"
    job = ingest_via_api(ui_env, name, write_pdf(tmp_path / name).read_bytes())
    assert job["status"] == "done", job
    with ui_env.client() as api:
        doc = next(d for d in api.documents() if d["source"].endswith(name))
    at = _run(doc["document_id"], doc["source"])
    flagged = next(h.value for h in at.html if 'class="rag-unsupported"' in h.value)
    assert UNSUPPORTED in flagged and "1931 appears in no passage of the context" in flagged
    assert SUPPORTED not in flagged
    checks = next(e for e in at.expander if e.label.startswith("Checked sentences"))
    assert checks.label == "Checked sentences: 1 supported · 1 unsupported"
    listed = "".join(h.value for h in checks.html)
    assert "rag-supported" in listed and f"[1] “{PDF_PAGES[0][0]}”" in listed
    box = next(e for e in at.expander if e.label.startswith(f"[1] {name}"))
    assert len(box.image) == 1 and box.image[0].captions == ["Page 1"]
    assert not box.html  # the page image, not the text

    # The file moved away: the same citation falls back to the text with a note.
    source = Path(doc["source"])
    moved = source.with_name("moved-" + source.name)
    source.rename(moved)
    try:
        at = _run(doc["document_id"], doc["source"])
    finally:
        moved.rename(source)
    box = next(e for e in at.expander if e.label.startswith(f"[1] {name}"))
    assert not box.image and any("<mark" in h.value for h in box.html)
    assert any("no longer there" in c.value for c in box.caption)
