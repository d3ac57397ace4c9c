"""How a DSPy program's answer is scored under HELM's adapter, the same while optimizing and in helm-run."""

from __future__ import annotations

from dataclasses import replace

from helm.benchmark.adaptation.adapter_spec import AdapterSpec

MULTIPLE_CHOICE_PATTERN = r"(?s)\b([A-Z])\b(?!.*\b[A-Z]\b)"
"""HELM ``output_mapping_pattern`` for DSPy answers to multiple-choice prompts: the last standalone
capital letter, so "C", "C.", "(C) Praziquantel" and a paragraph ending "...the answer is C." all map to C.
HELM's own baseline (max_tokens=1) needs no pattern; DSPy programs write more than one token."""


def adapter_spec_for_dspy(adapter_spec: AdapterSpec) -> AdapterSpec:
    """The adapter spec DSPy answers are scored under (adds the multiple-choice letter pattern)."""
    if adapter_spec.method.startswith("multiple_choice") and not adapter_spec.output_mapping_pattern:
        return replace(adapter_spec, output_mapping_pattern=MULTIPLE_CHOICE_PATTERN)
    return adapter_spec
