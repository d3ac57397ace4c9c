"""Optimization splits: seeded holdouts and the train/test leakage guard.

Kept free of HELM's scenario classes so the rules are easy to read and to test on their own.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from helm.benchmark.scenarios.scenario import TRAIN_SPLIT, VALID_SPLIT, Instance

from helm_dspy.errors import UserError

DEFAULT_HOLDOUT_SEED = 42
DEFAULT_VALID_FRACTION = 0.5


@dataclass
class Splits:
    """Train and valid instances for optimizing, and the test instances HELM evaluates."""

    train: list[Instance]
    valid: list[Instance]
    test: list[Instance]
    sources: dict[str, str] = field(default_factory=dict)
    """Split name -> where its instances came from, for manifests and ``data check``."""

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def holdout_count(holdout: str | int | float, total: int) -> int:
    """Number of instances a holdout spec takes: an integer count ("50") or a fraction ("0.2")."""
    text = str(holdout).strip()
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"holdout={text!r} is neither a count nor a fraction; use e.g. holdout=50 or 0.2") from None
    is_fraction = "." in text or "e" in text.lower()
    count = round(value * total) if is_fraction else int(value)
    if is_fraction and not 0 < value < 1:
        raise UserError(f"holdout fraction {text} must be between 0 and 1 (exclusive)")
    if not 2 <= count < total:
        raise UserError(
            f"holdout={text} takes {count} of {total} instances; it needs at least 2 (train and valid) "
            "and must leave some test instances"
        )
    return count


def seeded_partition(items: Sequence[Instance], count: int, seed: int) -> tuple[list[Instance], list[Instance]]:
    """Pick about ``count`` items with a seeded RNG; return (picked, rest), both in their original order.

    Items with the same normalized input move together (Medbullets op5 holds 10 duplicated questions),
    so a holdout never leaves a copy of a held-out question in the test set.
    """
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(normalized_input(item), []).append(index)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    picked_indices: set[int] = set()
    for group in order:
        if len(picked_indices) >= count:
            break
        picked_indices.update(group)
    picked = [item for index, item in enumerate(items) if index in picked_indices]
    rest = [item for index, item in enumerate(items) if index not in picked_indices]
    return picked, rest


def carve_holdout(
    test: list[Instance], holdout: str | int | float, seed: int, valid_fraction: float = DEFAULT_VALID_FRACTION
) -> tuple[list[Instance], list[Instance], list[Instance]]:
    """Take a seeded holdout out of ``test`` and divide it into (train, valid, remaining test)."""
    held, remaining = seeded_partition(test, holdout_count(holdout, len(test)), seed)
    valid, train = seeded_partition(held, max(1, round(len(held) * valid_fraction)), seed + 1)
    return relabel(train, TRAIN_SPLIT), relabel(valid, VALID_SPLIT), remaining


def carve_valid(
    train: list[Instance], seed: int, valid_fraction: float = DEFAULT_VALID_FRACTION
) -> tuple[list[Instance], list[Instance]]:
    """Divide one optimization source into (train, valid) with a seeded RNG."""
    if len(train) < 2:
        raise UserError(f"only {len(train)} optimization instance(s); need at least 2 for train and valid")
    valid, rest = seeded_partition(train, max(1, round(len(train) * valid_fraction)), seed)
    return relabel(rest, TRAIN_SPLIT), relabel(valid, VALID_SPLIT)


def relabel(instances: list[Instance], split: str) -> list[Instance]:
    return [replace(instance, split=split) for instance in instances]


def with_ids(instances: list[Instance], prefix: str) -> list[Instance]:
    """Give instances without an id a stable one; ``id{i}`` for test matches HELM's own numbering."""
    return [
        instance if instance.id is not None else replace(instance, id=f"{prefix}{index}")
        for index, instance in enumerate(instances)
    ]


def normalized_input(instance: Instance) -> str:
    """Instance input with case and whitespace folded, the key the leakage guard compares."""
    return " ".join((instance.input.text or "").split()).casefold()


def overlapping(candidates: list[Instance], test: list[Instance]) -> list[Instance]:
    """The candidates whose normalized input equals some test input."""
    test_inputs = {normalized_input(instance) for instance in test}
    return [instance for instance in candidates if normalized_input(instance) in test_inputs]


def drop_test_overlap(candidates: list[Instance], test: list[Instance]) -> tuple[list[Instance], int]:
    """Remove upstream train/valid items that repeat a test input (exams reuse questions across years)."""
    leaked = {id(instance) for instance in overlapping(candidates, test)}
    return [instance for instance in candidates if id(instance) not in leaked], len(leaked)


def assert_no_leakage(splits: Splits, scenario: str) -> None:
    """Stop before optimizing or evaluating when a train/valid input is also a test input."""
    leaked = overlapping(splits.train + splits.valid, splits.test)
    if leaked:
        examples = "; ".join(repr(normalized_input(instance)[:60]) for instance in leaked[:2])
        raise UserError(
            f"{scenario}: {len(leaked)} train/valid input(s) also appear in the test set, e.g. {examples}; "
            "remove them from the optimization data or use a holdout"
        )
