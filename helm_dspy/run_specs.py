"""Run specs: HELM's four MedHELM entries on our scenario classes and fixed metrics, plus ``holdout=``.

The entries keep HELM's names, prompts and adapter settings (we call HELM's own run spec function
and swap only the scenario and metric classes), so ``medcalc_bench:model=...`` is HELM's baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import helm.benchmark.run_specs.medhelm_run_specs as helm_medhelm  # registers HELM's originals first
from helm.benchmark import run_spec as helm_run_spec
from helm.benchmark.metrics.metric import MetricSpec
from helm.benchmark.run_expander import RUN_EXPANDERS, RunExpander
from helm.benchmark.run_spec import RunSpec
from helm.benchmark.scenarios.scenario import ScenarioSpec

PACKAGE = "helm_dspy"
SCENARIO_CLASSES = {
    "medcalc_bench": f"{PACKAGE}.scenarios.medcalc_bench.MedCalcBenchDSPyScenario",
    "medec": f"{PACKAGE}.scenarios.medec.MedecDSPyScenario",
    "head_qa": f"{PACKAGE}.scenarios.head_qa.HeadQADSPyScenario",
    "medbullets": f"{PACKAGE}.scenarios.medbullets.MedBulletsDSPyScenario",
}
HOLDOUT_SCENARIO = f"{PACKAGE}.scenarios.holdout.HoldoutScenario"
OPTIMIZABLE_CLASSES = set(SCENARIO_CLASSES.values()) | {HOLDOUT_SCENARIO}
_HELM_METRICS = "helm.benchmark.metrics"
METRIC_SWAPS = {
    f"{_HELM_METRICS}.medcalc_bench_metrics.MedCalcBenchMetric": (
        f"{PACKAGE}.metrics.medcalc_bench.FixedMedCalcBenchMetric"
    ),
    f"{_HELM_METRICS}.medec_metrics.MedecMetric": f"{PACKAGE}.metrics.medec.FixedMedecMetric",
}
HELM_RUN_SPEC_FUNCTIONS: dict[str, Callable[..., RunSpec]] = {
    "medcalc_bench": helm_medhelm.get_medcalc_bench_spec,
    "medec": helm_medhelm.get_medec_run_spec,
    "head_qa": helm_medhelm.get_head_qa_run_spec,
    "medbullets": helm_medhelm.get_medbullets_run_spec,
}


def _on_our_classes(name: str, helm_function: Callable[..., RunSpec], scenario_class: str) -> Callable[..., RunSpec]:
    def run_spec_function(**kwargs) -> RunSpec:
        from helm_dspy.data.check import require_test_files
        from helm_dspy.errors import UserError

        try:
            require_test_files(name)
        except UserError as error:  # SystemExit: helm-run prints the line, no traceback, nothing run
            raise SystemExit(f"helm-dspy: error: {error}") from None
        run_spec = helm_function(**kwargs)
        metric_specs = [
            MetricSpec(class_name=METRIC_SWAPS.get(spec.class_name, spec.class_name), args=spec.args)
            for spec in run_spec.metric_specs
        ]
        scenario_spec = ScenarioSpec(class_name=scenario_class, args=dict(run_spec.scenario_spec.args))
        return replace(run_spec, scenario_spec=scenario_spec, metric_specs=metric_specs)

    run_spec_function.__name__ = helm_function.__name__
    run_spec_function.__doc__ = f"HELM's {helm_function.__name__} on helm-dspy's scenario and fixed metrics."
    return run_spec_function


# HELM has no API to override a registered name (the decorator raises on duplicates): set the entry.
for _name, _function in HELM_RUN_SPEC_FUNCTIONS.items():
    helm_run_spec._REGISTERED_RUN_SPEC_FUNCTIONS[_name] = _on_our_classes(_name, _function, SCENARIO_CLASSES[_name])


def with_scenario_args(scenario_spec: ScenarioSpec, **updates) -> ScenarioSpec:
    """Set holdout arguments, wrapping scenarios that do not take them in ``HoldoutScenario``."""
    if scenario_spec.class_name in OPTIMIZABLE_CLASSES:
        return ScenarioSpec(class_name=scenario_spec.class_name, args={**scenario_spec.args, **updates})
    inner = {"class_name": scenario_spec.class_name, "args": dict(scenario_spec.args)}
    return ScenarioSpec(class_name=HOLDOUT_SCENARIO, args={"scenario": inner, **updates})


class HoldoutRunExpander(RunExpander):
    """``holdout=N`` or ``holdout=0.2``: evaluate without a seeded holdout kept for optimizing."""

    name = "holdout"

    def __init__(self, value: str):
        self.value = str(value)

    def expand(self, run_spec: RunSpec) -> list[RunSpec]:
        separator = "," if ":" in run_spec.name else ":"
        return [
            replace(
                run_spec,
                name=f"{run_spec.name}{separator}{self.name}={self.value}",
                scenario_spec=with_scenario_args(run_spec.scenario_spec, **{self.name: self.value}),
            )
        ]


class HoldoutSeedRunExpander(HoldoutRunExpander):
    """``holdout_seed=N``: the seed of the holdout (default 42)."""

    name = "holdout_seed"


class DSPyRunExpander(RunExpander):
    """``dspy=<method>``: run the saved agent for this scenario and model instead of HELM's prompt alone.

    The model becomes ``<base model>-helmdspy-<method>`` (its own leaderboard row), served by a derived
    deployment whose client runs the agent on the base deployment; put ``dspy=`` after ``model=``.
    """

    name = "dspy"

    def __init__(self, value: str):
        from helm_dspy.client.derived import METHOD_SLUGS
        from helm_dspy.optimize.methods import METHOD_NAMES

        if value not in METHOD_SLUGS:  # SystemExit: helm-run prints the line, no traceback
            raise SystemExit(f"helm-dspy: error: dspy={value} names no method; choose from {', '.join(METHOD_NAMES)}")
        self.method = value

    def expand(self, run_spec: RunSpec) -> list[RunSpec]:
        from helm.benchmark.model_deployment_registry import get_default_model_deployment_for_model

        from helm_dspy.client.derived import derived_model_name, register_derived, scenario_key
        from helm_dspy.client.helm_lm import DEFAULT_MAX_TOKENS
        from helm_dspy.optimize.objective import adapter_spec_for_dspy

        model = run_spec.adapter_spec.model
        base_deployment = run_spec.adapter_spec.model_deployment or (
            model and get_default_model_deployment_for_model(model)
        )
        if not base_deployment:
            raise SystemExit(f"helm-dspy: error: in {run_spec.name}, put dspy={self.method} after model=")
        scenario = scenario_key(run_spec.name, run_spec.scenario_spec)
        args = run_spec.scenario_spec.args
        holdout = {key: args[key] for key in ("holdout", "holdout_seed") if args.get(key) is not None}
        check_agent(scenario, base_deployment, self.method, holdout)
        deployment = register_derived(base_deployment, self.method, scenario, holdout)
        adapter_spec = replace(
            adapter_spec_for_dspy(run_spec.adapter_spec),  # letter pattern: DSPy answers are more than 1 token
            model=derived_model_name(run_spec.adapter_spec.model, self.method),
            model_deployment=deployment,
            max_tokens=DEFAULT_MAX_TOKENS,  # HELM's 1-10 token caps would cut DSPy's reasoning and fields
            stop_sequences=[],  # DSPy's multi-line field format must not stop at "\n"
        )
        usage_metric = MetricSpec(class_name=f"{PACKAGE}.metrics.dspy_usage.DSPyUsageMetric", args={})
        return [
            replace(
                run_spec,
                name=f"{run_spec.name}{',' if ':' in run_spec.name else ':'}dspy={self.method}",
                adapter_spec=adapter_spec,
                metric_specs=list(run_spec.metric_specs) + [usage_metric],
            )
        ]


def check_agent(scenario: str, base_deployment: str, method: str, holdout: dict) -> None:
    """Load the run's agent before anything runs, so a missing or bad agent is one line, not HELM tracebacks."""
    from helm_dspy.client.agent_client import load_agent
    from helm_dspy.errors import UserError

    try:
        load_agent(scenario, base_deployment, method, holdout, helm_run_local_path())
    except UserError as error:  # SystemExit: helm-run prints the line, no traceback, nothing run
        raise SystemExit(f"helm-dspy: error: {error}") from None


def helm_run_local_path() -> str:
    """``helm-run --local-path`` (HELM does not pass it to run expanders), for the command a message prints."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--local-path", default="prod_env")
    return parser.parse_known_args(sys.argv[1:])[0].local_path


RUN_EXPANDERS[HoldoutRunExpander.name] = HoldoutRunExpander
RUN_EXPANDERS[HoldoutSeedRunExpander.name] = HoldoutSeedRunExpander
RUN_EXPANDERS[DSPyRunExpander.name] = DSPyRunExpander
