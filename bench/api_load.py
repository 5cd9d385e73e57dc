"""Load on the REST API over loopback: N concurrent clients for a bounded time against
POST /v1/retrieve and POST /v1/query (and GET /healthz, the floor of the HTTP stack), with
GET /readyz and GET /v1/documents probed while the load runs.

It starts everything itself on a temporary data dir: the store, ingested from `--data`
(default: the built-in sample), a llama.cpp server with the shipped SmolLM2 (unless
`--llm-url` names a running one) and the API on a free port: `python -m app.cli api` in a
process of its own, as users run it, with the settings in RAG_* variables (`--in-process`:
uvicorn in a thread of the bench, sharing its GIL with the clients; `--api-tree`: the API of
another checkout, to load a tree before a change with the same script). The clients are
tasks of one asyncio loop (`--generator async`, cheap enough that 100 of them measure the
server) or one thread each (`--generator threads`). Each route is measured with 1 client (the
baseline) and with each of `--clients`, so the table shows how throughput scales on this
machine (the ratio), not only absolute numbers. During every run one more client asks for
/readyz and the document listing in turn (`--probe-every`): their latency under load is the
second table. The first table also gives the CPU the bench process (the clients) and the API
process used, in cores, and the bench's CPU per answered request: a bench near one core means
the clients, not the server, set the pace. `loop cores` is the API's main thread alone
(uvicorn's event loop), `api CPU ms/req` the API's CPU per answered request: on a shared
machine the cores the API gets move between runs, its CPU per request much less.

    .venv/bin/python bench/api_load.py --routes retrieve --clients 8,100 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from _common import RESULTS, ROOT, environment, int_list, log, table, write_results

from tests.support.ports import free_port

if TYPE_CHECKING:
    import httpx

QUESTIONS = [
    "How long can the lighthouse lamp run on its reserve batteries?",
    "How often is the diesel generator test-run?",
    "What does the keeper clean every Friday?",
    "How long should sourdough proof?",
    "Can I take a city bike on the train?",
]
PROBES = ("/readyz", "/v1/documents")
API_STARTUP_S = 300.0
API_STOP_S = 10.0


@dataclass
class Api:
    """The API under load: its URL, and its process id when it runs in a process of its own."""

    url: str
    pid: int | None


@dataclass
class Latencies:
    """Latencies of the answered (200) requests and the count of the others."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int | str, int] = field(default_factory=dict)  # or the exception's name

    def add(self, status: int | str, took: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies.append(took)
        else:
            self.errors += 1

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def mean(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


@dataclass
class Run(Latencies):
    route: str = ""
    clients: int = 0
    generator: str = ""
    seconds: float = 0.0
    probes: dict[str, Latencies] = field(default_factory=dict)
    bench_cpu: float = 0.0  # CPU seconds of this process (the clients) per second of the run
    api_cpu: float | None = None  # the same for the API's process, when it has its own
    loop_cpu: float | None = None  # the same for its main thread (uvicorn's event loop)

    @property
    def cpu_ms_per_request(self) -> float | None:
        """The API process's CPU per answered request: what the code costs, whatever share
        of the cores the rest of the machine leaves it."""
        if self.api_cpu is None or not self.ok:
            return None
        return self.api_cpu * self.seconds / self.ok * 1000

    @property
    def bench_cpu_ms_per_request(self) -> float | None:
        """This process's CPU (the load generator and the probe) per answered request."""
        return self.bench_cpu * self.seconds / self.ok * 1000 if self.ok else None

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def _is_get(route: str) -> bool:
    return route in ("/healthz", *PROBES)


def _send(c: httpx.Client, route: str, body: dict[str, object]) -> int | str:
    """The response's status, or the name of the exception that stopped the request."""
    try:
        r = c.get(route) if _is_get(route) else c.post(route, json=body)
        return int(r.status_code)
    except Exception as exc:
        return type(exc).__name__


async def _send_async(c: httpx.AsyncClient, route: str, body: dict[str, object]) -> int | str:
    try:
        r = await (c.get(route) if _is_get(route) else c.post(route, json=body))
        return int(r.status_code)
    except Exception as exc:
        return type(exc).__name__


def probe(url: str, run: Run, every: float, stop: threading.Event) -> None:
    """/readyz and GET /v1/documents in turn, one request every `every` seconds, until `stop`."""
    import httpx

    run.probes = {p: Latencies() for p in PROBES}
    with httpx.Client(base_url=url, timeout=300) as c:
        n = 0
        while not stop.wait(every):
            path = PROBES[n % len(PROBES)]
            n += 1
            started = time.perf_counter()
            status = _send(c, path, {})
            run.probes[path].add(status, time.perf_counter() - started)


@dataclass
class Quota:
    """What every client of a run shares: the requests left to send and the deadline.
    Client `i` of `clients` sends the questions i + clients, i + 2 * clients, ... (mod 5)."""

    route: str
    clients: int
    budget: int
    left: int
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        """One more request may be sent."""
        with self.lock:
            if self.left <= 0 or time.monotonic() >= self.deadline:
                return False
            self.left -= 1
            return True

    def body(self, n: int) -> dict[str, object]:
        return {"question": QUESTIONS[n % len(QUESTIONS)], "budget_tokens": self.budget}


def thread_clients(url: str, quota: Quota, run: Run) -> None:
    """One thread per client, each with its own httpx.Client (one keep-alive connection)."""
    import httpx

    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            n = i
            while quota.take():
                n += quota.clients
                started = time.perf_counter()
                status = _send(c, quota.route, quota.body(n))
                took = time.perf_counter() - started
                with lock:
                    run.add(status, took)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(quota.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def async_clients(url: str, quota: Quota, run: Run) -> None:
    """Every client a task of one event loop in this thread (uvloop's, as the API's), each
    with an httpx.AsyncClient of its own: one keep-alive connection, as each thread has (a
    pool shared by 100 clients costs more per request to hand out). The clients share one
    SSL context: httpx makes one per client otherwise, ~30 ms of CPU each, unused on http."""
    import ssl

    import httpx

    tls = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits,
                                     verify=tls) as c:
            n = i
            while quota.take():
                n += quota.clients
                started = time.perf_counter()
                status = await _send_async(c, quota.route, quota.body(n))
                run.add(status, time.perf_counter() - started)

    async def clients() -> None:
        await asyncio.gather(*(client(i) for i in range(quota.clients)))

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(clients())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where installed (uvicorn[standard] brings it), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


GENERATORS = {"threads": thread_clients, "async": async_clients}


def load(api: Api, route: str, clients: int, seconds: float, max_requests: int,
         budget: int, probe_every: float = 0.0, generator: str = "async") -> Run:
    """`clients` clients, each on its own connection, send requests back to back until
    `seconds` pass or `max_requests` were sent in all (with `probe_every`, one more thread
    probes /readyz and the listing meanwhile). `generator`: the clients are threads, or
    tasks of one asyncio loop. Records the CPU both processes used."""
    run = Run(route=route, clients=clients, generator=generator)
    quota = Quota(route, clients, budget, max_requests, time.monotonic() + seconds)
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(api.url, run, probe_every, stop))
    cpu_before = (cpu_seconds(None), cpu_seconds(api.pid) if api.pid else 0.0,
                  cpu_seconds(api.pid, thread=api.pid) if api.pid else 0.0)
    started = time.perf_counter()
    if probe_every:
        prober.start()
    GENERATORS[generator](api.url, quota, run)
    run.seconds = time.perf_counter() - started
    run.bench_cpu = (cpu_seconds(None) - cpu_before[0]) / run.seconds
    if api.pid:
        run.api_cpu = (cpu_seconds(api.pid) - cpu_before[1]) / run.seconds
        run.loop_cpu = (cpu_seconds(api.pid, thread=api.pid) - cpu_before[2]) / run.seconds
    stop.set()
    if probe_every:
        prober.join()
    return run


def start_api(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> Api:
    """Ingests `--data` into a store under `work`, starts the LLM (unless given) and the API:
    `python -m app.cli api` in a process of its own (with `--in-process`, uvicorn in a thread
    of this one, the tests' own helper); `stack` stops them."""
    from core.settings import CPUServerSettings, load_settings
    from ingest.pipeline import ingest
    from serving import llamacpp

    cpu = CPUServerSettings(port=free_port(), threads=args.llm_threads, n_ctx=8192)
    if args.llm_url:
        llm_url = args.llm_url
    else:
        log(f"starting llama.cpp ({args.llm_threads} thread(s)) ...")
        server = llamacpp.start(cpu)
        stack.callback(server.stop)
        llm_url = server.url
    env = {"RAG_DATA_DIR": str(work), "RAG_LLM__URL": llm_url,
           "RAG_LLM__CONTEXT_WINDOW": str(cpu.n_ctx),
           "RAG_LLM__TOKENIZER": str(llamacpp.model_path(cpu)) if not args.llm_url else "auto",
           "RAG_RETRIEVAL__ANSWER_RESERVE": str(args.answer_tokens),
           "RAG_API__MAX_BUDGET_TOKENS": str(max(args.budget, 256))}
    settings = load_settings(
        data_dir=work, store={"url": None},
        llm={"url": llm_url, "context_window": cpu.n_ctx, "tokenizer": env["RAG_LLM__TOKENIZER"]},
        retrieval={"answer_reserve": args.answer_tokens},
        api={"max_budget_tokens": max(args.budget, 256)})
    log(f"ingesting {', '.join(args.data)} ...")
    report = ingest(settings, [Path(d) for d in args.data])
    log(f"  {report.count('new')} documents, {report.chunks} chunks")
    if args.in_process:
        return _api_in_thread(settings, stack)
    return _api_process(env, args.api_tree.resolve(), work.parent / "api.log", stack)


def _api_in_thread(settings: object, stack: contextlib.ExitStack) -> Api:
    from app.api import create_app
    from tests.support.servers import serve_in_thread

    app = create_app(settings)  # type: ignore[arg-type]
    url = stack.enter_context(serve_in_thread(app))
    app.state.api.warm.wait(300)
    return Api(url=url, pid=None)


def _api_process(env: dict[str, str], tree: Path, log_path: Path,
                 stack: contextlib.ExitStack) -> Api:
    """`python -m app.cli api` of the checkout `tree` on a free port with `env` (the store:
    embedded, so any RAG_STORE__URL of this shell is dropped), ready once /readyz answers 200; stopped with
    SIGTERM, SIGKILL after a grace period (the API stops its own children)."""
    from tests.support.servers import stop_process, wait_process_ready

    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if k != "RAG_STORE__URL"}
    child_env.update(env, PYTHONPATH=str(tree))
    out = stack.enter_context(log_path.open("wb"))
    log(f"starting the API (python -m app.cli api of {tree}, port {port}) ...")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "api", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"], cwd=tree, env=child_env, stdout=out, stderr=subprocess.STDOUT)
    stack.callback(stop_process, proc, API_STOP_S)
    url = f"http://127.0.0.1:{port}"
    wait_process_ready(proc, url + "/readyz", API_STARTUP_S,
                       lambda: log_path.read_text(errors="replace")[-2000:])
    return Api(url=url, pid=proc.pid)


def cpu_seconds(pid: int | None, thread: int | None = None) -> float:
    """CPU (user + system) seconds used so far by process `pid` (by its `thread` alone when
    given: the main thread's id is the pid), or by this process when None."""
    if pid is None:
        return time.process_time()
    stat = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generator_list(text: str) -> list[str]:
    chosen = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in chosen if g not in GENERATORS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown generator {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(GENERATORS)}")
    return chosen


def _opt(x: float | None, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def _ms(x: float) -> str:
    return f"{x:.0f}"


def print_tables(runs: list[Run]) -> None:
    base = {(r.route, r.generator): r.throughput for r in runs if r.clients == 1}
    rows = [[r.route, r.generator, r.clients, r.ok, r.errors, f"{r.throughput:.1f}",
             f"{r.throughput / base[r.route, r.generator]:.2f}x"
             if base.get((r.route, r.generator)) else "-",
             _ms(r.mean()), _ms(r.pct(50)), _ms(r.pct(95)), _ms(r.pct(99)),
             f"{r.bench_cpu:.2f}", _opt(r.bench_cpu_ms_per_request, "{:.1f}"),
             _opt(r.api_cpu, "{:.2f}"), _opt(r.loop_cpu, "{:.2f}"),
             _opt(r.cpu_ms_per_request, "{:.0f}")] for r in runs]
    print(table(["route", "generator", "clients", "ok", "errors", "req/s", "vs 1 client", "mean ms", "p50 ms",
                 "p95 ms", "p99 ms", "bench cores", "bench CPU ms/req", "api cores",
                 "loop cores", "api CPU ms/req"], rows))
    probed = [[r.route, r.generator, r.clients, path, p.ok, p.errors, _ms(p.pct(50)), _ms(p.pct(99)),
               _ms(max(p.latencies) * 1000) if p.latencies else "-"]
              for r in runs for path, p in r.probes.items()]
    if probed:
        print()
        print(table(["under load of", "generator", "clients", "probe", "ok", "errors", "p50 ms", "p99 ms",
                     "max ms"], probed))
    for r in runs:
        for what, lat in (("", r), *((f" {path} probe", p) for path, p in r.probes.items())):
            failed = {s: n for s, n in lat.statuses.items() if s != 200}
            if failed:
                print(f"not answered 200 under {r.route}, {r.generator}, {r.clients} "
                      f"client(s){what}: {failed}")


def _summary(lat: Latencies) -> dict[str, object]:
    return {"ok": lat.ok, "errors": lat.errors, "statuses": lat.statuses,
            "p50_ms": lat.pct(50), "p95_ms": lat.pct(95), "p99_ms": lat.pct(99),
            "mean_ms": lat.mean() if lat.latencies else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+",
                   default=[str(Path(__file__).resolve().parents[1] / "app" / "sample")],
                   help="files or folders to ingest (default: the built-in sample)")
    p.add_argument("--clients", type=int_list, default=[8, 100],
                   help="comma list of concurrent clients, each run against 1 (default 8,100)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="seconds per route and concurrency (default 10)")
    p.add_argument("--max-requests", type=int, default=5000,
                   help="most requests per route and concurrency (default 5000)")
    p.add_argument("--routes", default="healthz,retrieve,query",
                   help="comma list of healthz, retrieve, query (default: all)")
    p.add_argument("--budget", type=int, default=2048, help="budget_tokens of each request")
    p.add_argument("--answer-tokens", type=int, default=64,
                   help="answer reserve = most tokens per answer (default 64)")
    p.add_argument("--probe-every", type=float, default=0.1,
                   help="seconds between /readyz and listing probes under load (0: none)")
    p.add_argument("--llm-url", default=None, help="use this OpenAI-compatible server")
    p.add_argument("--llm-threads", type=int, default=1, help="llama.cpp threads (default 1)")
    p.add_argument("--generator", type=generator_list, default=["async"],
                   help="comma list of async (the clients: tasks of one asyncio loop; the "
                   "default, cheap enough to measure the server at 100 clients) and threads "
                   "(one thread each); each runs every route and client count in turn")
    p.add_argument("--api-tree", type=Path, default=ROOT,
                   help="run `python -m app.cli api` from this checkout (default: this one), "
                   "to measure another tree with the same load")
    p.add_argument("--in-process", action="store_true",
                   help="run the API under uvicorn in a thread of this process (shares its GIL "
                   "with the clients), not as `python -m app.cli api` in its own")
    args = p.parse_args()
    routes = {"healthz": "/healthz", "retrieve": "/v1/retrieve", "query": "/v1/query"}
    chosen = [routes[r.strip()] for r in args.routes.split(",") if r.strip()]

    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp, contextlib.ExitStack() as stack:
        api = start_api(args, Path(tmp) / "data", stack)
        runs: list[Run] = []
        for generator in args.generator:
            for route in chosen:
                load(api, route, 1, 300.0, 1, args.budget, generator=generator)  # warm-up
                for clients in sorted({1, *args.clients}):
                    log(f"{route}: {clients} client(s), {generator}, {args.seconds:g} s ...")
                    runs.append(load(api, route, clients, args.seconds, args.max_requests,
                                     args.budget, args.probe_every, generator))

    print_tables(runs)
    write_results(RESULTS / "api_load.json", {
        "environment": environment(), "args": vars(args),
        "runs": [{"route": r.route, "generator": r.generator, "clients": r.clients, "seconds": r.seconds,
                  "throughput": r.throughput, "bench_cpu": r.bench_cpu, "api_cpu": r.api_cpu,
                  "loop_cpu": r.loop_cpu, "api_cpu_ms_per_request": r.cpu_ms_per_request,
                  "bench_cpu_ms_per_request": r.bench_cpu_ms_per_request,
                  **_summary(r),
                  "probes": {path: _summary(lat) for path, lat in r.probes.items()}}
                 for r in runs]})
    return 1 if any(r.errors or any(p.errors for p in r.probes.values()) for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
