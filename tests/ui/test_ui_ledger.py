"""The ledger picture: pure functions of the ledger dict the API returns."""

from __future__ import annotations

from ui import ledger

LEDGER = {
    "budget": {"requested": 16384, "context_window": 8192, "answer_reserve": 1024,
               "prompt_tokens": 180, "available": 6988},
    "used_tokens": 900,
    "passages": [
        {"label": 1, "document_id": "a", "source": "/d/notes/report.pdf", "title": "Report",
         "page": 2, "chunks": [0, 1], "text": "x", "tokens": 600, "score": 0.9},
        {"label": 2, "document_id": "b", "source": "/d/<evil>&.md", "title": "", "page": None,
         "chunks": [3], "text": "y", "tokens": 300, "score": 0.5},
    ],
    "left_out": [{"reason": "budget", "document_id": "a", "source": "/d/notes/report.pdf",
                  "page": 9, "chunk_index": 7, "tokens": 64, "score": 0.1},
                 {"reason": "budget"}, {"reason": "duplicate"}],
    "mode": "retrieve", "layout": "document", "search_mode": "hybrid", "candidates": 12,
    "documents": [{"document_id": "a", "source": "/d/notes/report.pdf", "title": "Report",
                   "passages": 1, "tokens": 600},
                  {"document_id": "b", "source": "/d/<evil>&.md", "title": "",
                   "passages": 1, "tokens": 300}],
}


def test_bar_is_the_budget_capped_by_the_window() -> None:
    assert ledger.total(LEDGER) == 8192
    parts = ledger.segments(LEDGER)
    assert [s.kind for s in parts] == ["prompt", "document", "document", "reserve", "unused"]
    assert [s.tokens for s in parts] == [180, 600, 300, 1024, 8192 - 180 - 900 - 1024]
    assert sum(s.tokens for s in parts) == 8192
    assert parts[1].label == "report.pdf" and parts[1].document_id == "a"
    assert parts[1].color != parts[2].color


def test_documents_are_summed_from_passages_without_a_summary() -> None:
    bare = {**LEDGER, "documents": None}
    assert [(d["name"], d["tokens"]) for d in ledger.document_tokens(bare)] == [
        ("report.pdf", 600), ("<evil>&.md", 300)]


def test_over_full_budget_has_no_unused_part() -> None:
    full = {**LEDGER, "budget": {**LEDGER["budget"], "requested": 2000}}
    assert "unused" not in [s.kind for s in ledger.segments(full)]


def test_left_out_counted_by_reason() -> None:
    assert ledger.left_out_counts(LEDGER) == {"budget": 2, "duplicate": 1}
    assert ledger.left_out_text(LEDGER) == (
        "3 passages left out: 2 over the budget, 1 duplicate content.")
    assert ledger.left_out_text({**LEDGER, "left_out": []}) == "Nothing was left out."


def test_summary_line() -> None:
    line = ledger.summary(LEDGER)
    assert line.startswith("900 tokens (11% of 8,192) from 2 passages of 2 documents")
    assert "hybrid search, document layout" in line
    assert "whole documents" in ledger.summary({**LEDGER, "mode": "full"})


def test_html_is_escaped_and_proportional() -> None:
    page = ledger.render_html(LEDGER)
    assert "<evil>" not in page and "&lt;evil&gt;&amp;.md" in page
    assert 'data-kind="document"' in page and "width:7.324%" in page  # 600 / 8192
    assert "2 over the budget" in page


def test_notes_are_listed_under_the_bar_escaped() -> None:
    noted = {**LEDGER, "notes": ["neighbours 1 -> 0: the budget holds fewer than 8 widened "
                                 "passages", "sub-queries: <a> | b", " "]}
    assert ledger.notes(noted) == noted["notes"][:2]
    page = ledger.render_html(noted)
    assert "How the context was chosen:" in page
    assert "<li>neighbours 1 -&gt; 0: the budget holds" in page
    assert "<li>sub-queries: &lt;a&gt; | b</li>" in page and page.count("<li>") == 2
    assert "How the context was chosen" not in ledger.render_html(LEDGER)  # none sent


def test_empty_ledger_does_not_fail() -> None:
    assert ledger.segments({}) == []
    assert "0 tokens" in ledger.render_html({})


def test_file_name() -> None:
    assert ledger.file_name("/a/b/c.txt") == "c.txt"
    assert ledger.file_name(None) == "unknown"
    assert ledger.file_name("https://x.org/doc/") == "doc"
