"""Per-instance stats of DSPy runs: LM calls, tokens and unparsable answers behind each completion."""

from __future__ import annotations

from helm.benchmark.metrics.metric import Metric, MetricMetadata
from helm.benchmark.metrics.metric_name import MetricName
from helm.benchmark.metrics.statistic import Stat

STATS = {
    "dspy_parse_failures": ("dspy_parse_failure", "DSPy parse failures", "Answers DSPy could not parse (scored 0)."),
    "dspy_lm_calls": ("dspy_lm_calls", "DSPy LM calls", "Model calls the DSPy program made for the instance."),
    "dspy_failed_lm_calls": (
        "dspy_failed_lm_calls",
        "DSPy failed LM calls",
        "Model calls that failed after HELM's retries (the answer is scored 0).",
    ),
    "dspy_prompt_tokens": (
        "dspy_prompt_tokens",
        "DSPy prompt tokens",
        "Prompt tokens over those calls (demos included).",
    ),
    "dspy_completion_tokens": (
        "dspy_completion_tokens",
        "DSPy completion tokens",
        "Completion tokens over those calls (reasoning included).",
    ),
}


AGENT_STATS = {
    "dspy_agent_demos": ("dspy_agent_demos", "DSPy agent demos", "Demos in the agent that answered (0: none)."),
    "dspy_agent_instructions_changed": (
        "dspy_agent_instructions_changed",
        "DSPy agent instruction changed",
        "1 when the agent's instruction differs from DSPy's default, else 0.",
    ),
}
"""What the agent is, not what it cost: 0 demos and an unchanged instruction mean the zero-shot program."""


class DSPyUsageMetric(Metric):
    """Reads what DSPyAgentClient put in the completion's ``finish_reason`` and reports it as stats."""

    def evaluate_generation(self, adapter_spec, request_state, metric_service, eval_cache_path) -> list[Stat]:
        result = request_state.result
        details = (result.completions[0].finish_reason or {}) if result and result.completions else {}
        stats = [Stat(MetricName(name)).add(float(details.get(key, 0) or 0)) for name, (key, _, _) in STATS.items()]
        # Only when reported: a missing value must not read as "0 demos, unchanged" (an unchanged agent).
        for name, (key, _, _) in AGENT_STATS.items():
            if key in details:
                stats.append(Stat(MetricName(name)).add(float(details[key])))
        return stats

    def get_metadata(self) -> list[MetricMetadata]:
        usage = [
            MetricMetadata(
                name=name,
                display_name=display,
                short_display_name=display,
                description=description,
                lower_is_better=True,
                group="efficiency",
            )
            for name, (_, display, description) in STATS.items()
        ]
        agent = [
            MetricMetadata(name=name, display_name=display, short_display_name=display, description=description)
            for name, (_, display, description) in AGENT_STATS.items()
        ]
        return usage + agent
