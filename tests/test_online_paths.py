"""The online code paths (no mirror), with HELM's downloaders replaced by readers of the real mirror files.

The machines that run CI have no internet, so these tests stand in for Hugging Face and GitHub with the
same upstream files; what is tested is our code around HELM's loaders, on real rows.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import asdict

import dacite
import helm.benchmark.scenarios.medcalc_bench_scenario as helm_medcalc
import pytest
from helm.benchmark.scenarios.scenario import Instance

from helm_dspy.scenarios import medcalc_bench, medec
from helm_dspy.scenarios.medcalc_bench import MedCalcBenchDSPyScenario
from helm_dspy.scenarios.medec import MedecDSPyScenario


def _hf_rows(path) -> list[dict]:
    """MedCalc CSV rows typed as the Hugging Face dataset gives them (int row numbers and calculator ids)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{**row, "Row Number": int(row["Row Number"]), "Calculator ID": int(row["Calculator ID"])} for row in rows]


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HELM_DSPY_DATA_DIR", raising=False)


def test_medcalc_int_ids_from_hugging_face_become_str(online, mirror_dir, monkeypatch, tmp_path):
    rows = _hf_rows(mirror_dir / "medcalc_bench" / "test_data.csv")
    monkeypatch.setattr(helm_medcalc, "load_dataset", lambda path, **kwargs: {"test": rows})
    helm_instances = helm_medcalc.MedCalcBenchScenario().get_instances(str(tmp_path))
    with pytest.raises(dacite.DaciteError):  # HELM 0.5.16: --cache-instances cannot reload its own ids
        dacite.from_dict(Instance, asdict(helm_instances[0]))
    ours = MedCalcBenchDSPyScenario().get_instances(str(tmp_path))
    assert len(ours) == len(rows) == 1047
    assert all(isinstance(instance.id, str) for instance in ours)
    reloaded = dacite.from_dict(Instance, asdict(ours[0]))  # what HELM's --cache-instances reload does
    assert (reloaded.id, reloaded.input.text) == (ours[0].id, ours[0].input.text)


def test_medcalc_one_shot_demos_online(online, mirror_dir, monkeypatch, tmp_path):
    fetched = []

    def download(source_url, target_path, unpack=False):
        fetched.append(source_url)
        shutil.copy(mirror_dir / "medcalc_bench" / "one_shot_finalized_explanation.json", target_path)

    rows = _hf_rows(mirror_dir / "medcalc_bench" / "test_data.csv")
    monkeypatch.setattr(medcalc_bench, "ensure_file_downloaded", download)
    monkeypatch.setattr("datasets.load_dataset", lambda path, split: rows if split == "test" else [])
    demos = MedCalcBenchDSPyScenario(one_shot="true").load_one_shot(str(tmp_path))
    assert fetched == [medcalc_bench.ONE_SHOT_FILE.url]
    assert len(demos) == 55 and all(instance.id.startswith("trainoneshot") for instance in demos)


def test_medec_unreachable_training_csv_falls_back_to_validation(online, mirror_dir, monkeypatch, tmp_path):
    files = {"medec_test.csv": medec.TEST_FILE, "medec_valid.csv": medec.VALID_FILE}

    def download_csv(self, url, output_path, file_name):
        if file_name not in files:
            raise RuntimeError(f"wget {url} failed")
        target = tmp_path / file_name
        shutil.copy(mirror_dir / "medec" / files[file_name].relative_path, target)
        return str(target)

    monkeypatch.setattr(MedecDSPyScenario, "download_csv", download_csv)
    assert MedecDSPyScenario().load_train(str(tmp_path)) is None
    splits = MedecDSPyScenario().get_splits(str(tmp_path))
    assert splits.sizes() == {"train": 287, "valid": 287, "test": 597}
