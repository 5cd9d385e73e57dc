"""`rag eval`: how well this corpus is served at each budget, layout and search mode,
measured with probes made from the corpus itself (nothing downloaded).

Evaluation and without_model are imported on first use: they bring the LLM client (openai,
about a second and a half), which every other `rag` command would otherwise load at start."""

from typing import TYPE_CHECKING, Any

from app.evaluation.options import EvalOptions
from app.evaluation.progress import EvalProgress
from app.evaluation.runs import EvalRun, compare, list_runs, load_run, save_run

if TYPE_CHECKING:
    from app.evaluation.evaluate import Evaluation, without_model

__all__ = ["EvalOptions", "EvalProgress", "EvalRun", "Evaluation", "compare", "list_runs",
           "load_run", "save_run", "without_model"]


def __getattr__(name: str) -> Any:
    if name in ("Evaluation", "without_model"):
        from app.evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
