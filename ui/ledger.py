"""The context ledger as a picture: one bar of the requested budget split into the prompt
(system prompt, template, question, history), each document's passages, the answer reserve
and what was left unused; with the passages left out, counted by reason, and the packer's
notes on why it chose what it did.

Pure functions of the ledger dict that the API returns; the HTML needs no JavaScript.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

# Documents take these in turn; prompt, reserve and unused have their own greys.
PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2", "#EECA3B",
           "#9D755D", "#FF9DA6", "#79706E")
PROMPT_COLOR = "#5A5A5A"
RESERVE_COLOR = "#BAB0AC"
UNUSED_COLOR = "#ECECEC"
REASONS = {"budget": "over the budget", "duplicate": "duplicate content",
           "filter": "outside the filter"}


@dataclass(frozen=True)
class Segment:
    kind: str  # prompt | document | reserve | unused
    label: str
    tokens: int
    color: str
    document_id: str | None = None


def file_name(source: str | None) -> str:
    """The last part of a path or URL, for people."""
    if not source:
        return "unknown"
    name = PurePath(source.rstrip("/")).name
    return name or source


def total(ledger: dict[str, Any]) -> int:
    """The bar's length: the requested budget, capped by the model's window."""
    budget = ledger.get("budget") or {}
    requested = int(budget.get("requested") or 0)
    window = int(budget.get("context_window") or 0)
    if requested and window:
        return min(requested, window)
    return requested or window


def document_tokens(ledger: dict[str, Any]) -> list[dict[str, Any]]:
    """Per document: id, name, passages, tokens, in the ledger's order. Built from the
    passages when the ledger carries no `documents` summary."""
    docs = ledger.get("documents")
    if docs:
        return [{"document_id": d.get("document_id"),
                 "name": file_name(d.get("source") or d.get("title")),
                 "source": d.get("source"), "passages": int(d.get("passages") or 0),
                 "tokens": int(d.get("tokens") or 0)} for d in docs]
    grouped: dict[str, dict[str, Any]] = {}
    for p in ledger.get("passages") or []:
        key = p.get("document_id") or p.get("source") or "?"
        entry = grouped.setdefault(key, {"document_id": p.get("document_id"),
                                         "name": file_name(p.get("source") or p.get("title")),
                                         "source": p.get("source"), "passages": 0, "tokens": 0})
        entry["passages"] += 1
        entry["tokens"] += int(p.get("tokens") or 0)
    return list(grouped.values())


def segments(ledger: dict[str, Any]) -> list[Segment]:
    """The bar, left to right: prompt, each document, answer reserve, unused."""
    budget = ledger.get("budget") or {}
    parts = [Segment("prompt", "prompt", int(budget.get("prompt_tokens") or 0), PROMPT_COLOR)]
    for i, doc in enumerate(document_tokens(ledger)):
        parts.append(Segment("document", doc["name"], doc["tokens"], PALETTE[i % len(PALETTE)],
                             doc["document_id"]))
    parts.append(Segment("reserve", "answer reserve", int(budget.get("answer_reserve") or 0),
                         RESERVE_COLOR))
    used = sum(s.tokens for s in parts)
    parts.append(Segment("unused", "unused", max(0, total(ledger) - used), UNUSED_COLOR))
    return [s for s in parts if s.tokens > 0 or s.kind == "document"]


def left_out_counts(ledger: dict[str, Any]) -> dict[str, int]:
    """Passages left out, by reason (budget, duplicate, filter), most common first."""
    counts = Counter(str(x.get("reason") or "other") for x in ledger.get("left_out") or [])
    return dict(counts.most_common())


def summary(ledger: dict[str, Any]) -> str:
    """One line: what the model read, of how much, and how the context was made."""
    size = total(ledger)
    docs = document_tokens(ledger)
    used = sum(d["tokens"] for d in docs)
    passages = len(ledger.get("passages") or [])
    share = f" ({used / size:.0%} of {size:,})" if size else ""
    how = "whole documents" if ledger.get("mode") == "full" else (
        f"{ledger.get('search_mode') or 'hybrid'} search, {ledger.get('layout') or 'document'} layout")
    text = (f"{used:,} tokens{share} from {passages} passage{'s' * (passages != 1)} of "
            f"{len(docs)} document{'s' * (len(docs) != 1)} · {how}")
    if ledger.get("reused_context"):
        text += " · context reused from the previous answer"
    return text


def left_out_text(ledger: dict[str, Any]) -> str:
    counts = left_out_counts(ledger)
    if not counts:
        return "Nothing was left out."
    n = sum(counts.values())
    reasons = ", ".join(f"{c} {REASONS.get(r, r)}" for r, c in counts.items())
    return f"{n} passage{'s' * (n != 1)} left out: {reasons}."


def notes(ledger: dict[str, Any]) -> list[str]:
    """The packer's notes (coverage, sub-queries, narrowed neighbours, a kept context), one
    line each; none from an API that sends none."""
    return [str(n) for n in ledger.get("notes") or [] if str(n).strip()]


def notes_html(ledger: dict[str, Any]) -> str:
    lines = notes(ledger)
    if not lines:
        return ""
    items = "".join(f'<li>{html.escape(n)}</li>' for n in lines)
    return ('<div class="rag-ledger-notes" style="color:#666">How the context was chosen:'
            f'<ul style="margin:0;padding-left:1.2em">{items}</ul></div>')


def render_html(ledger: dict[str, Any]) -> str:
    """The bar with a legend, as self-contained HTML (inline styles only)."""
    size = total(ledger) or 1
    parts = segments(ledger)
    bar = []
    for s in parts:
        width = 100.0 * s.tokens / size
        if width <= 0:
            continue
        tip = html.escape(f"{s.label}: {s.tokens:,} tokens", quote=True)
        bar.append(f'<div title="{tip}" data-kind="{s.kind}" style="width:{width:.3f}%;'
                   f'background:{s.color};min-width:2px;height:100%"></div>')
    legend = []
    for s in parts:
        legend.append(
            f'<span style="display:inline-flex;align-items:center;margin-right:12px;'
            f'white-space:nowrap"><span style="display:inline-block;width:10px;height:10px;'
            f'background:{s.color};border:1px solid #999;margin-right:4px"></span>'
            f'{html.escape(s.label)} {s.tokens:,}</span>')
    return (
        '<div class="rag-ledger" style="font-size:0.8rem;line-height:1.5">'
        f'<div style="margin-bottom:4px">{html.escape(summary(ledger))}</div>'
        '<div style="display:flex;width:100%;height:18px;border:1px solid #999;'
        'border-radius:3px;overflow:hidden;background:' + UNUSED_COLOR + '">'
        + "".join(bar) + "</div>"
        f'<div style="margin-top:4px;display:flex;flex-wrap:wrap">{"".join(legend)}</div>'
        f'<div style="color:#666">{html.escape(left_out_text(ledger))}</div>'
        + notes_html(ledger) + "</div>")
