"""MEDEC sentence accuracy that credits the right error-sentence id."""

from __future__ import annotations

import re
from dataclasses import replace

from helm.benchmark.metrics.medec_metrics import MedecMetric
from helm.benchmark.metrics.metric import MetricMetadata
from helm.benchmark.metrics.metric_name import MetricName
from helm.benchmark.metrics.statistic import Stat
from helm.benchmark.scenarios.scenario import CORRECT_TAG, Output

FIXED_SENTENCE_NAME = "medec_error_sentence_accuracy_fixed"


class FixedMedecMetric(MedecMetric):
    """Reports HELM's two MEDEC stats unchanged and ``medec_error_sentence_accuracy_fixed``.

    Subclassed because HELM 0.5.16 calls ``int()`` on the whole gold "<id> <corrected sentence>",
    which always fails, so no prediction ever gets sentence credit. The fix scores with HELM's own
    code against a gold reference reduced to its leading sentence id.
    """

    def evaluate_generation(self, adapter_spec, request_state, metric_service, eval_cache_path) -> list[Stat]:
        helm_stats = super().evaluate_generation(adapter_spec, request_state, metric_service, eval_cache_path)
        fixed_state = replace(request_state, instance=_with_gold_id_only(request_state.instance))
        fixed = super().evaluate_generation(adapter_spec, fixed_state, metric_service, eval_cache_path)
        sentence = next(stat for stat in fixed if stat.name.name == "medec_error_sentence_accuracy")
        return helm_stats + [Stat(MetricName(FIXED_SENTENCE_NAME)).add(sentence.sum)]

    def get_metadata(self) -> list[MetricMetadata]:
        return super().get_metadata() + [
            MetricMetadata(
                name=FIXED_SENTENCE_NAME,
                display_name="Medical Error Sentence Accuracy (fixed)",
                short_display_name="MedecSentenceAcc (fixed)",
                description="Error sentence accuracy with the gold sentence id parsed from the gold answer; "
                "HELM 0.5.16 never credits an id.",
                lower_is_better=False,
                group=None,
            )
        ]


def _with_gold_id_only(instance):
    references = [
        replace(reference, output=Output(text=_leading_id(reference.output.text)))
        if CORRECT_TAG in reference.tags
        else reference
        for reference in instance.references
    ]
    return replace(instance, references=references)


def _leading_id(gold: str) -> str:
    match = re.match(r"\s*(\d+)\b", gold)
    return match.group(1) if match else gold
