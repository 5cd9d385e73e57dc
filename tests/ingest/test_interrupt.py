"""`rag ingest` interrupted for real: SIGKILL and SIGINT sent to a running subprocess once its
progress bar (drawn on a pseudo-terminal) shows committed files, then the store is checked:
it opens, holds no duplicate chunks and only whole documents, and a rerun finishes the job
with every file live exactly once."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fixtures_docs as F
import pytest
from ingest_helpers import RAG_CMD, check_store, rag, rag_env

from core.settings import Settings
from ingest.pipeline import document_id_for
from ingest.store import Where, open_store

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(os, "openpty"),
                                                   reason="needs a pseudo-terminal")]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]")
_PROGRESS = re.compile(r"(\d+)/(\d+)\s+files · (\d+) chunks embedded")
# A smaller embedding batch commits documents more often, and 40 files keep the run going
# long after the first commit, so a signal sent on seeing it lands mid-run.
BATCH_ENV = {"RAG_EMBEDDING__BATCH_SIZE": "16"}


def _interruptible() -> None:
    """Ctrl-C as a terminal sends it: a shell starts background jobs with SIGINT ignored and
    children inherit that (Python then never raises KeyboardInterrupt), so a suite started
    in the background would see `rag` shrug the signal off."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class TtyRun:
    """`rag ingest` with stderr on a pseudo-terminal, so it draws its progress bar."""

    proc: subprocess.Popen
    master: int
    stdout_path: Path
    raw: bytearray = field(default_factory=bytearray)

    @classmethod
    def start(cls, args: list[str], cwd: Path, env: dict[str, str]) -> TtyRun:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 220, 0, 0))
        stdout_path = cwd / "rag-stdout.txt"
        with stdout_path.open("wb") as stdout:
            proc = subprocess.Popen(
                [*RAG_CMD, *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=slave, env={**env, "TERM": "xterm-256color", "COLUMNS": "220"},
                start_new_session=True, preexec_fn=_interruptible)
        os.close(slave)
        return cls(proc, master, stdout_path)

    def pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.raw += os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                time.sleep(timeout)

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "\n")

    def progress(self) -> tuple[int, int, int] | None:
        found = _PROGRESS.findall(self.text)
        return tuple(int(x) for x in found[-1]) if found else None  # type: ignore[return-value]

    def wait_for_commits(self, deadline_s: float = 120) -> tuple[int, int, int]:
        """Waits until some, not all, files are committed and chunks were embedded."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            self.pump(0.05)
            p = self.progress()
            if p and 1 <= p[0] < p[1] and p[2] > 0:
                return p
            if self.proc.poll() is not None:
                self.drain()
                pytest.fail(f"rag ingest ended (rc {self.proc.returncode}) before it could be "
                            f"interrupted; progress {p}; output:\n{self.text[-2000:]}")
        self.kill()
        pytest.fail(f"no progress with committed files in {deadline_s} s:\n{self.text[-2000:]}")

    def drain(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                return
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.raw += chunk

    def finish(self, timeout: float = 60) -> int:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self.pump(0.1)
        if self.proc.poll() is None:
            self.kill()
            pytest.fail(f"rag ingest did not stop within {timeout} s:\n{self.text[-2000:]}")
        self.drain()
        os.close(self.master)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def corpus(root: Path, files: int) -> list[Path]:
    return F.write_many_text_files(root / "docs", files=files, sentences=40, seed=files)


def live_sources(store: Any) -> dict[str, list[dict[str, Any]]]:
    return check_store(store, allow_staged=True)


# A segment indexed every 100 points: the kill may land during or between those optimizes.
SMALL_SEGMENTS = {"RAG_STORE__SEGMENT_POINTS": "100"}


@pytest.mark.parametrize("segments", [{}, SMALL_SEGMENTS], ids=["default", "small-segments"])
def test_sigkill_midway_leaves_a_consistent_store(tmp_path: Path, settings: Settings,
                                                  segments: dict[str, str]) -> None:
    paths = corpus(tmp_path, files=40)
    env = rag_env(settings, **BATCH_ENV, **segments)
    run = TtyRun.start(["--data-dir", str(settings.data_dir), "ingest", str(tmp_path / "docs")],
                       tmp_path, env)
    try:
        done, total, _ = run.wait_for_commits()
        run.proc.send_signal(signal.SIGKILL)
        assert run.finish() == -signal.SIGKILL
    finally:
        run.kill()
    assert total == len(paths) and done >= 1

    store = open_store(settings)  # the lock died with the process
    try:
        live = live_sources(store)
        ids = {document_id_for(p) for p in paths}
        assert done <= len(live) < len(paths), "the run was not interrupted midway"
        assert set(live) <= ids
    finally:
        store.close()

    # Rerun to completion with the real command: the committed files are unchanged.
    r = rag("ingest", "-q", tmp_path / "docs", data_dir=settings.data_dir, cwd=tmp_path,
            settings=settings, env={**BATCH_ENV, **segments}, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"new {len(paths) - len(live)}  updated 0  unchanged {len(live)}" in r.stdout, r.stdout
    store = open_store(settings)
    try:
        final = check_store(store)  # strict: no staged leftovers either
        assert set(final) == {document_id_for(p) for p in paths}
        for doc_id, payloads in live.items():  # committed documents were not rewritten
            assert final[doc_id][0]["doc_hash"] == payloads[0]["doc_hash"]
        assert store.count(Where()) == sum(len(v) for v in final.values())
    finally:
        store.close()
    if segments:  # the runs indexed segment after segment, not one at the end
        assert len(list((settings.store_path / "segments").iterdir())) > 3


def test_sigint_exits_130_with_one_line_and_resumes(tmp_path: Path, settings: Settings,
                                                    ingest_paths: Any) -> None:
    paths = corpus(tmp_path, files=40)
    env = rag_env(settings, **BATCH_ENV)
    run = TtyRun.start(["--data-dir", str(settings.data_dir), "ingest", str(tmp_path / "docs")],
                       tmp_path, env)
    try:
        run.wait_for_commits()
        run.proc.send_signal(signal.SIGINT)
        rc = run.finish()
    finally:
        run.kill()
    output = run.text + run.stdout_path.read_text()
    assert rc == 130, output[-2000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-2000:]
    lines = [line.strip() for line in output.splitlines() if "interrupted" in line]
    assert lines == ["interrupted: what was committed is intact; run the command again to "
                     "finish."], output[-2000:]

    store = open_store(settings)
    try:
        live = live_sources(store)
        assert 1 <= len(live) < len(paths)
        report = ingest_paths([tmp_path / "docs"], store=store)
        assert report.count("unchanged") == len(live)
        assert report.count("new") == len(paths) - len(live)
        assert not report.failed
        assert set(check_store(store)) == {document_id_for(p) for p in paths}
    finally:
        store.close()
