"""The grid's command-line flags, defined once (``core.options``): each plan key has one, and a given flag wins.

Every field defaults to None ("not given"), so the plan file, then the built-in default, decides; the built-in
defaults live in ``plan.DEFAULTS`` and are named in each flag's help.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from helm_dspy.core.methods import METHOD_NAMES, MethodSettings
from helm_dspy.core.options import option
from helm_dspy.core.program import PROGRAM_SHAPES

EXECUTORS = ("local", "ray")


@dataclass
class GridOptions:
    """``helm-dspy grid [PLAN.yaml] [flags]``: flags alone make a grid, and flags override the plan."""

    plan: str | None = option(None, cli=False)
    scenarios: list[str] | None = option(
        None, "comma-separated run entries without model= (plan key scenarios), e.g. medbullets:holdout=0.2,head_qa"
    )
    models: list[str] | None = option(None, "comma-separated HELM deployments (plan key models)")
    methods: list[str] | None = option(None, f"comma-separated methods: {', '.join(METHOD_NAMES)}")
    prompt_model: str | None = option(None, "prompt model for every model (plan: models[].prompt_model)")
    max_concurrent_calls: int | None = option(
        None,
        "concurrent model calls per deployment, all cells together (plan: models[].max_concurrent_calls)",
        minimum=1,
    )
    max_train: int | None = option(None, "train examples per optimization (plan: optimize.max_train; 200)", minimum=1)
    max_val: int | None = option(None, "validation examples per optimization (plan: optimize.max_val; 100)", minimum=1)
    max_tokens: int | None = option(None, "output cap per DSPy call (plan: optimize.max_tokens; 1024)", minimum=1)
    program: str | None = option(None, "program shape for optimizers (plan: optimize.program)", choices=PROGRAM_SHAPES)
    max_eval_instances: int | None = option(
        None, "test instances per helm-run (plan: evaluation.max_eval_instances; 100)", minimum=1
    )
    eval_num_threads: int | None = option(
        None, "helm-run -n threads (plan: evaluation.num_threads; 4)", minimum=1, metavar="N"
    )
    suite: str | None = option(None, "helm-run suite name (plan key suite; grid)")
    local_path: str | None = option(None, "HELM prod_env folder (plan key local_path; prod_env)")
    agents_dir: str | None = option(None, "where agents are written and read (plan key agents_dir; agents)")
    output_path: str | None = option(None, "HELM output folder (plan key output_path; benchmark_output)")
    data_dir: str | None = option(
        None, "offline mirror folder; overrides HELM_DSPY_DATA_DIR (plan key data_dir)", metavar="DIR"
    )
    executor: str | None = option(None, "where cells run (plan key executor; local)", choices=EXECUTORS)
    ray_address: str | None = option(None, "Ray cluster address (plan key ray_address; default a local Ray)")
    max_parallel: int | None = option(None, "cells running at once (plan key max_parallel; 2)", minimum=1)
    max_cost_usd: float | None = option(None, "start no new cell once this many dollars are spent (plan key)")
    dry_run: bool = option(False, "print each cell's upper bound on model calls and dollars; run nothing")
    settings: MethodSettings = field(default_factory=MethodSettings)
    """Method settings for every method (plan: optimize.<knob>, methods[].settings); None when not given."""


SETTING_NAMES = tuple(f.name for f in fields(MethodSettings))
NO_DEFAULTS = {name: None for name in SETTING_NAMES}
"""Passed to ``add_options``: a method-settings flag not given stays None, so the plan's value is kept."""
