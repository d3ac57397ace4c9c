"""The paired bootstrap on known data."""

from __future__ import annotations

import numpy as np

from helm_dspy.report.paired import paired_bootstrap
from helm_dspy.report.report import scenario_of


def test_paired_bootstrap_known_difference_and_seeded():
    rng = np.random.default_rng(1)
    ids = [f"id{i}" for i in range(400)]
    baseline = {i: float(rng.random() < 0.5) for i in ids}
    method = {i: float(rng.random() < 0.6) for i in ids}
    result = paired_bootstrap(baseline, method, seed=0)
    expected = np.mean([method[i] - baseline[i] for i in ids])
    assert result.n == 400 and abs(result.difference - expected) < 1e-12
    assert result.ci_low < result.difference < result.ci_high
    assert 0.05 < result.ci_high - result.ci_low < 0.2  # about 4 standard errors of a 400-item paired mean
    assert paired_bootstrap(baseline, method, seed=0) == result
    only_shared = paired_bootstrap(baseline, {i: method[i] for i in ids[:100]}, seed=0)
    assert only_shared.n == 100


def test_identical_runs_have_zero_width_ci():
    scores = {f"id{i}": float(i % 2) for i in range(50)}
    result = paired_bootstrap(scores, scores)
    assert (result.difference, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)


def test_scenario_of_strips_model_and_method_only():
    assert scenario_of("medbullets:model=a_b,holdout=0.2,dspy=MIPROv2") == "medbullets:holdout=0.2"
    assert scenario_of("head_qa:language=en,category=None,model=x") == "head_qa:language=en,category=None"
    assert scenario_of("medec:model=x") == "medec"


def test_runs_sharing_no_instance_are_a_clear_error():
    import pytest

    from helm_dspy.errors import UserError
    from helm_dspy.report.report import Run, compare

    base = Run("medec:model=m", "medec", "m", "baseline", "exact_match", {"id1": 1.0, "id2": 0.0})
    method = Run("medec:model=m,dspy=MIPROv2", "medec", "m", "MIPROv2", "exact_match", {"id3": 1.0})
    with pytest.raises(UserError, match="shares no instance with its baseline medec:model=m"):
        compare([base, method])
