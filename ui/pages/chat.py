"""The chat page: streamed answers with citations and the context ledger under each."""

from __future__ import annotations

import itertools

import streamlit as st

from ui.client import ApiError, ApiUnreachableError, LLMUnavailableError
from ui.components import api, show_answer_extras, show_error, show_turn, sidebar_options
from ui.conversation import Conversation, Options, Turn, follow

client = api()
conversation: Conversation = st.session_state.setdefault("conversation", Conversation())

with st.sidebar:
    if st.button("New conversation", icon=":material/add_comment:"):
        conversation.turns.clear()
        st.rerun()
options = sidebar_options(client)

st.title("Ask your documents")
if isinstance(options, ApiError):
    show_error(options)
elif not conversation.turns:
    st.caption("Answers come from the documents on the Documents page, with numbered sources; "
               "the bar under each answer shows what the model read.")
for turn in conversation.turns:
    show_turn(turn)

question = st.chat_input("Ask a question about your documents", key="question")
if question and question.strip():
    turn = Turn(question.strip())
    with st.chat_message("user"):
        st.markdown(turn.question)
    with st.chat_message("assistant"):
        chosen = options if isinstance(options, Options) else Options()
        chunks = follow(client.stream_query(conversation.body(turn.question, chosen)), turn)
        try:
            # The spinner covers the search and the model's reading of the context.
            with st.spinner("Searching and reading the documents…"):
                first = next(chunks, None)
            if first is not None:
                st.write_stream(itertools.chain([first], chunks))
            elif turn.answer:
                st.markdown(turn.answer)
        except ApiError as exc:
            turn.error, turn.hint = exc.message, exc.hint
            turn.unavailable = isinstance(exc, ApiUnreachableError | LLMUnavailableError)
        show_answer_extras(turn)
    conversation.turns.append(turn)
