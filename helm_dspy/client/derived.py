"""What HELM needs to run ``<entry>:model=<base>,dspy=<method>``, derived from the base deployment.

One model name per (base model, method) so the leaderboard shows a row per method, with a readable
display name; one deployment per (base deployment, method, scenario) whose client runs that agent.
"""

from __future__ import annotations

import inspect
from dataclasses import replace

from helm.benchmark.scenarios.scenario import ScenarioSpec
from helm.common.object_spec import get_class_by_name

from helm_dspy.errors import UserError
from helm_dspy.optimize.methods import METHOD_NAMES

METHOD_SLUGS = {
    "MIPROv2": "miprov2",
    "BootstrapFewShotWithRandomSearch": "bfrs",
    "GEPA": "gepa",
    "SIMBA": "simba",
    "zeroshot-predict": "zs-predict",
    "zeroshot-cot": "zs-cot",
}
METHOD_DISPLAY = {
    "MIPROv2": "DSPy MIPROv2",
    "BootstrapFewShotWithRandomSearch": "DSPy BootstrapFewShot+RandomSearch",
    "GEPA": "DSPy GEPA",
    "SIMBA": "DSPy SIMBA",
    "zeroshot-predict": "DSPy zero-shot Predict",
    "zeroshot-cot": "DSPy zero-shot CoT",
}
MARKER = "-helmdspy-"
"""Joins base model and method slug; distinct from HELM's built-in ``-dspy-fs-...`` deployments."""
AGENT_CLIENT = "helm_dspy.client.agent_client.DSPyAgentClient"
SCENARIO_SEPARATOR = "@"
"""Joins a derived model and the scenario (and holdout) of its deployment: ``<model>@<scenario>[@<holdout>]``."""


def check_method(method: str) -> str:
    if method not in METHOD_SLUGS:
        raise UserError(f"dspy={method} names no method; choose from {', '.join(METHOD_NAMES)}")
    return method


def derived_model_name(base_model: str, method: str) -> str:
    return f"{base_model}{MARKER}{METHOD_SLUGS[check_method(method)]}"


def split_derived_model_name(model: str) -> tuple[str, str] | None:
    """(base model, method) for a derived model name, else None."""
    if MARKER not in model:
        return None
    base, slug = model.rsplit(MARKER, 1)
    methods = {value: key for key, value in METHOD_SLUGS.items()}
    return (base, methods[slug]) if slug in methods else None


def display_name(base_display: str, method: str) -> str:
    return f"{base_display} — {METHOD_DISPLAY[method]}"


def scenario_key(run_spec_name: str, scenario_spec: ScenarioSpec) -> str:
    """``<run spec name>[:<non-default scenario args>]``: the agents/ folder of a scenario.

    ``head_qa`` (language=en is HELM's default), ``mmlu:subject=anatomy``, ``medcalc_bench:version=v1.0``;
    holdout arguments are left out (the agent manifest records them).
    """
    base = run_spec_name.split(":", 1)[0]
    inner = scenario_spec.args.get("scenario") if isinstance(scenario_spec.args.get("scenario"), dict) else None
    class_name = inner["class_name"] if inner else scenario_spec.class_name
    args = dict(inner.get("args", {})) if inner else dict(scenario_spec.args)
    defaults = _constructor_defaults(class_name)
    kept = {
        key: value
        for key, value in sorted(args.items())
        if value is not None
        and key not in ("holdout", "holdout_seed", "valid_fraction", "scenario")
        and defaults.get(key, inspect.Parameter.empty) != value
    }
    return f"{base}:{','.join(f'{k}={v}' for k, v in kept.items())}" if kept else base


def _constructor_defaults(class_name: str) -> dict:
    try:
        scenario_class = get_class_by_name(class_name)
    except (ImportError, AttributeError, ValueError):
        return {}
    defaults: dict = {}
    for klass in reversed(scenario_class.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    return defaults


def register_derived(base_deployment_name: str, method: str, scenario: str, holdout: dict) -> str:
    """Register (once) the model metadata and the deployment for this run; returns the deployment name."""
    from helm.benchmark import model_deployment_registry as deployments
    from helm.benchmark.model_deployment_registry import ClientSpec, get_model_deployment

    base = get_model_deployment(base_deployment_name)
    base_model = base.model_name or base.name
    model = derived_model_name(base_model, method)
    register_derived_metadata(model)
    parts = [model, scenario] + ([",".join(f"{k}={v}" for k, v in holdout.items())] if holdout else [])
    name = SCENARIO_SEPARATOR.join(parts)
    if name not in deployments.DEPLOYMENT_NAME_TO_MODEL_DEPLOYMENT:
        client_spec = ClientSpec(
            class_name=AGENT_CLIENT,
            args={"base_deployment": base.name, "method": method, "scenario": scenario, "holdout": dict(holdout)},
        )
        deployments.register_model_deployment(replace(base, name=name, model_name=model, client_spec=client_spec))
    return name


def leaderboard_deployment(model: str, deployment: str) -> str:
    """The deployment a leaderboard row is keyed by: a derived one without its ``@<scenario>[@<holdout>]`` suffix.

    HELM keys rows by (deployment, model); the per-scenario suffix would split one method into a row per scenario.
    """
    if split_derived_model_name(model) and deployment.startswith(f"{model}{SCENARIO_SEPARATOR}"):
        return model
    return deployment


def register_derived_metadata(model: str) -> None:
    """Model metadata for a derived model: the base's, renamed, e.g. "GPT-4o (2024-05-13) — DSPy MIPROv2"."""
    from helm.benchmark import model_metadata_registry as metadata

    if model in metadata.MODEL_NAME_TO_MODEL_METADATA:
        return
    base_model, method = split_derived_model_name(model)
    try:
        base = metadata.get_model_metadata(base_model)
    except ValueError:
        base = metadata.get_unknown_model_metadata(base_model)
    metadata.register_model_metadata(
        replace(
            base,
            name=model,
            display_name=display_name(base.display_name or base_model, method),
            description=f"{base.description or base_model} Prompt optimized with {METHOD_DISPLAY[method]} (helm-dspy).",
            deployment_names=[],
        )
    )
