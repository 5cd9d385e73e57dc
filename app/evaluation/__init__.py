"""`rag eval`: how well this corpus is served at each budget, layout and search mode,
measured with probes made from the corpus itself (nothing downloaded)."""

from app.evaluation.evaluate import EvalProgress, Evaluation, without_model
from app.evaluation.options import EvalOptions
from app.evaluation.runs import EvalRun, compare, list_runs, load_run, save_run

__all__ = ["EvalOptions", "EvalProgress", "EvalRun", "Evaluation", "compare", "list_runs",
           "load_run", "save_run", "without_model"]
