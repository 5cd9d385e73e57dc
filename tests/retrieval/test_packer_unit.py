"""The packer alone: hand-made chunks (cut by the real chunker, counted by the real Llama
tokenizer), hand-made hits, exact expectations."""

from __future__ import annotations

import random

import pytest
from retrieval_helpers import filler_sentences, paragraphs, sentences_of

from ingest.chunker import PASSAGE_END, Chunker
from ingest.loaders import Section
from ingest.tokenizer import TokenCounter
from retrieval.packer import (
    ChunkRef,
    Fill,
    Hit,
    LineCounts,
    Packer,
    canonical_copies,
    header_for,
    rank_hits,
    render,
)


def make_doc(counter: TokenCounter, doc: str, text: str | list[Section], size: int = 48,
             tokenizer: str | None = None) -> list[ChunkRef]:
    sections = [Section(text)] if isinstance(text, str) else text
    chunks = Chunker(counter, size=size, overlap=8).split(sections)
    return [ChunkRef(id=f"{doc}:{c.index}", document_id=doc, source=f"/corpus/{doc}.txt",
                     title=doc, type="text", page=c.page, section=c.section, index=c.index,
                     core=c.core, core_tokens=c.core_tokens, end_tokens=c.end_tokens,
                     content_hash=c.content_hash,
                     tokenizer=counter.name if tokenizer is None else tokenizer)
            for c in chunks]


def text_for(seed: int, n: int = 60) -> str:
    return paragraphs(filler_sentences(random.Random(seed), n, set()), per=4)


def keyed(*docs: list[ChunkRef]) -> dict[tuple[str, int], ChunkRef]:
    return {(c.document_id, c.index): c for doc in docs for c in doc}


def hits_for(doc: list[ChunkRef], *indices: int, top: float = 1.0) -> list[Hit]:
    return [Hit(doc[i], top - 0.01 * n) for n, i in enumerate(indices)]


@pytest.fixture(scope="module")
def doc_a(counter: TokenCounter) -> list[ChunkRef]:
    doc = make_doc(counter, "alpha", text_for(1))
    assert len(doc) >= 12
    return doc


@pytest.fixture(scope="module")
def doc_b(counter: TokenCounter) -> list[ChunkRef]:
    return make_doc(counter, "bravo", text_for(2))


@pytest.fixture(scope="module")
def doc_c(counter: TokenCounter) -> list[ChunkRef]:
    return make_doc(counter, "charlie", text_for(3))


def spans(packing) -> list[tuple[str, int, int]]:
    return [(p.document_id, p.first, p.last) for p in packing.passages]


def assert_exact(packing, counter: TokenCounter) -> None:
    """The ledger's count is the tokenizer's count of the rendered text, within budget."""
    assert counter.count(packing.context) == packing.used_tokens
    assert packing.used_tokens <= packing.budget


# -- neighbours and merging -------------------------------------------------------------------

@pytest.mark.parametrize(("neighbours", "expected"), [(0, (5, 5)), (1, (4, 6)), (2, (3, 7))])
def test_hit_is_widened_by_its_neighbours(counter, doc_a, neighbours, expected):
    packing = Packer(counter, neighbours).pack(hits_for(doc_a, 5), keyed(doc_a), 100_000)
    assert spans(packing) == [("alpha", *expected)]
    lo, hi = expected
    assert packing.passages[0].text == "".join(c.core for c in doc_a[lo:hi + 1])
    assert_exact(packing, counter)


def test_neighbours_stop_at_the_document_edges(counter, doc_a):
    last = len(doc_a) - 1
    packing = Packer(counter, 2).pack(hits_for(doc_a, 0, last), keyed(doc_a), 100_000)
    assert sorted(spans(packing)) == [("alpha", 0, 2), ("alpha", last - 2, last)]


def test_overlapping_and_adjacent_runs_merge_without_repeating_text(counter, doc_a):
    # 3 → [2,4], 5 → [4,6] overlaps, 8 → [7,9] touches: one passage [2,9].
    packing = Packer(counter, 1).pack(hits_for(doc_a, 3, 5, 8), keyed(doc_a), 100_000)
    assert spans(packing) == [("alpha", 2, 9)]
    assert packing.passages[0].text == "".join(c.core for c in doc_a[2:10])
    sentences = sentences_of(packing.context)
    assert len(sentences) == len(set(sentences))
    assert_exact(packing, counter)


