"""Checked citations with the real MiniLM: each answer sentence against its passages —
supported with its evidence, unsupported when the cited passage lacks it, uncited, and the
numbers and names that appear in no passage listed."""

from __future__ import annotations

from typing import Any

from app.sentence_check import SUPPORTED, UNCITED, UNSUPPORTED, check_answer, key_terms, split_sentences
from tests.app.test_citations import PASSAGES


def check(answer: str, embedder: Any) -> list[Any]:
    return check_answer(answer, PASSAGES, embedder.embed)


def test_a_sentence_copied_from_a_passage_is_supported_with_that_sentence_as_evidence(
        embedder: Any) -> None:
    (s,) = check("The keeper tests them every Friday [1].", embedder)
    assert (s.support, s.citations, s.inferred) == (SUPPORTED, [1], False)
    assert s.evidence is not None and s.evidence.label == 1
    assert s.evidence.quote == "The keeper tests them every Friday."
    assert s.similarity > 0.9 and s.word_share == 1.0 and s.note == ""
    assert s.to_dict()["evidence"] == {"label": 1, "quote": "The keeper tests them every Friday."}


def test_without_markers_the_passage_that_holds_it_is_inferred(embedder: Any) -> None:
    (s,) = check("A day pass for the city bikes costs four euros and fifty cents.", embedder)
    assert (s.support, s.citations, s.inferred) == (SUPPORTED, [3], True)


def test_a_number_in_no_passage_is_flagged_and_named(embedder: Any) -> None:
    (s,) = check("The lighthouse lamp runs for thirty-six hours since 1931 [1].", embedder)
    assert s.support == UNSUPPORTED and s.citations == [1]
    assert s.not_in_context == ["1931"] and "1931" in s.missing
    assert s.note == "1931 appears in no passage of the context"
    assert s.evidence is None and s.held_by is None


def test_a_sentence_citing_a_passage_that_lacks_its_content_is_unsupported(embedder: Any) -> None:
    (s,) = check("The bakery proofs its rye dough for fourteen hours [3].", embedder)
    assert (s.support, s.citations) == (UNSUPPORTED, [3])
    assert s.not_in_context == [] and s.note == "[3] does not contain it; [2] does"
    assert s.held_by == 2 and s.evidence is None


def test_a_name_no_passage_holds_leaves_the_sentence_uncited(embedder: Any) -> None:
    (s,) = check("The lighthouse keeper, Edgar Morton, tests the batteries.", embedder)
    assert (s.support, s.citations) == (UNCITED, [])
    assert s.not_in_context == ["Edgar", "Morton"]


def test_each_sentence_gets_its_own_verdict_and_offsets(embedder: Any) -> None:
    answer = ("Sure! The keeper tests them every Friday. [1] The bakery proofs its rye dough "
              "for fourteen hours [1].")
    checks = check(answer, embedder)
    assert [(c.support, c.citations) for c in checks] == [
        (UNCITED, []), (SUPPORTED, [1]), (UNSUPPORTED, [1])]
    assert all(answer[c.start:c.end] == c.text for c in checks)
    assert checks[0].note == ""  # says nothing: not flagged


def test_sentences_split_with_abbreviations_lines_and_trailing_markers() -> None:
    text = "Dr. Smith paid $3.50 in the U.S. office. [2][3] Then he left.\n- A list item\n- Another"
    assert [s.text for s in split_sentences(text)] == [
        "Dr. Smith paid $3.50 in the U.S. office. [2][3]", "Then he left.", "- A list item",
        "- Another"]


def test_key_terms_are_numbers_and_names_not_the_first_word() -> None:
    assert key_terms("The museum opened on 4 May 1931 with 1,200 models from Oslo.") == [
        "4", "1931", "1,200", "May", "Oslo"]


def test_the_cli_lists_the_unsupported_sentences_with_their_reason(embedder: Any) -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from app.console import print_unsupported

    checks = check("Sure! The keeper tests them every Friday [1]. The lamp dates from 1931 [1].",
                   embedder)
    buffer = io.StringIO()
    print_unsupported(Console(file=buffer, width=200), SimpleNamespace(sentences=checks))
    printed = buffer.getvalue()
    assert "Not supported by the passages" in printed
    assert "! The lamp dates from 1931 [1]." in printed
    assert "unsupported: 1931 appears in no passage of the context" in printed
    assert "Friday" not in printed and "Sure" not in printed
