"""Run specs: HELM's four MedHELM entries on our scenario classes and fixed metrics, plus ``holdout=`` expanders.

The entries keep HELM's names, prompts and adapter settings (we call HELM's own run spec function
and swap only the scenario and metric classes), so ``medcalc_bench:model=...`` is HELM's baseline.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import replace

import helm.benchmark.run_specs.medhelm_run_specs as helm_medhelm  # registers HELM's originals first
from helm.benchmark import run_spec as helm_run_spec
from helm.benchmark.metrics.metric import MetricSpec
from helm.benchmark.run_expander import RUN_EXPANDERS, RunExpander
from helm.benchmark.run_spec import RunSpec
from helm.benchmark.scenarios.scenario import ScenarioSpec

from helm_dspy.data import mirror
from helm_dspy.errors import UserError, stop
from helm_dspy.scenarios.mirror_check import require_test_files
from helm_dspy.scenarios.splits import holdout_count

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
        try:
            require_test_files(name)
        except UserError as error:
            stop(str(error))
        run_spec = helm_function(**kwargs)
        metric_specs = [
            MetricSpec(class_name=METRIC_SWAPS.get(spec.class_name, spec.class_name), args=spec.args)
            for spec in run_spec.metric_specs
        ]
        scenario_spec = ScenarioSpec(class_name=scenario_class, args=dict(run_spec.scenario_spec.args))
        if mirror.data_dir() is None:  # download now: a failure is one line before HELM makes any run folder
            count_test_instances(scenario_spec)
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


NO_HOLDOUT = ("", "none", "0")
"""Values the scenario classes read as "no holdout"."""
_TEST_COUNTS: dict[str, int] = {}


def count_test_instances(scenario_spec: ScenarioSpec) -> int | None:
    """Test instances before any holdout, loaded through the scenario class (HELM's cache, or the mirror).

    A download or mirror failure of our scenarios stops here as one line; another scenario that fails to load
    returns None and fails inside its run as HELM would have it.
    """
    from helm.benchmark.runner import get_benchmark_output_path
    from helm.benchmark.scenarios.scenario import create_scenario, get_scenario_cache_path

    spec = with_scenario_args(scenario_spec, holdout=None)
    output_path = get_benchmark_output_path()
    key = repr((spec.class_name, sorted(spec.args.items(), key=str), output_path, mirror.data_dir()))
    if key not in _TEST_COUNTS:
        try:
            scenario = create_scenario(spec)
            if mirror.data_dir() is None or spec.class_name == HOLDOUT_SCENARIO:  # downloads cache there
                cache_path = get_scenario_cache_path(output_path, scenario.name)
            else:  # read from the mirror: no cache folder to make
                cache_path = os.path.join(output_path, "scenarios", scenario.name)
            _TEST_COUNTS[key] = len(scenario.load_test(cache_path))
        except UserError as error:
            stop(str(error))
        except Exception:
            if spec.class_name != HOLDOUT_SCENARIO:
                raise
            return None
    return _TEST_COUNTS[key]


class HoldoutRunExpander(RunExpander):
    """``holdout=N`` or ``holdout=0.2``: evaluate without a seeded holdout kept for optimizing.

    The value is checked here, before any run starts: inside HELM's runner a bad one is a RunnerError
    traceback and an empty run folder.
    """

    name = "holdout"

    def __init__(self, value: str):
        self.value = str(value).strip()
        self.check_syntax()

    def check_syntax(self) -> None:
        """What needs no data: a number, and a fraction between 0 and 1 (a count needs the test size)."""
        if self.value.lower() in NO_HOLDOUT:
            return
        try:
            finite = math.isfinite(float(self.value))
        except ValueError:
            finite = True  # not a number: holdout_count says so
        if not finite:
            stop(f"holdout={self.value!r} is neither a count nor a fraction; use e.g. holdout=50 or 0.2")
        if not self.value.lstrip("+-").isdigit():  # text or a fraction: checked without the test size
            self.check_count(sys.maxsize)

    def check_count(self, total: int) -> None:
        """``holdout_count``'s own message for a value that does not fit ``total`` test instances."""
        try:
            holdout_count(self.value, total)
        except UserError as error:
            message = str(error)
            if "; use " not in message:
                counts = f"a count from 2 to {total - 1} or " if total < sys.maxsize else "a count or "
                message += f"; use {counts}a fraction between 0 and 1 (e.g. holdout=0.2)"
            stop(message)

    def check_for(self, run_spec: RunSpec) -> None:
        if self.value.lower() in NO_HOLDOUT:
            return
        total = count_test_instances(run_spec.scenario_spec)
        if total is not None:
            self.check_count(total)

    def expand(self, run_spec: RunSpec) -> list[RunSpec]:
        self.check_for(run_spec)
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

    def check_syntax(self) -> None:
        if not self.value.lstrip("+-").isdigit():
            stop(f"holdout_seed={self.value!r} is not an integer; use e.g. holdout_seed=7")

    def check_for(self, run_spec: RunSpec) -> None:
        pass  # any integer seeds a holdout


RUN_EXPANDERS[HoldoutRunExpander.name] = HoldoutRunExpander
RUN_EXPANDERS[HoldoutSeedRunExpander.name] = HoldoutSeedRunExpander