def test_separate_runs_stay_separate_passages(counter, doc_a):
    packing = Packer(counter, 1).pack(hits_for(doc_a, 2, 8), keyed(doc_a), 100_000)
    assert spans(packing) == [("alpha", 1, 3), ("alpha", 7, 9)]


def test_a_hit_already_inside_a_passage_costs_nothing(counter, doc_a):
    one = Packer(counter, 1).pack(hits_for(doc_a, 5), keyed(doc_a), 100_000)
    two = Packer(counter, 1).pack(hits_for(doc_a, 5, 6, 4), keyed(doc_a), 100_000)
    assert spans(one) == spans(two)
    assert one.used_tokens == two.used_tokens
    assert not two.left_out


def test_neighbours_do_not_cross_a_page(counter):
    pages = [Section(text_for(4, 20), page=1), Section(text_for(5, 20), page=2)]
    doc = make_doc(counter, "paged", pages)
    last_of_page_1 = max(c.index for c in doc if c.section == 0)
    packing = Packer(counter, 1).pack(hits_for(doc, last_of_page_1), keyed(doc), 100_000)
    assert spans(packing) == [("paged", last_of_page_1 - 1, last_of_page_1)]
    assert packing.passages[0].header.startswith("[1] paged.txt, page 1")
    # Hits on both sides of the page break: two passages, one per page.
    packing = Packer(counter, 1).pack(hits_for(doc, last_of_page_1, last_of_page_1 + 1),
                                      keyed(doc), 100_000)
    assert [p.page for p in packing.passages] == [1, 2]
    assert_exact(packing, counter)


# -- budget -----------------------------------------------------------------------------------

def single_cost(counter: TokenCounter, chunk: ChunkRef) -> int:
    return counter.count(header_for(1, chunk) + chunk.core + PASSAGE_END)


def test_budget_falls_back_to_the_bare_hit_and_fits_exactly(counter, doc_a):
    cost = single_cost(counter, doc_a[5])
    packing = Packer(counter, 1).pack(hits_for(doc_a, 5), keyed(doc_a), cost)
    assert spans(packing) == [("alpha", 5, 5)]
    assert packing.used_tokens == cost == packing.budget
    assert_exact(packing, counter)

    packing = Packer(counter, 1).pack(hits_for(doc_a, 5), keyed(doc_a), cost - 1)
    assert packing.passages == []
    assert packing.used_tokens == 0
    assert [(x.reason, x.chunk_index) for x in packing.left_out] == [("budget", 5)]


@pytest.mark.parametrize("budget", [40, 64, 100, 180, 256, 400, 700, 1000])
def test_used_tokens_is_the_true_count_and_within_budget(counter, doc_a, doc_b, doc_c, budget):
    hits = [Hit(doc[i], 1.0 - 0.01 * n)
            for n, (doc, i) in enumerate([(doc_b, 7), (doc_a, 2), (doc_c, 4), (doc_a, 9),
                                          (doc_b, 1), (doc_c, 11), (doc_a, 5), (doc_b, 12)])]
    packing = Packer(counter, 1).pack(hits, keyed(doc_a, doc_b, doc_c), budget)
    assert_exact(packing, counter)
    packed = {(p.document_id, i) for p in packing.passages for i in range(p.first, p.last + 1)}
    for x in packing.left_out:
        assert x.reason == "budget"
        assert (x.document_id, x.chunk_index) not in packed
    # Every hit is either in the context or accounted for in left_out.
    left = {(x.document_id, x.chunk_index) for x in packing.left_out}
    assert all((h.chunk.document_id, h.chunk.index) in packed | left for h in hits)


def test_foreign_token_counts_are_recounted_and_verified(counter, doc_a):
    # Chunks stored by another tokenizer with wrong numbers: the packer must count afresh.
    foreign = [ChunkRef(**{**c.__dict__, "tokenizer": "other", "core_tokens": 1, "end_tokens": 1})
               for c in doc_a]
    budget = 150
    packing = Packer(counter, 1).pack(hits_for(foreign, 3, 8, 1), keyed(foreign), budget)
    assert packing.verified
    assert packing.passages
    assert_exact(packing, counter)


