"""Budgets and run entries of ``helm-dspy quickstart``, the one-model grid at 2-core budgets.

Quickstart keeps its flags (``QuickstartOptions``) and builds its grid here, so its optimize -> helm-run ->
summarize -> report loop is the grid's (resumable, one helm-run per scenario, the same report).
"""

from __future__ import annotations

from helm_dspy.core.methods import BootstrapFewShotWithRandomSearch, MethodSettings, MIPROv2
from helm_dspy.data import mirror


def small_budget(optimizer: str, seed: int, num_threads: int) -> MethodSettings:
    """Budgets for a 2-core CPU: BFRS compares the zero-shot program with 2 bootstrapped demos (unshuffled train
    order), no random candidate and no labeled-only demos (that candidate is then the zero-shot program again: HELM's
    cache answers it), so 2 validation passes; each random candidate would add one (about 3 of the quickstart's
    31 minutes, measured); MIPROv2 with 2 candidates x 3 trials."""
    if optimizer == MIPROv2.name:
        return MethodSettings(
            auto="none", num_candidates=2, num_trials=3, max_bootstrapped_demos=2, max_labeled_demos=2,
            seed=seed, num_threads=num_threads,
        )  # fmt: skip
    if optimizer == BootstrapFewShotWithRandomSearch.name:
        return MethodSettings(
            num_candidates=0, max_bootstrapped_demos=2, max_labeled_demos=0, seed=seed, num_threads=num_threads
        )
    return MethodSettings(seed=seed, num_threads=num_threads)


def quickstart_entry(scenario: str, max_val: int, max_train: int) -> str:
    """Run entry used for both optimizing and evaluating (so holdouts match). Where the data has no train split
    (Medbullets; MedCalc on the mirror) a seeded holdout of the test set is split in half into valid and train,
    so it takes twice the larger of ``max_val`` and ``max_train``: every validation example asked for exists."""
    holdout = 2 * max(max_val, max_train)
    if scenario == "medbullets":
        return f"medbullets:holdout={holdout}"
    if scenario == "medcalc_bench" and mirror.data_dir() is not None:
        return f"medcalc_bench:holdout={holdout}"  # the mirror has no MedCalc train split
    return scenario
