"""Streamlit pieces shared by the pages: errors, one chat turn (answer, citations, ledger) and
the sidebar's retrieval options. The logic they show lives in conversation.py and ledger.py."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui import ledger as ledger_view
from ui.client import ApiClient, ApiError, ApiUnreachableError, LLMUnavailableError
from ui.conversation import (
    Options,
    Turn,
    checks_summary,
    citation_title,
    flagged,
    flagged_html,
    highlighted,
    is_pdf_page,
    sentences_html,
)

BUDGET_STEP = 256
MIN_BUDGET = 256  # when the API states no limits
DOCUMENT_CHOICES = 1000  # documents the sidebar offers to search in (the API's largest page)


def api() -> ApiClient:
    """The API client of this browser session (made by ui/app.py)."""
    return st.session_state["_api"]


def show_error(err: ApiError | Turn) -> None:
    """A message a person can act on: what failed, then what to do."""
    message = err.message if isinstance(err, ApiError) else (err.error or "")
    hint = err.hint
    text = f"{message}  \n{hint}" if hint else message
    if isinstance(err, ApiUnreachableError | LLMUnavailableError) or (
            isinstance(err, Turn) and err.unavailable):
        st.error(text, icon=":material/cloud_off:")
    else:
        st.error(text, icon=":material/error:")


def show_citations(turn: Turn) -> None:
    if turn.citations:
        st.caption("Sources" + (" (inferred: the model wrote no [n] markers)"
                                if all(c.get("inferred") for c in turn.citations) else ""))
        for c in turn.citations:
            with st.expander(citation_title(c), icon=":material/format_quote:"):
                if c.get("title") and c.get("title") != ledger_view.file_name(c.get("source")):
                    st.caption(c["title"])
                show_passage(c)
                st.caption(f"{c.get('source')} · document {c.get('document_id')}")
    if turn.invalid_citations:
        labels = ", ".join(f"[{n}]" for n in turn.invalid_citations)
        st.caption(f"The answer cites {labels}, which name no passage of the context.")


def show_passage(c: dict[str, Any]) -> None:
    """A PDF citation as its page image with the quote highlighted; when the page cannot be
    drawn (the file moved), and for other formats, the passage text with the quote marked."""
    if is_pdf_page(c):
        try:
            png, found = _page_image(c)
        except ApiError as exc:
            st.caption(f"The page image is not available: {exc.message} Showing the passage "
                       "text.")
        else:
            note = "" if found == "exact" else (" (the quote is marked where most of it is)"
                                                if found == "partial" else
                                                " (the quote could not be found on the page)")
            st.image(png, caption=f"Page {c.get('page')}{note}")
            return
    st.html(highlighted(c))


def _page_image(c: dict[str, Any]) -> tuple[bytes, str]:
    """Fetched once per browser session (Streamlit redraws every expander on each rerun)."""
    cache: dict[tuple[Any, ...], tuple[bytes, str]] = st.session_state.setdefault("_pages", {})
    key = (c.get("document_id"), c.get("page"), c.get("quote"))
    if key not in cache:
        cache[key] = api().page_image(str(c.get("document_id")), int(c["page"]),
                                      str(c.get("quote") or ""))
    return cache[key]


def show_checks(turn: Turn) -> None:
    """The sentences no passage supports, beside the answer; every verdict in an expander."""
    if not turn.sentences:
        return
    if flagged(turn):
        st.html(flagged_html(turn))
    with st.expander(f"Checked sentences: {checks_summary(turn)}",
                     icon=":material/fact_check:"):
        st.html(sentences_html(turn))


def show_ledger(ledger: dict[str, Any]) -> None:
    st.html(ledger_view.render_html(ledger))
    with st.expander("What the model read", icon=":material/data_usage:"):
        passages = ledger.get("passages") or []
        if passages:
            st.dataframe(
                [{"label": f"[{p.get('label')}]", "file": ledger_view.file_name(p.get("source")),
                  "page": p.get("page"), "tokens": p.get("tokens"), "score": p.get("score")}
                 for p in passages], hide_index=True)
        left_out = ledger.get("left_out") or []
        if left_out:
            st.caption(ledger_view.left_out_text(ledger))
            st.dataframe(
                [{"reason": x.get("reason"), "file": ledger_view.file_name(x.get("source")),
                  "page": x.get("page"), "chunk": x.get("chunk_index"), "tokens": x.get("tokens"),
                  "score": x.get("score")} for x in left_out], hide_index=True)
        budget = ledger.get("budget") or {}
        st.caption(
            f"Budget: requested {budget.get('requested', 0):,}, window "
            f"{budget.get('context_window', 0):,}, prompt {budget.get('prompt_tokens', 0):,}, "
            f"answer reserve {budget.get('answer_reserve', 0):,}, available for passages "
            f"{budget.get('available', 0):,} · {ledger.get('candidates', 0)} candidates · "
            f"tokenizer {ledger.get('tokenizer') or '?'} · {ledger.get('seconds') or 0:.2f} s")
        if ledger.get("message"):
            st.caption(str(ledger["message"]))


def show_answer_extras(turn: Turn) -> None:
    """Everything under an answer: its error, its citations, its ledger."""
    if turn.error:
        show_error(turn)
    show_checks(turn)
    show_citations(turn)
    if turn.ledger:
        show_ledger(turn.ledger)


def show_turn(turn: Turn) -> None:
    with st.chat_message("user"):
        st.markdown(turn.question)
    with st.chat_message("assistant"):
        if turn.answer:
            st.markdown(turn.answer)
        elif not turn.error:
            st.caption("(no answer)")
        show_answer_extras(turn)


def _init(key: str, default: Any, allowed: Any) -> None:
    """Sets a widget's value before it is drawn: what was chosen last (kept across pages in
    `_chosen`, since Streamlit forgets a widget that a page did not draw), unless the API no
    longer offers it (a smaller window, a deleted document); else `default`."""
    value = st.session_state.get(key, st.session_state.setdefault("_chosen", {}).get(key, default))
    if isinstance(allowed, range):
        value = min(max(int(value), allowed.start), allowed.stop)
    elif isinstance(value, list):
        value = [v for v in value if v in allowed]
    elif value not in allowed:
        value = default
    if st.session_state.get(key) != value:
        st.session_state[key] = value


def _remember(**values: Any) -> None:
    st.session_state.setdefault("_chosen", {}).update(values)


def sidebar_options(client: ApiClient) -> Options | ApiError:
    """The retrieval options in the sidebar, or the error that kept the API from telling
    its window and documents."""
    with st.sidebar:
        try:
            config = client.config()
            listed = client.document_page(DOCUMENT_CHOICES)
        except ApiError as exc:
            st.caption("Options appear when the API answers.")
            return exc
        window = int(config.get("context_window") or 8192)
        defaults = config.get("defaults") or {}
        limits = config.get("limits") or {}
        low = int(limits.get("min_budget_tokens") or MIN_BUDGET)
        top = max(low + 1, min(window, int(limits.get("max_budget_tokens") or window)))
        _init("budget_tokens", min(int(defaults.get("budget_tokens") or top), top), range(low, top))
        step = BUDGET_STEP if (top - low) % BUDGET_STEP == 0 else 1
        budget = st.slider(
            "Token budget", low, top, step=step,
            key="budget_tokens",
            help=f"Tokens of context the model may read, up to its window ({window:,}): the "
                 "prompt, the passages and the answer reserve.")
        layout = _choice("Layout", _offered(config, "layout"), defaults.get("layout"), "layout",
                         "document: passages grouped by document in original order; relevance: "
                         "best first; edges: best evidence at the start and the end.")
        mode = _choice("Search", _offered(config, "mode"), defaults.get("mode"), "mode",
                       "hybrid: dense + keyword fused; or either alone.")
        context = _choice("Whole documents", _offered(config, "context"), defaults.get("context"),
                          "context",
                          "auto: whole documents when all selected fit the budget, else "
                          "retrieval; full: always whole; retrieve: always search.")
        documents, total = listed.get("data") or [], int(listed.get("total") or 0)
        names = {d["document_id"]: _doc_label(d) for d in documents}
        _init("document_ids", [], names)
        chosen = st.multiselect("Documents", list(names), format_func=names.__getitem__,
                                key="document_ids",
                                placeholder="All documents",
                                help="Search only these documents (empty: all of them)." + (
                                    f" The first {len(documents):,} of {total:,} are offered; "
                                    "the API's filters reach every one." if total > len(documents)
                                    else ""))
        _remember(budget_tokens=budget, layout=layout, mode=mode, context=context,
                  document_ids=list(chosen))
        st.caption(f"Model {config.get('model') or '?'} · window {window:,} tokens · "
                   f"{total:,} document{'s' * (total != 1)}")
        return Options(int(budget), layout, mode, context, list(chosen))


def _offered(config: dict[str, Any], name: str) -> tuple[str, ...]:
    """The values the API accepts for option `name`: /v1/config lists them (core/choices.py
    defines them), so the UI keeps no copy that could drift; an API that lists none offers
    its default alone."""
    offered = (config.get("choices") or {}).get(name) or [(config.get("defaults") or {}).get(name)]
    return tuple(str(v) for v in offered if v)


def _choice(label: str, options: tuple[str, ...], default: Any, key: str, help: str) -> str:
    _init(key, default if default in options else options[0], options)
    return str(st.selectbox(label, options, key=key, help=help))


def _doc_label(doc: dict[str, Any]) -> str:
    name = ledger_view.file_name(doc.get("source") or doc.get("title"))
    return f"{name} ({doc.get('type') or '?'})"
