"""Budgets and run entries of ``helm-dspy quickstart``, the one-model grid at 2-core budgets.

Quickstart keeps its flags (``QuickstartOptions``) and builds its grid here, so its optimize -> helm-run ->
summarize -> report loop is the grid's (resumable, one helm-run per scenario, the same report).
"""

from __future__ import annotations

from helm_dspy.core.methods import BootstrapFewShotWithRandomSearch, MethodSettings, MIPROv2
from helm_dspy.data import mirror


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
