"""Bad input is checked before it costs anything: one ``helm-dspy: error:`` line, a non-zero exit, no traceback,
nothing left behind (issue 10).

Unit-level checks drive the same code in-process; the ``slow`` ones run ``helm-run`` / ``helm-dspy`` as a user
would, on HELM's built-in offline model ``simple/model1`` or scripted deployments (tests/scripted_client.py).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import BIN, OFFLINE_ENV, REPO_ROOT, run_command

from helm_dspy.errors import UserError

TESTS = REPO_ROOT / "tests"
PYTHONPATH = os.pathsep.join([str(TESTS), str(REPO_ROOT)])
"""Subprocesses import the scripted clients, and helm_dspy from this checkout."""
BFRS = "BootstrapFewShotWithRandomSearch"


def run_specs_for(entry: str):
    """HELM's run specs for one run entry, built as helm-run builds them (expanders included)."""
    from helm.benchmark.run_spec_factory import construct_run_specs
    from helm.common.object_spec import parse_object_spec

    import helm_dspy.plugin  # noqa: F401  (our run specs and expanders)

    return construct_run_specs(parse_object_spec(entry))


def one_error_line(result, cwd: Path, suite: str | None = None) -> str:
    """Non-zero exit, no traceback, exactly one error line (the last one), no run folder for ``suite``."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("helm-dspy: error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    if suite is not None:
        runs = cwd / "benchmark_output" / "runs" / suite
        assert not [p for p in runs.glob("*") if p.name != "eval_cache"], list(runs.glob("*"))
    return errors[0]


def helm_run(cwd: Path, *entries: str, suite: str = "bad", instances: int = 2, env: dict | None = None):
    args = ["helm-run", "--run-entries", *entries, "--suite", suite, "--max-eval-instances", str(instances)]
    return run_command(args, cwd=cwd, env={"PYTHONPATH": PYTHONPATH, **(env or {})}, timeout=600)


# --- 1. holdout= values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,message,hint",
    [
        ("abc", "holdout='abc' is neither a count nor a fraction", "; use e.g. holdout=50 or 0.2"),
        ("inf", "holdout='inf' is neither a count nor a fraction", "; use e.g. holdout=50 or 0.2"),
        ("2.0", "holdout fraction 2.0 must be between 0 and 1 (exclusive)", "; use a count or a fraction between 0"),
        ("5000", "holdout=5000 takes 5000 of 308 instances", "; use a count from 2 to 307 or a fraction between"),
        ("1", "holdout=1 takes 1 of 308 instances", "; use a count from 2 to 307 or a fraction between"),
    ],
)
def test_bad_holdout_stops_before_any_run(use_mirror, value, message, hint):
    with pytest.raises(SystemExit) as stop:
        run_specs_for(f"medbullets:model=simple/model1,holdout={value}")
    text = str(stop.value.code)
    assert text.startswith(f"helm-dspy: error: {message}") and hint in text and "\n" not in text, text


def test_bad_holdout_seed_stops_before_any_run(use_mirror):
    with pytest.raises(SystemExit, match="^helm-dspy: error: holdout_seed='x' is not an integer"):
        run_specs_for("medbullets:model=simple/model1,holdout=0.2,holdout_seed=x")


@pytest.mark.slow
@pytest.mark.parametrize(
    "value,message",
    [
        ("abc", "holdout='abc' is neither a count nor a fraction"),
        ("2.0", "holdout fraction 2.0 must be between 0 and 1"),
        ("5000", "holdout=5000 takes 5000 of 308 instances"),
    ],
)
def test_helm_run_with_a_bad_holdout_is_one_line(use_mirror, tmp_path, value, message):
    result = helm_run(tmp_path, f"medbullets:model=simple/model1,holdout={value}")
    assert one_error_line(result, tmp_path, "bad").startswith(f"helm-dspy: error: {message}")


# --- 2. unknown base deployment with dspy= ------------------------------------------------------------------


def test_unknown_base_deployment_is_named(use_mirror):
    with pytest.raises(SystemExit) as stop:
        run_specs_for("medbullets:model=nope/unknown,dspy=zeroshot-cot")
    message = str(stop.value.code)
    assert message.startswith("helm-dspy: error: in medbullets:model=nope_unknown: HELM knows no model deployment")
    assert "'nope/unknown'" in message and "model_deployments.yaml" in message and "after model=" not in message
    with pytest.raises(SystemExit, match="put dspy=zeroshot-cot after model="):  # the real ordering mistake
        run_specs_for("medbullets:dspy=zeroshot-cot,model=simple/model1")


@pytest.mark.slow
def test_helm_run_with_an_unknown_deployment_is_one_line(use_mirror, tmp_path):
    result = helm_run(tmp_path, "medbullets:model=nope/unknown,dspy=zeroshot-cot")
    line = one_error_line(result, tmp_path, "bad")
    assert "HELM knows no model deployment 'nope/unknown'; declare it in " in line
    assert line.endswith("(helm-run --local-path) or use a built-in one")


# --- 3. a pickle saved as an agent .json --------------------------------------------------------------------


def pickled_agent(path: Path) -> Path:
    """What ``save_program=True`` writes (cloudpickle), under the name a JSON agent has."""
    import cloudpickle
    import dspy

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cloudpickle.dumps(dspy.ChainOfThought("inputs -> output")))
    return path


def test_pickle_named_json_is_refused_without_unpickling(tmp_path, monkeypatch):
    import pickle

    from helm_dspy.core.program import load_program

    agent = pickled_agent(tmp_path / f"{BFRS}.json")
    monkeypatch.setattr(pickle, "loads", lambda *args, **kwargs: pytest.fail("unpickled"))
    with pytest.raises(UserError, match="is not a UTF-8 JSON state file \\(pickled programs are never loaded\\); "):
        load_program(agent)


@pytest.mark.slow
def test_helm_run_with_a_pickled_agent_is_one_line(use_mirror, tmp_path):
    pickled_agent(tmp_path / "agents" / "medbullets" / "simple" / "model1" / f"{BFRS}.json")
    result = helm_run(tmp_path, f"medbullets:model=simple/model1,holdout=0.2,dspy={BFRS}")
    assert "is not a UTF-8 JSON state file" in one_error_line(result, tmp_path, "bad")


# --- 4. no mirror and no network ----------------------------------------------------------------------------


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No mirror, every download refused at once (as behind a firewall), HELM's output under tmp_path."""
    import datasets
    from helm.benchmark import runner
    from helm.benchmark.scenarios import medcalc_bench_scenario

    calls = []

    def refused(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    def hub_unreachable(path, *args, **kwargs):
        calls.append(path)
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv("HELM_DSPY_DATA_DIR", raising=False)
    monkeypatch.setattr(urllib.request, "urlretrieve", refused)
    monkeypatch.setattr(datasets, "load_dataset", hub_unreachable)
    monkeypatch.setattr(medcalc_bench_scenario, "load_dataset", hub_unreachable)
    monkeypatch.setattr(runner, "_BENCHMARK_OUTPUT_PATH", str(tmp_path / "benchmark_output"))
    return calls


@pytest.mark.parametrize(
    "scenario,upstream,mirror_file",
    [
        ("medbullets", "https://raw.githubusercontent.com/HanjieChen/", "medbullets/medbullets_op5.csv"),
        ("medec", "https://raw.githubusercontent.com/abachaa/MEDEC/", "medec/MEDEC-MS-TestSet-"),
        ("medcalc_bench", "huggingface.co/datasets/ncbi/MedCalc-Bench", "medcalc_bench/test_data.csv"),
        ("head_qa", "huggingface.co/datasets/dvilares/head_qa", "head_qa/HEAD_EN/test_HEAD_EN.json"),
    ],
)
def test_failed_download_is_one_line_before_any_run(offline, scenario, upstream, mirror_file):
    started = time.monotonic()
    with pytest.raises(SystemExit) as stop:  # while helm-run builds run specs: before any run folder exists
        run_specs_for(f"{scenario}:model=simple/model1")
    message = str(stop.value.code)
    assert message.startswith(f"helm-dspy: error: {scenario}: could not download {upstream}"), message
    assert "; without network, point HELM_DSPY_DATA_DIR (or --data-dir) at a data mirror holding " in message
    assert mirror_file in message and "\n" not in message
    assert offline and time.monotonic() - started < 30  # one attempt: HELM's downloader does not retry


def test_failed_download_in_optimize_is_a_user_error(offline, tmp_path):
    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.optimize.dataset import prepare

    for entry in ("medbullets", "medcalc_bench:holdout=20"):
        with pytest.raises(UserError, match="could not download .*HELM_DSPY_DATA_DIR"):
            prepare(entry, "simple/model1", HelmSession(str(tmp_path / "prod_env")), str(tmp_path / "out"))


def offline_env(tmp_path: Path) -> dict[str, str]:
    """A subprocess environment without mirror or network: urllib goes through a proxy that refuses at once."""
    env = {key: value for key, value in os.environ.items() if key != "HELM_DSPY_DATA_DIR"}
    env = {key: value for key, value in env.items() if key.lower() not in ("no_proxy", "all_proxy")}
    env.update(OFFLINE_ENV)
    refused = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
    env.update({"http_proxy": refused, "https_proxy": refused, "HTTP_PROXY": refused, "HTTPS_PROXY": refused})
    env.update({"HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": PYTHONPATH})
    return env


@pytest.mark.slow
def test_helm_run_and_optimize_without_mirror_or_network(tmp_path):
    env = offline_env(tmp_path)

    def run(*args: str):
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    started = time.monotonic()
    result = run("helm-run", "--run-entries", "medbullets:model=simple/model1", "--suite", "off", "-m", "2")
    line = one_error_line(result, tmp_path, "off")
    assert line.startswith("helm-dspy: error: medbullets: could not download https://raw.githubusercontent.com/")
    assert line.endswith("at a data mirror holding medbullets/medbullets_op5.csv")
    result = run(
        "helm-dspy",
        "optimize",
        "--scenario",
        "medcalc_bench:holdout=20",
        "--model",
        "simple/model1",
        "--optimizer",
        "MIPROv2",
    )
    assert result.returncode == 2
    assert "medcalc_bench: could not download huggingface.co/datasets/ncbi/MedCalc-Bench" in one_error_line(
        result, tmp_path
    )
    assert time.monotonic() - started < 120
    assert not (tmp_path / "agents").exists()
    written = [p for p in (tmp_path / "benchmark_output").rglob("*") if p.is_file()]
    assert all(p.suffix == ".lock" for p in written), written  # no half-downloaded file; HELM's own file locks stay


# --- 5. two optimizations of one agent ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lock_workspace(mirror_dir, tmp_path_factory) -> Path:
    """prod_env with scripted/oracle and scripted/gated (answers only once the file ``gate`` exists)."""
    root = tmp_path_factory.mktemp("lock")
    (root / "answers.json").write_text("{}")
    (root / "gated_client.py").write_text(
        "import os, time\n"
        "from scripted_client import ScriptedClient\n\n\n"
        "class GatedClient(ScriptedClient):\n"
        "    def make_request(self, request):\n"
        "        deadline = time.monotonic() + 300\n"
        "        while not os.path.exists(os.environ['GATE']) and time.monotonic() < deadline:\n"
        "            time.sleep(0.1)\n"
        "        return super().make_request(request)\n"
    )
    deployments = []
    for name, client in (
        ("scripted/oracle", "scripted_client.ScriptedClient"),
        ("scripted/gated", "gated_client.GatedClient"),
    ):
        spec = {"class_name": client, "args": {"answers_path": str(root / "answers.json"), "mode": "oracle"}}
        deployments.append({"name": name, "model_name": name, "client_spec": spec})
    (root / "prod_env").mkdir()
    (root / "prod_env" / "model_deployments.yaml").write_text(yaml.safe_dump({"model_deployments": deployments}))
    return root


def optimize_options(root: Path, model: str = "scripted/oracle"):
    from helm_dspy.core.methods import MethodSettings
    from helm_dspy.optimize.run import OptimizeOptions

    return OptimizeOptions(
        scenario="medbullets:holdout=0.2",
        model=model,
        optimizer="zeroshot-cot",
        agents_dir=str(root / "agents"),
        local_path=str(root / "prod_env"),
        output_path=str(root / "benchmark_output"),
        max_train=2,
        max_val=2,
        force=True,
        settings=MethodSettings(num_threads=1, seed=1),
    )


def agent_file(root: Path, model: str = "scripted/oracle") -> Path:
    return root / "agents" / "medbullets" / model / "zeroshot-cot.json"


def test_second_optimize_of_one_agent_refuses(lock_workspace):
    from helm_dspy.optimize.agent_lock import agent_lock
    from helm_dspy.optimize.run import optimize

    agent = agent_file(lock_workspace)
    with agent_lock(agent):  # held by "another optimize" (a second open file: flock conflicts in one process too)
        assert agent.with_name("zeroshot-cot.json.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(UserError) as error:
            optimize(optimize_options(lock_workspace), out=lambda line: None)
    assert str(error.value) == (
        f"another helm-dspy optimize is writing {agent} (pid {os.getpid()}); wait for it to finish, "
        f"or stop it (kill {os.getpid()}) and rerun"
    )
    assert not agent.exists() and not agent.parent.exists()  # refused: nothing written, no folder left
    result = optimize(optimize_options(lock_workspace), out=lambda line: None)  # free again: it runs
    assert result.agent_path == agent and agent.is_file()
    assert sorted(p.name for p in agent.parent.iterdir()) == ["zeroshot-cot.json", "zeroshot-cot.manifest.json"]


def test_lock_of_a_killed_holder_does_not_block(tmp_path):
    from helm_dspy.optimize.agent_lock import agent_lock, lock_path

    agent = tmp_path / "agents" / "s" / "m" / "MIPROv2.json"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom helm_dspy.optimize.agent_lock import agent_lock\n"
        "with agent_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(300)\n"
    )
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    holder = subprocess.Popen([sys.executable, "-c", code, str(agent)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"writing {agent} \\(pid {holder.pid}\\)"):
            with agent_lock(agent):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    assert lock_path(agent).exists()  # SIGKILL leaves the file; the kernel released the flock
    with agent_lock(agent):
        assert lock_path(agent).read_text().strip() == str(os.getpid())
    assert not lock_path(agent).exists()


@pytest.mark.slow
def test_cli_optimize_refuses_while_the_lock_is_held(lock_workspace, mirror_dir):
    from helm_dspy.optimize.agent_lock import agent_lock

    agent = agent_file(lock_workspace)
    args = ["helm-dspy", "optimize", "--scenario", "medbullets:holdout=0.2", "--model", "scripted/oracle"]
    args += ["--optimizer", "zeroshot-cot", "--max-train", "2", "--max-val", "2", "--force"]
    env = {"PYTHONPATH": PYTHONPATH, "HELM_DSPY_DATA_DIR": str(mirror_dir)}
    with agent_lock(agent):
        result = run_command(args, cwd=lock_workspace, env=env, timeout=300)
    assert result.returncode == 2
    line = one_error_line(result, lock_workspace)
    assert line == (
        f"helm-dspy: error: another helm-dspy optimize is writing {agent.relative_to(lock_workspace)} "
        f"(pid {os.getpid()}); wait for it to finish, or stop it (kill {os.getpid()}) and rerun"
    )


@pytest.mark.slow
def test_two_concurrent_cli_optimizations(lock_workspace, mirror_dir):
    agent = agent_file(lock_workspace, "scripted/gated")
    lock = agent.with_name(agent.name + ".lock")
    gate = lock_workspace / "gate"
    args = ["helm-dspy", "optimize", "--scenario", "medbullets:holdout=0.2", "--model", "scripted/gated"]
    args += ["--optimizer", "zeroshot-cot", "--max-train", "2", "--max-val", "2"]
    env = {
        **os.environ,
        **OFFLINE_ENV,
        "PYTHONPATH": os.pathsep.join([PYTHONPATH, str(lock_workspace)]),
        "HELM_DSPY_DATA_DIR": str(mirror_dir),
        "GATE": str(gate),
    }

    def start():
        return subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            cwd=lock_workspace,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start()
    try:
        deadline = time.monotonic() + 240
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lock.exists(), first.communicate(timeout=60)
        second = start()
        out, err = second.communicate(timeout=300)
        result = subprocess.CompletedProcess(args, second.returncode, out, err)
        assert second.returncode == 2
        assert f"is writing {agent.relative_to(lock_workspace)} (pid {first.pid})" in one_error_line(
            result, lock_workspace
        )
        gate.touch()
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-3000:]
    finally:
        gate.touch()
        first.kill()
    assert agent.is_file() and not lock.exists()


# --- 6. report on a suite with nothing to compare -----------------------------------------------------------


def make_run(name: str, method: str, max_eval: int | None = 3, run_dir: Path | None = None):
    from helm_dspy.report.report import Run, scenario_of

    run = Run(name, scenario_of(name), "simple/model1", method, "exact_match", {"id1": 1.0, "id2": 0.0})
    run.max_eval_instances, run.run_dir = max_eval, run_dir
    return run


def test_report_with_only_baselines_has_nothing_to_compare(tmp_path):
    from helm_dspy.report.report import compare

    run_dir = tmp_path / "benchmark_output" / "runs" / "b" / "medbullets:model=simple_model1,holdout=0.2"
    with pytest.raises(UserError) as error:
        compare([make_run("medbullets:model=simple_model1,holdout=0.2", "baseline", run_dir=run_dir)])
    message = str(error.value)
    assert message.startswith("nothing to compare: the suite holds only baseline runs (1), no dspy= run; add one")
    assert "medbullets:model=simple/model1,holdout=0.2,dspy=zeroshot-cot --max-eval-instances 3" in message


def test_missing_baseline_hint_keeps_holdout_and_instances(tmp_path, monkeypatch):
    from helm_dspy.report.report import compare

    monkeypatch.chdir(tmp_path)
    name = "head_qa:language=en,category=None,model=simple_model1,holdout=0.2,dspy=zeroshot-cot"
    run_dir = tmp_path / "benchmark_output" / "runs" / "hq" / name
    with pytest.raises(UserError) as error:
        compare([make_run(name, "zeroshot-cot", run_dir=run_dir)])
    assert str(error.value).endswith(  # category=None would be the string "None" in an entry: 0 instances
        "add it with: helm-run --run-entries head_qa:model=simple/model1,language=en,holdout=0.2 "
        "--max-eval-instances 3 --suite hq"
    )


@pytest.mark.slow
def test_report_hints_run_as_given(use_mirror, tmp_path):
    """The suggested helm-run commands work: a baseline-only suite and a dspy=-only suite, completed by them."""
    entry = "head_qa:model=simple/model1,holdout=0.2"
    assert helm_run(tmp_path, entry, suite="base", instances=3).returncode == 0
    result = run_command(["helm-dspy", "report", "--suite", "base"], cwd=tmp_path)
    assert result.returncode == 2 and one_error_line(result, tmp_path).startswith(
        "helm-dspy: error: nothing to compare: the suite holds only baseline runs (1)"
    )
    assert not list((tmp_path / "benchmark_output" / "runs" / "base").glob("helm_dspy_report*"))

    assert helm_run(tmp_path, f"{entry},dspy=zeroshot-cot", suite="methods", instances=3).returncode == 0
    result = run_command(["helm-dspy", "report", "--suite", "methods"], cwd=tmp_path)
    line = one_error_line(result, tmp_path)
    command = line.split("add it with: ", 1)[1]
    assert command == (
        "helm-run --run-entries head_qa:model=simple/model1,language=en,holdout=0.2 --max-eval-instances 3 "
        "--suite methods"
    )
    added = run_command(shlex.split(command), cwd=tmp_path, env={"PYTHONPATH": PYTHONPATH})
    assert added.returncode == 0, added.stderr[-3000:]
    result = run_command(["helm-dspy", "report", "--suite", "methods"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "benchmark_output" / "runs" / "methods" / "helm_dspy_report.json").read_text())
    assert {row["method"]: row["n"] for row in rows} == {"baseline": 3, "zeroshot-cot": 3}


# --- 7. file modes follow the umask -------------------------------------------------------------------------


def test_agent_manifest_and_report_files_follow_the_umask(tmp_path):
    from helm_dspy.core.files import write_json_atomic
    from helm_dspy.report.report import _atomic

    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        folder = tmp_path / f"{umask:03o}"
        previous = os.umask(umask)
        try:
            write_json_atomic(folder / "agents" / "a.json", {"x": 1})
            _atomic(folder / "report.csv", lambda temp: Path(temp).write_text("a,b\n"))
        finally:
            os.umask(previous)
        assert (folder / "agents" / "a.json").stat().st_mode & 0o777 == mode, f"umask {umask:03o}"
        assert (folder / "report.csv").stat().st_mode & 0o777 == mode, f"umask {umask:03o}"
        assert json.loads((folder / "agents" / "a.json").read_text()) == {"x": 1}
        assert sorted(p.name for p in folder.rglob("*")) == ["a.json", "agents", "report.csv"]  # no temp left