class Recording:
    """The real counter, recording every text it is asked to count."""

    def __init__(self, counter: TokenCounter, name: str):
        self.counter, self.name, self.texts = counter, name, []

    def count(self, text: str) -> int:
        self.texts.append(text)
        return self.counter.count(text)

    def count_many(self, texts: list[str]) -> list[int]:
        self.texts += texts
        return self.counter.count_many(texts)


def test_foreign_counts_are_kept_across_questions(counter, doc_a):
    """A second question over the same chunks counts only its headers and the rendered text,
    not each chunk again, and packs exactly what the first did."""
    recording = Recording(counter, "served-model-kept")  # a name no other test counts with
    packer = Packer(recording, 1)  # type: ignore[arg-type]
    hits = hits_for(doc_a, 3, 8, 1)
    first = packer.pack(hits, keyed(doc_a), 400)
    cores = {c.core for c in doc_a}
    assert cores & set(recording.texts), "the chunks were counted the first time"
    recording.texts.clear()
    again = Packer(recording, 1).pack(hits, keyed(doc_a), 400)  # type: ignore[arg-type]
    assert not cores & set(recording.texts)
    assert again.context == first.context and again.used_tokens == first.used_tokens
    assert_exact(again, counter)
    # Other text under the same point id is counted afresh.
    edited = [ChunkRef(**{**c.__dict__, "core": c.core + " Edited.", "content_hash": "e"})
              for c in doc_a]
    recording.texts.clear()
    changed = Packer(recording, 1).pack(hits_for(edited, 3, 8, 1), keyed(edited), 400)  # type: ignore[arg-type]
    assert {c.core for c in edited} & set(recording.texts)
    assert_exact(changed, counter)


def test_header_lines_are_counted_once_across_questions(counter, doc_a, doc_b):
    """Packers that share a retriever's line counts count each header line once: a second
    question over the same documents counts none, and packs exactly what a packer with
    counts of its own packs."""
    recording = Recording(counter, counter.name)
    lines = LineCounts(recording)  # type: ignore[arg-type]
    hits = [*hits_for(doc_a, 3, 8), *hits_for(doc_b, 2, top=0.9)]
    first = Packer(recording, 1, lines=lines).pack(hits, keyed(doc_a, doc_b), 600)  # type: ignore[arg-type]
    assert any(t.startswith("[1] ") for t in recording.texts)
    recording.texts.clear()
    again = Packer(recording, 1, lines=lines).pack(hits, keyed(doc_a, doc_b), 600)  # type: ignore[arg-type]
    assert recording.texts == []
    alone = Packer(counter, 1).pack(hits, keyed(doc_a, doc_b), 600)
    assert again.context == first.context == alone.context
    assert again.used_tokens == alone.used_tokens
    assert_exact(again, counter)
    assert len(again.passages) >= 2
    with pytest.raises(ValueError):
        Packer(counter, 1, lines=lines)


@pytest.mark.parametrize("neighbours", [1, 2])
@pytest.mark.parametrize("budget", [120, 300, 700, 4000, 100_000])
@pytest.mark.parametrize("seed", range(3))
def test_neighbours_loaded_on_demand_pack_the_same(counter, doc_a, doc_b, doc_c, neighbours,
                                                   budget, seed):
    """Given only the hits and a loader, the packer asks for neighbours as it reaches each
    hit and packs exactly what it packs with every neighbour up front, while hits past the
    point where the budget is full never have theirs fetched."""
    twin = make_doc(counter, "alpha-copy", text_for(1))  # copies: duplicates in play too
    rng = random.Random(seed)
    docs = [doc_a, doc_b, doc_c, twin]
    picks = {(d, rng.randrange(len(docs[d]))) for d in rng.choices(range(4), k=40)}
    hits = [Hit(docs[d][i], round(rng.random(), 2)) for d, i in sorted(picks)]
    everything = keyed(*docs)
    asked: list[ChunkRef] = []

    def load(batch: list[ChunkRef]) -> dict[tuple[str, int], ChunkRef]:
        asked.extend(batch)
        return {k: c for k, c in everything.items()
                if any(k[0] == b.document_id and 0 < abs(k[1] - b.index) <= neighbours
                       for b in batch)}

    eager = Packer(counter, neighbours, "relevance").pack(hits, everything, budget)
    lazy = Packer(counter, neighbours, "relevance").pack(
        hits, {(h.chunk.document_id, h.chunk.index): h.chunk for h in hits}, budget, load=load)
    assert lazy.context == eager.context
    assert lazy.used_tokens == eager.used_tokens
    assert repr(lazy.left_out) == repr(eager.left_out)
    assert_exact(lazy, counter)
    assert len({c.id for c in asked}) == len(asked), "a hit's neighbours were asked for twice"
    if budget == 120 and neighbours == 1:  # full after the first batch: no more fetched
        assert len(asked) < len(hits), "a small budget fetched every hit's neighbours"


