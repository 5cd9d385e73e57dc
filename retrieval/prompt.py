"""The prompt's fixed parts and their exact token cost in the Llama 3.1 chat format.

The passages go into the system message, after the instruction, so the system message is
a stable prefix: follow-up questions on the same passages reuse the server's prefix cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.choices import ChatFormat


class Counter(Protocol):
    def count(self, text: str) -> int: ...

SYSTEM_INSTRUCTION = (
    "You answer questions using only the numbered passages below. Cite the passages that "
    "support each statement with their numbers in square brackets, like [2] or [1][3]. "
    "If the passages do not contain the answer, say that you cannot find it in the documents."
)
PASSAGES_HEADING = "\n\nPassages:\n\n"
NO_PASSAGES = "\n\n(No passages were found for this question.)"

# Llama 3.1's chat template (as in its tokenizer_config.json): the system message starts
# with these two lines, and every message is framed by header and end-of-turn tokens.
_BOT = "<|begin_of_text|>"
_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"
_EOT = "<|eot_id|>"
_DATE_LINES = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def system_message(context: str) -> str:
    """The system message: instruction, then the passages (a stable, cacheable prefix)."""
    return SYSTEM_INSTRUCTION + (PASSAGES_HEADING + context if context.strip() else NO_PASSAGES)


def build_messages(context: str, question: str,
                   history: list[Message] | tuple[Message, ...] = ()) -> list[dict[str, str]]:
    """Passages first, then the conversation, then the question: the same passages give the
    same prefix, so the server's prefix cache is reused across turns."""
    return [{"role": "system", "content": system_message(context)},
            *(m.to_dict() for m in history),
            {"role": "user", "content": question}]


def template_tokens(counter: Counter, roles: list[str], fmt: ChatFormat = "llama3") -> int:
    if fmt == "chatml":
        return chatml_template_tokens(counter, roles)
    return llama31_template_tokens(counter, roles)


def chatml_template_tokens(counter: Counter, roles: list[str]) -> int:
    """ChatML (SmolLM2, Qwen...): `<|im_start|>role\n` content `<|im_end|>\n` per message,
    then `<|im_start|>assistant\n`; the two markers are one special token each."""
    specials = 2 * len(roles) + 1
    text = sum(counter.count(f"{role}\n") + counter.count("\n") for role in roles)
    return specials + text + counter.count("assistant\n")


def llama31_template_tokens(counter: Counter, roles: list[str]) -> int:
    """Tokens the chat template adds around messages with these roles (plus the assistant's
    opening header), counting special tokens as one each."""
    frame = _BOT + "".join(_HEADER.format(role=r) + _EOT for r in roles)
    frame += _HEADER.format(role="assistant")
    specials = frame.count("<|")
    plain = frame
    for special in ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eot_id|>"):
        plain = plain.replace(special, "\x00")
    text_tokens = sum(counter.count(part) for part in plain.split("\x00") if part)
    return specials + text_tokens + counter.count(_DATE_LINES)


def prompt_overhead(counter: Counter, question: str,
                    history: list[Message] | None = None, fmt: ChatFormat = "llama3") -> int:
    """Every prompt token except the passages: template, instruction, history, question."""
    history = history or []
    roles = ["system", *[m.role for m in history], "user"]
    return (
        template_tokens(counter, roles, fmt)
        + counter.count(SYSTEM_INSTRUCTION + PASSAGES_HEADING)
        + sum(counter.count(m.content) for m in history)
        + counter.count(question)
    )
