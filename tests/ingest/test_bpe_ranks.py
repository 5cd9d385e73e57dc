"""The shipped Llama 3 tokenizer counts through tiktoken's copy of its BPE: the same ids as
`tokenizers` id for id, on real text and on every script, whitespace, digit and special-
token shape the pre-tokenizer distinguishes; the copy of the ranks is kept and read again;
a tokenizer.json tiktoken cannot reproduce is counted by `tokenizers` as before."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from ingest import bpe_ranks
from ingest.embedder import shipped_model_path
from ingest.tokenizer import TokenCounter, load_tokenizer, read_tokenizer, shipped_tokenizer_path

ROOT = Path(__file__).resolve().parents[2]
SPECIALS = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|reserved_special_token_5|>"]
# Code point ranges of the scripts and symbols the split regex treats differently.
BLOCKS = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
          (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x23FF),
          (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
          (0x1F300, 0x1FAFF), (0x0300, 0x036F), (0x660, 0x669), (0xFF10, 0xFF19)]
SEPARATORS = [" ", "  ", "\n", "\n\n", "\r\n", "\t", " \n ", "'s ", "'LL ", "123456", "\u3000"]


def real_texts() -> list[str]:
    """This project's own documents and sources: prose, code, tables, typography."""
    files = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("app/sample/*"),
                    *ROOT.glob("retrieval/*.py"), *ROOT.glob("ingest/*.py")])
    return [f.read_text(encoding="utf-8") for f in files if f.is_file()]


def mixed_texts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)

    def word() -> str:
        lo, hi = rng.choice(BLOCKS)
        return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8)))

    return ["".join(rng.choice([word(), word(), rng.choice(SEPARATORS), rng.choice(SPECIALS)])
                    for _ in range(rng.randint(1, 60))) for _ in range(n)]


@pytest.fixture(scope="module")
def reference() -> Any:
    """`tokenizers`' own reading of the shipped file: the counts to agree with."""
    return read_tokenizer(shipped_tokenizer_path())


def test_shipped_tokenizer_counts_through_tiktoken(counter: TokenCounter) -> None:
    assert counter.bpe is not None and counter.name == "llama-3"


def test_tiktoken_ids_are_the_tokenizers_ids(counter: TokenCounter, reference: Any) -> None:
    texts = [*real_texts(), *mixed_texts(800), *SPECIALS, "", " ", "a" * 600]
    assert counter.bpe is not None
    for text in texts:
        ids = reference.encode(text, add_special_tokens=False).ids
        assert counter.bpe.encode(text, allowed_special="all") == ids, text[:200]
    counts = [len(reference.encode(t, add_special_tokens=False).ids) for t in texts]
    assert counter.count_many(texts) == counts
    assert counter.count(texts[0]) == counts[0] > 1000


def test_lines_with_and_without_special_tokens_count_as_the_tokenizer_does(
        counter: TokenCounter, reference: Any) -> None:
    """Text with no special token counts without handing tiktoken the special tokens; text
    with one, or with what only looks like the start of one, counts as before."""
    lines = ["[1] notes.txt, page 4 — Harbour log\n", "[999] report.pdf, sheet Q3\n",
             "a<|b", "<|", "<|eot_id", "x <|eot_id|> y", "<|begin_of_text|>[2] a.md\n",
             "|>", "<|reserved_special_token_5|><|>"]
    expected = [len(reference.encode(t, add_special_tokens=False).ids) for t in lines]
    assert counter.count_many(lines) == expected
    assert [counter.count(t) for t in lines] == expected
    assert counter.count("<|eot_id|>") == 1  # a special token counts as one


def test_ranks_are_kept_and_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpe_ranks, "cache_dir", lambda: tmp_path / "kept")
    file = tmp_path / "tokenizer.json"
    shutil.copy(shipped_tokenizer_path(), file)
    first = bpe_ranks.load_ranks(file)
    kept = list((tmp_path / "kept").iterdir())
    assert first is not None and len(kept) == 1
    file.write_bytes(b"not json")  # unchanged size and mtime: the kept copy answers
    stat = (tmp_path / "kept").stat()
    shutil.copystat(shipped_tokenizer_path(), file)
    assert bpe_ranks.load_ranks(file) is None  # the size differs: read afresh, and it is no JSON
    assert stat.st_mtime_ns <= (tmp_path / "kept").stat().st_mtime_ns
    shutil.copy(shipped_tokenizer_path(), file)
    kept[0].write_bytes(b"\x00broken")
    again = bpe_ranks.load_ranks(file)  # a broken copy is written again
    assert again is not None and again[1] == first[1] and again[2] == first[2]


def test_kept_copy_is_used_without_the_json(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpe_ranks, "cache_dir", lambda: tmp_path / "kept")
    file = tmp_path / "tokenizer.json"
    shutil.copy(shipped_tokenizer_path(), file)
    assert bpe_ranks.load_ranks(file) is not None
    monkeypatch.setattr(bpe_ranks.json, "loads", lambda _: pytest.fail("the JSON was read"))
    counter = TokenCounter(file, "copy", bpe_ranks.bpe_encoding(file))
    assert counter.count("The keeper tests the reserve batteries.") == 7


def test_a_wordpiece_tokenizer_counts_with_tokenizers(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """MiniLM's tokenizer.json (WordPiece, a normalizer) is nothing tiktoken reproduces."""
    monkeypatch.setattr(bpe_ranks, "cache_dir", lambda: tmp_path / "kept")
    file = shipped_model_path() / "tokenizer.json"
    load_tokenizer.cache_clear()
    try:
        counter = load_tokenizer(str(file))
    finally:
        load_tokenizer.cache_clear()
    assert counter.bpe is None
    text = "The Keeper tests the reserve batteries."
    assert counter.count(text) == len(read_tokenizer(file).encode(
        text, add_special_tokens=False).ids)
    assert counter.count_many([text, text + " Twice."]) == [counter.count(text),
                                                            counter.count(text + " Twice.")]


def test_a_bad_tokenizer_file_is_one_settings_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import SettingsError

    monkeypatch.setattr(bpe_ranks, "cache_dir", lambda: tmp_path / "kept")
    file = tmp_path / "tokenizer.json"
    file.write_text('{"model": {"type": "BPE"}}')
    with pytest.raises(SettingsError, match="tokenizer.path.*cannot read"):
        load_tokenizer(str(file))


def test_a_truncating_copy_of_the_shipped_file_counts_with_tokenizers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken has no truncation: a tokenizer.json that sets one is counted as it says."""
    monkeypatch.setattr(bpe_ranks, "cache_dir", lambda: tmp_path / "kept")
    spec = json.loads(shipped_tokenizer_path().read_text())
    spec["truncation"] = {"direction": "Right", "max_length": 4, "strategy": "LongestFirst",
                          "stride": 0}
    file = tmp_path / "tokenizer.json"
    file.write_text(json.dumps(spec))
    assert bpe_ranks.load_ranks(file) is None
    counter = TokenCounter(file, "cut", bpe_ranks.bpe_encoding(file))
    assert counter.bpe is None
    assert counter.count("The keeper tests the reserve batteries.") == 4
