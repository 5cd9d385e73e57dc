"""Keyword variants of a question that lists several things (pure logic)."""

from __future__ import annotations

import pytest

from retrieval.variants import MAX_ITEMS, keyword_variants, list_items


def test_a_list_after_a_preposition_gives_one_question_per_item():
    q = ("What are all the special magic numbers for amber-falcon, lucid-heron, opal-quarry "
         "and sable-canyon mentioned in the provided text?")
    assert keyword_variants(q) == [
        f"What are all the special magic numbers for {k} mentioned in the provided text?"
        for k in ("amber-falcon", "lucid-heron", "opal-quarry", "sable-canyon")]


def test_items_of_several_words_and_an_oxford_comma():
    q = "What does the report say about staff costs, fuel prices, and harbour fees?"
    start, end, items = list_items(q)
    assert items == ["staff costs", "fuel prices", "harbour fees"]
    assert q[start:end] == "staff costs, fuel prices, and harbour fees"
    assert keyword_variants(q)[1] == "What does the report say about fuel prices?"


@pytest.mark.parametrize("question", [
    "What is the best thing to do in San Francisco?",
    "Which dishes use salt and pepper?",  # a pair is often one thing
    "Find all variables assigned the value 5602540, directly or through a chain.",  # no list
    "Who paid for wood, wood and nails?",  # repeated items: not a list of things
])
def test_no_variants_without_a_list_of_three_or_more(question):
    assert keyword_variants(question) == []


def test_a_list_longer_than_the_cap_is_searched_whole():
    items = [f"item{i}" for i in range(MAX_ITEMS + 1)]
    q = f"What is known about {', '.join(items[:-1])} and {items[-1]}?"
    assert keyword_variants(q) == []
