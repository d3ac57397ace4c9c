"""The ``helm-dspy grid`` verb: its parser (flags from ``GridOptions``) and handler."""

from __future__ import annotations

import argparse

from helm_dspy.core.options import add_options, from_args
from helm_dspy.grid.options import NO_DEFAULTS, GridOptions


def add_grid_parser(verbs) -> argparse.ArgumentParser:
    grid = verbs.add_parser(
        "grid",
        help="optimize and evaluate scenarios x models x methods: resumable, in parallel (local or Ray)",
        description="Each (scenario, model, optimizer) cell optimizes an agent; as soon as a (scenario, model) has "
        "all its agents, one helm-run evaluates HELM's baseline and every method on the same instances; then "
        "helm-summarize and the report. Finished agents and runs are skipped on a rerun. A plan file "
        "(configs/grid_example.yaml) and flags both work; flags override the plan.",
    )
    grid.add_argument("plan", nargs="?", metavar="PLAN.yaml", help="grid plan (YAML); flags override its keys")
    add_options(grid, GridOptions, defaults=NO_DEFAULTS)
    grid.set_defaults(handler=run_grid)
    return grid


def run_grid(args: argparse.Namespace) -> int:
    from helm_dspy.grid.run import grid_command

    return grid_command(from_args(GridOptions, args, plan=args.plan))
