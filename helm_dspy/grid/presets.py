"""Grids made in code: ``helm-dspy quickstart`` is the one-model grid at 2-core budgets.

Quickstart keeps its flags (``QuickstartOptions``) and builds its grid here, so its optimize -> helm-run ->
summarize -> report loop is the grid's (resumable, one helm-run per scenario, the same report).
"""

from __future__ import annotations

from helm_dspy.core.agents import DEFAULT_AGENTS_DIR
from helm_dspy.core.methods import BootstrapFewShotWithRandomSearch, MethodSettings, MIPROv2, method_class
from helm_dspy.data import mirror
from helm_dspy.grid.plan import Grid, MethodSpec, ModelSpec
from helm_dspy.helm_run_args import DEFAULT_LOCAL_PATH


def small_budget(optimizer: str, seed: int, num_threads: int) -> MethodSettings:
    """Budgets for a 2-core CPU: BFRS with 1 random candidate (4 programs), MIPROv2 with 2 candidates x 3 trials."""
    if optimizer == MIPROv2.name:
        return MethodSettings(
            auto="none", num_candidates=2, num_trials=3, max_bootstrapped_demos=2, max_labeled_demos=2,
            seed=seed, num_threads=num_threads,
        )  # fmt: skip
    if optimizer == BootstrapFewShotWithRandomSearch.name:
        return MethodSettings(
            num_candidates=1, max_bootstrapped_demos=2, max_labeled_demos=2, seed=seed, num_threads=num_threads
        )
    return MethodSettings(seed=seed, num_threads=num_threads)


def quickstart_entry(scenario: str) -> str:
    """Run entry used for both optimizing and evaluating (so holdouts match)."""
    if scenario == "medbullets":
        return "medbullets:holdout=0.2"
    if scenario == "medcalc_bench" and mirror.data_dir() is not None:
        return "medcalc_bench:holdout=20"  # the mirror has no MedCalc train split
    return scenario


def quickstart_grid(
    model: str,
    scenarios: list[str],
    optimizers: list[str],
    controls: list[str],
    max_eval_instances: int = 5,
    max_train: int = 3,
    max_val: int = 3,
    max_tokens: int = 384,
    suite: str = "quickstart",
    local_path: str = DEFAULT_LOCAL_PATH,
    output_path: str = "benchmark_output",
    agents_dir: str = DEFAULT_AGENTS_DIR,
    data_dir: str | None = None,
    seed: int = 1,
    num_threads: int = 1,
) -> Grid:
    """QuickstartOptions' defaults as a grid: one model, one node at a time (one local model on 2 cores).

    Controls come first (evaluated, never optimized); pass the result through ``check.check_grid``.
    """
    names = [c for c in controls if c not in optimizers] + list(optimizers)
    methods = [MethodSpec(name, small_budget(name, seed, num_threads)) for name in names]
    for method in methods:
        method_class(method.name)  # an unknown name: one line listing the methods
    return Grid(
        scenarios=[quickstart_entry(s) for s in scenarios],
        models=[ModelSpec(model, max_concurrent_calls=num_threads)],
        methods=methods,
        max_train=max_train,
        max_val=max_val,
        max_tokens=max_tokens,
        program=None,
        max_eval_instances=max_eval_instances,
        eval_num_threads=num_threads,
        seed=seed,
        suite=suite,
        local_path=local_path,
        agents_dir=agents_dir,
        output_path=output_path,
        data_dir=data_dir,
        executor="local",
        ray_address=None,
        max_parallel=1,
        max_cost_usd=None,
    )
