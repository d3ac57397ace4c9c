"""What a Ray task runs inside a worker: one node's command in a private folder, returning its artifacts.

The driver builds the command (``commands``) with every path under ``TASK_ROOT``; the worker puts its temp folder
there and runs it. A task is plain data and this module imports neither DSPy nor HELM's benchmark code: every
worker pays its imports on the CPUs the cells run on, and unpickling the grid here cost each cell ~20 s on 2 cores
(8 workers importing DSPy at once). Failures of the command come back as values; a worker that dies is retried by
Ray, and the reply says which attempt it was. The command dies with its worker (``PR_SET_PDEATHSIG``): no orphan
keeps calling the model while the retry runs.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from helm_dspy.grid import artifacts
from helm_dspy.helm_run_args import DEFAULT_LOCAL_PATH

TASK_ROOT = "{task_root}"
"""Stands for the worker's temp folder in a task's command and environment."""
LOCAL_PATH, AGENTS_DIR, OUTPUT_PATH = (
    f"{TASK_ROOT}/{name}" for name in (DEFAULT_LOCAL_PATH, "agent_files", "benchmark_output")
)


@dataclass(frozen=True)
class Task:
    command: list[str]
    """``command[0]`` is a console script's name: the worker runs its own environment's."""
    suite: str
    optimize: bool
    """An optimize cell (returns the agents) or an evaluation (returns the suite's run folders)."""
    env: dict[str, str] = field(default_factory=dict)
    agents: dict[str, bytes] = field(default_factory=dict)
    """Agent files the command reads, by path under the agents folder."""
    limits: dict[str, int] = field(default_factory=dict)
    """Deployment -> concurrent calls, held at the grid's limiter actor (``ray_limits``)."""


def executable(name: str) -> str:
    """A console script beside this Python (the venv's), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def attempt_number() -> int:
    """Which attempt of the current Ray task this is (0: the first; more after its worker died)."""
    try:
        import ray

        return int(ray._private.worker.global_worker.core_worker.get_current_task_attempt_number())
    except Exception:  # not in a Ray task, or a Ray without it: no retry seen
        return 0


def task_tag() -> str:
    """The current Ray task's id (the same for every attempt), for its temp folder's name."""
    try:
        import ray

        return ray.get_runtime_context().get_task_id() or "task"
    except Exception:
        return "task"


def die_with_parent() -> None:
    """In the command's process before exec: SIGKILL when the worker that started it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the command may outlive a killed worker
        pass


def run_task(task: Task, local_path: bytes, limiter=None) -> dict:
    """Inside a Ray worker: the task's command, its model calls' slots held at ``limiter`` when there is one;
    returns ok, the output, the attempt and the artifacts."""
    if limiter is None or not task.limits:
        return _run(task, local_path, {})
    import ray

    from helm_dspy.grid.ray_limits import SlotServer

    with SlotServer(ray, limiter, task.limits) as slots:
        return _run(task, local_path, slots.env())


def _run(task: Task, local_path: bytes, slot_env: dict[str, str]) -> dict:
    attempt, prefix = attempt_number(), f"helm-dspy-grid-{task_tag()}-"
    if attempt:  # a killed attempt on this machine left its folder behind
        for stale in glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*")):
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=prefix) as root:

        def rooted(text: str) -> str:
            return text.replace(TASK_ROOT, root)

        artifacts.unpack(local_path, rooted(LOCAL_PATH))
        artifacts.write_files(task.agents, rooted(AGENTS_DIR))
        command = [executable(Path(task.command[0]).name), *map(rooted, task.command[1:])]
        env = {**os.environ, **{k: rooted(v) for k, v in task.env.items()}, **slot_env}
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, preexec_fn=die_with_parent)
        reply: dict = {"ok": result.returncode == 0, "output": result.stdout + result.stderr}
        reply.update(returncode=result.returncode, attempt=attempt)
        reply["cache"] = artifacts.files_of(Path(rooted(LOCAL_PATH)) / "cache")
        if task.optimize:
            reply["agent_files"] = artifacts.files_of(rooted(AGENTS_DIR))
        else:
            reply["runs"] = artifacts.pack(Path(rooted(OUTPUT_PATH)) / "runs" / task.suite)
        return reply
