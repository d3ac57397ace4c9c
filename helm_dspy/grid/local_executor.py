"""``--executor local``: every node a subprocess of this machine (isolates DSPy's settings and HELM's registries).

Children run in their own process group, so a Ctrl-C reaches them through ``interrupt`` (SIGINT, then SIGKILL
after a grace period) and never half-way through the driver's own bookkeeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from helm_dspy.core.agents import AGENTS_ENV
from helm_dspy.grid.cells import Node
from helm_dspy.grid.commands import Paths, node_command
from helm_dspy.grid.executor import NodeResult, failure_line, log_path
from helm_dspy.grid.plan import Grid

GRACE_S = 10.0


class LocalExecutor:
    def __init__(self, grid: Grid, env: dict[str, str] | None = None):
        self.grid = grid
        self.env = {**os.environ, **(env or {}), AGENTS_ENV: grid.agents_dir}
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._interrupted = False

    def run(self, node: Node) -> NodeResult:
        command = node_command(self.grid, node, Paths.of(self.grid))
        log = log_path(self.grid, node)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            with self._lock:
                if self._interrupted:
                    return NodeResult(False, "interrupted")
                child = subprocess.Popen(
                    command, stdout=handle, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
                )
                self._children[child.pid] = child
            try:
                returncode = child.wait()
            finally:
                with self._lock:
                    self._children.pop(child.pid, None)
        if returncode == 0:
            return NodeResult(True)
        output = log.read_text(encoding="utf-8", errors="replace").rsplit("\n$ ", 1)[-1]
        return NodeResult(False, "interrupted" if self._interrupted else failure_line(output, returncode, log))

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            children = list(self._children.values())
        for child in children:
            _signal_group(child, signal.SIGINT)
        deadline = time.monotonic() + GRACE_S
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait()

    def close(self) -> None:
        pass


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    """Signal the child's process group (the group this executor created for it), if it still exists."""
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
