"""The one question check that the CLI, the API and the library all go through."""

from __future__ import annotations

import pytest

from core.errors import SettingsError
from retrieval.service import MAX_QUESTION_CHARS, check_question


def test_a_question_is_stripped() -> None:
    assert check_question("  who keeps the light?\n") == "who keeps the light?"


@pytest.mark.parametrize(("question", "message"), [
    ("", "must not be empty"),
    (" \n\t", "must not be empty"),
    ("x" * (MAX_QUESTION_CHARS + 1), f"longer than {MAX_QUESTION_CHARS:,} characters"),
])
def test_a_bad_question_names_the_field(question: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        check_question(question)
    assert (info.value.field, str(info.value).endswith(message)) == ("question", True)


def test_the_longest_question_passes() -> None:
    assert len(check_question("y" * MAX_QUESTION_CHARS)) == MAX_QUESTION_CHARS
