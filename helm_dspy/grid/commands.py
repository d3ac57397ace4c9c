"""The command lines a grid runs: ``helm-dspy optimize`` per cell, ``helm-run`` per evaluation, ``helm-summarize``.

Paths are passed through as given, so a command runs from the driver's folder (local) or with the folders
a Ray task re-roots (``paths``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from helm_dspy.errors import UserError
from helm_dspy.grid.cells import Evaluation, OptimizeCell
from helm_dspy.grid.plan import Grid

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


def executable(name: str) -> str:
    """A console script beside this Python (the venv's), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def call_threads(grid: Grid, deployment: str, wanted: int) -> int:
    """``wanted`` threads capped by the deployment's ``max_concurrent_calls`` (one cell alone never exceeds it)."""
    limit = next((m.max_concurrent_calls for m in grid.models if m.name == deployment), None)
    return min(wanted, limit) if limit else wanted


def optimize_command(grid: Grid, cell: OptimizeCell, paths: Paths) -> list[str]:
    """``helm-dspy optimize`` for one cell; ``--force`` replaces an agent left without a manifest (interrupted)."""
    model = grid.model(cell.model)
    settings = cell.method.settings
    command = [executable("helm-dspy"), "optimize", "--scenario", cell.scenario, "--model", cell.model]
    command += ["--optimizer", cell.method.name, "--agents-dir", paths.agents_dir, "--local-path", paths.local_path]
    command += ["--output-path", paths.output_path, "--max-train", str(grid.max_train), "--max-val", str(grid.max_val)]
    command += ["--max-tokens", str(grid.max_tokens), "--force"]
    if model.prompt_model:
        command += ["--prompt-model", model.prompt_model]
    if grid.program:
        command += ["--program", grid.program]
    if grid.data_dir:
        command += ["--data-dir", grid.data_dir]
    values = settings.as_dict()
    values["num_threads"] = call_threads(grid, cell.model, settings.num_threads)
    for name, value in values.items():
        if value is not None:
            command += ["--" + name.replace("_", "-"), str(value)]
    return command


def evaluate_command(grid: Grid, evaluation: Evaluation, paths: Paths) -> list[str]:
    """One ``helm-run`` for a (scenario, model): baseline and every method, finished runs skipped."""
    threads = call_threads(grid, evaluation.model, grid.eval_num_threads)
    return [
        executable("helm-run"), "--run-entries", *evaluation.entries(), "--suite", grid.suite,
        "--max-eval-instances", str(grid.max_eval_instances), "--local-path", paths.local_path,
        "--output-path", paths.output_path, "--skip-completed-runs", "-n", str(threads),
    ]  # fmt: skip


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
