"""The prompt's fixed parts and their exact token cost in the Llama 3.1 chat format.

The passages go into the system message, after the instruction, so the system message is
a stable prefix: follow-up questions on the same passages reuse the server's prefix cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.tokenizer import TokenCounter

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


def llama31_template_tokens(counter: TokenCounter, roles: list[str]) -> int:
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


def prompt_overhead(counter: TokenCounter, question: str,
                    history: list[Message] | None = None) -> int:
    """Every prompt token except the passages: template, instruction, history, question."""
    history = history or []
    roles = ["system", *[m.role for m in history], "user"]
    return (
        llama31_template_tokens(counter, roles)
        + counter.count(SYSTEM_INSTRUCTION + PASSAGES_HEADING)
        + sum(counter.count(m.content) for m in history)
        + counter.count(question)
    )
