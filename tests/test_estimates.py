"""``--dry-run``'s call estimate is an upper bound for every method, and manifests and the report carry dollars.

Each bound test runs a real optimization on real mirror data with the scripted model (tests/scripted_client.py)
and compares the manifest's ``usage.lm_calls`` (every call through the LM bridge, HELM-cached ones included: DSPy's
own cache is off, so this is the count of program runs and prompt-model calls the estimate bounds) with the
dry run's ``total_lm_calls`` for the same options.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_optimize import write_deployment

from helm_dspy.core.methods import MethodSettings, get_method
from helm_dspy.core.prices import Price, cost_usd, litellm_keys, litellm_price
from helm_dspy.optimize.run import OptimizeOptions, optimize

MEDBULLETS = "medbullets:holdout=0.2"
LOOSENESS = 3
"""The estimate may be at most this many times the calls actually made."""


@pytest.fixture(scope="module")
def workspace(mirror_dir, tmp_path_factory):
    """Scripted deployments and the gold answers of every medbullets and head_qa example the tests use."""
    import os

    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.optimize.dataset import prepare

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    root = tmp_path_factory.mktemp("estimates")
    answers = root / "answers.json"
    answers.write_text("{}")
    prod_env = root / "prod_env"
    write_deployment(prod_env, "scripted/oracle", answers, "oracle")
    write_deployment(prod_env, "scripted/tokenized", answers, tokenizer="simple/tokenizer1")
    session = HelmSession(str(prod_env))
    gold = {}
    for scenario, max_val in [(MEDBULLETS, 16), (MEDBULLETS, 60), ("head_qa", 16)]:
        data = prepare(scenario, "scripted/oracle", session, str(root / "benchmark_output"), 16, max_val, 0)
        gold.update({" ".join(e["inputs"].split()): e["output"] for e in data.train + data.valid})
    answers.write_text(json.dumps(gold))
    return root


def options(workspace: Path, optimizer: str, scenario: str = MEDBULLETS, max_val: int = 16, **settings):
    return OptimizeOptions(
        scenario=scenario,
        model=settings.pop("model", "scripted/oracle"),
        optimizer=optimizer,
        agents_dir=str(workspace / "agents"),
        local_path=str(workspace / "prod_env"),
        output_path=str(workspace / "benchmark_output"),
        max_train=16,
        max_val=max_val,
        force=True,
        settings=MethodSettings(**{"num_threads": 2, "seed": 0, **settings}),
    )


def estimate_and_actual(workspace: Path, optimizer: str, **kwargs) -> tuple[dict, dict]:
    planned = options(workspace, optimizer, **kwargs)
    dry = optimize(replace(planned, dry_run=True), out=lambda line: None)
    manifest = optimize(planned, out=lambda line: None).manifest
    return dry.manifest["estimate"], manifest


def check_bound(workspace: Path, optimizer: str, **kwargs) -> dict:
    estimate, manifest = estimate_and_actual(workspace, optimizer, **kwargs)
    calls = manifest["usage"]["lm_calls"]
    assert manifest["usage"]["failed_lm_calls"] == 0 and manifest["unparsable_answers"] == 0
    assert calls <= estimate["total_lm_calls"], (optimizer, kwargs, estimate, manifest["usage"])
    assert estimate["total_lm_calls"] <= LOOSENESS * calls, (optimizer, kwargs, estimate, manifest["usage"])
    assert manifest["estimate"] == estimate
    return manifest


@pytest.mark.parametrize("optimizer", ["zeroshot-cot", "zeroshot-predict"])
def test_zero_shot_estimate_is_exact(workspace, optimizer):
    estimate, manifest = estimate_and_actual(workspace, optimizer)
    assert manifest["usage"]["lm_calls"] == estimate["total_lm_calls"] == 16  # the baseline valid pass only


@pytest.mark.parametrize(
    "optimizer,settings",
    [
        ("MIPROv2", {"auto": "none", "num_candidates": 3, "num_trials": 3}),
        ("SIMBA", {"bsize": 4, "max_steps": 2, "num_candidates": 3}),
    ],
)
def test_estimate_bounds_a_small_run(workspace, optimizer, settings):
    check_bound(workspace, optimizer, **settings)


@pytest.mark.slow
@pytest.mark.parametrize(
    "optimizer,kwargs",
    [
        ("GEPA", {"scenario": "head_qa"}),  # issue 12: said at most 596, made 747
        ("GEPA", {"scenario": "head_qa", "seed": 1}),
        ("MIPROv2", {}),
        ("MIPROv2", {"max_val": 60}),  # above 50 valid examples MIPROv2 minibatches
        ("BootstrapFewShotWithRandomSearch", {"num_candidates": 4}),
        ("BootstrapFewShotWithRandomSearch", {}),
        ("SIMBA", {}),
    ],
)
def test_estimate_bounds_each_method(workspace, optimizer, kwargs):
    check_bound(workspace, optimizer, **kwargs)


def test_estimate_formulas_from_dspy_source():
    gepa = get_method("GEPA")
    assert gepa.metric_call_budget(16) == 444  # dspy.GEPA(auto="light").auto_budget(1, 6, 16)
    assert gepa.estimate_runs(16, 16) == 444 + 16 + 5  # the last iteration may overshoot by valset + 6 - 1
    assert gepa.estimate_prompt_model_calls(16, 16) == 143  # <= one reflection per 3 metric calls
    mipro = get_method("MIPROv2")
    assert mipro.estimate_runs(train_size=10, val_size=30) == 30 * (1 + 10) + 4 * 10  # 6 sets: 4 bootstrap
    assert mipro.estimate_runs(train_size=10, val_size=200) == 100 + 10 * 35 + 2 * 100 + 4 * 10
    assert mipro.estimate_prompt_model_calls(16) == 3 + 3 * 3  # data summary + 3 x (program, module, instruction)
    assert mipro.estimate_prompt_model_calls(500) == 11 + 3 * 3  # the summary reads at most 10 batches
    zero_shot_mipro = get_method("MIPROv2", MethodSettings(max_bootstrapped_demos=0, max_labeled_demos=0))
    assert zero_shot_mipro.estimate_prompt_model_calls(16) == 3 + 3 * 6  # 6 instructions without demos
    bfrs = get_method("BootstrapFewShotWithRandomSearch")
    assert bfrs.estimate_runs(train_size=20, val_size=10) == 19 * 10 + 17 * 20


def test_price_lookup_and_cost_arithmetic():
    price = litellm_price("openai/gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13")
    assert (price.input, price.output) == (5.0, 15.0) and price.source.startswith("litellm:")
    assert litellm_price("scripted/oracle", "scripted/oracle") is None
    assert "together_ai/meta-llama/Llama-3-8b" in litellm_keys("together/llama-3-8b", "meta/Llama-3-8b")
    assert cost_usd(1_000_000, 1_000_000, price) == 20.0
    assert cost_usd(1234, 567, price) == round((1234 * 5 + 567 * 15) / 1e6, 6)
    assert cost_usd(10, 10, None) is None


def test_grid_cost_uses_the_core_price_table():
    from helm_dspy.grid import cost

    assert cost.litellm_price is litellm_price


def test_manifest_cost_from_counted_tokens(workspace, monkeypatch):
    import helm_dspy.optimize.run as run

    monkeypatch.setattr(run, "price_of", lambda deployment, model_name=None, given=None: Price(5.0, 15.0, "test"))
    usage = optimize(options(workspace, "zeroshot-cot", model="scripted/tokenized"), out=lambda line: None).manifest[
        "usage"
    ]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost_usd"] == round((usage["prompt_tokens"] * 5 + usage["completion_tokens"] * 15) / 1e6, 6)
    assert usage["price_usd_per_1m_tokens"] == {"input": 5.0, "output": 15.0, "source": "test"}

    untokenized = optimize(options(workspace, "zeroshot-cot"), out=lambda line: None).manifest["usage"]
    assert untokenized["cost_usd"] is None and "token counts unavailable" in untokenized["cost_note"]


def test_manifest_cost_is_null_without_a_price(workspace):
    usage = optimize(options(workspace, "zeroshot-cot", model="scripted/tokenized"), out=lambda line: None).manifest[
        "usage"
    ]
    assert usage["cost_usd"] is None and "no known price for scripted/tokenized" in usage["cost_note"]


def test_report_cost_column():
    from helm_dspy.report.report import ReportRow, Run, attach_costs, base_deployment, format_table

    def row(model, method, usage):
        return ReportRow("medbullets", model, method, "exact_match", 10, 0.5, 0.6, 0.1, 0.0, 0.2, 0.4, 0.8, usage)

    gpt = "openai/gpt-4o-2024-05-13"
    rows = [
        row(gpt, "baseline", {"num_prompt_tokens": 1000.0, "num_output_tokens": 100.0}),
        row(gpt, "MIPROv2", {"dspy_prompt_tokens": 20000.0, "dspy_completion_tokens": 3000.0, "dspy_lm_calls": 10}),
        row("scripted/oracle", "baseline", {"num_prompt_tokens": 1000.0, "num_output_tokens": 100.0}),
    ]
    runs = [Run("r", r.scenario, r.model, r.method, r.metric, {}, deployment=r.model) for r in rows]
    attach_costs(rows, runs)
    assert rows[0].cost_usd == round((1000 * 5 + 100 * 15) / 1e6, 6)
    assert rows[1].cost_usd == round((20000 * 5 + 3000 * 15) / 1e6, 6)
    assert rows[2].cost_usd is None
    table = format_table(rows)
    assert "USD" in table.splitlines()[0] and f"{rows[1].cost_usd:.4f}" in table
    assert "USD" not in format_table([rows[2]]).splitlines()[0]  # no price known: no column
    derived = "openai/gpt-4o-2024-05-13-helmdspy-miprov2@medbullets@deployment=openai/gpt-4o-2024-05-13"
    assert base_deployment(derived, gpt, derived=True) == gpt
    assert base_deployment("together/llama@medbullets", "meta/llama", derived=True) == "meta/llama"
    assert base_deployment(None, gpt, derived=False) == gpt


def test_a_plans_price_reaches_child_processes(monkeypatch):
    from helm_dspy.core.prices import PRICES_ENV, price_of, prices_env

    monkeypatch.delenv(PRICES_ENV, raising=False)
    assert price_of("scripted/oracle") is None
    monkeypatch.setenv(PRICES_ENV, prices_env({"scripted/oracle": Price(2.0, 8.0)})[PRICES_ENV])
    price = price_of("scripted/oracle")  # what optimize's manifest and the report use in a grid's children
    assert (price.input, price.output, price.source) == (2.0, 8.0, "plan")
    assert price_of("scripted/oracle", given=Price(1.0, 1.0)).input == 1.0  # an explicit price first
    gpt = price_of("openai/gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13")
    assert gpt is not None and gpt.source.startswith("litellm:")  # others: litellm's table
