"""SettingsError carries the field it names, from every place that builds one."""

from __future__ import annotations

import pytest

from core.errors import RagError, SettingsError
from core.settings import load_settings


def test_settings_error_names_its_field_first() -> None:
    err = SettingsError("retrieval.budget_tokens", "must be positive")
    assert err.field == "retrieval.budget_tokens"
    assert str(err) == "retrieval.budget_tokens: must be positive"
    assert err.exit_code == 2 and isinstance(err, RagError)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"chunking": {"size": "abc"}}, "chunking.size"),
    ({"store": {"collection": "no spaces"}}, "store.collection"),
    ({"config_file": "/nonexistent/rag.yaml"}, "config_file"),
])
def test_load_settings_says_which_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
