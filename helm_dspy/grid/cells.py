"""The grid as a graph: one optimize cell per (scenario, model, optimizer), one evaluation per (scenario, model).

An evaluation depends on the optimize cells of its (scenario, model) only, so it starts as soon as those agents
exist, not when the whole optimize phase ends. Zero-shot methods have no cell: ``helm-run`` builds their program.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from helm_dspy.core.agents import AgentStore
from helm_dspy.grid.plan import Grid, MethodSpec


@dataclass
class Node:
    """A unit of work; ``status`` moves from waiting to running to done, failed or skipped."""

    key: str
    scenario: str
    model: str
    status: str = "waiting"
    detail: str = ""
    retries: int = 0
    """Runs again after the worker running it died (``--executor ray``); shown in the progress and the end table."""
    depends_on: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "skipped")


@dataclass
class OptimizeCell(Node):
    method: MethodSpec | None = None

    @property
    def deployments(self) -> list[str]:
        return [self.model]


@dataclass
class Evaluation(Node):
    """One ``helm-run`` with the baseline and every method of a (scenario, model) on the same instances."""

    methods: list[str] = field(default_factory=list)

    def entries(self) -> list[str]:
        """The baseline run entry, then one ``dspy=`` entry per method (``model=`` first: expanders need it)."""
        name, _, args = self.scenario.partition(":")
        base = f"{name}:model={self.model}" + (f",{args}" if args else "")
        return [base, *(f"{base},dspy={method}" for method in self.methods)]

    def fingerprint(self, grid: Grid) -> str:
        """Identifies what this helm-run evaluated: a rerun with the same fingerprint and its marker is skipped."""
        payload = {"entries": self.entries(), "max_eval_instances": grid.max_eval_instances, "suite": grid.suite}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def build_graph(grid: Grid) -> list[Node]:
    """Optimize cells first (in plan order), then one evaluation per (scenario, model) depending on its cells."""
    nodes: list[Node] = []
    for scenario in grid.scenarios:
        for model in grid.models:
            cells = [
                OptimizeCell(f"optimize {scenario} {model.name} {m.name}", scenario, model.name, method=m)
                for m in grid.methods
                if not m.zero_shot
            ]
            nodes += cells
            nodes.append(
                Evaluation(
                    f"evaluate {scenario} {model.name}",
                    scenario,
                    model.name,
                    depends_on=[cell.key for cell in cells],
                    methods=[m.name for m in grid.methods],
                )
            )
    return nodes


def agent_finished(grid: Grid, cell: OptimizeCell) -> bool:
    return AgentStore(grid.agents_dir).finished(grid.scenario_keys[cell.scenario], cell.model, cell.method.name)


def read_cell_manifest(grid: Grid, cell: OptimizeCell) -> dict:
    return AgentStore(grid.agents_dir).read_manifest(grid.scenario_keys[cell.scenario], cell.model, cell.method.name)
