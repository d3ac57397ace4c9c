"""Paired comparison of two runs on the same instances: difference of means with a bootstrap CI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 10_000


@dataclass(frozen=True)
class PairedDifference:
    n: int
    baseline: float
    method: float
    difference: float
    ci_low: float
    ci_high: float


def paired_bootstrap(baseline: dict[str, float], method: dict[str, float], seed: int = 0) -> PairedDifference:
    """Mean(method) - mean(baseline) over shared instance ids, with a seeded 95% percentile bootstrap CI."""
    shared = sorted(set(baseline) & set(method))
    if not shared:
        raise ValueError("no shared instances")
    base = np.array([baseline[i] for i in shared], dtype=float)
    other = np.array([method[i] for i in shared], dtype=float)
    deltas = other - base
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(shared), size=(BOOTSTRAP_SAMPLES, len(shared)))
    means = deltas[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedDifference(
        len(shared), float(base.mean()), float(other.mean()), float(deltas.mean()), float(low), float(high)
    )


def bootstrap_ci(scores: dict[str, float], seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap CI of one run's mean score (the plot's error bars)."""
    values = np.array(list(scores.values()), dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP_SAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
