"""Citations as pure logic: markers parsed and mapped, unknown labels flagged, inferred
sources by word overlap when the model wrote none, and the quoted sentence."""

from __future__ import annotations

from app.citations import cite, markers
from retrieval.packer import Passage, header_for


def passage(label: int, text: str) -> Passage:
    p = Passage(label, f"doc{label}", f"/docs/{label}.md", "", None, 0, 0, 0, text, 0, 0.5,
                label - 1)
    p.header = header_for(label, p)
    return p


PASSAGES = [
    passage(1, "# Lighthouse\n\nThe lighthouse lamp runs for thirty-six hours on its reserve "
               "batteries. The keeper tests them every Friday."),
    passage(2, "The bakery proofs its rye dough for fourteen hours in a cool cellar."),
    passage(3, "A day pass for the city bikes costs four euros and fifty cents."),
]


def test_markers_in_order_with_lists_and_ranges() -> None:
    assert markers("It runs [2] and [1][3], see [2, 3] and [4-6]; also [ 7 ; 8 ].") == [
        2, 1, 3, 4, 5, 6, 7, 8]
    assert markers("No markers, [a] or [] here.") == []


def test_explicit_markers_map_to_passages_and_unknown_ones_are_flagged() -> None:
    citations, invalid = cite("The lamp runs 36 hours [1] [9].", PASSAGES)
    assert [(c.label, c.source, c.inferred) for c in citations] == [(1, "/docs/1.md", False)]
    assert citations[0].text == PASSAGES[0].text
    assert invalid == [9]


def test_no_markers_infers_the_passage_the_answer_draws_on() -> None:
    citations, invalid = cite("A day pass for the city bikes costs four euros fifty.", PASSAGES)
    assert [(c.label, c.inferred) for c in citations] == [(3, True)]
    assert invalid == []


def test_an_answer_sharing_nothing_gets_no_source() -> None:
    assert cite("I cannot find that in the documents.", PASSAGES) == ([], [])


def test_quote_is_the_content_sentence_not_the_heading() -> None:
    (c,), _ = cite("The lighthouse lamp runs thirty-six hours on reserve batteries [1].", PASSAGES)
    assert c.quote == ("The lighthouse lamp runs for thirty-six hours on its reserve batteries.")
    assert c.text[c.quote_start:c.quote_end] == c.quote


def test_a_citation_of_an_ocr_page_says_so() -> None:
    scanned = passage(1, "The keeper tests the batteries every Friday.")
    scanned.ocr = True
    citations, _ = cite("The keeper tests them every Friday [1] [2].", [scanned, PASSAGES[1]])
    assert [(c.label, c.ocr) for c in citations] == [(1, True), (2, False)]
    assert citations[0].to_dict()["ocr"] is True
