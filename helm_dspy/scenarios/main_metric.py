"""The metric a scenario is judged by: one answer for the optimizer's objective and for the report."""

from __future__ import annotations

from helm.benchmark.scenarios.scenario import ScenarioSpec, create_scenario

from helm_dspy.scenarios.run_specs import with_scenario_args

MAIN_METRIC_OVERRIDES = {"medcalc_bench_accuracy": "medcalc_bench_accuracy_fixed"}
"""Where HELM 0.5.16's main metric is wrong (lab/dosage rows always 0), the corrected figure."""
FALLBACK_METRIC = "exact_match"
"""For scenarios whose metadata names no main metric."""


def main_metric_name(scenario_spec: ScenarioSpec) -> str:
    """HELM's ``ScenarioMetadata.main_metric`` for the run spec's scenario, corrected where HELM is wrong."""
    try:
        name = create_scenario(with_scenario_args(scenario_spec)).get_metadata().main_metric
    except Exception:  # scenarios without metadata (HELM raises NotImplementedError) or not importable
        name = None
    name = name or FALLBACK_METRIC
    return MAIN_METRIC_OVERRIDES.get(name, name)
