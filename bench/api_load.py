"""Load on the REST API over loopback: N concurrent clients for a bounded time against
POST /v1/retrieve and POST /v1/query (and GET /healthz, the floor of the HTTP stack).

It starts everything itself on a temporary data dir: the store, ingested from `--data`
(default: the built-in sample), a llama.cpp server with the shipped SmolLM2 (unless
`--llm-url` names a running one) and the API under uvicorn on a free port. Each route is
measured with 1 client (the baseline) and with `--clients`, so the table shows how
throughput scales on this machine (the ratio), not only absolute numbers.

    .venv/bin/python bench/api_load.py --clients 8 --seconds 10
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import RESULTS, environment, log, table, write_results

QUESTIONS = [
    "How long can the lighthouse lamp run on its reserve batteries?",
    "How often is the diesel generator test-run?",
    "What does the keeper clean every Friday?",
    "How long should sourdough proof?",
    "Can I take a city bike on the train?",
]


@dataclass
class Run:
    route: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def load(url: str, route: str, clients: int, seconds: float, max_requests: int,
         budget: int) -> Run:
    """`clients` threads, each with its own connection, send requests back to back until
    `seconds` pass or `max_requests` were sent in all."""
    import httpx

    run = Run(route, clients)
    lock = threading.Lock()
    sent = [0]
    deadline = time.monotonic() + seconds

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            n = i
            while time.monotonic() < deadline:
                with lock:
                    if sent[0] >= max_requests:
                        return
                    sent[0] += 1
                n += clients
                body = {"question": QUESTIONS[n % len(QUESTIONS)], "budget_tokens": budget}
                started = time.perf_counter()
                try:
                    r = (c.get(route) if route == "/healthz" else c.post(route, json=body))
                    status = r.status_code
                except Exception:
                    status = 0
                took = time.perf_counter() - started
                with lock:
                    run.statuses[status] = run.statuses.get(status, 0) + 1
                    if status == 200:
                        run.latencies.append(took)
                    else:
                        run.errors += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.seconds = time.perf_counter() - started
    return run


def start_api(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> str:
    """Ingests `--data` into a store under `work`, starts the LLM (unless given) and the API
    (the tests' own server helpers); `stack` stops them."""
    from app.api import create_app
    from core.settings import CPUServerSettings, load_settings
    from ingest.pipeline import ingest
    from serving import llamacpp
    from tests.support.ports import free_port
    from tests.support.servers import serve_in_thread

    cpu = CPUServerSettings(port=free_port(), threads=args.llm_threads, n_ctx=8192)
    if args.llm_url:
        llm_url = args.llm_url
    else:
        log(f"starting llama.cpp ({args.llm_threads} thread(s)) ...")
        server = llamacpp.start(cpu)
        stack.callback(server.stop)
        llm_url = server.url
    settings = load_settings(
        data_dir=work, store={"url": None},
        llm={"url": llm_url, "context_window": cpu.n_ctx,
             "tokenizer": str(llamacpp.model_path(cpu)) if not args.llm_url else "auto"},
        retrieval={"answer_reserve": args.answer_tokens},
        api={"max_budget_tokens": max(args.budget, 256)})
    log(f"ingesting {args.data} ...")
    report = ingest(settings, [Path(args.data)])
    log(f"  {report.count('new')} documents, {report.chunks} chunks")
    app = create_app(settings)
    url = stack.enter_context(serve_in_thread(app))
    app.state.api.warm.wait(300)
    return url


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "app" / "sample"),
                   help="files or folder to ingest (default: the built-in sample)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="seconds per route and concurrency (default 10)")
    p.add_argument("--max-requests", type=int, default=5000,
                   help="most requests per route and concurrency (default 5000)")
    p.add_argument("--routes", default="healthz,retrieve,query",
                   help="comma list of healthz, retrieve, query (default: all)")
    p.add_argument("--budget", type=int, default=2048, help="budget_tokens of each request")
    p.add_argument("--answer-tokens", type=int, default=64,
                   help="answer reserve = most tokens per answer (default 64)")
    p.add_argument("--llm-url", default=None, help="use this OpenAI-compatible server")
    p.add_argument("--llm-threads", type=int, default=1, help="llama.cpp threads (default 1)")
    args = p.parse_args()
    routes = {"healthz": "/healthz", "retrieve": "/v1/retrieve", "query": "/v1/query"}
    chosen = [routes[r.strip()] for r in args.routes.split(",") if r.strip()]

    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp, contextlib.ExitStack() as stack:
        url = start_api(args, Path(tmp) / "data", stack)
        runs: list[Run] = []
        for route in chosen:
            load(url, route, 1, 300.0, 1, args.budget)  # warm-up: one request
            for clients in sorted({1, args.clients}):
                log(f"{route}: {clients} client(s), {args.seconds:g} s ...")
                runs.append(load(url, route, clients, args.seconds, args.max_requests,
                                 args.budget))

    base = {r.route: r.throughput for r in runs if r.clients == 1}
    rows = [[r.route, r.clients, r.ok, r.errors, f"{r.throughput:.1f}",
             f"{r.throughput / base[r.route]:.2f}x" if base.get(r.route) else "-",
             f"{r.pct(50):.0f}", f"{r.pct(95):.0f}", f"{r.pct(99):.0f}"] for r in runs]
    print(table(["route", "clients", "ok", "errors", "req/s", "vs 1 client", "p50 ms", "p95 ms",
                 "p99 ms"], rows))
    write_results(RESULTS / "api_load.json", {
        "environment": environment(), "args": vars(args),
        "runs": [{"route": r.route, "clients": r.clients, "ok": r.ok, "errors": r.errors,
                  "statuses": r.statuses, "seconds": r.seconds, "throughput": r.throughput,
                  "p50_ms": r.pct(50), "p95_ms": r.pct(95), "p99_ms": r.pct(99),
                  "mean_ms": statistics.fmean(r.latencies) * 1000 if r.latencies else None}
                 for r in runs]})
    return 1 if any(r.errors for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
