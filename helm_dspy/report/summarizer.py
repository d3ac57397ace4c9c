"""``helm-summarize --summarizer-class-name helm_dspy.report.summarizer.DSPySummarizer``.

helm-summarize loads no plugins, so the derived models of ``dspy=`` runs would show as unknown; this
subclass registers their metadata (the base model's, renamed "<base> — DSPy <method>") from the runs.
"""

from __future__ import annotations

from helm.benchmark.presentation.summarize import Summarizer

from helm_dspy.client.derived import register_derived_metadata, split_derived_model_name


class DSPySummarizer(Summarizer):
    def read_runs(self):
        super().read_runs()
        for run in self.runs:
            model = run.run_spec.adapter_spec.model
            if split_derived_model_name(model):
                register_derived_metadata(model)
