"""The CPU default LLM (llama.cpp + SmolLM2-135M-Instruct) on SQuAD: answer accuracy,
citation correctness and seconds per answer, with 1 thread (the baseline) vs more.

Each question gets 4 numbered passages laid out as the app lays them out (its system
instruction, headers, Passages heading): the gold paragraph and 3 others from the same
article, in a seeded random order. The answer is streamed from a real llama.cpp server.

- answer contained: a gold answer string appears in the answer (case/punctuation folded)
- wrote [n]: the model wrote at least one valid citation marker itself
- citation correct: the citations the app shows (the model's, or inferred by overlap when
  it wrote none) include the gold passage — among answers with any citation
- s/answer: wall time per answer (prefill + decode), and the ratio to 1 thread

    .venv/bin/python bench/cpu_llm.py --data ../shared/data/squad --questions 40 --threads 1,2
    .venv/bin/python bench/cpu_llm.py --data ../shared/data/squad --busy 1   # with a busy core
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import string
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, environment, log, table, write_results

PASSAGES = 4


def normalise(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def sample_questions(squad: dict[str, Any], n: int, seed: int,
                     passages: int = PASSAGES) -> list[dict[str, Any]]:
    """`n` questions from distinct paragraphs, each with `passages` - 1 distractor paragraphs
    from the same article."""
    rnd = random.Random(seed)
    items = []
    for article in squad["data"]:
        paras = [p["context"] for p in article["paragraphs"]]
        if len(paras) < passages:
            continue
        for i, para in enumerate(article["paragraphs"]):
            qas = [qa for qa in para["qas"] if qa["answers"]]
            if qas:
                items.append((article["title"], paras, i, rnd.choice(qas)))
    rnd.shuffle(items)
    out = []
    for title, paras, gold, qa in items[:n]:
        others = rnd.sample([j for j in range(len(paras)) if j != gold], passages - 1)
        order = [gold, *others]
        rnd.shuffle(order)
        out.append({"title": title, "question": qa["question"],
                    "answers": sorted({a["text"] for a in qa["answers"]}),
                    "texts": [paras[j] for j in order], "gold_label": order.index(gold) + 1})
    return out


def passages_for(item: dict[str, Any]) -> list[Any]:
    from retrieval.packer import Passage, header_for

    out = []
    for label, text in enumerate(item["texts"], start=1):
        p = Passage(label=label, document_id=f"p{label}", source=f"{item['title']}-{label}.txt",
                    title="", page=None, section=0, first=0, last=0, text=text, tokens=0,
                    score=None, rank=label - 1)
        p.header = header_for(label, p)
        out.append(p)
    return out


def run(threads: int, items: list[dict[str, Any]], max_tokens: int, port: int) -> dict[str, Any]:
    from app.citations import cite
    from app.llm import LLMClient
    from core.settings import CPUServerSettings
    from retrieval.packer import render
    from retrieval.prompt import build_messages
    from serving import llamacpp

    server = llamacpp.start(CPUServerSettings(port=port, threads=threads, n_ctx=8192))
    client = LLMClient([server.url], timeout_s=600)
    try:
        client.chat([{"role": "user", "content": "Hi"}], max_tokens=4)  # warm up
        rows = []
        for k, item in enumerate(items, start=1):
            passages = passages_for(item)
            messages = build_messages(render(passages), item["question"])
            started = time.perf_counter()
            answer, _ = client.chat(messages, max_tokens=max_tokens, temperature=0.0)
            seconds = time.perf_counter() - started
            citations, _invalid = cite(answer, passages)
            labels = {c.label for c in citations}
            rows.append({
                "question": item["question"], "gold_label": item["gold_label"],
                "cited_labels": sorted(labels),
                "seconds": seconds,
                "contained": any(normalise(a) in normalise(answer) for a in item["answers"]),
                "explicit": bool(citations) and not citations[0].inferred,
                "cited": bool(citations),
                "correct": item["gold_label"] in labels,
                "answer": answer,
            })
            if k % 10 == 0:
                log(f"  {threads} thread(s): {k}/{len(items)}")
    finally:
        client.close()
        server.stop()
    cited = [r for r in rows if r["cited"]]
    secs = [r["seconds"] for r in rows]
    return {
        "threads": threads,
        "answers": len(rows),
        "contained": sum(r["contained"] for r in rows) / len(rows),
        "explicit": sum(r["explicit"] for r in rows) / len(rows),
        "cited": len(cited) / len(rows),
        "correct": (sum(r["correct"] for r in cited) / len(cited)) if cited else float("nan"),
        "mean_s": statistics.mean(secs),
        "p50_s": statistics.median(secs),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="SQuAD folder or dev json")
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--threads", default="1,2", help="thread counts; the first is the baseline")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--port", type=int, default=8097)
    ap.add_argument("--busy", type=int, default=0,
                    help="CPU-bound processes running beside the server (what else a small "
                         "machine does: the embedder, the API)")
    args = ap.parse_args()

    from bench.squad_recall import load_squad

    items = sample_questions(load_squad(args.data), args.questions, args.seed)
    log(f"{len(items)} questions, {PASSAGES} passages each")
    import subprocess

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        results = [run(int(t), items, args.max_tokens, args.port) for t in args.threads.split(",")]
    finally:
        for p in busy:
            p.kill()
    base = results[0]["mean_s"]
    print(table(
        ["threads", "answers", "answer contained", "wrote [n]", "any citation",
         "citation correct", "s/answer (mean)", "p50", f"time vs {results[0]['threads']} thread"],
        [[r["threads"], r["answers"], f"{r['contained']:.0%}", f"{r['explicit']:.0%}",
          f"{r['cited']:.0%}", f"{r['correct']:.0%}", f"{r['mean_s']:.2f}", f"{r['p50_s']:.2f}",
          f"{r['mean_s'] / base:.2f}x"] for r in results]))
    log(f"{args.busy} busy process(es) beside the server")
    path = write_results(RESULTS / f"cpu_llm{'-busy' if args.busy else ''}.json", {
        "environment": environment(), "questions": len(items), "max_tokens": args.max_tokens,
        "busy": args.busy,
        "results": [{k: v for k, v in r.items() if k != "rows"} for r in results],
        "rows": {r["threads"]: r["rows"] for r in results},
    })
    log(f"results: {path}")


if __name__ == "__main__":
    main()
