"""Against a provider that fails, stalls, rate-limits and rejects keys (tests/fault_server.py).

HELM's retry schedule (5 attempts, 10-80 s apart) is kept in count but not in time by
tests/fast_retries (on PYTHONPATH of the subprocesses, in-process by ``fast_retries``), except in the one
test that checks the real schedule end to end. DSPy's straggler timeout (120 s) is lowered the same way.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_command
from fault_server import FaultServer, write_fault_deployment

ENTRY = "medbullets:holdout=0.2"
HELM_ATTEMPTS = 5
"""HELM's AutoClient sends a failing request this many times (helm.proxy.retry.retry_request)."""

pytestmark = [pytest.mark.usefixtures("mirror_dir"), pytest.mark.slow]  # subprocesses against a local server


def fresh_key() -> str:
    return "sk-test-" + secrets.token_hex(16)


@pytest.fixture
def server(tmp_path):
    answers = tmp_path / "answers.json"
    answers.write_text("{}")
    fault = FaultServer(answers).start()
    yield fault
    fault.stop()


def env(tmp_path: Path, mirror_dir: Path, straggler_s: float | None = None, fast: bool = True) -> dict[str, str]:
    paths = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "fast_retries"), os.environ.get("PYTHONPATH", "")]
    values = {
        "PYTHONPATH": os.pathsep.join(paths),
        "HELM_DSPY_DATA_DIR": str(mirror_dir),
        "HELM_DSPY_TEST_FAST_RETRIES": "1" if fast else "0",
        "HELM_DSPY_LOG": str(tmp_path / "helm-dspy.log"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }
    if straggler_s is not None:
        values["HELM_DSPY_TEST_STRAGGLER_TIMEOUT"] = str(straggler_s)
    return values


def optimize_cli(tmp_path, mirror_dir, model: str, *extra: str, timeout: int = 300, **env_options):
    args = ["helm-dspy", "optimize", "--scenario", ENTRY, "--model", model]
    args += ["--optimizer", "BootstrapFewShotWithRandomSearch", "--num-candidates", "1"]
    args += ["--max-train", "4", "--max-val", "6", "--max-tokens", "64", *extra]
    return run_command(args, cwd=tmp_path, env=env(tmp_path, mirror_dir, **env_options), timeout=timeout)


def helm_run(tmp_path, mirror_dir, *entries: str, suite: str = "s", extra=(), **env_options):
    args = ["helm-run", "--run-entries", *entries, "--suite", suite, "--max-eval-instances", "1", "-n", "1", *extra]
    return run_command(args, cwd=tmp_path, env=env(tmp_path, mirror_dir, **env_options), timeout=600)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("helm-dspy: error:")]


def everything_written(root: Path) -> str:
    """Every text file under ``root`` and every sqlite value, as one string (to look for a key in)."""
    parts = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".sqlite":
            with sqlite3.connect(path) as connection:
                tables = [row[0] for row in connection.execute("select name from sqlite_master where type='table'")]
                for table in tables:
                    parts += [str(row) for row in connection.execute(f"select * from {table}")]  # noqa: S608
        else:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


# --- never hang, never multiply retries ----------------------------------------------------------------------


def test_optimize_against_a_dead_slow_provider_ends_in_one_line_with_threads(server, tmp_path, mirror_dir):
    """Every call fails slowly (longer than DSPy's straggler timeout): before, DSPy resubmitted forever."""
    server.mode, server.delay_s = "500", 0.4  # 5 attempts: 2 s per failing call, straggler timeout 1 s
    write_fault_deployment(tmp_path / "prod_env", "fault/dead", server)
    started = time.monotonic()
    result = optimize_cli(tmp_path, mirror_dir, "fault/dead", "--num-threads", "4", straggler_s=1, timeout=240)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result)
    assert "every call to fault/dead failed" in line and "500" in line
    assert "Traceback" not in result.stderr
    # The first calls in flight (4 threads) each went through HELM's 5 attempts; nothing was sent again.
    assert max(server.per_request.values()) == HELM_ATTEMPTS
    assert server.requests <= 4 * HELM_ATTEMPTS
    assert elapsed < 120
    assert not (tmp_path / "agents").exists()


def test_optimize_partly_failing_provider_finishes_and_counts_failures(server, tmp_path, mirror_dir):
    """Some prompts always fail: the run finishes, their answers score 0, the manifest counts them."""
    server.mode, server.delay_s, server.fail_one_in = "flaky", 0.3, 3
    write_fault_deployment(tmp_path / "prod_env", "fault/flaky", server)
    result = optimize_cli(tmp_path, mirror_dir, "fault/flaky", "--num-threads", "2", straggler_s=1, timeout=280)
    assert result.returncode == 0, result.stderr[-2000:]
    [manifest_path] = (tmp_path / "agents").rglob("*.manifest.json")
    usage = json.loads(manifest_path.read_text())["usage"]
    failing = {key: server.per_request[key] for key in server.failing_requests}
    assert failing, "the sample should hit some failing prompts"
    assert usage["failed_lm_calls"] >= len(failing)
    assert set(failing.values()) == {HELM_ATTEMPTS}  # each failing request: HELM's attempts once, never again


@pytest.mark.parametrize("mode", ["429", "stall"])
def test_optimize_rate_limited_or_stalled_provider_is_one_line(server, tmp_path, mirror_dir, mode):
    server.mode, server.stall_s = mode, 3
    write_fault_deployment(tmp_path / "prod_env", "fault/bad", server, timeout=0.5)
    result = optimize_cli(tmp_path, mirror_dir, "fault/bad", "--num-threads", "2", timeout=240)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result)
    assert "every call to fault/bad failed" in line
    assert ("429" in line or "Rate limit" in line) if mode == "429" else ("timed out" in line.lower())
    assert max(server.per_request.values()) == HELM_ATTEMPTS


