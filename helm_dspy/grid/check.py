"""The plan checked against HELM: every deployment known, every run entry buildable; no file written.

``HelmSession`` would create ``prod_env/`` and its cache folder, so deployments are looked up in HELM's registries
only (built-in configs plus ``<local_path>/model_deployments.yaml``).
"""

from __future__ import annotations

import os
from dataclasses import replace

from helm_dspy.bridge.credentials import register_helm_configs
from helm_dspy.core.agents import scenario_key
from helm_dspy.errors import UserError
from helm_dspy.grid.plan import Grid
from helm_dspy.local.deployment import CLIENT as LOCAL_CLIENT
from helm_dspy.local.deployment import register_local_models
from helm_dspy.local.llama import usable_cpus
from helm_dspy.optimize.dataset import build_run_spec, normalize_entry


class DeploymentRegistry:
    """HELM's deployment registry for one ``--local-path``: the part of ``HelmSession`` the checks need."""

    def __init__(self, local_path: str):
        self.local_path = os.path.abspath(local_path)
        register_local_models()
        register_helm_configs(self.local_path)

    def deployment(self, name: str):
        from helm.benchmark.model_deployment_registry import ALL_MODEL_DEPLOYMENTS, get_model_deployment

        try:
            return get_model_deployment(name)
        except ValueError:
            tail = name.split("/")[-1]
            close = sorted(d.name for d in ALL_MODEL_DEPLOYMENTS if len(tail) > 2 and tail in d.name)[:5]
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise UserError(
                f"unknown model deployment {name!r}{hint}; declare it in {self.local_path}/model_deployments.yaml "
                "or pick one that helm-run knows"
            ) from None


def check_grid(grid: Grid) -> Grid:
    """Deployments and run entries looked up in HELM; fills ``grid.scenario_keys`` and normalizes the entries."""
    registry = DeploymentRegistry(grid.local_path)
    for index, model in enumerate(grid.models):
        deployment = registry.deployment(model.name)
        if model.prompt_model:
            registry.deployment(model.prompt_model)
        if deployment.client_spec.class_name == LOCAL_CLIENT:
            # One in-process llama.cpp model per process: one node at a time may hold it (never loaded twice);
            # its node needs the CPUs its threads run on (default: all this process may use).
            threads = int(deployment.client_spec.args.get("n_threads") or usable_cpus())
            grid.models[index] = replace(model, max_concurrent_calls=1, cpus=threads)
    entries = []
    for entry in grid.scenarios:
        normalized = normalize_entry(entry)
        run_spec = build_run_spec(normalized, grid.models[0].name, registry)  # type: ignore[arg-type]
        grid.scenario_keys[normalized] = scenario_key(run_spec.name, run_spec.scenario_spec)
        entries.append(normalized)
    grid.scenarios = entries
    return grid
