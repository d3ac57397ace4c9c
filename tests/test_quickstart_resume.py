"""``helm-dspy quickstart`` interrupted mid-way and rerun continues where it stopped (scripted model, real data)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import BIN, OFFLINE_ENV, REPO_ROOT, run_command
from test_evaluate import cache_rows
from test_optimize import write_deployment

pytestmark = pytest.mark.slow  # a quickstart subprocess interrupted

BASELINE_RUN = "medbullets:model=scripted_oracle,holdout=0.2"


def test_quickstart_resumes_after_an_interrupt(mirror_dir, tmp_path):
    answers = tmp_path / "answers.json"
    answers.write_text("{}")
    write_deployment(tmp_path / "prod_env", "scripted/oracle", answers, tokenizer="simple/tokenizer1")
    args = ["helm-dspy", "quickstart", "--model", "scripted/oracle", "--scenarios", "medbullets"]
    args += ["--optimizers", "BootstrapFewShotWithRandomSearch,zeroshot-cot", "--max-eval-instances", "2"]
    args += ["--max-train", "2", "--max-val", "2", "--data-dir", str(mirror_dir)]
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    suite = tmp_path / "benchmark_output" / "runs" / "quickstart"
    baseline_stats = suite / BASELINE_RUN / "stats.json"

    first = subprocess.Popen(
        [str(BIN / args[0]), *args[1:]],
        cwd=tmp_path,
        env={**os.environ, **OFFLINE_ENV, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while not list(suite.glob("*/stats.json")):  # interrupt once the first run is done, during the others
        assert first.poll() is None, f"quickstart ended before the interrupt: {first.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGINT)
    first.wait(timeout=120)
    assert first.returncode != 0, "the interrupt came too late to test resuming"
    assert not (suite / "helm_dspy_report.json").exists()
    finished = list(suite.glob("*/stats.json"))
    assert len(finished) < 3, "every run finished before the interrupt: nothing left to resume"

    agent = next((tmp_path / "agents").rglob("BootstrapFewShotWithRandomSearch.json"))
    stamps = {path: path.stat().st_mtime_ns for path in (agent, *finished)}
    calls_before = cache_rows(tmp_path)

    second = run_command(args, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # agent kept, finished runs skipped
    assert len(list(suite.glob("*/stats.json"))) == 3 and baseline_stats.exists()
    assert cache_rows(tmp_path) > calls_before  # the runs that had not finished were made
    rows = json.loads((suite / "helm_dspy_report.json").read_text())
    assert {row["method"] for row in rows} == {"baseline", "BootstrapFewShotWithRandomSearch", "zeroshot-cot"}
    assert all(row["n"] == 2 for row in rows)  # every method on the same 2 held-out test instances
