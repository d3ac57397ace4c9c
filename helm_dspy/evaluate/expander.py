"""``dspy=<method>`` run entries: the saved agent for the scenario and model, served inside helm-run.

The model becomes ``<base model>-helmdspy-<slug>`` (its own leaderboard row), served by a derived deployment
whose client runs the agent on the base deployment; everything is checked before any run starts.
"""

from __future__ import annotations

import os
from dataclasses import replace

from helm.benchmark.metrics.metric import MetricSpec
from helm.benchmark.run_expander import RUN_EXPANDERS, RunExpander
from helm.benchmark.run_spec import RunSpec

from helm_dspy import helm_run_args
from helm_dspy.bridge import DEFAULT_MAX_TOKENS, MAX_TOKENS_ENV
from helm_dspy.bridge.credentials import load_credentials, require_api_key
from helm_dspy.core.answers import adapter_spec_for_dspy
from helm_dspy.core.methods import method_class
from helm_dspy.errors import UserError, stop
from helm_dspy.evaluate.derived import derived_model_name, register_derived

USAGE_METRIC = "helm_dspy.metrics.dspy_usage.DSPyUsageMetric"


class DSPyRunExpander(RunExpander):
    """``dspy=<method>``: run the saved agent for this scenario and model instead of HELM's prompt alone.

    The model becomes ``<base model>-helmdspy-<method>`` (its own leaderboard row), served by a derived
    deployment whose client runs the agent on the base deployment; put ``dspy=`` after ``model=``.
    """

    name = "dspy"

    def __init__(self, value: str):
        try:
            self.method = method_class(value, given_as="dspy=").name
        except UserError as error:
            stop(str(error))

    def expand(self, run_spec: RunSpec) -> list[RunSpec]:
        from helm.benchmark.model_deployment_registry import get_default_model_deployment_for_model

        model = run_spec.adapter_spec.model
        if not model and not run_spec.adapter_spec.model_deployment:
            stop(f"in {run_spec.name}, put dspy={self.method} after model=")
        base_deployment = run_spec.adapter_spec.model_deployment or get_default_model_deployment_for_model(model)
        check_deployment(run_spec, base_deployment or model)
        from helm_dspy.core.agents import (
            scenario_key,  # DSPy: imported when a dspy= entry expands, not at plugin import
        )

        scenario = scenario_key(run_spec.name, run_spec.scenario_spec)
        args = run_spec.scenario_spec.args
        holdout = {key: args[key] for key in ("holdout", "holdout_seed") if args.get(key) is not None}
        check_agent(scenario, base_deployment, self.method, holdout)
        max_tokens = serving_max_tokens(scenario, base_deployment, self.method)
        deployment = register_derived(base_deployment, self.method, scenario, holdout)
        adapter_spec = replace(
            adapter_spec_for_dspy(run_spec.adapter_spec),  # letter pattern: DSPy answers are more than 1 token
            model=derived_model_name(run_spec.adapter_spec.model, self.method),
            model_deployment=deployment,
            max_tokens=max_tokens,  # not HELM's 1-10 token caps: they would cut DSPy's reasoning and fields
            stop_sequences=[],  # DSPy's multi-line field format must not stop at "\n"
        )
        usage_metric = MetricSpec(class_name=USAGE_METRIC, args={})
        return [
            replace(
                run_spec,
                name=f"{run_spec.name}{',' if ':' in run_spec.name else ':'}dspy={self.method}",
                adapter_spec=adapter_spec,
                metric_specs=list(run_spec.metric_specs) + [usage_metric],
            )
        ]


def serving_max_tokens(scenario: str, base_deployment: str, method: str) -> int:
    """The cap the agent was optimized under (its manifest), else the grid's (``$HELM_DSPY_MAX_TOKENS``, for
    zero-shot programs), else ``DEFAULT_MAX_TOKENS``: a program is served as it was scored."""
    from helm_dspy.core.agents import AgentStore  # DSPy: imported when a dspy= entry expands, not at plugin import

    optimized = AgentStore.from_env().optimized_max_tokens(scenario, base_deployment, method)
    if optimized:
        return optimized
    given = os.environ.get(MAX_TOKENS_ENV, "")
    return int(given) if given.isdigit() and int(given) > 0 else DEFAULT_MAX_TOKENS


def check_deployment(run_spec: RunSpec, name: str) -> None:
    """An unknown base model or deployment is one line naming where deployments are declared."""
    from helm.benchmark.model_deployment_registry import ModelDeploymentNotFoundError, get_model_deployment

    try:
        get_model_deployment(name)
    except ModelDeploymentNotFoundError:
        stop(
            f"in {run_spec.name}: HELM knows no model deployment {name!r}; declare it in "
            f"{os.path.join(helm_run_args.local_path(), 'model_deployments.yaml')} (helm-run --local-path) "
            "or use a built-in one"
        )


def check_agent(scenario: str, base_deployment: str, method: str, holdout: dict) -> None:
    """Before anything runs: the agent loads and the base deployment has its API key (one line, not tracebacks)."""
    from helm.benchmark.model_deployment_registry import get_model_deployment

    from helm_dspy.core.agents import AgentStore  # DSPy: imported when a dspy= entry expands, not at plugin import

    local_path = helm_run_args.local_path()
    try:
        AgentStore.from_env().load(scenario, base_deployment, method, holdout, local_path)
        require_api_key(load_credentials(local_path), get_model_deployment(base_deployment), local_path)
    except UserError as error:
        stop(str(error))


RUN_EXPANDERS[DSPyRunExpander.name] = DSPyRunExpander
