"""Medbullets (op5). Upstream has no train split: optimize on a seeded holdout of op5.

``medbullets_op4.csv`` is the same 308 questions with one option removed, so it is never read:
training on it would leak the test set (the seed project did).
"""

from __future__ import annotations

import os

from helm.benchmark.scenarios.medbullets_scenario import MedBulletsScenario
from helm.benchmark.scenarios.scenario import TEST_SPLIT, Instance

from helm_dspy.data import mirror
from helm_dspy.data.mirror import SourceFile
from helm_dspy.scenarios.base import OptimizableScenario, download_errors

SCENARIO = "medbullets"
COLUMNS = ("question", "opa", "opb", "opc", "opd", "ope", "answer_idx")
TEST_FILE = SourceFile(
    SCENARIO, "medbullets_op5.csv", f"{MedBulletsScenario.DATASET_DOWNLOAD_BASE_URL}/medbullets_op5.csv", COLUMNS
)
DEFAULT_HOLDOUT = "0.2"
"""What ``helm-dspy optimize`` uses when none is given: 20% of op5 (as the seed project), seed 42."""


class MedBulletsDSPyScenario(OptimizableScenario, MedBulletsScenario):
    """HELM's Medbullets scenario; optimization data only through ``holdout=``."""

    def load_test(self, output_path: str) -> list[Instance]:
        root = mirror.data_dir()
        if root is None:
            os.makedirs(output_path, exist_ok=True)
            with download_errors(SCENARIO, TEST_FILE.url, TEST_FILE.relative_path):
                path = self.download_csv(output_path, "_op5")  # HELM's cached download
        else:
            path = str(mirror.locate(TEST_FILE))
        mirror.check_csv_columns(TEST_FILE, path)
        return self.process_csv(path, TEST_SPLIT)
