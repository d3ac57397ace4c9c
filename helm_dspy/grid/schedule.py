"""Runs the grid's graph: a node starts once its dependencies ended, a slot is free and its deployments allow it.

Not a barrier between phases: a (scenario, model)'s evaluation starts while other cells still optimize. Finished
work is skipped before anything starts (agent + manifest; an evaluation's marker). A failed cell is one line and
the others go on; its evaluation runs the baseline and the methods that have an agent. Once ``max_cost_usd`` is
spent (optimize manifests' and finished runs' tokens x price), no new node starts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from helm_dspy.core.files import write_json_atomic
from helm_dspy.core.prices import price_of
from helm_dspy.errors import UserError
from helm_dspy.grid.cells import Evaluation, Node, OptimizeCell, agent_finished, read_cell_manifest
from helm_dspy.grid.executor import Executor, NodeResult, state_dir
from helm_dspy.grid.plan import Grid
from helm_dspy.report.report import read_run, usage_cost


def marker_path(grid: Grid, evaluation: Evaluation):
    return state_dir(grid) / "evaluations" / f"{evaluation.fingerprint(grid)}.json"


def mark_finished_work(grid: Grid, nodes: list[Node]) -> int:
    """Mark nodes whose results exist as done (resume); returns how many."""
    reused = 0
    for node in nodes:
        if isinstance(node, OptimizeCell) and agent_finished(grid, node):
            node.status, node.detail = "done", "agent exists"
            reused += 1
        elif isinstance(node, Evaluation) and marker_path(grid, node).is_file():
            node.status, node.detail = "done", "runs exist"
            reused += 1
    return reused


class Spending:
    """Dollars spent so far (no price known: 0): finished cells' manifest tokens and the suite's finished runs'
    tokens (baseline and methods, as HELM counted them), each x its deployment's price."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.runs: dict[Path, float] = {}  # a finished run's dollars never change: read each once

    def optimizing(self, nodes: list[Node]) -> float:
        total = 0.0
        for node in nodes:
            if not isinstance(node, OptimizeCell) or node.status != "done":
                continue
            price = price_of(node.model, None, self.grid.model(node.model).price)
            if price is None:
                continue
            usage = read_cell_manifest(self.grid, node).get("usage", {})
            total += price.dollars(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)
        return total

    def evaluating(self) -> float:
        suite_dir = Path(self.grid.output_path) / "runs" / self.grid.suite
        finished = suite_dir.glob("*/per_instance_stats.json") if suite_dir.is_dir() else []
        for run_dir in (stats.parent for stats in finished):
            if run_dir not in self.runs:
                self.runs[run_dir] = self._run_dollars(run_dir)
        return sum(self.runs.values())

    def _run_dollars(self, run_dir: Path) -> float:
        try:
            run = read_run(run_dir, None)
        except (UserError, OSError, ValueError, KeyError):  # not one of ours, or unreadable: nothing priced
            return 0.0
        deployment = run.deployment or run.model
        return usage_cost(deployment, run.model, run.usage, self.grid.prices().get(deployment)) or 0.0

    def total(self, nodes: list[Node]) -> float:
        return self.optimizing(nodes) + self.evaluating()


def retried_note(retries: int) -> str:
    return "retried after a worker died" + (f" ({retries}x)" if retries > 1 else "")


