"""The pages' logic with Streamlit's AppTest, against the real API and the real LLM server."""

from __future__ import annotations

import html
import socket

import pytest
from streamlit.testing.v1 import AppTest
from ui_helpers import FIXTURE_NAME, QUESTION, ROOT, SMALL_BUDGET, RunningApi

OTHER_BUDGET = 3072

APP = str(ROOT / "ui" / "app.py")
TIMEOUT = 240  # one answer of the CPU LLM, with room for a busy machine


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _ask(at: AppTest, question: str) -> AppTest:
    at.chat_input(key="question").set_value(question)
    return at.run()


def _button(at: AppTest, label: str):  # noqa: ANN202
    return next(b for b in at.button if b.label == label)


def _texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [h.value for h in at.html]
                     + [c.value for c in at.caption])


@pytest.mark.slow
def test_sidebar_reads_window_defaults_and_documents(ui_env: RunningApi) -> None:
    at = _app()
    _no_exception(at)
    with ui_env.client() as api:
        config = api.config()
        docs = api.documents()
    budget = at.slider(key="budget_tokens")
    window = config["context_window"]
    assert window == 8192  # the llama.cpp server's n_ctx, as the API was told
    assert budget.max == min(window, config["limits"]["max_budget_tokens"])
    assert budget.min == config["limits"]["min_budget_tokens"]
    assert budget.value == config["defaults"]["budget_tokens"] == SMALL_BUDGET
    assert at.selectbox(key="layout").value == config["defaults"]["layout"]
    assert at.selectbox(key="mode").value == config["defaults"]["mode"]
    assert list(at.selectbox(key="layout").options) == ["document", "relevance", "edges"]
    assert list(at.selectbox(key="mode").options) == config["choices"]["mode"]
    assert list(at.selectbox(key="context").options) == config["choices"]["context"]
    filt = at.multiselect(key="document_ids")
    assert filt.value == [] and len(filt.options) == len(docs)
    assert any(FIXTURE_NAME in o for o in filt.options)


@pytest.mark.slow
def test_answer_with_citations_ledger_follow_up_and_new_conversation(ui_env: RunningApi) -> None:
    at = _app()
    at.slider(key="budget_tokens").set_value(OTHER_BUDGET)
    at.selectbox(key="layout").set_value("relevance")
    at.selectbox(key="context").set_value("retrieve")  # whole documents ignore the layout
    with ui_env.client() as api:
        doc = next(d["document_id"] for d in api.documents() if d["source"].endswith(FIXTURE_NAME))
    at.multiselect(key="document_ids").select(doc)
    _ask(at.run(), QUESTION)
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    turns = at.session_state["conversation"].turns
    assert len(turns) == 1 and turns[0].ok and turns[0].answer
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    ledger = turns[0].ledger
    assert ledger["budget"]["requested"] == OTHER_BUDGET
    assert (ledger["mode"], ledger["layout"]) == ("retrieve", "relevance")
    assert [d["source"].endswith(FIXTURE_NAME) for d in ledger["documents"]] == [True]
    page = _texts(at)
    assert turns[0].answer in page
    assert 'class="rag-ledger"' in page and FIXTURE_NAME in page
    # The packer's notes are shown with the ledger (this budget narrows the neighbours).
    assert ledger["notes"] and all(html.escape(n) in page for n in ledger["notes"])
    # Each sentence of the answer is checked; the expander counts the verdicts.
    assert turns[0].sentences and all(s["text"] in turns[0].answer for s in turns[0].sentences)
    assert any(e.label.startswith("Checked sentences: ") for e in at.expander)
    # Each citation is an expander titled "[n] file name", holding the passage with the
    # quoted sentence marked (SmolLM2 writes no markers: the app infers them by overlap).
    assert turns[0].citations
    for c in turns[0].citations:
        title = f"[{c['label']}] {FIXTURE_NAME}"
        box = next(e for e in at.expander if e.label.startswith(title))
        assert any("<mark" in h.value for h in box.html)

    # A follow-up carries the history: the API searches with both questions.
    _ask(at, "And who founded it?")
    _no_exception(at)
    turns = at.session_state["conversation"].turns
    assert len(turns) == 2 and turns[1].ok, turns[1].error
    assert QUESTION in turns[1].ledger["search_query"]
    assert [m.name for m in at.chat_message] == ["user", "assistant"] * 2

    _button(at, "New conversation").click().run()
    assert not at.session_state["conversation"].turns and not at.chat_message
    assert at.slider(key="budget_tokens").value == OTHER_BUDGET  # the options stay


