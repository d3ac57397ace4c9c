"""The command lines a grid runs: ``helm-dspy optimize`` per cell, ``helm-run`` per evaluation, ``helm-summarize``.

Paths are passed through as given, so a command runs from the driver's folder (local) or with the folders
a Ray task re-roots (``paths``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from helm_dspy.core.methods import method_class
from helm_dspy.core.options import to_args
from helm_dspy.errors import UserError
from helm_dspy.grid.cells import Evaluation, OptimizeCell
from helm_dspy.grid.plan import Grid, MethodSpec
from helm_dspy.grid.task import executable
from helm_dspy.optimize.run import OptimizeOptions

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SUMMARIZER = "helm_dspy.report.summarizer.DSPySummarizer"


@dataclass(frozen=True)
class Paths:
    """Where a command reads and writes: the driver's folders, or a Ray task's copies."""

    local_path: str
    agents_dir: str
    output_path: str

    @classmethod
    def of(cls, grid: Grid) -> Paths:
        return cls(grid.local_path, grid.agents_dir, grid.output_path)


def call_threads(grid: Grid, deployment: str, wanted: int) -> int:
    """``wanted`` threads capped by the deployment's ``max_concurrent_calls`` (one cell alone never exceeds it)."""
    limit = grid.call_limits().get(deployment)
    return min(wanted, limit) if limit else wanted


def optimize_options(grid: Grid, scenario: str, model: str, method: MethodSpec, paths: Paths) -> OptimizeOptions:
    """What ``helm-dspy optimize`` gets for one (scenario, model, method): the dry run plans it, a cell runs it."""
    settings = replace(method.settings, num_threads=call_threads(grid, model, method.settings.num_threads))
    return OptimizeOptions(
        scenario=scenario,
        model=model,
        optimizer=method.name,
        prompt_model=grid.model(model).prompt_model,
        agents_dir=paths.agents_dir,
        local_path=paths.local_path,
        data_dir=grid.data_dir,
        output_path=paths.output_path,
        max_train=grid.max_train,
        max_val=grid.max_val,
        program=None if method_class(method.name).zero_shot else grid.program,
        max_tokens=grid.max_tokens,
        settings=settings,
    )


def optimize_command(grid: Grid, cell: OptimizeCell, paths: Paths) -> list[str]:
    """``helm-dspy optimize`` for one cell; ``--force`` replaces an agent left without a manifest (interrupted)."""
    options = replace(optimize_options(grid, cell.scenario, cell.model, cell.method, paths), force=True)
    return [executable("helm-dspy"), "optimize", *to_args(options)]


def evaluate_command(grid: Grid, evaluation: Evaluation, paths: Paths) -> list[str]:
    """One ``helm-run`` for a (scenario, model): baseline and every method, finished runs skipped."""
    threads = call_threads(grid, evaluation.model, grid.eval_num_threads)
    return [
        executable("helm-run"), "--run-entries", *evaluation.entries(), "--suite", grid.suite,
        "--max-eval-instances", str(grid.max_eval_instances), "--local-path", paths.local_path,
        "--output-path", paths.output_path, "--skip-completed-runs", "-n", str(threads),
    ]  # fmt: skip


def node_command(grid: Grid, node: OptimizeCell | Evaluation, paths: Paths) -> list[str]:
    """What a node runs, by either executor: ``helm-dspy optimize`` for a cell, ``helm-run`` for an evaluation."""
    if isinstance(node, OptimizeCell):
        return optimize_command(grid, node, paths)
    return evaluate_command(grid, node, paths)


def summarize_command(grid: Grid) -> list[str]:
    """One thread: HELM compiles mako templates per run in its thread pool, and CPython 3.11 < 3.11.8 fails
    that at random ("AST constructor recursion depth mismatch", gh-106905); the work is under the GIL anyway."""
    return [
        executable("helm-summarize"), "--suite", grid.suite, "--output-path", grid.output_path,
        "--local-path", grid.local_path, "--schema-path", str(schema_path()),
        "--summarizer-class-name", SUMMARIZER, "--num-threads", "1",
    ]  # fmt: skip


def schema_path() -> Path:
    """configs/schema_helm_dspy.yaml: beside the package in a checkout, else installed under share/helm-dspy."""
    installed = Path(sys.prefix) / "share" / "helm-dspy" / "schema_helm_dspy.yaml"
    for candidate in (REPO_CONFIGS / "schema_helm_dspy.yaml", installed):
        if candidate.is_file():
            return candidate
    raise UserError("configs/schema_helm_dspy.yaml not found; reinstall helm-dspy")