class Scheduler:
    def __init__(self, grid: Grid, nodes: list[Node], executor: Executor, out: Callable[[str], None] = tqdm.write):
        self.grid = grid
        self.nodes = nodes
        self.by_key = {node.key: node for node in nodes}
        self.executor = executor
        self.out = out
        self.in_use: Counter[str] = Counter()
        self.limits = grid.call_limits()
        self.spending = Spending(grid)

    def ready(self, node: Node) -> bool:
        return node.status == "waiting" and all(self.by_key[key].finished for key in node.depends_on)

    def calls(self, node: Node) -> dict[str, int]:
        """Concurrent model calls ``node`` may make, per deployment (its threads, capped at the limit)."""
        threads = node.method.settings.num_threads if isinstance(node, OptimizeCell) else self.grid.eval_num_threads
        deployments = [node.model]
        if isinstance(node, OptimizeCell) and node.method and self.grid.model(node.model).prompt_model:
            deployments.append(self.grid.model(node.model).prompt_model)
        return {d: min(threads, self.limits.get(d, threads)) for d in dict.fromkeys(deployments)}

    def admits(self, node: Node) -> bool:
        """Within every deployment's ``max_concurrent_calls`` (a node alone is always admitted, capped)."""
        return all(
            self.in_use[d] == 0 or self.in_use[d] + n <= self.limits.get(d, 10**9) for d, n in self.calls(node).items()
        )

    def prepare(self, node: Node) -> bool:
        """Last look before starting: an evaluation drops the methods whose cell failed; False to not start."""
        if isinstance(node, Evaluation):
            failed = {self.by_key[key].method.name for key in node.depends_on if self.by_key[key].status != "done"}
            node.methods = [m for m in node.methods if m not in failed]
            if marker_path(self.grid, node).is_file():
                node.status, node.detail = "done", "runs exist"
                return False
        if self.grid.max_cost_usd is not None:
            spent = self.spending.total(self.nodes)
            if spent >= self.grid.max_cost_usd:
                node.status, node.detail = "skipped", f"max_cost_usd {self.grid.max_cost_usd} reached (${spent:.2f})"
                self.out(f"skipped {node.key}: {node.detail}")
                return False
        return True

    def run(self) -> list[Node]:
        total = len(self.nodes)
        done_before = mark_finished_work(self.grid, self.nodes)
        if done_before:
            self.out(f"resuming: {done_before} of {total} nodes already finished")
        bar = tqdm(total=total, initial=done_before, desc="grid", unit="node")
        running: dict[Future, Node] = {}
        started: dict[str, float] = {}
        pool = ThreadPoolExecutor(max_workers=self.grid.max_parallel, thread_name_prefix="grid")
        try:
            while True:
                for node in self.nodes:
                    if len(running) >= self.grid.max_parallel:
                        break
                    if not self.ready(node) or not self.admits(node):
                        continue
                    if not self.prepare(node):
                        bar.update(1)
                        continue
                    node.status = "running"
                    for deployment, n in self.calls(node).items():
                        self.in_use[deployment] += n
                    started[node.key] = time.monotonic()
                    running[pool.submit(self.executor.run, node)] = node
                self._show(bar, len(running))
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    node = running.pop(future)
                    for deployment, n in self.calls(node).items():
                        self.in_use[deployment] -= n
                    error = future.exception()
                    result = NodeResult(False, str(error)) if error else future.result()
                    self._finish(node, result, time.monotonic() - started[node.key])
                    bar.update(1)
        except KeyboardInterrupt:
            self.executor.interrupt()
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            bar.close()
            self.executor.close()
            self.save_status()
        return self.nodes

    def _finish(self, node: Node, result: NodeResult, seconds: float) -> None:
        node.retries = result.retries
        retried = f", {retried_note(result.retries)}" if result.retries else ""
        if result.ok:
            node.status, node.detail = "done", f"{seconds:.0f}s{retried}"
            if isinstance(node, Evaluation):
                write_json_atomic(marker_path(self.grid, node), {"entries": node.entries(), "suite": self.grid.suite})
            self.out(f"done {node.key} ({node.detail})")
        else:
            node.status, node.detail = "failed", result.line + retried
            self.out(f"FAILED {node.key}: {node.detail}")

    def _show(self, bar: tqdm, running: int) -> None:
        failed = sum(node.status in ("failed", "skipped") for node in self.nodes)
        left = sum(node.status == "waiting" for node in self.nodes)
        retried = sum(node.retries > 0 for node in self.nodes)
        retried_text = f", retried {retried}" if retried else ""
        bar.set_postfix_str(f"running {running}, left {left}, failed {failed}{retried_text}")

    def save_status(self) -> None:
        rows = [{"node": n.key, "status": n.status, "detail": n.detail, "retries": n.retries} for n in self.nodes]
        write_json_atomic(state_dir(self.grid) / "status.json", rows)