# -- duplicates -------------------------------------------------------------------------------

def test_identical_chunk_in_another_document_is_left_out_as_duplicate(counter, doc_a):
    twin = make_doc(counter, "alpha-copy", text_for(1))
    assert [c.content_hash for c in twin] == [c.content_hash for c in doc_a]
    hits = [Hit(doc_a[5], 0.9), Hit(twin[5], 0.9)]
    packing = Packer(counter, 1).pack(hits, keyed(doc_a, twin), 100_000)
    assert spans(packing) == [("alpha", 4, 6)]
    assert [(x.reason, x.document_id, x.chunk_index) for x in packing.left_out] == [
        ("duplicate", "alpha-copy", 5)]


def test_copies_keep_to_the_document_that_ranks_first(counter, doc_a):
    """Fusion may rank a copy's chunk above the original's: still one copy goes in."""
    twin = make_doc(counter, "alpha-copy", text_for(1))
    hits = [Hit(doc_a[2], 0.9), Hit(twin[2], 0.9), Hit(twin[9], 0.85), Hit(doc_a[9], 0.8)]
    packing = Packer(counter, 1).pack(hits, keyed(doc_a, twin), 100_000)
    assert spans(packing) == [("alpha", 1, 3), ("alpha", 8, 10)]
    assert [(x.reason, x.document_id, x.chunk_index) for x in packing.left_out] == [
        ("duplicate", "alpha-copy", 2), ("duplicate", "alpha-copy", 9)]


def test_order_of_equal_scores_does_not_change_the_packing(counter, doc_a, doc_b, doc_c):
    hits = [Hit(doc_a[3], 0.5), Hit(doc_b[6], 0.5), Hit(doc_c[9], 0.5), Hit(doc_b[1], 0.4),
            Hit(doc_a[11], 0.4), Hit(doc_c[2], 0.4)]
    chunks = keyed(doc_a, doc_b, doc_c)
    packings = []
    for seed in range(6):
        shuffled = hits[:]
        random.Random(seed).shuffle(shuffled)
        shuffled.sort(key=lambda h: -h.score)  # still ranked, ties in another order
        packings.append(Packer(counter, 1, "relevance").pack(shuffled, chunks, 300))
    assert packings[0].left_out  # the budget cuts among the tied hits
    assert len({p.context for p in packings}) == 1
    assert len({repr(p.left_out) for p in packings}) == 1


def test_neighbours_never_repeat_text_already_in_the_context(counter, doc_a):
    """The copy's hit 8 is new text, but its neighbour 7 is already in as the original's."""
    twin = make_doc(counter, "alpha-copy", text_for(1))
    hits = [Hit(doc_a[5], 0.9), Hit(twin[5], 0.9), Hit(doc_a[6], 0.8), Hit(twin[8], 0.8)]
    packing = Packer(counter, 2).pack(hits, keyed(doc_a, twin), 100_000)
    sentences = sentences_of(packing.context)
    assert len(sentences) == len(set(sentences)), "a sentence appears twice in the context"
    # The copy's new text still comes in, widened only on the side that is new.
    assert spans(packing) == [("alpha", 3, 7), ("alpha-copy", 8, 10)]
    assert [(x.reason, x.document_id, x.chunk_index) for x in packing.left_out] == [
        ("duplicate", "alpha-copy", 5)]
    assert_exact(packing, counter)


# -- layouts ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ranked(doc_a, doc_b, doc_c):
    """Five hits, best first, in three documents, far enough apart not to merge."""
    order = [(doc_b, 9), (doc_a, 2), (doc_c, 4), (doc_a, 8), (doc_b, 1)]
    return [Hit(doc[i], 1.0 - 0.1 * n) for n, (doc, i) in enumerate(order)]


