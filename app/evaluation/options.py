"""What an evaluation measures, checked once for the CLI, the API and the library."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.choices import Layout, SearchMode
from core.errors import SettingsError

DEFAULT_BUDGETS = (4096, 8192, 16384, 32768, 65536, 131072)
MAX_PROBES = 500


@dataclass(frozen=True)
class EvalOptions:
    probes: int = 10  # of each kind: needles and passages
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    layouts: tuple[Layout, ...] = tuple(Layout)
    modes: tuple[SearchMode, ...] = ()  # none: the configured search mode
    answers: bool = False  # ask the served model at each cell
    llm_questions: bool = True  # passage questions written by the served model
    seed: int = 0
    kinds: tuple[str, ...] = field(default=("needle", "passage"))

    def __post_init__(self) -> None:
        if not 1 <= self.probes <= MAX_PROBES:
            raise SettingsError("probes", f"must be between 1 and {MAX_PROBES}")
        if not self.budgets or min(self.budgets) < 1:
            raise SettingsError("budgets", "give one or more positive token budgets")
        if not self.layouts:
            raise SettingsError("layouts", "give one or more layouts")
        if not self.kinds or set(self.kinds) - {"needle", "passage"}:
            raise SettingsError("kinds", "use needle, passage or both")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_tokens(text: str, name: str = "budgets") -> int:
    """'4k' → 4,096, '1M' → 1,048,576, '1500' → 1,500."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = 1
    if t.endswith("k"):
        scale, t = 1024, t[:-1]
    elif t.endswith("m"):
        scale, t = 1024 * 1024, t[:-1]
    try:
        value = int(float(t) * scale)
    except ValueError:
        raise SettingsError(name, f"'{text}' is not a token count (e.g. 4k, 16384)") from None
    if value < 1:
        raise SettingsError(name, f"'{text}' must be positive")
    return value


def parse_budgets(text: str) -> tuple[int, ...]:
    return tuple(sorted({parse_tokens(b) for b in text.split(",") if b.strip()}))


def parse_choices(text: str, choices: type[Layout] | type[SearchMode], name: str) -> tuple[Any, ...]:
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        try:
            out.append(choices(item))
        except ValueError:
            raise SettingsError(name, f"'{item}' is not one of {', '.join(choices)}") from None
    return tuple(dict.fromkeys(out))


def short_tokens(n: int) -> str:
    """131,072 → '128k', 1,500 → '1500'."""
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)
