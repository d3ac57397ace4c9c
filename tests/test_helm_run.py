"""HELM's own commands on the real mirror: helm-run loads the plugin and scores real instances."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_command

pytestmark = pytest.mark.slow  # helm-run on the four scenarios

ENTRIES = ["medcalc_bench", "medec", "head_qa", "medbullets"]


@pytest.fixture(scope="module")
def helm_run_outputs(mirror_dir, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("helm_run")
    result = run_command(
        ["helm-run", "--run-entries", *[f"{name}:model=simple/model1" for name in ENTRIES]]
        + ["medbullets:model=simple/model1,holdout=0.2", "--max-eval-instances", "5", "--suite", "t"],
        cwd=workdir,
        env={"HELM_DSPY_DATA_DIR": str(mirror_dir)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "benchmark_output" / "runs" / "t"


def _run_dir(runs: Path, prefix: str) -> Path:
    matches = [p for p in runs.iterdir() if p.name.startswith(prefix) and "holdout" not in p.name.replace(prefix, "")]
    assert len(matches) == 1, [p.name for p in runs.iterdir()]
    return matches[0]


def _states(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "scenario_state.json").read_text())["request_states"]


def _gold(state: dict) -> str:
    return next(r["output"]["text"] for r in state["instance"]["references"] if "correct" in r["tags"])


def _gold_letter(state: dict) -> str:
    gold = _gold(state)
    return next(letter for letter, text in state["output_mapping"].items() if text == gold)


def test_runs_use_plugin_classes_and_fixed_metrics(helm_run_outputs):
    for name in ENTRIES:
        run_dir = _run_dir(helm_run_outputs, f"{name}:")
        spec = json.loads((run_dir / "run_spec.json").read_text())
        assert spec["scenario_spec"]["class_name"].startswith("helm_dspy.scenarios."), name
        assert len(_states(run_dir)) == 5
    stats = {
        s["name"]["name"] for s in json.loads((_run_dir(helm_run_outputs, "medcalc_bench:") / "stats.json").read_text())
    }
    assert {"medcalc_bench_accuracy", "medcalc_bench_accuracy_fixed"} <= stats
    stats = {s["name"]["name"] for s in json.loads((_run_dir(helm_run_outputs, "medec:") / "stats.json").read_text())}
    assert {"medec_error_flag_accuracy", "medec_error_sentence_accuracy_fixed"} <= stats


def test_head_qa_gold_letter_matches_ra(helm_run_outputs, mirror_dir):
    raw = json.loads((mirror_dir / "head_qa" / "HEAD_EN" / "test_HEAD_EN.json").read_text())
    ra_by_question = {q["qtext"]: int(q["ra"]) for exam in raw["exams"].values() for q in exam["data"]}
    for state in _states(_run_dir(helm_run_outputs, "head_qa:")):
        expected = "ABCDE"[ra_by_question[state["instance"]["input"]["text"]] - 1]
        assert _gold_letter(state) == expected


def test_medbullets_gold_letter_matches_answer_idx(helm_run_outputs, mirror_dir):
    with open(mirror_dir / "medbullets" / "medbullets_op5.csv", encoding="utf-8") as handle:
        answer_by_question = {row["question"]: row["answer_idx"] for row in csv.DictReader(handle)}
    for state in _states(_run_dir(helm_run_outputs, "medbullets:model=simple_model1")):
        assert _gold_letter(state) == answer_by_question[state["instance"]["input"]["text"]]


def test_medcalc_and_medec_gold_match_rows(helm_run_outputs, mirror_dir):
    with open(mirror_dir / "medcalc_bench" / "test_data.csv", encoding="utf-8") as handle:
        rows = {row["Row Number"]: row for row in csv.DictReader(handle)}
    for state in _states(_run_dir(helm_run_outputs, "medcalc_bench:")):
        row = rows[state["instance"]["id"]]
        assert _gold(state) == row["Ground Truth Answer"]
        assert row["Patient Note"][:200] in state["request"]["prompt"]
    medec_csv = mirror_dir / "medec" / "MEDEC-MS-TestSet-with-GroundTruth-and-ErrorType.csv"
    with open(medec_csv, encoding="utf-8") as handle:
        by_text = {row["Sentences"].strip(): row for row in csv.DictReader(handle) if row["Sentences"]}
    for state in _states(_run_dir(helm_run_outputs, "medec:")):
        row = by_text[state["instance"]["input"]["text"]]
        expected = "CORRECT" if row["Error Flag"] == "0" else f"{row['Error Sentence ID']} {row['Corrected Sentence']}"
        assert _gold(state) == expected


def test_holdout_recorded_in_run_name_and_excluded(helm_run_outputs, mirror_dir, tmp_path):
    import os

    from helm_dspy.scenarios.medbullets import MedBulletsDSPyScenario

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    splits = MedBulletsDSPyScenario(holdout="0.2").get_splits(str(tmp_path))
    held_out = {i.input.text for i in splits.train + splits.valid}
    run_dir = _run_dir(helm_run_outputs, "medbullets:model=simple_model1,holdout=0.2")
    evaluated = {s["instance"]["input"]["text"] for s in _states(run_dir)}
    assert evaluated and not evaluated & held_out


def test_cache_instances_reload_with_str_ids(mirror_dir, tmp_path):
    """HELM 0.5.16's int MedCalc ids break --cache-instances reload; ours are str."""
    args = ["helm-run", "--run-entries", "medcalc_bench:model=simple/model1", "--max-eval-instances", "2"]
    args += ["--cache-instances", "--suite"]
    env = {"HELM_DSPY_DATA_DIR": str(mirror_dir)}
    first = run_command([*args, "a"], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert list((tmp_path / "benchmark_output").rglob("input_instances.json"))
    second = run_command([*args, "b"], cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-2000:]


def test_importing_the_package_registers_without_the_entry_point(tmp_path):
    """``--plugins helm_dspy`` must work on its own (a checkout on PYTHONPATH has no entry point), cheaply."""
    script = """
import sys
from helm.benchmark.run import import_user_plugins
from helm.benchmark.run_expander import RUN_EXPANDERS
from helm.benchmark.run_spec import _REGISTERED_RUN_SPEC_FUNCTIONS as functions
import helm.benchmark.run_specs.medhelm_run_specs
before = functions["medec"].__module__
import_user_plugins(["helm_dspy"])
heavy = [name for name in ("dspy", "llama_cpp", "torch", "litellm", "datasets") if name in sys.modules]
print(before, functions["medec"].__module__, "dspy" in RUN_EXPANDERS, heavy)
"""
    result = run_command(["python", "-c", script], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "helm.benchmark.run_specs.medhelm_run_specs",
        "helm_dspy.scenarios.run_specs",
        "True",
        "[]",
    ]


def test_plugins_flag_also_works(mirror_dir, tmp_path):
    result = run_command(
        ["helm-run", "--plugins", "helm_dspy", "--run-entries", "medec:model=simple/model1"]
        + ["--max-eval-instances", "1", "--suite", "p"],
        cwd=tmp_path,
        env={"HELM_DSPY_DATA_DIR": str(mirror_dir)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