@pytest.mark.slow
def test_options_survive_a_visit_to_the_documents_page(ui_env: RunningApi) -> None:
    at = _app()
    at.slider(key="budget_tokens").set_value(OTHER_BUDGET).run()
    at.switch_page("pages/documents.py").run()
    _no_exception(at)
    at.switch_page("pages/chat.py").run()
    assert at.slider(key="budget_tokens").value == OTHER_BUDGET


@pytest.mark.slow
def test_documents_page_uploads_lists_and_deletes(ui_env: RunningApi) -> None:
    at = _app().switch_page("pages/documents.py").run()
    _no_exception(at)
    table = at.table[0].value
    assert FIXTURE_NAME in list(table.index)
    assert list(table.columns) == ["type", "pages", "chunks", "tokens", "ingested at"]

    at.file_uploader[0].set_value(("ferry-timetable.txt", b"The ferry to Kelpie Point leaves "
                                   b"at nine.\nThe last ferry back leaves at six.\n", "text/plain"))
    _button(at, "Upload and ingest").click().run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("ferry-timetable.txt: new" in s.value for s in at.success)
    assert at.status[0].proto.label.startswith("Ingested ferry-timetable.txt")
    assert at.progress[0].value == 100
    names = list(at.table[0].value.index)
    assert "ferry-timetable.txt" in names and FIXTURE_NAME in names
    row = at.table[0].value.loc["ferry-timetable.txt"]
    assert row["type"] == "text" and int(row["chunks"]) >= 1 and row["ingested at"]

    with ui_env.client() as api:
        target = next(d["document_id"] for d in api.documents()
                      if d["source"].endswith("ferry-timetable.txt"))
    at.multiselect[0].select(target)
    _button(at, "Delete").click().run()
    _no_exception(at)
    assert "ferry-timetable.txt" not in list(at.table[0].value.index)


@pytest.mark.slow
def test_uploading_a_bad_file_names_it(ui_env: RunningApi) -> None:
    at = _app().switch_page("pages/documents.py").run()
    at.file_uploader[0].set_value(("photo.png", b"\x89PNG\r\n\x1a\n\0\0", "image/png"))
    _button(at, "Upload and ingest").click().run()
    _no_exception(at)
    assert at.error and "photo.png" in at.error[0].value


def test_api_down_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAG_UI__API_URL", f"http://127.0.0.1:{port}")
    at = AppTest.from_file(APP, default_timeout=30).run()
    _no_exception(at)
    assert "Cannot reach the RAG API" in at.error[0].value and "rag api" in at.error[0].value
    _ask(at, "anything?")
    _no_exception(at)
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert "Cannot reach the RAG API" in at.chat_message[1].error[0].value
    at.switch_page("pages/documents.py").run()
    _no_exception(at)
    assert "Cannot reach the RAG API" in at.error[0].value


def test_invalid_ui_setting_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_UI__API_URL", "api-without-scheme:8080")
    at = AppTest.from_file(APP, default_timeout=30).run()
    _no_exception(at)
    assert "RAG_UI__API_URL" in at.error[0].value


@pytest.mark.slow
def test_wrong_key_says_which_setting(ui_env: RunningApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_UI__API_KEY", "not-the-key")
    at = _app()
    _no_exception(at)
    assert "RAG_UI__API_KEY" in at.error[0].value


@pytest.mark.slow
def test_llm_down_is_a_message_with_what_to_do(api_without_llm: RunningApi,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_UI__API_URL", api_without_llm.url)
    at = _app()
    _no_exception(at)
    _ask(at, "When does the tide turn?")
    _no_exception(at)
    turn = at.session_state["conversation"].turns[0]
    assert not turn.ok and "language model" in (turn.error or "")
    message = at.chat_message[1].error[0].value
    assert "language model is not available" in message and "RAG_LLM__URL" in message