def test_helm_run_dspy_against_dead_provider_sends_no_more_than_the_baseline(server, tmp_path, mirror_dir):
    server.mode = "500"
    write_fault_deployment(tmp_path / "prod_env", "fault/dead", server)
    baseline = helm_run(tmp_path, mirror_dir, f"{ENTRY.replace(':', ':model=fault/dead,')}", suite="base")
    baseline_requests = server.requests
    server.reset_counts()
    agent = helm_run(tmp_path, mirror_dir, f"{ENTRY.replace(':', ':model=fault/dead,')},dspy=zeroshot-cot")
    assert baseline_requests == HELM_ATTEMPTS
    assert server.requests <= baseline_requests, (server.requests, baseline_requests)
    assert (agent.returncode != 0) == (baseline.returncode != 0)


def test_helm_run_dspy_without_api_key_is_one_line_before_any_call(server, tmp_path, mirror_dir):
    prod_env = tmp_path / "prod_env"
    prod_env.mkdir()
    (prod_env / "model_deployments.yaml").write_text(
        "model_deployments:\n  - name: keyless/model\n    model_name: keyless/model\n    client_spec:\n"
        f"      class_name: helm.clients.openai_client.OpenAIClient\n      args: {{base_url: {server.url}}}\n"
    )
    result = helm_run(tmp_path, mirror_dir, "medbullets:model=keyless/model,holdout=0.2,dspy=zeroshot-cot")
    assert result.returncode != 0
    [line] = error_lines(result)
    assert "needs an API key" in line and "keyless" in line
    assert server.requests == 0
    assert not list((tmp_path / "benchmark_output" / "runs" / "s").glob("*"))


# --- keys never print -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key_in_args", [True, False], ids=["key-in-deployment-args", "key-in-credentials"])
def test_rejected_key_never_printed_or_written(server, tmp_path, mirror_dir, key_in_args):
    """The provider quotes the Authorization header in its 401; the key appears nowhere we print or write."""
    key = fresh_key()
    server.mode = "401"
    write_fault_deployment(tmp_path / "prod_env", "fault/keyed", server, api_key=key, key_in_args=key_in_args)
    result = optimize_cli(tmp_path, mirror_dir, "fault/keyed", "--num-threads", "2")
    assert result.returncode == 2
    [line] = error_lines(result)
    assert "Incorrect API key provided" in line and "***" in line
    verbose = optimize_cli(tmp_path, mirror_dir, "fault/keyed", "--num-threads", "1", "--verbose")
    assert "Incorrect API key provided" in verbose.stderr and "Traceback" in verbose.stderr  # HELM's log, masked
    entry = "medbullets:model=fault/keyed,holdout=0.2"
    runs = [helm_run(tmp_path, mirror_dir, entry), helm_run(tmp_path, mirror_dir, f"{entry},dspy=zeroshot-cot")]
    printed = "\n".join(r.stdout + r.stderr for r in [result, verbose, *runs])
    assert "Incorrect API key provided" in printed
    written = everything_written(tmp_path)
    if key_in_args:  # the user put it in model_deployments.yaml: that file is theirs
        written = written.replace(key, "", 1)
    else:
        written = written.replace(f'fault/keyedApiKey: "{key}"', "").replace(f'faultApiKey: "{key}"', "")
    assert key not in printed
    assert key[8:] not in printed
    assert key not in written


def test_bad_credentials_conf_under_helm_run_is_one_line(server, tmp_path, mirror_dir):
    write_fault_deployment(tmp_path / "prod_env", "fault/ok", server)
    (tmp_path / "prod_env" / "credentials.conf").write_text('openaiApiKey: "unterminated\n{{{\n')
    result = helm_run(tmp_path, mirror_dir, "medbullets:model=fault/ok,holdout=0.2")
    assert result.returncode != 0
    [line] = error_lines(result)
    assert "credentials.conf is not valid HOCON" in line
    assert "Traceback" not in result.stderr + result.stdout
    assert server.requests == 0


# --- --disable-cache ------------------------------------------------------------------------------------


def test_disable_cache_is_honoured_by_dspy_runs(server, tmp_path, mirror_dir):
    write_fault_deployment(tmp_path / "prod_env", "fault/ok", server)
    entry = "medbullets:model=fault/ok,holdout=0.2,dspy=zeroshot-cot"
    first = helm_run(tmp_path, mirror_dir, entry, suite="a", extra=("--disable-cache",))
    assert first.returncode == 0, first.stderr[-2000:]
    first_requests = server.requests
    second = helm_run(tmp_path, mirror_dir, entry, suite="b", extra=("--disable-cache",))
    assert second.returncode == 0, second.stderr[-2000:]
    assert first_requests > 0 and server.requests == 2 * first_requests
    assert not list((tmp_path / "prod_env").rglob("*.sqlite"))


# --- HELM's real retry schedule (minutes): the dead provider ends within the first calls' retries ------------


@pytest.mark.slow
def test_dead_provider_real_retry_schedule_four_threads(server, tmp_path, mirror_dir):
    """No test shortcuts: HELM waits 10+20+40+80 s per failing call, DSPy resubmits stragglers after 120 s."""
    server.mode = "500"
    write_fault_deployment(tmp_path / "prod_env", "fault/dead", server)
    started = time.monotonic()
    result = optimize_cli(tmp_path, mirror_dir, "fault/dead", "--num-threads", "4", fast=False, timeout=400)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-2000:]
    assert "every call to fault/dead failed" in error_lines(result)[0]
    assert 150 <= elapsed < 230, elapsed  # one call's retries (150 s) plus start-up, not a second round
    assert max(server.per_request.values()) == HELM_ATTEMPTS
