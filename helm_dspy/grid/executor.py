"""What the scheduler asks of an executor: run one node, say whether it worked and why not, in one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from helm_dspy.errors import ERROR_PREFIX
from helm_dspy.grid.cells import Node
from helm_dspy.grid.plan import Grid


@dataclass
class NodeResult:
    ok: bool
    line: str = ""
    """Why it failed, in one line (the command's own ``helm-dspy: error:`` line when there is one)."""
    retries: int = 0
    """How often the node was run again because the process running it died (Ray's ``max_retries``)."""


class Executor(Protocol):
    def run(self, node: Node) -> NodeResult:
        """Run ``node`` to its end (blocking; the scheduler calls it from worker threads)."""

    def interrupt(self) -> None:
        """Stop every running node now (Ctrl-C): what finished stays, the rest resumes on a rerun."""

    def close(self) -> None: ...


def state_dir(grid: Grid) -> Path:
    """The grid's own files (logs, evaluation markers, status): beside HELM's runs/, never inside it."""
    return Path(grid.output_path) / "grid" / grid.suite


def log_path(grid: Grid, node: Node) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in node.key)
    return state_dir(grid) / "logs" / f"{slug}.log"


def failure_line(output: str, returncode: int, log: Path | str) -> str:
    """The command's last ``helm-dspy: error:`` line, else the exit code and where the log is."""
    errors = [line for line in output.splitlines() if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1].removeprefix(ERROR_PREFIX).strip()
    tail = [line.strip() for line in output.splitlines() if line.strip()]
    last = f": {tail[-1][:200]}" if tail else ""
    return f"exit {returncode}{last} (log: {log})"
