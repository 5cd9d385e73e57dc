"""An evaluation's results: the measurements, their summary per budget × layout × mode, the
recommended budget and layout, the saved run (data_dir/eval/<id>.json) and the comparison of
two runs."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.evaluation.options import short_tokens
from app.evaluation.probes import Probe
from core.errors import NotFoundError, SettingsError
from core.settings import Settings

TOLERANCE = 0.02  # a budget this close to the best score counts as as good


@dataclass(frozen=True)
class Measurement:
    """One probe retrieved at one budget, layout and search mode."""

    probe: int
    budget: int
    layout: str
    mode: str
    found: bool  # the evidence sentence is inside the packed context
    rank: int | None  # of the evidence's chunk in the mode's search (1 = first)
    used_tokens: int
    available: int
    seconds: float
    packed: str  # full (whole documents) | retrieve
    answer_ok: bool | None = None
    cited_ok: bool | None = None
    ttft_s: float | None = None
    answer: str | None = None
    answer_error: str | None = None


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def summarize(measurements: list[Measurement], probes: list[Probe]) -> list[dict[str, Any]]:
    """One row per budget × layout × mode: recall (all, needles, passages), evidence rank,
    tokens, latency and, when answered, accuracy, right citations and time to first token."""
    cells: dict[tuple[int, str, str], list[Measurement]] = {}
    for m in measurements:
        cells.setdefault((m.budget, m.layout, m.mode), []).append(m)
    rows = []
    for (budget, layout, mode), ms in sorted(cells.items()):
        answered = [m for m in ms if m.answer_ok is not None]
        ranks = [m.rank for m in ms if m.rank is not None]
        row: dict[str, Any] = {
            "budget": budget, "layout": layout, "mode": mode, "probes": len(ms),
            "recall": _mean([float(m.found) for m in ms]),
            "rank_median": statistics.median(ranks) if ranks else None,
            "tokens_mean": round(statistics.fmean(m.used_tokens for m in ms)),
            "available": max(m.available for m in ms),
            "retrieve_ms_p50": round(1000 * statistics.median(m.seconds for m in ms), 2),
            "answer_accuracy": _mean([float(bool(m.answer_ok)) for m in answered]),
            "cited_right": _mean([float(bool(m.cited_ok)) for m in answered]),
            "ttft_s_p50": (round(statistics.median(m.ttft_s for m in answered if m.ttft_s), 3)
                           if any(m.ttft_s for m in answered) else None),
        }
        for kind in ("needle", "passage"):
            row[f"recall_{kind}"] = _mean([float(m.found) for m in ms
                                          if probes[m.probe].kind == kind])
        rows.append(row)
    return rows


def recommend(cells: list[dict[str, Any]], mode: str, layout: str) -> dict[str, Any] | None:
    """The smallest budget whose score (answer accuracy when answered, else recall) is
    within TOLERANCE of the best, in search mode `mode`; the configured `layout` among equals.
    A larger budget costs tokens and time, and past a point lowers answer quality (OP-RAG)."""
    rows = [c for c in cells if c["mode"] == mode] or cells
    if not rows:
        return None
    metric = "answer_accuracy" if rows[0]["answer_accuracy"] is not None else "recall"
    best = max(rows, key=lambda c: c[metric] or 0.0)
    top = best[metric] or 0.0
    good = [c for c in rows if (c[metric] or 0.0) >= top - TOLERANCE]
    chosen = min(good, key=lambda c: (c["budget"], c["layout"] != layout, -(c[metric] or 0.0)))
    name = metric.replace("_", " ")
    reason = (f"{name} {chosen[metric]:.2f} at {short_tokens(chosen['budget'])} tokens with the "
              f"{chosen['layout']} layout ({mode} search)")
    if best["budget"] != chosen["budget"] or best["layout"] != chosen["layout"]:
        reason += (f"; the best, {top:.2f} at {short_tokens(best['budget'])}/{best['layout']}, "
                   f"is within {TOLERANCE} of it and costs more tokens")
    larger = [c for c in rows if c["budget"] > chosen["budget"] and c["layout"] == chosen["layout"]]
    if larger and all((c[metric] or 0.0) < (chosen[metric] or 0.0) - TOLERANCE for c in larger):
        reason += "; larger budgets score lower"
    elif top == 0:
        reason = f"no budget finds the probes ({name} 0 everywhere): check the search mode"
    return {"budget": chosen["budget"], "layout": chosen["layout"], "mode": mode,
            "metric": metric, "value": chosen[metric], "reason": reason}


@dataclass
class EvalRun:
    id: str
    created_at: str
    collection: str
    options: dict[str, Any]
    modes: list[str]
    probes: list[Probe]
    measurements: list[Measurement]
    corpus: dict[str, Any]  # fingerprint: hash, documents, tokens
    settings: dict[str, Any]  # the retrieval-affecting settings
    settings_hash: str
    model: str
    context_window: int
    haystack_tokens: int
    temp_collection: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def cells(self) -> list[dict[str, Any]]:
        return summarize(self.measurements, self.probes)

    @property
    def recommendation(self) -> dict[str, Any] | None:
        mode = self.settings["retrieval"]["search_mode"]
        return recommend(self.cells, mode if mode in self.modes else self.modes[0],
                         self.settings["retrieval"]["layout"])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["probes"] = [p.to_dict() for p in self.probes]
        out["cells"] = self.cells
        out["recommendation"] = self.recommendation
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalRun:
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in names}
        values["probes"] = [Probe.from_dict(p) for p in data["probes"]]
        values["measurements"] = [Measurement(**m) for m in data["measurements"]]
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """The listing's line: when, what, and the headline numbers."""
        rec = self.recommendation
        return {"id": self.id, "created_at": self.created_at, "collection": self.collection,
                "probes": len(self.probes), "budgets": self.options["budgets"],
                "layouts": self.options["layouts"], "modes": self.modes,
                "corpus_hash": self.corpus["hash"], "settings_hash": self.settings_hash,
                "documents": len(self.corpus["documents"]), "seconds": self.seconds,
                "recommendation": rec}


