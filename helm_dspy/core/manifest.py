"""The manifest beside each agent: what was optimized, on which data, with what settings, at what cost.

A plain dataclass written as JSON with a schema version; readers (quickstart and grid resume, the report)
go through ``Manifest.from_dict``, which accepts the unversioned manifests of helm-dspy 0.1.0 as version 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2
"""2: ``schema_version`` and ``data_files`` added; ``usage.failed_lm_calls`` always present."""


@dataclass
class Manifest:
    scenario: str
    """The run entry optimized on (holdout arguments included)."""
    scenario_key: str
    """The agents/ folder of the scenario (``core.agents.scenario_key``)."""
    run_spec: str
    metric: str
    """The HELM metric the objective used (``scenarios.main_metric``)."""
    model: str
    prompt_model: str
    optimizer: str
    program: str
    """Program shape: ``cot`` or ``predict``."""
    settings: dict[str, Any]
    max_tokens: int
    seed: int
    split_sizes: dict[str, int]
    available_split_sizes: dict[str, int]
    split_sources: dict[str, str]
    train_ids_sha256: str
    valid_ids_sha256: str
    baseline_valid_score: float
    optimized_valid_score: float
    unparsable_answers: int
    optimized_program: dict[str, Any]
    """What the optimizer changed: ``demos`` kept, ``instructions_changed``."""
    usage: dict[str, Any]
    estimate: dict[str, int]
    wall_time_s: float
    versions: dict[str, str]
    created: str
    data_files: dict[str, Any] = field(default_factory=dict)
    """Mirror files read (sha256, rows, verified/modified)."""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {key: value for key, value in payload.items() if key in names}
        known.setdefault("schema_version", 1)
        return cls(**known)

    @property
    def unchanged_zero_shot(self) -> bool:
        """The optimizer kept the zero-shot program (no demos, DSPy's default instruction)."""
        return not self.optimized_program.get("demos") and not self.optimized_program.get("instructions_changed")
