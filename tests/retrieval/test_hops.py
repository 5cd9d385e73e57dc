"""Follow-up hops: which names the assignments in a hit's text tie to a question (pure logic)."""

from __future__ import annotations

from retrieval.hops import anchors, assigned_names, assignments, distinctive

QUESTION = ("Find all variables (VAR) that are assigned the value 5813072, directly or through "
            "a chain of VAR assignments.")


def test_the_question_anchors_are_its_numbers_and_names():
    assert anchors(QUESTION) == {"VAR", "5813072"}
    assert anchors("What does retry_limit default to in config.yaml?") == {"retry_limit"}
    assert anchors("Who wrote the report on the harbour?") == set()


def test_distinctive_tokens_name_one_thing():
    for token in ("ABCDE", "retry_limit", "maxRetries", "h264", "42"):
        assert distinctive(token), token
    for token in ("The", "report", "x", "A", "Harbour"):
        assert not distinctive(token), token


def test_assignments_are_statements_with_one_equals_sign():
    text = ("Some prose. VAR QWXZT = 5813072. If a == b it is a test; c <= d is one too. "
            "timeout := 30\nnot this line")
    assert list(assignments(text)) == ["VAR QWXZT = 5813072.", "timeout := 30"]
    assert list(assignments("x = " + "y" * 300)) == []  # too long for a statement


def test_names_found_hop_by_hop():
    text = "Prose. VAR QWXZT = 5813072. More prose. VAR PLMKO = VAR QWXZT. VAR BHYUR = VAR OTHER."
    known = anchors(QUESTION)
    # Every statement holds VAR, one the value: the value is the selective anchor.
    assert assigned_names([text], known, known) == ["QWXZT"]
    assert assigned_names([text], {"QWXZT"}, known | {"QWXZT"}) == ["PLMKO"]
    # With VAR alone, every statement is as selective: all give their names.
    assert assigned_names([text], {"VAR"}, {"VAR"}) == [
        "QWXZT", "5813072", "PLMKO", "BHYUR", "OTHER"]


def test_no_assignment_or_no_anchor_gives_nothing():
    assert assigned_names(["The harbour master is 52 years old."], {"52"}, {"52"}) == []
    assert assigned_names(["VAR ABCDE = 17."], {"99"}, {"99"}) == []
