"""The environment check of load_settings: every RAG_ variable is one the settings read."""

from __future__ import annotations

import pytest

from core.errors import SettingsError
from core.settings import check_environment, env_names


def test_every_field_has_its_variable() -> None:
    names = env_names()
    assert names["RAG_DATA_DIR"] == ("data_dir",)
    assert names["RAG_STORE__URL"] == ("store", "url")
    assert names["RAG_API"] == ("api",)  # a whole section as JSON


def test_known_foreign_and_lowercase_variables_pass() -> None:
    check_environment({"RAG_STORE__URL": "http://q:6333", "rag_chunking__size": "64",
                       "RAG_UI__API_URL": "http://x", "RAG_UI_PORT": "8502", "PATH": "/bin",
                       "RAG_API__KEYS": '["a"]', "RAG_STORE": '{"collection": "x"}'})


@pytest.mark.parametrize(("env", "field", "says"), [
    ({"rag_store__bogus": "1"}, "RAG_STORE__BOGUS", "did you mean RAG_STORE__"),
    ({"RAG_LLM__URLS": "http://a,http://b"}, "llm.urls", "must be a JSON list"),
    ({"RAG_STORE": "collection=x"}, "store", "must be a JSON object"),
    ({"RAG_NOTHING": "1"}, "RAG_NOTHING", "no such setting"),
])
def test_unknown_names_and_non_json_lists_are_refused(env: dict[str, str], field: str,
                                                      says: str) -> None:
    with pytest.raises(SettingsError, match=says) as info:
        check_environment(env)
    assert info.value.field == field
