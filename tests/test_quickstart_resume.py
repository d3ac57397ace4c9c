"""``helm-dspy quickstart`` interrupted mid-way and rerun continues where it stopped (real data).

The model is the fault-injecting server answering after 0.5 s a call, so each helm-run run takes seconds and the
interrupt lands between runs deterministically (a scripted in-process model finished all three before it).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest
from conftest import BIN, OFFLINE_ENV, REPO_ROOT, interruptible, run_command
from fault_server import FaultServer, write_fault_deployment

pytestmark = pytest.mark.slow  # a quickstart subprocess interrupted

BASELINE_RUN = "medbullets:model=fault_slow,holdout=4"  # --max-val 2 --max-train 2: a holdout of 2 x 2


def cache_rows(root) -> int:
    with sqlite3.connect(root / "prod_env" / "cache" / "fault.sqlite") as connection:
        return connection.execute("select count(*) from unnamed").fetchone()[0]


@pytest.fixture
def slow_server(tmp_path):
    answers = tmp_path / "answers.json"
    answers.write_text("{}")
    server = FaultServer(answers, delay_s=0.5).start()
    yield server
    server.stop()


def test_quickstart_resumes_after_an_interrupt(mirror_dir, tmp_path, slow_server):
    write_fault_deployment(tmp_path / "prod_env", "fault/slow", slow_server)
    args = ["helm-dspy", "quickstart", "--model", "fault/slow", "--scenarios", "medbullets"]
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
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 600
    while not list(suite.glob("*/stats.json")):  # interrupt once the first run is done, during the others
        assert first.poll() is None, f"quickstart ended before the interrupt: {first.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGINT)
    first.wait(timeout=120)
    interrupted = time.time_ns()
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
    resumed = [path for path in suite.glob("*/stats.json") if path not in stamps]
    assert len(resumed) == 3 - len(finished) and baseline_stats.exists()  # the unfinished runs were run now
    assert all(path.stat().st_mtime_ns > interrupted for path in resumed)
    assert cache_rows(tmp_path) >= calls_before  # calls made before the interrupt stay cached (none repeated)
    rows = json.loads((suite / "helm_dspy_report.json").read_text())
    assert {row["method"] for row in rows} == {"baseline", "BootstrapFewShotWithRandomSearch", "zeroshot-cot"}
    assert all(row["n"] == 2 for row in rows)  # every method on the same 2 held-out test instances
