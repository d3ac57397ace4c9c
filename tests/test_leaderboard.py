"""The leaderboard as helm-server shows it: one row per (model, method) across scenarios, every cell filled.

A ``dspy=`` run's deployment is per scenario (``<model>@<scenario>``), and HELM keys rows by deployment and
model, so without ``DSPySummarizer``'s grouping each method splits into one row per scenario in the
all-scenarios table (and its mean win rate is computed per fragment). Four scenarios x (HELM's prompt, two
zero-shot methods) with the scripted model, ``helm-run`` -> ``helm-summarize`` -> ``helm-server`` -> Chromium.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT, leaderboard_tables, run_command
from test_optimize import write_deployment

MODEL = "scripted/oracle"
SCENARIOS = {  # run group -> run entry of HELM's prompt
    "medcalc_bench": f"medcalc_bench:model={MODEL}",
    "medec": f"medec:model={MODEL}",
    "head_qa": f"head_qa:model={MODEL}",
    "medbullets": f"medbullets:model={MODEL},holdout=0.2",
}
METHODS = {
    "": MODEL,
    "zeroshot-cot": f"{MODEL} — DSPy zero-shot CoT",
    "zeroshot-predict": f"{MODEL} — DSPy zero-shot Predict",
}
MAIN_METRIC = {
    "medcalc_bench": "medcalc_bench_accuracy",
    "medec": "medec_error_flag_accuracy",
    "head_qa": "exact_match",
    "medbullets": "exact_match",
}
GROUP_OF = {"MedCalc-Bench": "medcalc_bench", "Medec": "medec", "HeadQA": "head_qa", "Medbullets": "medbullets"}
PARENT = "helm_dspy_medhelm"
SUITE = "board"
INSTANCES = 3


def entry(group: str, method: str) -> str:
    """The run entry of this scenario and method ("" for HELM's prompt)."""
    return SCENARIOS[group] + (f",dspy={method}" if method else "")


@pytest.fixture(scope="module")
def workspace(mirror_dir, tmp_path_factory) -> Path:
    """The scripted model answers Medbullets right (HELM's prompt and DSPy's) and the other scenarios wrong."""
    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.optimize.dataset import prepare, render, to_examples

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    root = tmp_path_factory.mktemp("leaderboard")
    answers = root / "answers.json"
    answers.write_text("{}")
    write_deployment(root / "prod_env", MODEL, answers, mode="always_right", tokenizer="simple/tokenizer1")
    session = HelmSession(str(root / "prod_env"))
    data = prepare("medbullets:holdout=0.2", MODEL, session, str(root / "benchmark_output"))
    test = to_examples(render(data.run_spec, data.splits.test, session))
    answers.write_text(json.dumps({" ".join(e["inputs"].split()): e["output"] for e in test}))
    return root


def helm(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        "HELM_DSPY_DATA_DIR": os.environ["HELM_DSPY_DATA_DIR"],
    }
    return run_command(list(args), cwd=root, env=env)


@pytest.fixture(scope="module")
def summarized(workspace) -> Path:
    """helm-run of every (scenario, method), then helm-summarize with our schema and summarizer."""
    entries = [entry(group, method) for group in SCENARIOS for method in METHODS]
    options = ["--max-eval-instances", str(INSTANCES), "-n", "2", "--suite", SUITE]
    result = helm(workspace, "helm-run", "--run-entries", *entries, *options)
    assert result.returncode == 0, result.stderr[-3000:]
    options = ["--suite", SUITE, "--schema-path", str(REPO_ROOT / "configs" / "schema_helm_dspy.yaml")]
    options += ["--summarizer-class-name", "helm_dspy.report.summarizer.DSPySummarizer", "--local-path", "prod_env"]
    result = helm(workspace, "helm-summarize", *options)
    assert result.returncode == 0, result.stderr[-3000:]
    return workspace / "benchmark_output" / "runs" / SUITE


def expected_scores(folder: Path) -> dict[str, dict[str, float]]:
    """Row name -> run group -> the main metric of that run, from each run's run_spec.json and stats.json."""
    scores: dict[str, dict[str, float]] = {name: {} for name in METHODS.values()}
    for run in folder.iterdir():
        if not (run / "stats.json").is_file():
            continue
        run_spec = json.loads((run / "run_spec.json").read_text())
        (group,) = set(run_spec["groups"]) & set(SCENARIOS)
        method = run_spec["name"].split("dspy=")[1] if "dspy=" in run_spec["name"] else ""
        (stat,) = [
            s
            for s in json.loads((run / "stats.json").read_text())
            if s["name"]["name"] == MAIN_METRIC[group]
            and s["name"]["split"] == "test"
            and "perturbation" not in s["name"]
        ]
        assert group not in scores[METHODS[method]], run
        scores[METHODS[method]][group] = stat["sum"] / stat["count"]
    assert all(set(by_group) == set(SCENARIOS) for by_group in scores.values()), scores
    return scores


@pytest.mark.slow
@pytest.mark.mirror
def test_all_scenarios_json_has_one_filled_row_per_model_and_method(summarized):
    """groups/<parent>.json: 3 rows, each with all four scenarios' scores from its own runs and one win rate."""
    tables = json.loads((summarized / "groups" / f"{PARENT}.json").read_text())
    accuracy = next(table for table in tables if table["name"] == "accuracy")
    names = [row[0]["value"] for row in accuracy["rows"]]
    assert sorted(names) == sorted(METHODS.values()), names
    headers = [cell["value"] for cell in accuracy["header"]]
    assert headers[1] == "Mean win rate"
    column = {GROUP_OF[cell["metadata"]["run_group"]]: i for i, cell in enumerate(accuracy["header"]) if i >= 2}
    assert set(column) == set(SCENARIOS), headers
    expected = expected_scores(summarized)
    for row in accuracy["rows"]:
        assert row[1]["value"] is not None, row  # one win rate per (model, method), not per fragment
        assert {group: row[column[group]]["value"] for group in SCENARIOS} == expected[row[0]["value"]], row
    for scores in expected.values():  # the answers file knows Medbullets only: a cell in the wrong column shows
        assert scores == {"medcalc_bench": 0.0, "medec": 0.0, "head_qa": 0.0, "medbullets": 1.0}, expected
    index = json.loads((summarized / "groups.json").read_text())
    parent = next(
        row for table in index for row in table["rows"] if row[0]["value"] == "MedHELM with DSPy-optimized prompts"
    )
    assert parent[-1]["value"] == len(METHODS)  # "# models": one per (model, method), not per scenario


@pytest.mark.slow
@pytest.mark.mirror
def test_per_scenario_tables_keep_their_rows_and_real_deployments(summarized):
    """Each scenario's table still has a row per (model, method) with its own run; run specs keep their deployment."""
    expected = expected_scores(summarized)
    for group in SCENARIOS:
        table = json.loads((summarized / "groups" / f"{group}.json").read_text())[0]
        assert {row[0]["value"]: row[1]["value"] for row in table["rows"]} == {
            name: scores[group] for name, scores in expected.items()
        }, group
        for row in table["rows"]:
            assert len(row[0]["run_spec_names"]) == 1, row[0]
    run_specs = json.loads((summarized / "run_specs.json").read_text())
    deployments = {spec["adapter_spec"]["model_deployment"] for spec in run_specs}
    assert f"{MODEL}-helmdspy-zs-cot@medbullets@holdout=0.2" in deployments and MODEL in deployments


@pytest.mark.slow
@pytest.mark.mirror
def test_leaderboard_pages_in_headless_chromium(workspace, summarized):
    """From the page: the all-scenarios table has one row per (model, method), none with an empty cell."""
    pages = leaderboard_tables(
        workspace,
        SUITE,
        {PARENT: "leaderboard_all_scenarios.png", "medbullets": "leaderboard_medbullets_scenario.png"},
    )
    rows = pages[PARENT]
    assert len(rows) == len(METHODS), rows
    assert sorted(row[0] for row in rows) == sorted(METHODS.values()), rows
    for row in rows:
        assert len(row) == 2 + len(SCENARIOS), row  # model, mean win rate, one column per scenario
        assert all(cell not in ("", "-") for cell in row), row
    scenario = {row[0]: row[1:] for row in pages["medbullets"]}
    assert set(scenario) == set(METHODS.values()), pages["medbullets"]
    assert all(cells[0] == "1" for cells in scenario.values()), pages["medbullets"]


def test_row_key_drops_only_the_scenario_suffix_of_a_derived_deployment():
    """Model names may contain "@" (google/text-bison@001): only the suffix register_derived adds is dropped."""
    from helm.benchmark.config_registry import register_builtin_configs_from_helm_package

    from helm_dspy.evaluate.derived import derived_model_name, leaderboard_deployment, register_derived

    register_builtin_configs_from_helm_package()
    base = "google/text-bison@001"
    model = derived_model_name(base, "MIPROv2")
    for scenario, holdout in [("medbullets", {"holdout": "0.2"}), ("mmlu:subject=anatomy", {})]:
        deployment = register_derived(base, "MIPROv2", scenario, holdout)
        assert deployment.startswith(f"{model}@{scenario}") and leaderboard_deployment(model, deployment) == model
    assert leaderboard_deployment(base, base) == base  # HELM's prompt: HELM's own keys
    assert leaderboard_deployment("openai/gpt2", "huggingface/gpt2") == "huggingface/gpt2"
    assert leaderboard_deployment(model, "my/deployment") == "my/deployment"  # not one register_derived made
