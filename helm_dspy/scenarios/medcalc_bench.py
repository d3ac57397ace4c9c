"""MedCalc-Bench with str instance ids, a working ``version`` argument and a train split."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

from helm.benchmark.scenarios.medcalc_bench_scenario import MedCalcBenchScenario
from helm.benchmark.scenarios.scenario import TEST_SPLIT, TRAIN_SPLIT, Instance
from helm.common.general import ensure_file_downloaded

from helm_dspy.data import mirror
from helm_dspy.data.mirror import SourceFile
from helm_dspy.errors import UserError
from helm_dspy.scenarios.base import OptimizableScenario, download_errors

SCENARIO = "medcalc_bench"
_REPO = "https://raw.githubusercontent.com/ncbi-nlp/MedCalc-Bench/version-1.0"
COLUMNS = ("Row Number", "Category", "Patient Note", "Question", "Ground Truth Answer", "Lower Limit", "Upper Limit")
TEST_FILE = SourceFile(SCENARIO, "test_data.csv", f"{_REPO}/dataset/test_data.csv", COLUMNS)
TRAIN_FILE = SourceFile(SCENARIO, "train_data.csv", f"{_REPO}/dataset/train_data.csv.zip (unzipped)", COLUMNS)
TRAIN_ZIP = SourceFile(SCENARIO, "train_data.csv.zip", f"{_REPO}/dataset/train_data.csv.zip", COLUMNS)
ONE_SHOT_FILE = SourceFile(
    SCENARIO, "one_shot_finalized_explanation.json", f"{_REPO}/evaluation/one_shot_finalized_explanation.json"
)
MIRRORED_VERSIONS = (None, "v1.0")
"""The mirror holds the v1.0 files; HELM's unversioned id may resolve to a newer release online."""


class MedCalcBenchDSPyScenario(OptimizableScenario, MedCalcBenchScenario):
    """HELM's MedCalc-Bench scenario, same prompts and rows, plus optimization splits.

    Fixes two HELM 0.5.16 bugs: instance ids are ints (``--cache-instances`` reload fails on them),
    and ``medcalc_bench:version=...`` raises because HELM's constructor takes no ``version``.
    """

    def __init__(self, version: str | None = None, one_shot: bool | str = False, **kwargs):
        super().__init__(**kwargs)
        self.version = version or None
        self.one_shot = str(one_shot).lower() in ("true", "1", "yes")

    def load_test(self, output_path: str) -> list[Instance]:
        if mirror.data_dir() is None:
            with download_errors(SCENARIO, hf_dataset(self.version), TEST_FILE.relative_path):
                instances = MedCalcBenchScenario.get_instances(self, output_path, self.version)
        else:
            instances = self.process_csv(self._mirror_rows(TEST_FILE), TEST_SPLIT)
        return [replace(instance, id=str(instance.id)) for instance in instances]

    def load_train(self, output_path: str) -> list[Instance] | None:
        rows = self._train_rows()
        if rows is None and not self.one_shot:
            return None
        instances = self.process_csv(rows or [], TRAIN_SPLIT)
        instances = [replace(instance, id=f"train{instance.id}") for instance in instances]
        return instances + (self.load_one_shot(output_path) if self.one_shot else [])

    def load_one_shot(self, output_path: str) -> list[Instance]:
        """The authors' 55 one-shot demos as train instances (question and category from the test file)."""
        if mirror.data_dir() is None:  # online: the authors' file (HELM's cached download) and the HF test rows
            from datasets import load_dataset

            demos_path = Path(output_path) / ONE_SHOT_FILE.relative_path
            with download_errors(SCENARIO, ONE_SHOT_FILE.url, ONE_SHOT_FILE.relative_path):
                ensure_file_downloaded(source_url=ONE_SHOT_FILE.url, target_path=str(demos_path), unpack=False)
            with download_errors(SCENARIO, hf_dataset(self.version or "v1.0"), TEST_FILE.relative_path):
                test_rows = list(load_dataset(f"ncbi/MedCalc-Bench-{self.version or 'v1.0'}", split="test"))
        else:
            demos_path = mirror.locate(ONE_SHOT_FILE)
            test_rows = self._mirror_rows(TEST_FILE)
        by_calculator = {str(row["Calculator ID"]): row for row in test_rows}
        demos = json.loads(demos_path.read_text(encoding="utf-8"))
        rows = [one_shot_row(calc_id, demo, by_calculator[calc_id]) for calc_id, demo in demos.items()]
        return [replace(instance, id=f"train{instance.id}") for instance in self.process_csv(rows, TRAIN_SPLIT)]

    def _train_rows(self) -> list[dict] | None:
        if mirror.data_dir() is None:
            from datasets import load_dataset

            with download_errors(SCENARIO, hf_dataset(self.version or "v1.0"), TRAIN_ZIP.relative_path):
                return list(load_dataset(f"ncbi/MedCalc-Bench-{self.version or 'v1.0'}", split="train"))
        root = mirror.data_dir()
        if TRAIN_FILE.mirror_path(root).is_file():
            return mirror.read_csv_rows(TRAIN_FILE, mirror.locate(TRAIN_FILE))  # locate verifies it
        if TRAIN_ZIP.mirror_path(root).is_file():
            return read_zipped_csv(TRAIN_ZIP, mirror.locate(TRAIN_ZIP))
        return None

    def _mirror_rows(self, source: SourceFile) -> list[dict]:
        if self.version not in MIRRORED_VERSIONS:
            raise UserError(
                f"{SCENARIO}: the mirror holds MedCalc-Bench v1.0 only, not version={self.version}; "
                f"use version=v1.0 or unset {mirror.DATA_DIR_ENV} to download it"
            )
        return mirror.read_csv_rows(source, mirror.locate(source))


def hf_dataset(version: str | None) -> str:
    """Where HELM's ``load_dataset`` reads MedCalc-Bench (unversioned: HELM's own test split)."""
    return f"huggingface.co/datasets/ncbi/MedCalc-Bench{'-' + version if version else ''}"


def one_shot_row(calc_id: str, demo: dict, test_row: dict) -> dict:
    """A CSV-shaped row for one authors' demo; the answer is exact (lower = upper = answer)."""
    answer = demo["Response"]["answer"]
    answer = str(tuple(answer)) if isinstance(answer, list) else str(answer)  # "('34 weeks', '3 days')"
    return {
        **{column: test_row[column] for column in ("Category", "Question", "Calculator ID", "Calculator Name")},
        "Row Number": f"oneshot{calc_id}",
        "Patient Note": demo["Patient Note"],
        "Ground Truth Answer": answer,
        "Lower Limit": answer,
        "Upper Limit": answer,
    }


def read_zipped_csv(source: SourceFile, path: Path) -> list[dict[str, str]]:
    """Rows of the single CSV inside the upstream ``train_data.csv.zip``."""
    with zipfile.ZipFile(path) as archive:
        members = [name for name in archive.namelist() if name.endswith(".csv")]
        if not members:
            raise UserError(f"{SCENARIO}: {path} holds no CSV; replace it with {source.url}")
        text = archive.read(members[0]).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    mirror.check_csv_columns(source, path, list(reader.fieldnames or []))
    return list(reader)
