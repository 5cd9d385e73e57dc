"""Children that die with the process that started them, however it died (SIGKILL too).

`guarded(cmd)` turns `[python, "-m", MODULE, ARGS...]` into a command that runs this file
first: it notes the parent's pid, starts a thread that watches for the parent to go away
(the kernel then hands the child to init or a subreaper, so `os.getppid()` changes), and
runs MODULE in the same process, as `python -m` would. When the parent is gone the module
gets SIGTERM (uvicorn and streamlit shut down on it), and is ended outright if it has not
exited a few seconds later. A getppid watch, not prctl(PR_SET_PDEATHSIG): that signal
follows the parent *thread*, and the API starts the llama.cpp server from a worker thread
that the thread pool may retire long before the process ends.

Run by path (`python orphan_guard.py PARENT_PID MODULE ARGS...`), it imports only the
standard library, so it works whether or not this project is importable in the child.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path

POLL_S = 0.2  # how often the child looks for its parent: the upper bound of an orphan's life
GRACE_S = 5.0  # how long a graceful shutdown may take before the child is ended


def guarded(cmd: list[str]) -> list[str]:
    """`cmd` (a `python -m MODULE ...` command) run so that it ends with this process."""
    python, flag, module, *args = cmd
    if flag != "-m":
        raise ValueError(f"expected a `python -m MODULE` command, got {cmd[:3]}")
    return [python, str(Path(__file__).resolve()), str(os.getpid()), module, *args]


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(128 + signal.SIGTERM)


def main() -> None:
    parent, module = int(sys.argv[1]), sys.argv[2]
    if os.getppid() != parent:  # the parent died before this process got here
        sys.exit(128 + signal.SIGTERM)
    # As `python -m` does: the working folder first, not this file's folder (whose
    # modules, such as vllm.py, would shadow the packages of the same name).
    sys.path[0] = os.getcwd()
    threading.Thread(target=_watch, args=(parent,), name="orphan-guard", daemon=True).start()
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
