"""``helm-dspy grid``: check the plan, run the graph (optimize -> helm-run per (scenario, model)), summarize, report."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from helm_dspy.bridge import MAX_TOKENS_ENV
from helm_dspy.bridge.limits import limits_env
from helm_dspy.core.prices import prices_env
from helm_dspy.data import mirror
from helm_dspy.errors import UserError
from helm_dspy.grid.cells import Node, build_graph
from helm_dspy.grid.check import check_grid
from helm_dspy.grid.commands import summarize_command
from helm_dspy.grid.executor import Executor, state_dir
from helm_dspy.grid.options import GridOptions
from helm_dspy.grid.plan import Grid, resolve
from helm_dspy.grid.schedule import Scheduler
from helm_dspy.report.report import format_table, report


def prepare_grid(options: GridOptions) -> Grid:
    """Plan + flags, checked against HELM; one UserError line for anything wrong, nothing written."""
    grid = resolve(options)
    if grid.data_dir:
        mirror.set_data_dir(grid.data_dir)
    return check_grid(grid)


def make_executor(grid: Grid) -> Executor:
    """The executor ``grid.executor`` names; children get the data folder and the shared call limits (Ray: one
    limiter actor for the cluster; local: file slots under the grid's state folder)."""
    env = {mirror.DATA_DIR_ENV: os.path.abspath(grid.data_dir)} if grid.data_dir else {}
    env.update(prices_env(grid.prices()))  # optimize's manifests price the plan's models as the report does
    env[MAX_TOKENS_ENV] = str(grid.max_tokens)  # zero-shot dspy= programs are served with the grid's cap too
    if grid.executor == "ray":
        from helm_dspy.grid.ray_executor import RayExecutor

        return RayExecutor(grid, env)
    from helm_dspy.grid.local_executor import LocalExecutor

    return LocalExecutor(grid, {**env, **limits_env(state_dir(grid) / "limits", grid.call_limits())})


def grid_command(options: GridOptions, out: Callable[[str], None] = print) -> int:
    """The whole grid from flags and a plan file; returns the exit code (1 when any node failed or was skipped)."""
    grid = prepare_grid(options)
    if grid.dry_run:
        from helm_dspy.grid.cost import dry_run

        dry_run(grid, out)
        return 0
    return run_grid_plan(grid, out)


def run_grid_plan(grid: Grid, out: Callable[[str], None] = print) -> int:
    """A checked grid (``prepare_grid``, or a preset through ``check_grid``) run to its end: graph, summarize,
    report; returns the exit code."""
    started = time.monotonic()
    nodes = build_graph(grid)
    cells = sum(1 for node in nodes if node.key.startswith("optimize"))
    out(
        f"helm-dspy grid: {len(grid.scenarios)} scenarios x {len(grid.models)} models x {len(grid.methods)} methods: "
        f"{cells} optimize cells, {len(nodes) - cells} helm-runs; executor {grid.executor}, "
        f"{grid.max_parallel} at once; log folder {state_dir(grid) / 'logs'}"
    )
    Scheduler(grid, nodes, make_executor(grid)).run()
    evaluated = [node for node in nodes if node.key.startswith("evaluate") and node.status == "done"]
    if evaluated:
        summarize(grid)
        rows, paths = report(grid.suite, grid.output_path, prices=grid.prices())
        out(format_table(rows))
        out("report: " + ", ".join(str(path) for path in paths.values()))
    problems = [node for node in nodes if node.status != "done"]
    if problems or any(node.retries for node in nodes):
        out(status_table([node for node in nodes if node.status != "done" or node.retries]))
    minutes = (time.monotonic() - started) / 60
    out(f"done in {minutes:.1f} min; {len(nodes) - len(problems)} of {len(nodes)} nodes finished")
    if evaluated:
        out(f"view the leaderboard: helm-server --suite {grid.suite} --output-path {grid.output_path}")
    return 1 if problems else 0


def summarize(grid: Grid) -> None:
    log = state_dir(grid) / "logs" / "helm-summarize.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = summarize_command(grid)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ))
    if result.returncode != 0:
        raise UserError(f"helm-summarize failed (exit {result.returncode}); see {log}")


def status_table(nodes: list[Node]) -> str:
    """The nodes that did not finish or were retried (their worker died), one line each: what, status, why."""
    width = max(len(node.key) for node in nodes)
    lines = [f"{'node'.ljust(width)}  status   why"]
    lines += [f"{node.key.ljust(width)}  {node.status.ljust(7)}  {node.detail}" for node in nodes]
    return "\n".join(lines)
