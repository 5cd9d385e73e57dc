"""A tokenizer.json's byte-level BPE as tiktoken's ranks, kept in a compact copy.

Llama 3's tokenizer.json was converted from tiktoken's ranks: its merges follow the ranks
of the tokens they make, its pre-tokenizer is one regex split and byte-level mapping, and
it has no normalizer. For such a file tiktoken's `Encoding` gives the same ids as
`tokenizers` (tests/ingest/test_bpe_ranks.py compares them id for id), and building it
from the ranks takes ~0.2 s of CPU where `Tokenizer.from_file` takes ~0.6 s. Reading the
9 MB JSON to get the ranks would cost most of that again, so the ranks are kept, after the
first read, beside the ONNX exports, keyed by the file's path, size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import sys
from pathlib import Path
from typing import Any

import tiktoken

FORMAT = 1  # of the kept copy; a new one is written when this changes
Ranks = tuple[str, dict[bytes, int], dict[str, int]]  # (split regex, ranks, special tokens)


def cache_dir() -> Path:
    return Path(sys.prefix) / "share" / "rag" / "tokenizers"


def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet: which byte each vocabulary character stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in chars)
    chars.update({b: chr(256 + n) for n, b in enumerate(shifted)})
    return {c: b for b, c in chars.items()}


def _split_regex(pre: Any) -> str | None:
    """The regex of a `Sequence[Split(regex, isolated), ByteLevel(no regex)]` pre-tokenizer."""
    if not isinstance(pre, dict) or pre.get("type") != "Sequence":
        return None
    steps = pre.get("pretokenizers") or []
    if len(steps) != 2:
        return None
    split, level = steps
    regex = split.get("pattern", {}).get("Regex") if split.get("type") == "Split" else None
    if split.get("behavior") != "Isolated" or split.get("invert") or not isinstance(regex, str):
        return None
    if level.get("type") != "ByteLevel" or level.get("use_regex") or level.get("add_prefix_space"):
        return None
    return regex


def _plain_bpe(model: Any) -> bool:
    return (isinstance(model, dict) and model.get("type") == "BPE" and not model.get("dropout")
            and not model.get("byte_fallback") and not model.get("continuing_subword_prefix")
            and not model.get("end_of_word_suffix"))


def _merges_follow_ranks(vocab: dict[str, int], merges: list[Any]) -> bool:
    """Each merge makes a token ranked no lower than the previous merge's: then merging the
    best-ranked pair (tiktoken) and the earliest merge (tokenizers) are the same rule."""
    last = -1
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank = vocab.get(left + right)
        if rank is None or rank < last:
            return False
        last = rank
    return True


def byte_level_bpe(spec: dict[str, Any]) -> Ranks | None:
    """tiktoken's view of a tokenizer.json, or None where tiktoken would count differently."""
    model: Any = spec.get("model")
    regex = _split_regex(spec.get("pre_tokenizer"))
    if spec.get("normalizer") is not None or regex is None or not _plain_bpe(model):
        return None
    if spec.get("truncation") is not None or spec.get("padding") is not None:
        return None  # `tokenizers` would count the cut or padded encoding
    vocab: dict[str, int] = model["vocab"]
    if not _merges_follow_ranks(vocab, model.get("merges") or []):
        return None
    added = spec.get("added_tokens") or []
    if any(a.get("lstrip") or a.get("rstrip") or a.get("single_word") for a in added):
        return None
    byte_of = _byte_of_char()
    try:
        ranks = {bytes(byte_of[c] for c in token): rank for token, rank in vocab.items()}
    except KeyError:  # a character outside the byte-level alphabet
        return None
    if len(ranks) != len(vocab) or not all(bytes([b]) in ranks for b in range(256)):
        return None
    specials = {a["content"]: a["id"] for a in added}
    # An added token that is also a BPE token is split out of the text by `tokenizers`
    # only, and one whose id is a BPE rank would make two tokens of one id.
    if any(s.encode() in ranks for s in specials) or set(specials.values()) & set(ranks.values()):
        return None
    return regex, ranks, specials


def _kept_copy(file: Path) -> Path:
    st = file.stat()
    key = f"{FORMAT}|{file.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.marshal"


def _read_kept(copy: Path) -> Ranks | None:
    """The kept ranks (None also when the file says the tokenizer is not tiktoken's),
    or raises OSError/ValueError when there is no readable copy."""
    kept = marshal.loads(copy.read_bytes())
    if kept is None:
        return None
    regex, ranks, specials = kept
    if not (isinstance(regex, str) and isinstance(ranks, dict) and isinstance(specials, dict)):
        raise ValueError(f"malformed {copy}")
    return regex, ranks, specials


def _keep(copy: Path, ranks: Ranks | None) -> None:
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(marshal.dumps(ranks))
        os.replace(partial, copy)
    except OSError:
        pass  # a read-only environment reads the JSON each time


def load_ranks(file: Path) -> Ranks | None:
    """The file's ranks from the kept copy, else from the JSON (then kept); None when the
    file is no byte-level BPE that tiktoken reproduces, or is no JSON at all."""
    copy = _kept_copy(file)
    try:
        return _read_kept(copy)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    try:
        ranks = byte_level_bpe(json.loads(file.read_bytes()))
    except (ValueError, TypeError, AttributeError, KeyError):
        return None  # `tokenizers` reads it (and says what is wrong with it)
    _keep(copy, ranks)
    return ranks


def bpe_encoding(file: Path) -> tiktoken.Encoding | None:
    ranks = load_ranks(file)
    if ranks is None:
        return None
    regex, mergeable, specials = ranks
    return tiktoken.Encoding(file.name, pat_str=regex, mergeable_ranks=mergeable,
                             special_tokens=specials)
