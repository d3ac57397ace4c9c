"""MEDEC-MS with its validation (and, online, training) CSV as optimization data."""

from __future__ import annotations

import os

from helm.benchmark.scenarios.medec_scenario import MedecScenario
from helm.benchmark.scenarios.scenario import TEST_SPLIT, TRAIN_SPLIT, VALID_SPLIT, Instance
from helm.common.hierarchical_logger import hlog

from helm_dspy.data import mirror
from helm_dspy.data.mirror import SourceFile
from helm_dspy.scenarios.base import OptimizableScenario, download_errors

SCENARIO = "medec"
_BASE = f"https://raw.githubusercontent.com/abachaa/MEDEC/{MedecScenario.GIT_HASH}/MEDEC-MS"
COLUMNS = ("Sentences", "Error Flag", "Error Sentence ID", "Corrected Sentence")
TEST_FILE = SourceFile(SCENARIO, "MEDEC-MS-TestSet-with-GroundTruth-and-ErrorType.csv", MedecScenario.TEST_URL, COLUMNS)
VALID_FILE = SourceFile(
    SCENARIO,
    "MEDEC-MS-ValidationSet-with-GroundTruth-and-ErrorType.csv",
    f"{_BASE}/MEDEC-MS-ValidationSet-with-GroundTruth-and-ErrorType.csv",
    COLUMNS,
)
TRAIN_FILE = SourceFile(SCENARIO, "MEDEC-Full-TrainingSet-with-ErrorType.csv", MedecScenario.TRAIN_URL, COLUMNS)


class MedecDSPyScenario(OptimizableScenario, MedecScenario):
    """HELM's MEDEC scenario; the same ``process_csv`` reads the test, validation and training CSVs."""

    def load_test(self, output_path: str) -> list[Instance]:
        return self._read(TEST_FILE, output_path, "medec_test.csv", TEST_SPLIT, required=True)

    def load_valid(self, output_path: str) -> list[Instance] | None:
        return self._read(VALID_FILE, output_path, "medec_valid.csv", VALID_SPLIT, required=True)

    def load_train(self, output_path: str) -> list[Instance] | None:
        return self._read(TRAIN_FILE, output_path, "medec_train.csv", TRAIN_SPLIT, required=False)

    def _read(self, source: SourceFile, output_path: str, cache_name: str, split: str, required: bool):
        root = mirror.data_dir()
        if root is None:
            os.makedirs(output_path, exist_ok=True)
            try:
                with download_errors(SCENARIO, source.url, source.relative_path):
                    path = self.download_csv(source.url, output_path, cache_name)  # HELM's cached download
            except Exception as error:  # the training CSV is optional: use it only "when reachable"
                if required:
                    raise
                hlog(f"{SCENARIO}: {source.url} not reachable ({error}); optimizing from the validation CSV")
                return None
        elif required or source.mirror_path(root).is_file():
            path = str(mirror.locate(source))
        else:
            return None
        mirror.check_csv_columns(source, path)
        return self.process_csv(path, split)
