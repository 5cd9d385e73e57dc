"""Prefix-cache reuse on follow-up questions: vllm-router's cache-aware policy in front of two
CPU replicas, against our own round robin over the same two (RAG_LLM__URLS), in one run.

Each row starts two fresh llama.cpp servers (SmolLM2, shipped) and runs the same conversations:
a system message of essay text (the packed context), then follow-up questions, the turns of the
conversations interleaved as concurrent users' would be. Per row:

- prompt tokens and evaluated: the follow-ups' prompt tokens, and those the servers computed,
  read from each server's own log ("Llama.generate: N prefix-match hit" for the reused part,
  "prompt eval time = ... / M tokens" for the computed part);
- cached: the share of follow-up prompt tokens the server did not recompute;
- same replica: the share of follow-ups answered by the replica of the conversation's turn before;
- s / follow-up: mean seconds per follow-up answer.

Without its prompt cache, llama-cpp-python's server keeps one prompt (the last one); vLLM keeps
many blocks of many prompts. The rows named "+ prompt cache" give the CPU servers a RAM cache
of earlier prompts' states (`cpu_server.prompt_cache_mb`, the default), closer to vLLM's.

    .venv/bin/python bench/router_cache.py --data ../shared/data/niah/essays
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, table, write_results

from app.llm import LLMClient
from core.settings import CPUServerSettings
from serving import llamacpp, router
from tests.support.ports import free_port

PREFIX = re.compile(r"Llama\.generate: (\d+) prefix-match hit")
EVALUATED = re.compile(r"prompt eval time =.*/\s*(\d+) tokens")
QUESTIONS = ["What is the main argument of this essay?", "Which example supports it best?",
             "What would a critic say?", "Summarise the answer in one sentence.",
             "What does the author conclude?", "Which claim is the weakest?"]


def conversations(data: Path, count: int, words: int) -> list[list[dict[str, str]]]:
    essays = sorted(data.glob("*.txt"))[:count]
    if len(essays) < count:
        raise SystemExit(f"router_cache: {data} holds {len(essays)} essays, {count} needed")
    return [[{"role": "system", "content": "Answer from this text.\n\n"
              + " ".join(p.read_text(errors="replace").split()[:words])}] for p in essays]


def _served(servers: list[llamacpp.RunningServer], wait_s: float = 0.0) -> list[list[str]]:
    """Each server's log lines about requests since the last call; with `wait_s`, first waits
    (that long at most) for a server to log its prompt timing, which llama.cpp prints after
    the answer has gone out. A log keeps 200 lines, so each is read and cleared per request."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not any(
            EVALUATED.search(line) for s in servers for line in list(s.log)):
        time.sleep(0.02)
    lines = [[line for line in list(s.log) if "POST /v1/chat/completions HTTP" in line
              or PREFIX.search(line) or EVALUATED.search(line)] for s in servers]
    for s in servers:
        s.log.clear()
    return lines


def run_row(name: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    cache_mb = args.prompt_cache_mb if name.endswith("+ prompt cache") else 0
    name = name.removesuffix(" + prompt cache")
    servers = [llamacpp.start(CPUServerSettings(port=free_port(), threads=args.threads, n_ctx=4096,
                                                prompt_cache_mb=cache_mb)) for _ in range(2)]
    front = None
    try:
        if name == "round robin":
            client = LLMClient([s.url for s in servers], retries=1)
        else:
            front = router.start([s.url for s in servers], port=free_port(), metrics_port=free_port(),
                                 policy=name.split()[-1])
            client = LLMClient([front.url], retries=1)
        label = f"{name} + prompt cache" if cache_mb else name
        return _converse(label, client, servers, conversations(data, args.conversations, args.words), args)
    finally:
        if front:
            front.stop()
        for s in servers:
            s.stop()


def _converse(name: str, client: LLMClient, servers: list[llamacpp.RunningServer],
              chats: list[list[dict[str, str]]], args: argparse.Namespace) -> dict[str, Any]:
    last: dict[int, int] = {}
    prompt = evaluated = same = follow_ups = 0
    seconds: list[float] = []
    for turn in range(args.turns):
        for c, messages in enumerate(chats):
            messages.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
            _served(servers)
            started = time.perf_counter()
            text, _ = client.chat(messages, max_tokens=args.max_tokens, temperature=0.0)
            took = time.perf_counter() - started
            messages.append({"role": "assistant", "content": text})
            after = _served(servers, wait_s=5.0)
            where = next(i for i in range(len(servers)) if after[i])
            new = after[where]
            hit = sum(int(m.group(1)) for m in map(PREFIX.search, new) if m)
            computed = sum(int(m.group(1)) for m in map(EVALUATED.search, new) if m)
            if turn == 0:
                last[c] = where
                continue
            prompt, evaluated = prompt + hit + computed, evaluated + computed
            same += where == last[c]
            follow_ups += 1
            last[c] = where
            seconds.append(took)
    client.close()
    return {"row": name, "follow_ups": follow_ups, "prompt_tokens": prompt, "evaluated": evaluated,
            "cached_share": 1 - evaluated / prompt if prompt else 0.0,
            "same_replica": same / follow_ups if follow_ups else 0.0,
            "seconds_per_follow_up": statistics.mean(seconds) if seconds else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder of .txt essays (niah/essays)")
    parser.add_argument("--conversations", type=int, default=3,
                        help="more than the 2 replicas, or round robin keeps affinity by accident")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--words", type=int, default=400, help="essay words in each system message")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="threads per replica")
    parser.add_argument("--prompt-cache-mb", type=int, default=512,
                        help="cpu_server.prompt_cache_mb of the rows named '... + prompt cache'")
    parser.add_argument("--rows", default="round robin,router cache_aware,round robin + prompt cache,"
                                          "router cache_aware + prompt cache")
    parser.add_argument("--out", type=Path, default=RESULTS / "router_cache.json")
    args = parser.parse_args()
    rows = [run_row(name.strip(), args.data, args) for name in args.rows.split(",")]
    base = rows[0]
    print(table(["row", "follow-ups", "prompt tokens", "evaluated", "cached", "same replica",
                 "s / follow-up", "time vs " + base["row"]],
                [[r["row"], r["follow_ups"], f"{r['prompt_tokens']:,}", f"{r['evaluated']:,}",
                  f"{r['cached_share']:.0%}", f"{r['same_replica']:.0%}",
                  f"{r['seconds_per_follow_up']:.2f}",
                  f"{r['seconds_per_follow_up'] / base['seconds_per_follow_up']:.2f}x"
                  if base["seconds_per_follow_up"] else "-"] for r in rows]))
    write_results(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})


if __name__ == "__main__":
    main()
