"""`rag ingest --watch` in a subprocess: files written, edited in a burst, broken, moved and
deleted in a watched folder while it runs; one line per change, a move embeds nothing, and
Ctrl-C leaves a store that `rag documents list` shows in step with the folder."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fixtures_docs as F
import pytest
from test_cli_errors import ROOT, rag
from test_cli_errors import one_line as only_line

from app.watch import Sync, plan


class Watching:
    """The running watcher and the lines it has printed (stdout and stderr, in order)."""

    def __init__(self, folder: Path, cwd: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                    "RAG_DATA_DIR": str(cwd / "data")})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "ingest", "--watch", str(folder)], cwd=cwd,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                        for stream in (self.proc.stdout, self.proc.stderr)]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line.rstrip("\n"))

    def expect(self, start: str, timeout: float = 20) -> str:
        """The next line that starts with `start`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if line.startswith(start):
                return line
        raise AssertionError(f"no line starting {start!r} in {timeout} s; saw {self.seen}")

    def stop(self) -> int:
        """Ctrl-C; its exit status once every line it printed has been read. The wait is a
        guard against a hang, not a timing: closing the store and the interpreter's exit
        took over 20 s once on a heavily loaded machine."""
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(90)
        for reader in self.readers:
            reader.join(5)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return rc


def test_a_burst_of_changes_is_planned_by_what_is_on_disk(tmp_path: Path) -> None:
    kept = F.write_text(tmp_path / "kept.txt")
    (tmp_path / "folder").mkdir()
    F.write_unsupported(tmp_path / "notes.xyz")
    changed = [kept, tmp_path / "folder", tmp_path / "gone.txt", tmp_path / "notes.xyz",
               tmp_path / ".kept.txt.swp", kept]
    assert plan(map(str, changed)) == Sync(ingest=[tmp_path / "folder", kept],
                                           remove=[tmp_path / "gone.txt"])


@pytest.mark.slow  # a watcher process with the embedder; about 20 s
def test_watch_keeps_the_store_in_step_with_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    w = Watching(folder, tmp_path)
    try:
        w.expect("watching ")
        first = F.write_text(folder / "first.txt")
        assert w.expect("new ") == f"new     {first} (1 chunk)"
        assert w.expect("embedded ") == "embedded 1 chunk, 0 from the embedding cache"

        for n in range(5):  # a burst of saves: one update
            first.write_text(f"{F.TXT_SENTENCE}\n\nSaved {n} times.\n", encoding="utf-8")
            time.sleep(0.02)
        assert w.expect("updated ") == f"updated {first} (1 chunk)"

        F.write_garbage_pdf(folder / "broken.pdf")
        assert w.expect("failed ").startswith(f"failed  {folder / 'broken.pdf'}: ")

        moved = folder / "kept" / "moved.txt"
        moved.parent.mkdir()
        first.rename(moved)
        assert w.expect("moved ") == f"moved   {first} -> {moved}"
        assert w.expect("embedded ") == "embedded 0 chunks, 1 from the embedding cache"

        other = F.write_markdown(folder / "other.md")
        w.expect("new ")
        moved.unlink()
        assert w.expect("removed ") == f"removed {moved}"
        assert [line for line in w.seen if line.startswith("updated ")] == [
            f"updated {first} (1 chunk)"]
    finally:
        rc = w.stop()
    assert rc == 0
    assert w.seen[-1] == "stopped watching"
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in w.seen)

    listed = rag("documents", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [row.split("\t")[6] for row in listed.stdout.splitlines()] == [str(other)]


def test_watching_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    r = rag("ingest", "--watch", tmp_path / "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert only_line(r.stderr) == f"error: --watch: {tmp_path / 'nowhere'}: no such file or " \
        "folder to watch"
