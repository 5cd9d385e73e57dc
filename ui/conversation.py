"""The chat's state and logic, free of Streamlit: turns, the history sent with a follow-up,
the request body, folding a streamed answer into a turn, and how citations read."""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ui.client import StreamEvent
from ui.ledger import file_name


@dataclass
class Options:
    """What the sidebar chose; None leaves the API's default."""

    budget_tokens: int | None = None
    layout: str | None = None
    mode: str | None = None
    context: str | None = None
    document_ids: list[str] = field(default_factory=list)


@dataclass
class Turn:
    """One question and what came back for it."""

    question: str
    answer: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    sentences: list[dict[str, Any]] = field(default_factory=list)  # each checked (API)
    ledger: dict[str, Any] | None = None
    model: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    error: str | None = None
    hint: str = ""
    unavailable: bool = False  # the error is the API or the LLM being down
    done: bool = False

    @property
    def ok(self) -> bool:
        return self.done and self.error is None


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def history(self) -> list[dict[str, str]]:
        """The earlier turns that got an answer, as the API's chat messages."""
        messages: list[dict[str, str]] = []
        for turn in self.turns:
            if turn.ok and turn.answer:
                messages.append({"role": "user", "content": turn.question})
                messages.append({"role": "assistant", "content": turn.answer})
        return messages

    def body(self, question: str, options: Options) -> dict[str, Any]:
        """The POST /v1/query body for a new question after the turns so far."""
        return request_body(question, options, self.history())


def request_body(question: str, options: Options,
                 history: list[dict[str, str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"question": question}
    if history:
        body["history"] = history
    if options.document_ids:
        body["filters"] = {"document_ids": list(options.document_ids)}
    for key in ("budget_tokens", "layout", "mode", "context"):
        value = getattr(options, key)
        if value is not None:
            body[key] = value
    return body


def follow(events: Iterable[StreamEvent], turn: Turn) -> Iterator[str]:
    """Yields the answer's text as it streams in, filling `turn` from the retrieval and done
    events. An error event raises (see ApiClient.stream_query); the turn keeps what came."""
    parts: list[str] = []
    for event in events:
        if event.event == "retrieval":
            turn.ledger = event.data.get("ledger", event.data)
        elif event.event == "delta":
            text = str(event.data.get("text") or "")
            if text:
                parts.append(text)
                turn.answer = "".join(parts)
                yield text
        elif event.event == "done":
            apply_answer(turn, event.data)
    if not turn.done:
        turn.answer = "".join(parts).strip()
        turn.error = "The answer stopped before it was complete."
        turn.hint = "The API closed the stream early; see its log, then ask again."


def apply_answer(turn: Turn, data: dict[str, Any]) -> None:
    """The full answer object (done event or non-streamed reply) into `turn`."""
    turn.answer = str(data.get("answer") or turn.answer or "").strip()
    turn.citations = list(data.get("citations") or [])
    turn.invalid_citations = [int(n) for n in data.get("invalid_citations") or []]
    turn.sentences = list(data.get("sentences") or [])
    turn.ledger = data.get("ledger") or turn.ledger
    turn.model = data.get("model")
    turn.usage = dict(data.get("usage") or {})
    turn.finish_reason = data.get("finish_reason")
    turn.done = True


def citation_title(c: dict[str, Any]) -> str:
    """`[2] report.pdf, p. 3`, then `· OCR` when that page was read by OCR and `· inferred` when
    the app, not the model, chose it."""
    text = f"[{c.get('label')}] {file_name(c.get('source') or c.get('title'))}"
    if c.get("page_label"):
        text += f", {c['page_label']}"
    elif c.get("page") is not None:
        text += f", p. {c['page']}"
    if c.get("ocr"):
        text += " · OCR"
    if c.get("inferred"):
        text += " · inferred"
    return text


def highlighted(c: dict[str, Any]) -> str:
    """The passage as HTML with the quoted sentence marked; falls back to finding the quote
    when the offsets do not match the text."""
    text = str(c.get("text") or "")
    quote = str(c.get("quote") or "")
    start, end = c.get("quote_start"), c.get("quote_end")
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
            and (not quote or text[start:end] == quote)):
        start = text.find(quote) if quote else -1
        end = start + len(quote)
    if start < 0:
        body = html.escape(text)
    else:
        body = (html.escape(text[:start]) + '<mark style="background:#ffe08a;padding:0 1px">'
                + html.escape(text[start:end]) + "</mark>" + html.escape(text[end:]))
    return ('<div class="rag-passage" style="white-space:pre-wrap;font-size:0.9rem;'
            f'max-height:24rem;overflow-y:auto">{body}</div>')


def flagged(turn: Turn) -> list[dict[str, Any]]:
    """The sentences no passage supports that state something (they carry a note)."""
    return [s for s in turn.sentences if s.get("support") != "supported" and s.get("note")]


def checks_summary(turn: Turn) -> str:
    """`3 supported · 1 unsupported · 1 uncited` (only the verdicts that occur)."""
    counts: dict[str, int] = {}
    for s in turn.sentences:
        counts[str(s.get("support"))] = counts.get(str(s.get("support")), 0) + 1
    return " · ".join(f"{counts[k]} {k}" for k in ("supported", "unsupported", "uncited")
                      if counts.get(k))


_SUPPORT_MARK = {"supported": ("✓", "#1a7f37"), "unsupported": ("⚠", "#b35900"),
                 "uncited": ("?", "#6e7781")}


def flagged_html(turn: Turn) -> str:
    """The unsupported and uncited sentences, each with why, as a box beside the answer."""
    items = "".join(
        f'<li class="rag-sentence rag-{html.escape(str(s.get("support")))}">'
        f'<span style="background:#ffe3c2;padding:0 2px">{html.escape(str(s.get("text")))}'
        f'</span><br><small>{html.escape(str(s.get("support")))}: '
        f'{html.escape(str(s.get("note")))}</small></li>' for s in flagged(turn))
    return ('<div class="rag-unsupported" style="border-left:3px solid #b35900;'
            'padding:0.2rem 0.6rem;margin:0.3rem 0;font-size:0.9rem">'
            '<b>⚠ Not supported by the passages</b>'
            f'<ul style="margin:0.2rem 0 0 0">{items}</ul></div>')


def sentences_html(turn: Turn) -> str:
    """Every sentence with its verdict; a supported one with its evidence quote."""
    rows = []
    for s in turn.sentences:
        support = str(s.get("support"))
        mark, colour = _SUPPORT_MARK.get(support, ("·", "#6e7781"))
        evidence = s.get("evidence") or {}
        detail = (f'[{evidence.get("label")}] “{html.escape(str(evidence.get("quote")))}”'
                  if evidence else html.escape(str(s.get("note") or "")))
        rows.append(f'<li class="rag-sentence rag-{html.escape(support)}">'
                    f'<span style="color:{colour}" title="{html.escape(support)}">{mark}</span> '
                    f'{html.escape(str(s.get("text")))}<br><small style="color:#57606a">'
                    f'{detail}</small></li>')
    return (f'<ul class="rag-checks" style="list-style:none;padding-left:0;font-size:0.9rem">'
            f'{"".join(rows)}</ul>')


def is_pdf_page(c: dict[str, Any]) -> bool:
    """A citation whose page the API can draw (a PDF page; other files show the text)."""
    return str(c.get("source") or "").lower().endswith(".pdf") and isinstance(c.get("page"), int)