def test_document_layout_groups_by_document_in_reading_order(counter, ranked, doc_a, doc_b,
                                                             doc_c):
    packing = Packer(counter, 1, "document").pack(ranked, keyed(doc_a, doc_b, doc_c), 100_000)
    # Documents by their best hit (bravo, alpha, charlie); inside each, chunk order.
    assert spans(packing) == [("bravo", 0, 2), ("bravo", 8, 10), ("alpha", 1, 3),
                              ("alpha", 7, 9), ("charlie", 3, 5)]
    assert [p.label for p in packing.passages] == [1, 2, 3, 4, 5]
    assert [p.header.split("]")[0] for p in packing.passages] == ["[1", "[2", "[3", "[4", "[5"]
    assert_exact(packing, counter)


def test_relevance_layout_is_best_first(counter, ranked, doc_a, doc_b, doc_c):
    packing = Packer(counter, 1, "relevance").pack(ranked, keyed(doc_a, doc_b, doc_c), 100_000)
    assert spans(packing) == [("bravo", 8, 10), ("alpha", 1, 3), ("charlie", 3, 5),
                              ("alpha", 7, 9), ("bravo", 0, 2)]
    scores = [p.score for p in packing.passages]
    assert scores == sorted(scores, reverse=True)


def test_edges_layout_puts_best_first_and_second_best_last(counter, ranked, doc_a, doc_b,
                                                           doc_c):
    packing = Packer(counter, 1, "edges").pack(ranked, keyed(doc_a, doc_b, doc_c), 100_000)
    # Ranks 0, 2, 4 from the front; 3, 1 towards the end.
    assert spans(packing) == [("bravo", 8, 10), ("charlie", 3, 5), ("bravo", 0, 2),
                              ("alpha", 7, 9), ("alpha", 1, 3)]
    assert packing.passages[0].rank == 0
    assert packing.passages[-1].rank == 1
    assert packing.layout == "edges"


def test_layouts_pack_the_same_passages(counter, ranked, doc_a, doc_b, doc_c):
    packs = [Packer(counter, 1, layout).pack(ranked, keyed(doc_a, doc_b, doc_c), 500)
             for layout in ("document", "relevance", "edges")]
    assert len({frozenset(spans(p)) for p in packs}) == 1
    assert len({p.used_tokens for p in packs}) == 1
    for p in packs:
        assert_exact(p, counter)


# -- whole documents --------------------------------------------------------------------------

def test_pack_whole_keeps_documents_in_order_and_whole(counter, doc_a, doc_b, doc_c):
    docs = [doc_c, doc_a, doc_b]
    packing = Packer(counter).pack_whole(docs, 100_000)
    assert packing.mode == "full"
    assert [p.document_id for p in packing.passages] == ["charlie", "alpha", "bravo"]
    for p, doc in zip(packing.passages, docs, strict=True):
        assert p.text == "".join(c.core for c in doc)
        assert (p.first, p.last) == (0, len(doc) - 1)
    assert_exact(packing, counter)
    assert packing.context == render(packing.passages)


def test_pack_whole_fits_exactly_and_leaves_out_what_does_not(counter, doc_a, doc_b):
    full = Packer(counter).pack_whole([doc_a, doc_b], 100_000)
    need = full.used_tokens
    exact = Packer(counter).pack_whole([doc_a, doc_b], need)
    assert [p.document_id for p in exact.passages] == ["alpha", "bravo"]
    assert exact.used_tokens == need and not exact.left_out
    short = Packer(counter).pack_whole([doc_a, doc_b], need - 1)
    assert [p.document_id for p in short.passages] == ["alpha"]
    assert [(x.reason, x.document_id) for x in short.left_out] == [("budget", "bravo")]
    assert_exact(short, counter)


# -- the stages, one at a time ----------------------------------------------------------------

def test_ranked_hits_break_score_ties_by_position(doc_a, doc_b):
    hits = [Hit(doc_b[2], 0.5), Hit(doc_a[7], 0.5), Hit(doc_a[3], 0.5), Hit(doc_b[0], 0.9)]
    assert [(h.chunk.document_id, h.chunk.index) for h in rank_hits(hits)] == [
        ("bravo", 0), ("alpha", 3), ("alpha", 7), ("bravo", 2)]


