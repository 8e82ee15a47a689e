"""Race real, separate Python processes on one call each, with a start barrier, and never hang.

:func:`race` starts one fresh interpreter per argument tuple (``subprocess.Popen`` of
``sys.executable``, like the ``spawn`` start method, but without a ``multiprocessing`` Pool or
Manager, whose teardown has no timeout). Each child imports the target function by module path,
touches its ready file, waits for a shared start file (the barrier: polled, with its own deadline),
calls the function and prints its JSON result as the last line of stdout (stdout and stderr go to
files, so a chatty child can never block on a full pipe). The parent creates the
start file once every child is ready, then waits for all of them against one deadline; on any
timeout or failure it kills every child's process group and fails naming the children that did not
finish, with the tail of their stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import importlib, json, os, sys, time
ready, start, deadline, target, args = sys.argv[1:6]
module, _, name = target.partition(":")
function = getattr(importlib.import_module(module), name)
open(ready, "w").close()
while not os.path.exists(start):
    if time.time() > float(deadline):
        sys.exit("racing child: the start file never appeared")
    time.sleep(0.02)
result = function(*json.loads(args))
print(json.dumps(result))
"""


def _kill(process: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (it may have started its own subprocesses)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def race(
    target: str,
    calls: Sequence[Sequence[Any]],
    workdir: Path,
    envs: Sequence[Mapping[str, str]] | None = None,
    ready_timeout: float = 300.0,
    run_timeout: float = 300.0,
) -> list[Any]:
    """Call ``target`` (``"package.module:function"``) once per argument list in ``calls``, each
    in its own fresh interpreter, all released at once; return their JSON results in order.

    ``envs[i]`` (optional) is added to child ``i``'s environment (e.g. its own ``HOME``).
    ``workdir`` holds the barrier files. ``ready_timeout`` (s) bounds the start-up (imports) of
    all children, ``run_timeout`` (s) the calls after the barrier; past either, every child is
    killed and the test fails naming the stragglers. Children run with the repository as cwd and
    on ``PYTHONPATH``."""
    workdir.mkdir(parents=True, exist_ok=True)
    start = workdir / "race.start"
    deadline = time.time() + ready_timeout + 30  # a child's own limit for awaiting the start
    processes: list[subprocess.Popen] = []
    readies: list[Path] = []
    logs: list[tuple[Path, Path]] = []
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    try:
        for i, args in enumerate(calls):
            ready = workdir / f"race.ready{i}"
            env = {**os.environ, "PYTHONPATH": path, **((envs or [{}] * len(calls))[i])}
            command = [sys.executable, "-c", _CHILD, str(ready), str(start), str(deadline)]
            command += [target, json.dumps(list(args))]
            logs.append((workdir / f"race.out{i}", workdir / f"race.err{i}"))
            with logs[i][0].open("w") as out, logs[i][1].open("w") as err:
                processes.append(
                    subprocess.Popen(
                        command, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True
                    )
                )
            readies.append(ready)
        ready_by = time.time() + ready_timeout
        while not all(r.exists() for r in readies):
            dead = [i for i, p in enumerate(processes) if p.poll() is not None]
            if dead or time.time() > ready_by:
                why = "exited before the start" if dead else "did not get ready"
                _fail(processes, logs, f"{why} within {ready_timeout:.0f} s")
            time.sleep(0.05)
        start.touch()
        run_by = time.time() + run_timeout
        results: list[Any] = []
        for i, process in enumerate(processes):
            try:
                process.wait(timeout=max(0.1, run_by - time.time()))
            except subprocess.TimeoutExpired:
                _fail(processes, logs, f"did not finish within {run_timeout:.0f} s of the start")
            if process.returncode != 0:
                _fail(processes, logs, f"failed ({target}: child {i} exited {process.returncode})")
            results.append(json.loads(logs[i][0].read_text().strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            _kill(process)
            process.wait(timeout=10)


def _fail(processes: list[subprocess.Popen], logs: list[tuple[Path, Path]], why: str) -> None:
    """Kill every child and fail, naming the ones still running and each child's stderr tail."""
    running = [i for i, p in enumerate(processes) if p.poll() is None]
    for process in processes:
        _kill(process)
        process.wait(timeout=10)
    report = []
    for i, process in enumerate(processes):
        state = "was still running, killed" if i in running else f"exit {process.returncode}"
        report.append(f"child {i} ({state}); stderr tail:\n{_tail(logs[i][1])}")
    pytest.fail(f"racing children {why}; still running: {running}\n" + "\n".join(report))
