"""`rag eval`: measure retrieval (and answers) on the collection's own documents at each
budget × layout × search mode; the run is saved and can be compared with an earlier one."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import TracebackType
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from app.evaluation import EvalOptions, EvalProgress, EvalRun
from app.evaluation.options import parse_budgets, parse_choices, short_tokens
from core.choices import Layout, SearchMode
from core.settings import Settings

_STAGES = {"read": "reading documents", "questions": "writing questions",
           "ingest": "ingesting probe copies", "retrieve": "retrieving",
           "answer": "retrieving and answering"}
_BARS = "▁▂▃▄▅▆▇█"


class _Bar(EvalProgress):
    def __init__(self, console: Console, enabled: bool):
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                            transient=True, disable=not enabled)
        self.task = self.bar.add_task("eval", total=None)

    def __enter__(self) -> _Bar:
        self.bar.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.bar.__exit__(et, ev, tb)

    def stage(self, name: str, total: int) -> None:
        self.bar.update(self.task, description=_STAGES.get(name, name), total=total, completed=0)

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)


def register(app: typer.Typer, settings_for: Callable[[str | None], Settings], out: Console,
             err: Console) -> None:
    """Adds `rag eval` to `app`; `settings_for(collection)` gives the command's settings."""

    def eval_command(
        collection: Annotated[str | None, typer.Option(help="Collection to evaluate.")] = None,
        probes: Annotated[int, typer.Option(help="Probes of each kind (needles, passages).")] = 10,
        budgets: Annotated[str, typer.Option(help="Requested budgets, k = 1,024.")] =
            "4k,8k,16k,32k,64k,128k",
        layouts: Annotated[str, typer.Option(help="Layouts: " + ",".join(Layout))] =
            ",".join(Layout),
        modes: Annotated[str | None, typer.Option(
            help="Search modes: " + ",".join(SearchMode) + " (default: the configured one).")]
            = None,
        kinds: Annotated[str, typer.Option(help="Probe kinds: needle,passage.")] =
            "needle,passage",
        answers: Annotated[bool, typer.Option(
            "--answers", help="Also ask the served model at each cell (slow on a CPU).")] = False,
        no_llm: Annotated[bool, typer.Option(
            "--no-llm", help="No model writes questions: passage probes are masked sentences.")]
            = False,
        seed: Annotated[int, typer.Option(help="Seed of the probe sampling.")] = 0,
        compare_to: Annotated[str | None, typer.Option(
            "--compare", metavar="RUN", help="An earlier run (id, id prefix, 'last' or its "
                                             "JSON file): show what changed.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Measure how well this collection is served: probe recall in the packed context per
        budget × layout × mode (and, with --answers, answer accuracy), with the recommended
        budget and layout. Runs are saved under the data directory."""
        s = settings_for(collection)
        options = EvalOptions(
            probes=probes, budgets=parse_budgets(budgets),
            layouts=parse_choices(layouts, Layout, "--layouts"),
            modes=parse_choices(modes, SearchMode, "--modes") if modes else (),
            answers=answers, llm_questions=not no_llm, seed=seed,
            kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()))
        evaluate_and_print(s, options, compare_to, as_json, out,
                           _Bar(err, enabled=not quiet and err.is_terminal))

    app.command("eval")(eval_command)


def evaluate_and_print(s: Settings, options: EvalOptions, compare_to: str | None,
                       as_json: bool, out: Console, bar: _Bar) -> None:
    """Runs, saves and prints the evaluation (one JSON object with `as_json`), and what
    changed from the run `compare_to` when given."""
    from app.evaluation import compare, load_run, save_run

    old = load_run(s, compare_to) if compare_to else None
    with bar:
        run = run_evaluation(s, options, bar)
    save_run(s, run)
    comparison = compare(run, old) if old is not None else None
    if as_json:
        print(json.dumps({"run": run.to_dict(), "comparison": comparison}, ensure_ascii=False))
        return
    print_run(out, run)
    if comparison is not None:
        print_comparison(out, comparison)


def run_evaluation(settings: Settings, options: EvalOptions, progress: EvalProgress) -> EvalRun:
    """The evaluation with this process's store and embedder; a collection without
    documents is refused before anything loads, and the served model is started only when
    it writes questions or answers."""
    from app.evaluation import Evaluation
    from app.evaluation.corpus import check_corpus
    from app.evaluation.evaluate import model_for
    from app.runtime import Runtime
    from app.served_model import ServedModel

    with Runtime(settings) as rt:
        check_corpus(rt.store, settings.store.collection)
        model = ServedModel(settings)
        try:
            llm, served = model_for(model, options)
            return Evaluation(settings, rt.store, rt.embedder(), served, llm,
                              progress=progress).run(options)
        finally:
            model.close()


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_run(out: Console, run: EvalRun) -> None:
    d = run.to_dict()
    cells = d["cells"]
    answered = any(c["answer_accuracy"] is not None for c in cells)
    # No vertical rules: the columns fit 80 characters (a pipe), names uncut.
    columns: list[Column | str] = [
        "budget", Column("layout", min_width=9), Column("mode", min_width=7), "recall",
        "needles", Column("passages", min_width=8), "rank", "tokens", "ms",
        *(["answers", "cited", "ttft s"] if answered else [])]
    table = Table(*columns, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False,
                  title=f"rag eval {run.id}: {len(run.probes)} probes on '{run.collection}'")
    for c in cells:
        table.add_row(short_tokens(c["budget"]), c["layout"], c["mode"], _fmt(c["recall"]),
                      _fmt(c["recall_needle"]), _fmt(c["recall_passage"]),
                      _fmt(c["rank_median"], "g"), f"{c['tokens_mean']:,}",
                      _fmt(c["retrieve_ms_p50"], ".1f"),
                      *([_fmt(c["answer_accuracy"]), _fmt(c["cited_right"]),
                         _fmt(c["ttft_s_p50"], ".2f")] if answered else []))
    out.print(table)
    out.print(chart(cells, "answer_accuracy" if answered else "recall"), markup=False)
    rec = d["recommendation"]
    if rec:
        out.print(f"[bold]recommended:[/bold] budget {short_tokens(rec['budget'])}, layout "
                  f"{rec['layout']}: {rec['reason']}", soft_wrap=True)
    out.print(f"[dim]model {run.model} ({run.context_window:,}-token window) · corpus "
              f"{run.corpus['hash']} ({len(run.corpus['documents'])} documents) · settings "
              f"{run.settings_hash} · needles in {run.haystack_tokens:,} tokens of copies · "
              f"{run.seconds:.1f} s[/dim]")
    for note in run.notes:
        out.print(f"note: {note}", markup=False, soft_wrap=True)


def chart(cells: list[dict[str, Any]], metric: str) -> str:
    """`metric` against budget, one line per layout × mode, in block characters."""
    lines = [f"{metric.replace('_', ' ')} by budget:"]
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        series.setdefault((c["layout"], c["mode"]), []).append(c)
    for (layout, mode), cs in series.items():
        marks = " ".join(
            f"{short_tokens(c['budget'])}{_BARS[min(7, int((c[metric] or 0) * 7.999))]}"
            f"{_fmt(c[metric])}" for c in sorted(cs, key=lambda c: c["budget"]))
        lines.append(f"  {layout:<9} {mode:<7} {marks}")
    return "\n".join(lines)


def print_comparison(out: Console, comparison: dict[str, Any]) -> None:
    out.print(f"\n[bold]compared with {comparison['old']}:[/bold] {comparison['verdict']}",
              soft_wrap=True)
    corpus = comparison["corpus"]
    if corpus["changed"]:
        out.print(f"  documents: {len(corpus['added'])} added, {len(corpus['removed'])} "
                  f"removed, {len(corpus['updated'])} changed", markup=False)
    for s in comparison["settings"]:
        out.print(f"  setting {s['setting']}: {s['old']} -> {s['new']}", markup=False)
    for c in comparison["cells"]:
        if c["delta"]:
            out.print(f"  {short_tokens(c['budget'])}/{c['layout']}/{c['mode']}: recall "
                      f"{_fmt(c['old'])} -> {_fmt(c['new'])} ({c['delta']:+.2f})", markup=False)