def test_the_copy_packed_is_in_the_document_whose_first_hit_ranks_best(counter):
    text = text_for(9)
    first, second = make_doc(counter, "first", text), make_doc(counter, "second", text)
    hits = [Hit(second[4], 0.9), Hit(first[2], 0.8), Hit(first[4], 0.7), Hit(second[2], 0.1)]
    canonical = canonical_copies(hits)
    assert canonical[first[4].content_hash] == ("second", 4)
    # Chunk 2's best hit is first's, but second's first hit ranks best: its copy goes in.
    assert canonical[first[2].content_hash] == ("second", 2)
    assert canonical_copies(hits[1:3]) == {first[2].content_hash: ("first", 2),
                                           first[4].content_hash: ("first", 4)}


def test_fill_places_hits_one_by_one_and_keeps_an_exact_running_count(counter, doc_a):
    packer = Packer(counter, neighbours=1)
    fill = Fill(packer, rank_hits(hits_for(doc_a, 5, 6, 9)), keyed(doc_a), 10_000, None)
    fill.add(0, fill.hits[0])
    assert fill.runs == {("alpha", 0): [[4, 6]]}
    fill.add(1, fill.hits[1])  # inside the run already: nothing changes
    assert fill.runs == {("alpha", 0): [[4, 6]]}
    fill.add(2, fill.hits[2])  # 8..10: chunk 7 lies between, so a second run
    assert fill.runs == {("alpha", 0): [[4, 6], [8, 10]]}
    assert fill.used == sum(p.tokens for p in fill.passages())
    laid = packer.lay_out(fill.passages())
    packing = packer.finish(laid, fill.left_out, 10_000, "retrieve", False)
    assert spans(packing) == [("alpha", 4, 6), ("alpha", 8, 10)]
    assert_exact(packing, counter)
    assert packing == packer.pack(hits_for(doc_a, 5, 6, 9), keyed(doc_a), 10_000)


# -- coverage: the best hits first, bare ------------------------------------------------------

def test_coverage_packs_every_spread_hit_before_widening_any(counter, doc_a, doc_b, doc_c):
    hits = [*hits_for(doc_a, 2), *hits_for(doc_b, 7, top=0.9), *hits_for(doc_c, 4, top=0.8),
            *hits_for(doc_a, 9, top=0.7)]
    chunks = keyed(doc_a, doc_b, doc_c)
    bare = Packer(counter, 0).pack(hits, chunks, 100_000).used_tokens
    budget = bare + 2 * doc_a[3].core_tokens  # every hit bare, and room for two neighbours
    widened = Packer(counter, 1).pack(hits, chunks, budget)
    covered = Packer(counter, 1, coverage=1.0).pack(hits, chunks, budget)
    hit_keys = {(h.chunk.document_id, h.chunk.index) for h in hits}

    def inside(packing) -> set[tuple[str, int]]:
        return {(p.document_id, i) for p in packing.passages for i in range(p.first, p.last + 1)}

    assert not hit_keys <= inside(widened)  # widened in rank order, the last hits do not fit
    assert hit_keys <= inside(covered)
    assert inside(covered) > hit_keys  # the budget left over widened the best hit
    assert ("alpha", 1) in inside(covered) or ("alpha", 3) in inside(covered)
    assert any(n.startswith("coverage: the 4 best hits") for n in covered.notes)
    assert not widened.notes
    assert_exact(covered, counter)


def test_coverage_zero_packs_as_without_it(counter, doc_a, doc_b):
    hits = [*hits_for(doc_a, 2, 5, 8), *hits_for(doc_b, 1, 6, top=0.95)]
    chunks = keyed(doc_a, doc_b)
    for budget in (300, 700, 100_000):
        plain = Packer(counter, 1).pack(hits, chunks, budget)
        zero = Packer(counter, 1, coverage=0.0).pack(hits, chunks, budget)
        assert zero.context == plain.context and spans(zero) == spans(plain)


def test_coverage_is_byte_stable(counter, doc_a, doc_b, doc_c):
    hits = [*hits_for(doc_c, 1, 9), *hits_for(doc_a, 4, top=0.97), *hits_for(doc_b, 3, top=0.96)]
    chunks = keyed(doc_a, doc_b, doc_c)
    packs = [Packer(counter, 1, layout, coverage=0.75).pack(list(reversed(hits)), chunks, 600)
             for layout in ("document", "document")]
    assert packs[0].context.encode() == packs[1].context.encode()
    assert_exact(packs[0], counter)