# -- saved runs ------------------------------------------------------------------------------
def runs_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "eval"


def save_run(settings: Settings, run: EvalRun) -> Path:
    folder = runs_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run.id}.json"
    part = folder / f".{run.id}.part"
    part.write_text(json.dumps(run.to_dict(), ensure_ascii=False))
    os.replace(part, path)
    return path


def list_runs(settings: Settings) -> list[EvalRun]:
    """Saved runs, newest first (unreadable files are skipped)."""
    runs = []
    for path in runs_dir(settings).glob("*.json"):
        try:
            runs.append(EvalRun.from_dict(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(runs, key=lambda r: r.id, reverse=True)


def load_run(settings: Settings, ref: str) -> EvalRun:
    """A saved run by id, by unique id prefix, 'last', or a path to its JSON file."""
    path = Path(ref)
    if ref.endswith(".json") and path.is_file():
        try:
            return EvalRun.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            raise SettingsError("--compare", f"{ref} is not a saved evaluation run") from None
    runs = list_runs(settings)
    if ref == "last" and runs:
        return runs[0]
    matches = [r for r in runs if r.id == ref] or [r for r in runs if r.id.startswith(ref)]
    if len(matches) != 1:
        raise NotFoundError(f"no saved evaluation run '{ref}' in {runs_dir(settings)}"
                            + (" (the prefix matches several)" if len(matches) > 1 else ""))
    return matches[0]


# -- comparison ------------------------------------------------------------------------------
def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def compare(new: EvalRun, old: EvalRun) -> dict[str, Any]:
    """What changed from `old` to `new`: documents, settings, and recall (and answer
    accuracy) per budget × layout × mode; runs of one search mode each are matched on
    budget × layout."""
    a, b = old.corpus["documents"], new.corpus["documents"]
    corpus = {"changed": old.corpus["hash"] != new.corpus["hash"],
              "added": sorted(b[k]["source"] for k in set(b) - set(a)),
              "removed": sorted(a[k]["source"] for k in set(a) - set(b)),
              "updated": sorted(b[k]["source"] for k in set(a) & set(b)
                                if a[k]["hash"] != b[k]["hash"])}
    fa, fb = _flat(old.settings), _flat(new.settings)
    settings = [{"setting": k, "old": fa.get(k), "new": fb.get(k)}
                for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    one_mode = len(old.modes) == 1 and len(new.modes) == 1

    def key(c: dict[str, Any]) -> tuple[int, str, str]:
        return c["budget"], c["layout"], "" if one_mode else c["mode"]

    before = {key(c): c for c in old.cells}
    cells = []
    for c in new.cells:
        o = before.get(key(c))
        if o is None:
            continue
        row = {"budget": c["budget"], "layout": c["layout"], "mode": c["mode"],
               "old_mode": o["mode"], "old": o["recall"], "new": c["recall"],
               "delta": round((c["recall"] or 0) - (o["recall"] or 0), 4)}
        if c["answer_accuracy"] is not None and o["answer_accuracy"] is not None:
            row["answer_delta"] = round(c["answer_accuracy"] - o["answer_accuracy"], 4)
        cells.append(row)
    drops = [c for c in cells if c["delta"] < 0]
    gains = [c for c in cells if c["delta"] > 0]
    return {"old": old.id, "new": new.id, "corpus": corpus, "settings": settings,
            "same_probes": [p.to_dict() for p in old.probes] == [p.to_dict() for p in new.probes],
            "cells": cells, "drops": len(drops), "gains": len(gains),
            "verdict": _verdict(drops, gains, len(cells))}


def _verdict(drops: list[dict[str, Any]], gains: list[dict[str, Any]], total: int) -> str:
    if not total:
        return "no budget × layout in common: nothing to compare"
    if drops:
        worst = min(drops, key=lambda c: c["delta"])
        return (f"recall dropped at {len(drops)} of {total} cells (worst {worst['delta']:+.2f} at "
                f"{short_tokens(worst['budget'])}/{worst['layout']})")
    if gains:
        return f"recall rose at {len(gains)} of {total} cells, and dropped at none"
    return f"recall unchanged at all {total} cells"
