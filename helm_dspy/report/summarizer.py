"""``helm-summarize --summarizer-class-name helm_dspy.report.summarizer.DSPySummarizer``.

helm-summarize loads no plugins, so the derived models of ``dspy=`` runs would show as unknown; this
subclass registers their metadata (the base model's, renamed "<base> — DSPy <method>") from the runs.

HELM keys leaderboard rows by (``model_deployment``, ``model``) (``RunGroup.adapter_keys_shown``), and a
``dspy=`` run's deployment is per scenario (``<model>@<scenario>``: its client runs that scenario's agent),
so the all-scenarios table would show one row per method *and scenario*, each filled in one column, with
its win rate computed per fragment. Rows are keyed here by the deployment without that suffix: one row per
(model, method) across scenarios. Baseline runs keep HELM's keys, and the runs themselves (run pages,
``runs.json``, ``run_specs.json``) keep their real deployment.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from helm.benchmark.adaptation.adapter_spec import AdapterSpec
from helm.benchmark.presentation.summarize import Run, Summarizer

from helm_dspy.evaluate.derived import leaderboard_deployment, register_derived_metadata, split_derived_model_name


class DSPySummarizer(Summarizer):
    def read_runs(self) -> None:
        super().read_runs()
        for run in self.runs:
            model = run.run_spec.adapter_spec.model
            if split_derived_model_name(model):
                register_derived_metadata(model)

    def group_runs(self) -> None:
        """HELM's grouping, then the per-scenario derived deployments of one (model, method) merged into one key."""
        super().group_runs()
        for group, by_adapter in list(self.group_adapter_to_runs.items()):
            self.group_adapter_to_runs[group] = merge_derived_deployments(by_adapter)
        for by_scenario in self.group_scenario_adapter_to_runs.values():
            for scenario_spec, by_adapter in list(by_scenario.items()):
                by_scenario[scenario_spec] = merge_derived_deployments(by_adapter)


def row_adapter_spec(adapter_spec: AdapterSpec) -> AdapterSpec:
    """The adapter spec a leaderboard row is keyed by (a derived run's deployment without its scenario suffix)."""
    return replace(
        adapter_spec, model_deployment=leaderboard_deployment(adapter_spec.model, adapter_spec.model_deployment)
    )


def merge_derived_deployments(by_adapter: dict[AdapterSpec, list[Run]]) -> defaultdict[AdapterSpec, list[Run]]:
    merged: defaultdict[AdapterSpec, list[Run]] = defaultdict(list)
    for adapter_spec, runs in by_adapter.items():
        merged[row_adapter_spec(adapter_spec)].extend(runs)
    return merged
