"""A seeded holdout around any HELM scenario, for run specs whose train split is unavailable."""

from __future__ import annotations

from helm.benchmark.scenarios.scenario import TRAIN_SPLIT, Instance, Scenario, ScenarioSpec, create_scenario

from helm_dspy.scenarios.base import OptimizableScenario


class HoldoutScenario(OptimizableScenario, Scenario):
    """Wraps ``scenario`` (a ScenarioSpec as dict) so any HELM scenario can be optimized on.

    Its valid/test instances are the test pool (and the holdout's source); its train instances,
    when it has any, are the optimization data when no holdout is asked for.
    """

    name = "holdout"
    description = "A HELM scenario with a seeded holdout carved out of its evaluation instances."
    tags: list[str] = []

    def __init__(self, scenario: dict, **kwargs):
        super().__init__(**kwargs)
        self.inner_spec = ScenarioSpec(class_name=scenario["class_name"], args=dict(scenario.get("args", {})))
        self.inner = create_scenario(self.inner_spec)
        self.name = self.inner.name
        self.description = self.inner.description
        self.tags = self.inner.tags
        self._cached: list[Instance] | None = None

    def load_test(self, output_path: str) -> list[Instance]:
        return [i for i in self._inner_instances(output_path) if i.split != TRAIN_SPLIT]  # base relabels and ids

    def load_train(self, output_path: str) -> list[Instance] | None:
        return [i for i in self._inner_instances(output_path) if i.split == TRAIN_SPLIT] or None

    def _inner_instances(self, output_path: str) -> list[Instance]:
        if self._cached is None:
            self._cached = self.inner.get_instances(output_path)
        return self._cached

    def get_metadata(self):
        return self.inner.get_metadata()
