"""MedCalc-Bench accuracy that also scores the ``lab`` and ``dosage`` categories."""

from __future__ import annotations

from helm.benchmark.metrics.medcalc_bench_metrics import MedCalcBenchMetric
from helm.benchmark.metrics.metric import MetricMetadata
from helm.benchmark.metrics.metric_name import MetricName
from helm.benchmark.metrics.statistic import Stat

FIXED_NAME = "medcalc_bench_accuracy_fixed"
RANGE_CATEGORIES_HELM_MISSES = ("lab", "dosage")
"""v1.0 categories HELM 0.5.16 raises on and scores 0 (327 + 40 of 1,047 test rows)."""


class FixedMedCalcBenchMetric(MedCalcBenchMetric):
    """Reports HELM's ``medcalc_bench_accuracy`` unchanged and ``medcalc_bench_accuracy_fixed``.

    Subclassed because HELM's ``check_in_range`` only knows "dosage conversion" and "physical" as
    numeric categories; ``lab`` and ``dosage`` rows carry the same Lower/Upper Limit columns.
    """

    def check_in_range(self, prediction, reference, extra_data, category) -> int:
        if category in RANGE_CATEGORIES_HELM_MISSES:
            category = "physical"  # HELM's numeric [Lower Limit, Upper Limit] check
        return super().check_in_range(prediction, reference, extra_data, category)

    def evaluate_generation(self, adapter_spec, request_state, metric_service, eval_cache_path) -> list[Stat]:
        helm_stats = _HELM_ORIGINAL.evaluate_generation(adapter_spec, request_state, metric_service, eval_cache_path)
        fixed_stats = super().evaluate_generation(adapter_spec, request_state, metric_service, eval_cache_path)
        return helm_stats + [Stat(MetricName(FIXED_NAME)).add(stat.sum) for stat in fixed_stats]

    def get_metadata(self) -> list[MetricMetadata]:
        return super().get_metadata() + [
            MetricMetadata(
                name=FIXED_NAME,
                display_name="MedCalc Accuracy (fixed)",
                short_display_name="MedCalc Acc (fixed)",
                description="MedCalc accuracy with the lab and dosage categories scored by their "
                "[Lower Limit, Upper Limit] range, which HELM 0.5.16 scores 0 whatever the answer.",
                lower_is_better=False,
                group=None,
            )
        ]


_HELM_ORIGINAL = MedCalcBenchMetric()
"""HELM's unmodified scoring, to report its figure next to the fixed one."""
