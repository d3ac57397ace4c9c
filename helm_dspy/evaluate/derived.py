"""What HELM needs to run ``<entry>:model=<base>,dspy=<method>``, derived from the base deployment.

One model name per (base model, method) so the leaderboard shows a row per method, with a readable
display name; one deployment per (base deployment, method, scenario) whose client runs that agent.
"""

from __future__ import annotations

from dataclasses import replace

from helm_dspy.core.methods import method_by_slug, method_class

MARKER = "-helmdspy-"
"""Joins base model and method slug; distinct from HELM's built-in ``-dspy-fs-...`` deployments."""
AGENT_CLIENT = "helm_dspy.evaluate.agent_client.DSPyAgentClient"
SCENARIO_SEPARATOR = "@"
"""Joins a derived model and the scenario (and holdout) of its deployment: ``<model>@<scenario>[@<holdout>]``."""


def derived_model_name(base_model: str, method: str) -> str:
    return f"{base_model}{MARKER}{method_class(method).slug}"


def split_derived_model_name(model: str) -> tuple[str, str] | None:
    """(base model, method) for a derived model name, else None."""
    if MARKER not in model:
        return None
    base, slug = model.rsplit(MARKER, 1)
    method = method_by_slug(slug)
    return (base, method.name) if method else None


def display_name(base_display: str, method: str) -> str:
    return f"{base_display} — {method_class(method).display_name}"


def register_derived(base_deployment_name: str, method: str, scenario: str, holdout: dict) -> str:
    """Register (once) the model metadata and the deployment for this run; returns the deployment name."""
    from helm.benchmark import model_deployment_registry as deployments
    from helm.benchmark.model_deployment_registry import ClientSpec, get_model_deployment

    base = get_model_deployment(base_deployment_name)
    base_model = base.model_name or base.name
    model = derived_model_name(base_model, method)
    register_derived_metadata(model)
    parts = [model, scenario] + ([",".join(f"{k}={v}" for k, v in holdout.items())] if holdout else [])
    if base.name != base_model:  # two deployments of one model must not share a derived deployment
        parts.append(f"deployment={base.name}")
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
            description=f"{base.description or base_model} Prompt optimized with "
            f"{method_class(method).display_name} (helm-dspy).",
            deployment_names=[],
        )
    )
