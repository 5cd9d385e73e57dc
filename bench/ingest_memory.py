"""Peak RSS per MB of input for `rag ingest` and for an upload through `rag api`, each in a
process of its own, read from /proc/<pid>/status (VmHWM, VmRSS) while it runs,
with the peak of RssAnon beside it: VmHWM counts the pages of Qdrant Edge's memory-mapped
segment and WAL files the process has touched (page cache, which the kernel takes back
when memory is short), RssAnon the heap alone (ours, the tokenizer's, torch's, Edge's). Used by
`bench/ingest.py --memory`; `--root` runs the same rows on another checkout (the code
before a change) for a baseline in the same run."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LINE = "The quick brown fox jumps over the lazy dog. "
_LIMIT_MB = 4096  # ingest.max_file_mb and api.max_upload_mb in the measured processes


@dataclass
class MemoryRow:
    what: str
    input_mb: float
    idle_mb: float  # the same command on a one-line file (API: the process before the upload)
    peak_mb: float
    after_mb: float | None = None  # the API process once the job is done
    anon_idle_mb: float = 0.0  # RssAnon: of the idle command (API: before the upload)
    anon_peak_mb: float = 0.0  # the highest RssAnon seen while it ran
    anon_after_mb: float | None = None  # the API process's RssAnon once the job is done

    @property
    def per_input_mb(self) -> float:
        return (self.peak_mb - self.idle_mb) / max(self.input_mb, 1e-9)

    @property
    def anon_per_input_mb(self) -> float:
        return (self.anon_peak_mb - self.anon_idle_mb) / max(self.input_mb, 1e-9)


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_text_file(path: Path, mb: float) -> Path:
    with path.open("w") as f:
        for _ in range(int(mb * 2**20 / (len(LINE) * 1000)) + 1):
            f.write(LINE * 1000)
    return path


def write_pdf(path: Path, pages: int) -> Path:
    """`pages` pages of 40 lines of real text each (every page different)."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=letter)
    for n in range(pages):
        y = 740
        for i in range(40):
            c.drawString(60, y, f"Page {n} line {i}: the ledger of the harbour at tide {n * i}.")
            y -= 17
        c.showPage()
    c.save()
    return path


def write_photo_pdf(path: Path, pages: int, side: int = 320) -> Path:
    """`pages` pages, each the same line of text over a photo of its own (random grey
    pixels, stored unfiltered: `side` squared bytes a page), written object by object:
    PDFium keeps each image it has read until the document closes."""
    rng = random.Random(11)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]  # 2: the page tree, filled in last
    font = 3
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    text = b"BT /F1 11 Tf 10 20 Td (The harbour ledger lists every ship that entered the bay.) Tj ET"
    for _ in range(pages):
        first = len(objects) + 1
        pixels = rng.randbytes(side * side)
        objects.append(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace "
                       b"/DeviceGray /BitsPerComponent 8 /Length %d >>\nstream\n%s\nendstream"
                       % (side, side, len(pixels), pixels))
        draw = b"q 280 0 0 200 10 60 cm /Im1 Do Q " + text
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(draw), draw))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 300] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 %d 0 R >> /XObject << /Im1 %d 0 R >> >> >>"
                       % (first + 1, font, first))
        kids.append(b"%d 0 R" % (first + 2))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def _env(root: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=str(root), RAG_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1",
               PYTHONDONTWRITEBYTECODE="1",
               # A file written to "200 MB" is a little over: the defaults would refuse it.
               RAG_INGEST__MAX_FILE_MB=str(_LIMIT_MB), RAG_API__MAX_UPLOAD_MB=str(_LIMIT_MB))
    return env


def _peaks_of(cmd: list[str], root: Path, data_dir: Path) -> tuple[float, float]:
    """VmHWM and the highest RssAnon sampled while `cmd` runs, in MB."""
    proc = subprocess.Popen(cmd, cwd=root, env=_env(root, data_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = anon = 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, status_mb(proc.pid, "VmHWM"))
            anon = max(anon, status_mb(proc.pid, "RssAnon"))
        except OSError:
            break
        time.sleep(0.05)
    if proc.wait() != 0:  # 1: the file failed, and the peak says nothing
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return peak, anon


def ingest_row(what: str, file: Path, root: Path, work: Path) -> MemoryRow:
    """Peak RSS of `rag ingest FILE` and of `rag ingest` on a one-line file."""
    small = work / "one-line.txt"
    small.write_text(LINE + "\n")
    cli = [sys.executable, "-m", "app.cli", "ingest", "-q"]
    idle, anon_idle = _peaks_of([*cli, str(small)], root, work / f"idle-{file.stem}")
    peak, anon_peak = _peaks_of([*cli, str(file)], root, work / f"big-{file.stem}")
    return MemoryRow(what, file.stat().st_size / 2**20, idle, peak, anon_idle_mb=anon_idle,
                     anon_peak_mb=anon_peak)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_row(what: str, file: Path, root: Path, work: Path, timeout_s: float = 3600) -> MemoryRow:
    """`rag api` on a free loopback port: its RSS once ready, its peak while the uploaded
    file is ingested, and its RSS 3 s after the job is done."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--port", str(port)],
                            cwd=root, env=_env(root, work / "api-data"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            _wait_up(client, proc)
            idle, anon_idle = status_mb(proc.pid, "VmRSS"), status_mb(proc.pid, "RssAnon")
            with file.open("rb") as f:
                job = client.post("/v1/documents", files={"files": (file.name, f)}).json()["job"]
            anon_peak = _wait_job(client, proc.pid, job["id"], timeout_s)
            peak = status_mb(proc.pid, "VmHWM")
            time.sleep(3)
            after, anon_after = status_mb(proc.pid, "VmRSS"), status_mb(proc.pid, "RssAnon")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return MemoryRow(what, file.stat().st_size / 2**20, idle, peak, after, anon_idle,
                     anon_peak, anon_after)


def _wait_job(client: object, pid: int, job: str, timeout_s: float) -> float:
    """Polls the job until it is done; the highest RssAnon of `pid` meanwhile, in MB."""
    import httpx

    assert isinstance(client, httpx.Client)
    anon = 0.0
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        anon = max(anon, status_mb(pid, "RssAnon"))
        state = client.get(f"/v1/jobs/{job}").json()
        if state.get("status") == "failed":
            raise RuntimeError(f"the upload's job failed: {state}")
        if state.get("status") == "done":
            return anon
        time.sleep(0.2)
    raise RuntimeError(f"the upload's job did not finish in {timeout_s:.0f} s")


def _wait_up(client: object, proc: subprocess.Popen) -> None:
    import httpx

    assert isinstance(client, httpx.Client)
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"rag api exited {proc.returncode}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("rag api did not answer /healthz")
