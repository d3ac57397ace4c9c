"""The mixin that turns a HELM scenario class into one that can be optimized on.

Each benchmark subclass keeps HELM's own row-to-Instance code and only says where its files are
(``load_test`` / ``load_train`` / ``load_valid``). This mixin adds the rules shared by all of them:
a seeded holdout, a valid split carved when upstream has none, and the leakage guard.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from helm.benchmark.scenarios.scenario import TEST_SPLIT, TRAIN_SPLIT, VALID_SPLIT, Instance

from helm_dspy.data import mirror
from helm_dspy.errors import UserError
from helm_dspy.scenarios.splits import (
    DEFAULT_HOLDOUT_SEED,
    DEFAULT_VALID_FRACTION,
    Splits,
    assert_no_leakage,
    carve_holdout,
    carve_valid,
    drop_test_overlap,
    relabel,
    with_ids,
)


class OptimizableScenario:
    """Mixin for a HELM ``Scenario`` subclass; put it first in the bases.

    ``get_instances`` returns what ``helm-run`` evaluates: HELM's test instances, minus the holdout
    when one is requested. ``get_splits`` adds the train and valid instances for optimizing.
    """

    name: str

    def __init__(
        self,
        *args,
        holdout: str | int | float | None = None,
        holdout_seed: int | str = DEFAULT_HOLDOUT_SEED,
        valid_fraction: float | str = DEFAULT_VALID_FRACTION,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.holdout = None if holdout in (None, "", "none", "0") else holdout
        self.holdout_seed = int(holdout_seed)
        self.valid_fraction = float(valid_fraction)

    # --- what each benchmark provides -------------------------------------------------------
    def load_test(self, output_path: str) -> list[Instance]:
        raise NotImplementedError

    def load_train(self, output_path: str) -> list[Instance] | None:
        """Upstream train instances, or None when this benchmark has none (or it is not reachable)."""
        return None

    def load_valid(self, output_path: str) -> list[Instance] | None:
        return None

    # --- shared rules ---------------------------------------------------------------------
    def _test_instances(self, output_path: str) -> list[Instance]:
        """HELM's test instances with stable ids (``id{i}`` as HELM numbers them when none is set)."""
        return with_ids(relabel(self.load_test(output_path), TEST_SPLIT), "id")

    def get_instances(self, output_path: str) -> list[Instance]:
        test = self._test_instances(output_path)
        # helm-run writes the description into the run's scenario.json: record the mirror files' hashes there
        self.description = mirror.describe_with_files(type(self).description, self.name)
        if self.holdout is None:
            return test
        return carve_holdout(test, self.holdout, self.holdout_seed, self.valid_fraction)[2]

    def get_splits(self, output_path: str) -> Splits:
        """Train/valid for optimizing and the evaluated test set, guaranteed disjoint."""
        test = self._test_instances(output_path)
        if self.holdout is not None:
            train, valid, test = carve_holdout(test, self.holdout, self.holdout_seed, self.valid_fraction)
            source = f"seeded holdout of the test file (holdout={self.holdout}, seed={self.holdout_seed})"
            splits = Splits(train, valid, test, {"train": source, "valid": source, "test": "test file minus holdout"})
        else:
            splits = self._upstream_splits(output_path, test)
        assert_no_leakage(splits, self.name)
        return splits

    def _upstream_splits(self, output_path: str, test: list[Instance]) -> Splits:
        train = self.load_train(output_path)
        valid = self.load_valid(output_path)
        sources = {"train": "upstream train", "valid": "upstream valid", "test": "upstream test"}
        if train is None and valid is None:
            where = "in the mirror" if mirror.data_dir() else "upstream"
            raise UserError(
                f"{self.name} has no train or valid split {where}; "
                f"carve one from the test set with holdout=N or a fraction (e.g. holdout=0.2)"
            )
        if train is None or valid is None:
            label = "upstream train" if train is not None else "upstream valid"
            train, valid = carve_valid(train if train is not None else valid, self.holdout_seed, self.valid_fraction)
            sources["train"] = sources["valid"] = f"{label}, split seeded (seed={self.holdout_seed})"
        train = with_ids(relabel(train, TRAIN_SPLIT), "train")
        valid = with_ids(relabel(valid, VALID_SPLIT), "valid")
        train, dropped_train = drop_test_overlap(train, test)
        valid, dropped_valid = drop_test_overlap(valid, test)
        if dropped_train or dropped_valid:
            sources["dropped"] = f"{dropped_train} train and {dropped_valid} valid repeat a test input"
        return Splits(train, valid, test, sources)


@contextmanager
def download_errors(scenario: str, upstream: str, mirror_file: str) -> Iterator[None]:
    """Turn a failed download (no network, a firewall, an HTTP error) into one line naming the mirror fix.

    HELM's ``ensure_file_downloaded`` (urllib) and ``datasets.load_dataset`` fail with OSError subclasses
    (URLError, ConnectionError, DatasetNotFoundError) that would otherwise end ``helm-run`` and ``optimize``
    in a traceback.
    """
    try:
        yield
    except OSError as error:
        detail = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise UserError(
            f"{scenario}: could not download {upstream} ({detail}); without network, point {mirror.DATA_DIR_ENV} "
            f"(or --data-dir) at a data mirror holding {scenario}/{mirror_file}"
        ) from None
