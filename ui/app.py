"""The Streamlit entry: `streamlit run ui/app.py`. Two pages (chat, documents); every page
talks to the REST API through one client per browser session, configured by ui/settings.py."""

from __future__ import annotations

# `streamlit run ui/app.py` puts ui/ on sys.path, not the repository root: `ui` comes from
# the install (`pip install -e .`, the API image) or PYTHONPATH (the UI image sets it).
import streamlit as st
from pydantic import ValidationError

from ui.client import ApiClient
from ui.settings import load_ui_settings

st.set_option("client.toolbarMode", "viewer")  # no "Deploy" button for people asking questions
st.set_page_config(page_title="Ask your documents", page_icon=":material/menu_book:",
                   layout="wide")

if "_ui_settings" not in st.session_state:
    try:
        st.session_state["_ui_settings"] = load_ui_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        st.error(f"Invalid UI setting RAG_UI__{'__'.join(map(str, first['loc'])).upper()}: "
                 f"{first['msg']}. Fix it and restart the UI.")
        st.stop()

pages = st.navigation([
    st.Page("pages/chat.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("pages/documents.py", title="Documents", icon=":material/description:"),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/monitoring:"),
])
if "_api" not in st.session_state:  # one client (and connection pool) per browser session
    st.session_state["_api"] = ApiClient.from_settings(st.session_state["_ui_settings"])
pages.run()
