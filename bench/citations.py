"""Checked citations on SQuAD: the CPU default LLM (llama.cpp + SmolLM2-135M-Instruct)
answers, each answer sentence is checked against its passages (app/sentence_check.py), and
the thresholds are swept over the same sentences.

Each question gets the gold paragraph and `--passages` - 1 others from its article, laid out
as the app lays them out (bench/cpu_llm.py). Per threshold pair (content-word share, MiniLM
similarity):

- supported: sentences marked supported; "hold gold" is the share of them that contain a
  gold answer (case/punctuation folded), "from gold passage" the share whose evidence is
  the gold paragraph;
- flagged: sentences marked unsupported or uncited (that state something); "wrong" is the
  share of them that contain no gold answer.
The baseline row is every sentence, unchecked. Answers are saved as they come, so a run cut
short keeps its rows and `--answers FILE` sweeps them again without the LLM.

    .venv/bin/python bench/citations.py --data ../shared/data/squad --questions 200
    .venv/bin/python bench/citations.py --answers bench/results/citations.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, environment, log, table, write_results
from cpu_llm import normalise, passages_for, sample_questions

SHARES = (0.4, 0.5, 0.6, 0.7, 0.8)
SIMILARITIES = (0.3, 0.4, 0.5, 0.6, 0.7)


def answer_all(items: list[dict[str, Any]], max_tokens: int, port: int, out: Path,
               budget_s: float, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item with the model's answer appended to `rows` (those already there are
    skipped), saved after every answer; stops at `budget_s`."""
    from app.llm import LLMClient
    from core.settings import CPUServerSettings
    from retrieval.packer import render
    from retrieval.prompt import build_messages
    from serving import llamacpp

    server = llamacpp.start(CPUServerSettings(port=port, threads=1, n_ctx=4096))
    client = LLMClient([server.url], timeout_s=600)
    done = {r["question"] for r in rows}
    items = [item for item in items if item["question"] not in done]
    started = time.perf_counter()
    try:
        client.chat([{"role": "user", "content": "Hi"}], max_tokens=4)  # warm up
        for k, item in enumerate(items, start=1):
            messages = build_messages(render(passages_for(item)), item["question"])
            t0 = time.perf_counter()
            answer, _ = client.chat(messages, max_tokens=max_tokens, temperature=0.0)
            rows.append({**item, "answer": answer, "seconds": time.perf_counter() - t0})
            write_results(out, {"environment": environment(), "max_tokens": max_tokens,
                                "rows": rows})
            if k % 10 == 0:
                log(f"  {k}/{len(items)} answers")
            if time.perf_counter() - started > budget_s:
                log(f"  time budget spent after {k} answers")
                break
    finally:
        client.close()
        server.stop()
    return rows


class MemoEmbedder:
    """The shipped MiniLM, each distinct text embedded once across the sweep."""

    def __init__(self) -> None:
        from core.settings import load_settings
        from ingest.embedder import Embedder

        self.model = Embedder(load_settings().embedding)
        self.vectors: dict[str, Any] = {}

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if todo:
            self.vectors.update(zip(todo, self.model.embed(todo), strict=True))
        return np.stack([self.vectors[t] for t in texts])


def holds_gold(text: str, answers: list[str]) -> bool:
    return any(normalise(a) in normalise(text) for a in answers)


def sweep(rows: list[dict[str, Any]], embed: Any, share: float,
          similarity: float) -> dict[str, Any]:
    from app.sentence_check import SUPPORTED, check_answer

    supported = gold = from_gold = flagged = wrong = 0
    for row in rows:
        passages = passages_for(row)
        for s in check_answer(row["answer"], passages, embed, share, similarity):
            if s.support == SUPPORTED:
                supported += 1
                gold += holds_gold(s.text, row["answers"])
                from_gold += s.evidence is not None and s.evidence.label == row["gold_label"]
            elif s.states:
                flagged += 1
                wrong += not holds_gold(s.text, row["answers"])
    return {"share": share, "similarity": similarity, "supported": supported,
            "hold_gold": gold / supported if supported else float("nan"),
            "from_gold": from_gold / supported if supported else float("nan"),
            "flagged": flagged, "wrong": wrong / flagged if flagged else float("nan")}


def baseline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from app.sentence_check import split_sentences

    sentences = [(s.text, row["answers"]) for row in rows for s in split_sentences(row["answer"])]
    held = sum(holds_gold(t, a) for t, a in sentences)
    return {"sentences": len(sentences), "hold_gold": held / len(sentences)}


def check_seconds(rows: list[dict[str, Any]], embed: MemoEmbedder) -> list[float]:
    """Wall time of the check per answer with empty caches (what the app pays for an answer
    whose passages it has not split before)."""
    from app.sentence_check import check_answer, split_sentences

    out = []
    for row in rows:
        embed.vectors.clear()
        split_sentences.cache_clear()
        t0 = time.perf_counter()
        check_answer(row["answer"], passages_for(row), embed.embed)
        out.append(time.perf_counter() - t0)
    return out


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="SQuAD folder or dev json")
    ap.add_argument("--answers", type=Path, help="sweep the rows of an earlier run (no LLM)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the answers of bench/results/citations.json and add the rest")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--passages", type=int, default=2, help="passages per question (gold + others)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--budget-min", type=float, default=40, help="stop answering after this")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--port", type=int, default=8098)
    args = ap.parse_args()
    out = RESULTS / "citations.json"
    if args.answers:
        rows = json.loads(args.answers.read_text())["rows"]
    elif args.data:
        from bench.squad_recall import load_squad

        items = sample_questions(load_squad(args.data), args.questions, args.seed, args.passages)
        log(f"{len(items)} questions, {args.passages} passages each")
        kept = json.loads(out.read_text())["rows"] if args.resume and out.is_file() else []
        rows = answer_all(items, args.max_tokens, args.port, out, args.budget_min * 60, kept)
    else:
        sys.exit("give --data (answer with the LLM) or --answers (sweep a saved run)")
    embed = MemoEmbedder()
    results = [sweep(rows, embed.embed, sh, si) for sh in SHARES for si in SIMILARITIES]
    base = baseline(rows)
    llm_s = [r["seconds"] for r in rows]
    checks = check_seconds(rows, embed)
    llm_p50, check_p50 = statistics.median(llm_s), statistics.median(checks)
    log(f"{len(rows)} answers; LLM {llm_p50:.2f} s/answer (median), check "
        f"{check_p50 * 1000:.0f} ms/answer ({check_p50 / llm_p50:.3f}x the LLM's time)")
    print(table(["share", "similarity", "supported", "hold gold", "vs all", "from gold passage",
                 "flagged", "wrong"],
                [["all", "-", base["sentences"], f"{base['hold_gold']:.0%}", "1.00x", "-", "-", "-"]]
                + [[r["share"], r["similarity"], r["supported"], f"{r['hold_gold']:.0%}",
                    _ratio(r["hold_gold"], base["hold_gold"]), f"{r['from_gold']:.0%}",
                    r["flagged"], f"{r['wrong']:.0%}"] for r in results]))
    write_results(RESULTS / "citations-sweep.json", {
        "environment": environment(), "answers": len(rows), "baseline": base,
        "llm_s_median": llm_p50, "check_s_median": check_p50,
        "sweep": results})


if __name__ == "__main__":
    main()
