"""The DSPy metric: the scenario's HELM metric applied to the program's answer.

The answer is put into a HELM ``RequestState`` as the completion and scored by the run spec's own
metric classes (the fixed MedCalc/MEDEC ones for those scenarios), so optimizing and ``helm-run``
agree on what counts as correct.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import dspy
from helm.benchmark.adaptation.request_state import RequestState
from helm.benchmark.metrics.evaluate_reference_metrics import compute_reference_metrics
from helm.benchmark.metrics.metric import MetricSpec, create_metric
from helm.common.request import GeneratedOutput, RequestResult

from helm_dspy.core.answers import adapter_spec_for_dspy
from helm_dspy.optimize.dataset import OptimizationData
from helm_dspy.scenarios.main_metric import main_metric_name

BASIC_METRICS = (
    "helm.benchmark.metrics.basic_metrics.BasicGenerationMetric",
    "helm.benchmark.metrics.basic_metrics.BasicReferenceMetric",
)


class HelmMetric:
    """Callable DSPy metric scoring ``pred.output`` with HELM's metric; GEPA gets textual feedback too."""

    def __init__(self, data: OptimizationData, metric_name: str | None = None):
        self.data = data
        self.metric_name = metric_name or main_metric_name(data.run_spec.scenario_spec)
        self.adapter_spec = adapter_spec_for_dspy(data.run_spec.adapter_spec)
        self.reference_metric_names: list[str] = []
        self.metric_objects = []
        for spec in data.run_spec.metric_specs:
            if spec.class_name in BASIC_METRICS:
                self.reference_metric_names += list(spec.args.get("names", []))
            else:
                metric = create_metric(MetricSpec(spec.class_name, dict(spec.args)))
                if hasattr(metric, "evaluate_generation"):  # per-instance metrics only
                    self.metric_objects.append(metric)
        self.unparsable = 0
        self._lock = threading.Lock()

    def __call__(self, example, pred, trace=None, pred_name=None, pred_trace=None):
        answer = getattr(pred, "output", None)
        if answer is None:
            with self._lock:
                self.unparsable += 1
            score = 0.0
        else:
            score = self.score(example.instance_id, str(answer))
        if pred_name is None and pred_trace is None:
            return score
        return dspy.Prediction(score=score, feedback=self.feedback(example, answer, score))

    def score(self, instance_id: str, answer: str) -> float:
        """HELM's main-metric value for ``answer`` as the completion of that instance."""
        state = self.data.states[instance_id]
        result = RequestResult(
            success=True,
            embedding=[],
            completions=[GeneratedOutput(text=answer, logprob=0.0, tokens=[])],
            cached=False,
        )
        scored: RequestState = replace(state, result=result)
        for metric in self.metric_objects:
            for stat in metric.evaluate_generation(self.adapter_spec, scored, None, ""):
                if stat.name.name == self.metric_name:
                    return float(stat.sum)
        if self.metric_name in self.reference_metric_names or not self.metric_objects:
            for stat in compute_reference_metrics([self.metric_name], self.adapter_spec, scored, None):
                if stat.name.name == self.metric_name:
                    return float(stat.sum)
        raise ValueError(f"run spec has no metric named {self.metric_name!r}")

    def feedback(self, example, answer, score: float) -> str:
        """Short text for GEPA's reflection: the verdict, the gold answer and what HELM checks."""
        state = self.data.states[example.instance_id]
        extra = state.instance.extra_data or {}
        parts = [f"{'Correct' if score >= 1 else 'Incorrect'} ({self.metric_name}={score:g})."]
        if answer is None:
            parts.append("The answer could not be parsed into the output field.")
        parts.append(f"Expected output: {example['output']!r}.")
        if "category" in extra:
            parts.append(f"Category: {extra['category']}.")
        if extra.get("lower_limit") not in (None, "") and extra.get("lower_limit") != extra.get("upper_limit"):
            parts.append(f"Accepted range: [{extra['lower_limit']}, {extra['upper_limit']}].")
        if state.output_mapping:
            parts.append("Answer with the option letter only.")
        return " ".join(parts)
