"""``helm-dspy grid``: plan checks, the graph scheduler, call limits, dry run, and whole grids against a fault server.

The end-to-end grids run 2 scenarios x 2 models x 2 methods (BFRS at a tiny budget and zeroshot-cot) on the real
mirror, with two HELM OpenAIClient deployments pointed at one local FaultServer that counts every request.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import OFFLINE_ENV, REPO_ROOT, interruptible
from fault_server import FaultServer, write_fault_deployment

from helm_dspy.bridge.limits import CALL_LIMITS_ENV, FileSemaphore, call_slot, limits_env
from helm_dspy.core.methods import MethodSettings
from helm_dspy.grid.cells import Evaluation, build_graph
from helm_dspy.grid.executor import NodeResult
from helm_dspy.grid.options import GridOptions
from helm_dspy.grid.plan import ModelSpec, Price, resolve
from helm_dspy.grid.schedule import Scheduler

GRID_CLI = REPO_ROOT / "tests" / "grid_cli.py"
SCENARIOS = "medbullets:holdout=0.2,head_qa"
METHODS = "BootstrapFewShotWithRandomSearch,zeroshot-cot"
BFRS = "BootstrapFewShotWithRandomSearch"


def settings(**values) -> MethodSettings:
    """A MethodSettings as the CLI gives it: None for every flag not given."""
    blank = {name: None for name in MethodSettings.__dataclass_fields__}
    return MethodSettings(**{**blank, **values})


def options(**values) -> GridOptions:
    return GridOptions(**{"settings": settings(), **values})


def grid_env(tmp_path: Path, mirror_dir: Path) -> dict[str, str]:
    paths = [str(REPO_ROOT / "tests"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        **OFFLINE_ENV,
        "PYTHONPATH": os.pathsep.join(paths),
        "HELM_DSPY_DATA_DIR": str(mirror_dir),
        "HELM_DSPY_LOG": str(tmp_path / "helm-dspy.log"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }


def grid_args(*extra: str) -> list[str]:
    return [sys.executable, str(GRID_CLI), "grid", *extra]


def run_grid(tmp_path: Path, mirror_dir: Path, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        grid_args(*extra), cwd=tmp_path, env=grid_env(tmp_path, mirror_dir), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


# --- the plan: flags and file merged, bad input one line -------------------------------------------------------


def test_flags_override_the_plan(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "scenarios": ["head_qa", {"scenario": "medbullets", "holdout": 0.2}],
                "models": [{"name": "m/a", "max_concurrent_calls": 3, "price": {"input": 1, "output": 2}}, "m/b"],
                "methods": [{"name": BFRS, "settings": {"num_candidates": 2}}, "zeroshot-cot"],
                "optimize": {"max_train": 50, "num_threads": 2},
                "evaluation": {"max_eval_instances": 7},
                "seed": 5,
                "max_parallel": 3,
            }
        )
    )
    grid = resolve(options(plan=str(plan), max_train=9, models=["m/c"], settings=settings(num_candidates=4)))
    assert grid.scenarios == ["head_qa", "medbullets:holdout=0.2"]
    assert [m.name for m in grid.models] == ["m/c"]  # the flag replaces the plan's list
    assert grid.max_train == 9 and grid.max_val == 100  # flag, then built-in default
    assert grid.max_eval_instances == 7 and grid.max_parallel == 3
    bfrs = grid.methods[0].settings
    assert (bfrs.num_candidates, bfrs.num_threads, bfrs.seed) == (4, 2, 5)
    plan_only = resolve(options(plan=str(plan)))
    assert plan_only.models[0].max_concurrent_calls == 3 and plan_only.models[0].price.input == 1
    assert plan_only.methods[0].settings.num_candidates == 2


@pytest.mark.parametrize(
    "plan_text,flags,message",
    [
        ("scenarios: [head_qa]\nmodles: [m/a]\n", [], "unknown key 'modles'"),
        ("scenarios: [head_qa\n", [], "is not valid YAML"),
        ("models:\n  - name: m/a\n    price: {input: 1}\n", [], "price needs input and output"),
        ("optimize: {max_train: many}\n", [], "max_train must be int"),
        ("", ["--methods", "NoSuchMethod"], "unknown method 'NoSuchMethod'"),
        ("", ["--models", "nobody/nothing"], "unknown model deployment 'nobody/nothing'"),
        ("", ["--scenarios", "medbulets"], "unknown scenario 'medbulets'"),
    ],
)
def test_bad_plan_is_one_line_and_writes_nothing(tmp_path, mirror_dir, plan_text, flags, message):
    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_text or "{}\n")
    defaults = {"--scenarios": "head_qa", "--models": "openai/gpt-4o-2024-05-13", "--methods": "zeroshot-cot"}
    for flag, value in defaults.items():
        if flag not in flags and not plan_text:
            flags = [*flags, flag, value]
    before = files_under(tmp_path)
    result = run_grid(tmp_path, mirror_dir, str(plan), *flags, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("helm-dspy: error: ") and message in lines[0], lines
    assert "Traceback" not in result.stderr
    assert files_under(tmp_path) - {"helm-dspy.log", "xdg"} == before  # no prod_env, no agents, no output


# --- the scheduler: a graph, limits, failures ------------------------------------------------------------------


class FakeExecutor:
    """Runs nodes by sleeping; records what ran at once, per deployment."""

    def __init__(self, seconds: dict[str, float], fail: set[str] = frozenset()):
        self.seconds, self.fail = seconds, fail
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.order: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def run(self, node):
        with self.lock:
            self.order.append(("start", node.key))
            self.running[node.model] = self.running.get(node.model, 0) + 1
            self.peak[node.model] = max(self.peak.get(node.model, 0), self.running[node.model])
        time.sleep(self.seconds.get(node.key, 0.05))
        with self.lock:
            self.running[node.model] -= 1
            self.order.append(("end", node.key))
        return NodeResult(node.key not in self.fail, "every call failed")

    def interrupt(self):
        pass

    def close(self):
        pass


def fake_grid(tmp_path, **values):
    grid = resolve(
        options(
            scenarios=["s1", "s2"], models=["m/a", "m/b"], methods=[BFRS, "zeroshot-cot"],
            agents_dir=str(tmp_path / "agents"), output_path=str(tmp_path / "out"), **values,
        )
    )  # fmt: skip
    grid.scenario_keys = {"s1": "s1", "s2": "s2"}
    return grid


def test_an_evaluation_starts_once_its_own_agents_exist(tmp_path):
    grid = fake_grid(tmp_path, max_parallel=4)
    nodes = build_graph(grid)
    slow = f"optimize s2 m/b {BFRS}"
    executor = FakeExecutor({slow: 1.0})
    Scheduler(grid, nodes, executor, out=lambda line: None).run()
    order = executor.order
    assert order.index(("start", "evaluate s1 m/a")) < order.index(("end", slow))  # not a barrier
    assert order.index(("start", "evaluate s2 m/b")) > order.index(("end", slow))
    assert all(node.status == "done" for node in nodes)
    evaluation = next(node for node in nodes if isinstance(node, Evaluation))
    assert evaluation.entries() == ["s1:model=m/a", f"s1:model=m/a,dspy={BFRS}", "s1:model=m/a,dspy=zeroshot-cot"]


def test_a_failed_cell_is_reported_and_the_others_go_on(tmp_path):
    grid = fake_grid(tmp_path, max_parallel=2)
    nodes = build_graph(grid)
    failing = f"optimize s1 m/a {BFRS}"
    lines: list[str] = []
    Scheduler(grid, nodes, FakeExecutor({}, fail={failing}), out=lines.append).run()
    by_key = {node.key: node for node in nodes}
    assert by_key[failing].status == "failed" and f"FAILED {failing}: every call failed" in lines
    assert by_key["evaluate s1 m/a"].methods == ["zeroshot-cot"]  # baseline + the methods that have an agent
    assert sum(node.status == "done" for node in nodes) == len(nodes) - 1
    status = json.loads((tmp_path / "out" / "grid" / "grid" / "status.json").read_text())
    assert {row["status"] for row in status} == {"done", "failed"}


def test_a_retried_node_shows_in_the_progress_and_the_status(tmp_path):
    grid = fake_grid(tmp_path, max_parallel=2)
    nodes = build_graph(grid)
    retried = f"optimize s1 m/a {BFRS}"

    class DiesOnce(FakeExecutor):
        def run(self, node):
            result = super().run(node)
            return NodeResult(result.ok, result.line, retries=int(node.key == retried))

    lines: list[str] = []
    Scheduler(grid, nodes, DiesOnce({}), out=lines.append).run()
    by_key = {node.key: node for node in nodes}
    assert by_key[retried].status == "done" and by_key[retried].retries == 1
    assert any(line.startswith(f"done {retried} (") and "retried after a worker died" in line for line in lines)
    status = json.loads((tmp_path / "out" / "grid" / "grid" / "status.json").read_text())
    assert [row["node"] for row in status if row["retries"]] == [retried]
    from helm_dspy.grid.run import status_table

    table = status_table([by_key[retried]])
    assert retried in table.splitlines()[1] and "done" in table and "retried after a worker died" in table


def test_max_concurrent_calls_bounds_cells_per_deployment(tmp_path):
    grid = fake_grid(tmp_path, max_parallel=4, max_concurrent_calls=4)
    for method in grid.methods:
        method.settings.num_threads = 4  # each cell may make 4 calls at once: one cell per deployment
    grid.eval_num_threads = 4
    executor = FakeExecutor({})
    Scheduler(grid, build_graph(grid), executor, out=lambda line: None).run()
    assert executor.peak == {"m/a": 1, "m/b": 1}


def test_max_cost_usd_stops_new_cells(tmp_path):
    from helm_dspy.core.agents import AgentStore

    grid = fake_grid(tmp_path, max_parallel=1, max_cost_usd=0.5)
    grid.models = [ModelSpec(m.name, price=Price(1e6, 0)) for m in grid.models]
    nodes = build_graph(grid)
    first = nodes[0]

    class Spender(FakeExecutor):
        def run(self, node):
            if node is first:  # the first cell spends $1 (1 token at $1M per 1M tokens)
                path = AgentStore(grid.agents_dir).path("s1", node.model, node.method.name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")
                AgentStore.manifest_path(path).write_text(json.dumps({"usage": {"prompt_tokens": 1}}))
            return super().run(node)

    lines: list[str] = []
    Scheduler(grid, nodes, Spender({}), out=lines.append).run()
    assert first.status == "done"
    assert all(node.status == "skipped" for node in nodes[1:])
    assert any("max_cost_usd 0.5 reached ($1.00)" in line for line in lines)


# --- call limits shared by processes -----------------------------------------------------------------------------


def _hold(directory: str, current, peak, lock) -> None:
    os.environ.update(limits_env(directory, {"m/a": 2}))
    for _ in range(5):
        with call_slot("m/a"):
            with lock:
                current.value += 1
                peak.value = max(peak.value, current.value)
            time.sleep(0.02)
            with lock:
                current.value -= 1


def test_file_semaphore_bounds_holders_across_processes(tmp_path):
    context = multiprocessing.get_context("spawn")
    current, peak, lock = context.Value("i", 0), context.Value("i", 0), context.Lock()
    workers = [context.Process(target=_hold, args=(str(tmp_path), current, peak, lock)) for _ in range(5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert all(worker.exitcode == 0 for worker in workers)
    assert peak.value == 2  # 5 processes contended, never more than 2 slots held


def test_file_semaphore_frees_a_killed_holders_slot(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from helm_dspy.bridge.limits import FileSemaphore; FileSemaphore(sys.argv[2], 'd', 1).acquire();"
         "print('held', flush=True); time.sleep(60)", str(REPO_ROOT), str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    semaphore = FileSemaphore(tmp_path, "d", 1)
    with pytest.raises(TimeoutError):
        semaphore.acquire(timeout=0.2)
    holder.kill()
    holder.wait()
    semaphore.release(semaphore.acquire(timeout=5))  # the kernel released the dead holder's lock


def test_no_limits_env_means_no_slot_and_a_held_slot_is_reentrant(monkeypatch, tmp_path):
    monkeypatch.delenv(CALL_LIMITS_ENV, raising=False)
    with call_slot("anything"):
        pass
    monkeypatch.setenv(CALL_LIMITS_ENV, limits_env(tmp_path, {"m/a": 1})[CALL_LIMITS_ENV])
    with call_slot("m/a"), call_slot("m/a"):  # the same thread through two hooked layers: no deadlock
        with pytest.raises(TimeoutError):
            FileSemaphore(tmp_path, "m/a", 1).acquire(timeout=0.1)  # the one slot is held


# --- prices and the dry run ------------------------------------------------------------------------------------


def test_litellm_price_maps_helm_deployments():
    from helm_dspy.grid.cost import litellm_price

    price = litellm_price("openai/gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13")
    assert (price.input, price.output) == pytest.approx((5.0, 15.0)) and price.source.startswith("litellm:")
    assert litellm_price("scripted/a", "scripted/a") is None


def test_dry_run_bounds_calls_and_dollars(tmp_path, mirror_dir):
    prod_env = tmp_path / "prod_env"
    for name in ("fault/a", "fault/b"):
        write_fault_deployment(prod_env, name, FaultServer(tmp_path / "none.json"))  # never started: no call
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "scenarios": SCENARIOS.split(","),
                "models": [{"name": "fault/a", "price": {"input": 2.5, "output": 10}}, "fault/b"],
                "methods": [{"name": BFRS, "settings": {"num_candidates": 1}}, "zeroshot-cot"],
                "optimize": {"max_train": 3, "max_val": 3},
                "evaluation": {"max_eval_instances": 2},
            }
        )
    )
    result = run_grid(tmp_path, mirror_dir, str(plan), "--dry-run", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    cell = next(line for line in lines if line.startswith(f"optimize head_qa fault/a {BFRS}"))
    assert cell.split()[4] == "24"  # BFRS with 1 candidate: (1+3)x3 valid + (1+1)x3 train + 2x3 scores
    evaluation = next(line for line in lines if line.startswith("evaluate head_qa fault/a"))
    assert evaluation.split()[3] == "6"  # 2 instances x (baseline + 2 methods)
    total = next(line for line in lines if line.startswith("total (at most)"))
    assert "+ 4 nodes with no known price" in total and "$" in total
    assert any("fault/a: chars/4" in line for line in lines)
    assert not (tmp_path / "agents").exists() and not (tmp_path / "benchmark_output" / "runs").exists()


# --- whole grids against a fault server ------------------------------------------------------------------------


@pytest.fixture
def fault_grid(tmp_path, mirror_dir):
    """Two deployments on one counting FaultServer that answers every rendered prompt of both scenarios right."""
    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.optimize.dataset import prepare, render, to_examples

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    answers = tmp_path / "answers.json"
    answers.write_text("{}")
    server = FaultServer(answers).start()
    prod_env = tmp_path / "prod_env"
    for name in ("fault/a", "fault/b"):
        write_fault_deployment(prod_env, name, server)
    session = HelmSession(str(prod_env), cache=False)
    gold = {}
    for entry in SCENARIOS.split(","):
        data = prepare(entry, "fault/a", session, str(tmp_path / "scratch"), 3, 3, 0)
        for example in data.train + data.valid + to_examples(render(data.run_spec, data.splits.test, session)):
            gold[" ".join(example["inputs"].split())] = example["output"]
    answers.write_text(json.dumps(gold))
    yield server
    server.stop()


def grid_flags(suite: str, *extra: str) -> list[str]:
    return [
        "--scenarios", SCENARIOS, "--models", "fault/a,fault/b", "--methods", METHODS, "--num-candidates", "1",
        "--max-train", "3", "--max-val", "3", "--max-eval-instances", "3", "--num-threads", "2",
        "--eval-num-threads", "2", "--max-tokens", "256", "--suite", suite, *extra,
    ]  # fmt: skip


def report_rows(tmp_path: Path, suite: str) -> list[dict]:
    return json.loads((tmp_path / "benchmark_output" / "runs" / suite / "helm_dspy_report.json").read_text())


@pytest.mark.slow
def test_grid_runs_every_cell_and_one_leaderboard(tmp_path, mirror_dir, fault_grid):
    result = run_grid(tmp_path, mirror_dir, *grid_flags("g", "--max-parallel", "4"))
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    agents = sorted(str(p.relative_to(tmp_path / "agents")) for p in (tmp_path / "agents").rglob("*.manifest.json"))
    assert agents == [f"{s}/fault/{m}/{BFRS}.manifest.json" for s in ("head_qa", "medbullets") for m in "ab"]
    rows = report_rows(tmp_path, "g")
    assert {(r["model"], r["method"]) for r in rows} == {
        (f"fault/{m}", method) for m in "ab" for method in ("baseline", BFRS, "zeroshot-cot")
    }
    assert len(rows) == 12 and all(r["n"] == 3 for r in rows)  # each method on the same 3 instances
    assert all(r["score"] == 1.0 for r in rows)  # the server answers every prompt right
    suite = tmp_path / "benchmark_output" / "runs" / "g"
    assert (suite / "helm_dspy_report.png").stat().st_size > 0
    assert (suite / "groups").is_dir()  # helm-summarize's leaderboard tables
    assert "view the leaderboard: helm-server --suite g" in result.stdout
    assert "scenario" in result.stdout and "baseline" in result.stdout  # the report table


@pytest.mark.slow
def test_interrupted_grid_resumes_without_repeating_calls(tmp_path, mirror_dir, fault_grid):
    server = fault_grid
    server.delay_s = 0.05
    flags = grid_flags("r", "--max-parallel", "2")
    driver = subprocess.Popen(
        grid_args(*flags), cwd=tmp_path, env=grid_env(tmp_path, mirror_dir), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=interruptible,
    )  # fmt: skip
    agents = tmp_path / "agents"
    deadline = time.monotonic() + 600
    while not list(agents.rglob("*.manifest.json")):  # one cell finished, the next one optimizing
        assert driver.poll() is None, driver.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    finished = {path: path.stat().st_mtime_ns for path in agents.rglob("*.manifest.json")}
    assert 0 < len(finished) < 4
    assert not (tmp_path / "benchmark_output" / "runs" / "r" / "helm_dspy_report.json").exists()
    first_run = dict(server.per_request)

    server.reset_counts()
    second = run_grid(tmp_path, mirror_dir, *flags)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # finished cells not redone
    repeated = set(server.per_request) & set(first_run)
    assert len(repeated) <= 2 * 2, len(repeated)  # at most the calls in flight at the interrupt
    assert len(report_rows(tmp_path, "r")) == 12

    server.reset_counts()
    third = run_grid(tmp_path, mirror_dir, *flags)
    assert third.returncode == 0, third.stderr[-3000:]
    assert server.requests == 0  # everything finished: no model call at all
    assert "resuming: 8 of 8 nodes already finished" in third.stdout + third.stderr


@pytest.mark.slow
def test_a_failing_model_fails_its_cells_only(tmp_path, mirror_dir, fault_grid):
    broken = FaultServer(tmp_path / "answers.json", mode="500").start()
    try:
        write_fault_deployment(tmp_path / "prod_env", "down/c", broken)
        env = {**grid_env(tmp_path, mirror_dir), "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT / "tests" / "fast_retries"), grid_env(tmp_path, mirror_dir)["PYTHONPATH"]]),
            "HELM_DSPY_TEST_FAST_RETRIES": "1"}  # fmt: skip
        flags = grid_flags("f", "--max-parallel", "3")
        flags[flags.index("fault/a,fault/b")] = "fault/a,down/c"
        flags[flags.index(SCENARIOS)] = "head_qa"
        result = subprocess.run(grid_args(*flags), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    finally:
        broken.stop()
    assert result.returncode == 1, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert f"FAILED optimize head_qa down/c {BFRS}: every call to down/c failed" in output
    assert {(r["model"], r["method"]) for r in report_rows(tmp_path, "f")} >= {
        ("fault/a", "baseline"),
        ("fault/a", BFRS),
        ("fault/a", "zeroshot-cot"),
    }


@pytest.mark.slow
def test_ray_executor_gives_the_local_scores(tmp_path, mirror_dir, fault_grid):
    pytest.importorskip("ray")
    import shutil

    secret = "sk-test-" + "7" * 32
    (tmp_path / "prod_env" / "credentials.conf").write_text(f'unusedApiKey: "{secret}"\n')
    shutil.copytree(tmp_path / "prod_env", tmp_path / "prod_env_ray")
    local = run_grid(tmp_path, mirror_dir, *grid_flags("local", "--max-parallel", "4"))
    assert local.returncode == 0, local.stderr[-3000:]
    ray_flags = [*RAY_FLAGS, "--max-concurrent-calls", "2"]  # held by the grid's limiter actor
    fault_grid.reset_counts()
    remote = run_grid(tmp_path, mirror_dir, *grid_flags("ray", *ray_flags))
    assert remote.returncode == 0, remote.stderr[-3000:] + remote.stdout[-3000:]
    assert fault_grid.requests > 0  # its own cache: the Ray tasks really called the model
    assert max(fault_grid.peak_in_flight.values()) <= 2, fault_grid.peak_in_flight

    def scores(suite):
        return {(r["scenario"], r["model"], r["method"]): (r["n"], r["score"]) for r in report_rows(tmp_path, suite)}

    assert scores("ray") == scores("local") and len(scores("ray")) == 12
    agents = sorted(p.name for p in (tmp_path / "agents_ray").rglob("*.json"))
    assert agents == sorted(p.name for p in (tmp_path / "agents").rglob("*.json"))  # written by the driver
    assert any((tmp_path / "prod_env_ray" / "cache").glob("*.sqlite"))  # the tasks' request caches merged back
    for root in ("agents_ray", "benchmark_output"):
        for path in (tmp_path / root).rglob("*"):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), path  # local_path never returned

    fault_grid.reset_counts()
    again = run_grid(tmp_path, mirror_dir, *grid_flags("ray", *ray_flags))
    assert again.returncode == 0 and fault_grid.requests == 0  # resumed from what the driver wrote


RAY_FLAGS = ["--executor", "ray", "--max-parallel", "4", "--local-path", "prod_env_ray", "--agents-dir", "agents_ray"]


def command_of(process) -> list[str]:
    try:
        return process.cmdline()
    except Exception:  # gone, or a zombie
        return []


@pytest.mark.slow
def test_ray_retries_a_task_whose_worker_was_killed(tmp_path, mirror_dir, fault_grid):
    """SIGKILL the Ray worker running one optimize cell: Ray runs the task again, the grid finishes every cell
    with the local scores, and the retry is in the progress line, the final table and status.json."""
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    import shutil

    fault_grid.delay_s = 0.05  # a cell makes its calls over a few seconds: long enough to be killed mid-task
    shutil.copytree(tmp_path / "prod_env", tmp_path / "prod_env_ray")
    local = run_grid(tmp_path, mirror_dir, *grid_flags("local", "--max-parallel", "4"))
    assert local.returncode == 0, local.stderr[-3000:]

    victim = f"optimize medbullets:holdout=0.2 fault/a {BFRS}"
    victim_cell = ("medbullets:holdout=0.2", "--model", "fault/a")
    output = tmp_path / "ray-output.txt"
    with open(output, "w") as sink:
        driver = subprocess.Popen(
            grid_args(*grid_flags("ray", *RAY_FLAGS)), cwd=tmp_path, env=grid_env(tmp_path, mirror_dir),
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        command = None
        while command is None:  # the victim cell's `helm-dspy optimize`, started by a Ray worker in a task folder
            assert driver.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline
            for process in psutil.process_iter():
                argv = command_of(process)
                cell = argv[argv.index("--scenario") + 1 :][:3] if "--scenario" in argv else []
                if "optimize" in argv and "helm-dspy-grid-" in " ".join(argv) and cell == [*victim_cell]:
                    command = process
                    break
            time.sleep(0.2)
        worker = command.parent()
        assert " ".join(command_of(worker)).startswith("ray::"), command_of(worker)
        calls = fault_grid.requests
        while fault_grid.requests < calls + 3 and command.is_running():  # it is optimizing: calls are going out
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert command.is_running(), "the cell finished before it could be killed; slow the server down"
        os.kill(worker.pid, signal.SIGKILL)
        _, alive = psutil.wait_procs([command], timeout=30)
        assert not alive  # the command died with its worker: no orphan keeps calling the model
        returncode = driver.wait(timeout=900)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    text = output.read_text()
    assert returncode == 0, text[-3000:]
    done = [line for line in text.splitlines() if line.startswith(f"done {victim} (")]
    assert done and "retried after a worker died" in done[0], text[-3000:]  # the progress line
    table_rows = [line for line in text.splitlines() if line.startswith(victim + " ")]
    assert table_rows and "retried after a worker died" in table_rows[-1], text[-3000:]  # the final table
    assert "8 of 8 nodes finished" in text
    status = json.loads((tmp_path / "benchmark_output" / "grid" / "ray" / "status.json").read_text())
    assert [row["node"] for row in status if row["retries"]] == [victim]
    assert {row["status"] for row in status} == {"done"}

    def scores(suite):
        return {(r["scenario"], r["model"], r["method"]): (r["n"], r["score"]) for r in report_rows(tmp_path, suite)}

    assert scores("ray") == scores("local") and len(scores("ray")) == 12  # every run, the local scores
    agents = sorted(str(p.relative_to(tmp_path / "agents_ray")) for p in (tmp_path / "agents_ray").rglob("*.json"))
    assert agents == sorted(str(p.relative_to(tmp_path / "agents")) for p in (tmp_path / "agents").rglob("*.json"))
    assert len([name for name in agents if name.endswith(".manifest.json")]) == 4  # every cell: agent + manifest


@pytest.mark.slow
def test_ray_does_not_retry_a_command_that_failed(tmp_path):
    """A command that exits non-zero is a value, not a worker death: one attempt, its error line, no retry."""
    ray = pytest.importorskip("ray")
    from dataclasses import replace

    from helm_dspy.grid.ray_executor import MAX_RETRIES, RayExecutor

    grid = fake_grid(tmp_path, max_parallel=1, executor="ray")  # scenario s1 does not exist: optimize exits 1
    (tmp_path / "prod_env").mkdir()
    grid.local_path = str(tmp_path / "prod_env")
    executor = RayExecutor(grid, {"HELM_DSPY_LOG": str(tmp_path / "helm-dspy.log")})
    try:
        options = executor.task._default_options
        assert options["max_retries"] == MAX_RETRIES > 0 and options["retry_exceptions"] is False
        node = build_graph(grid)[0]
        assert executor.cpus(node) == 1  # an API model's task
        grid.models[0] = replace(grid.models[0], cpus=4)  # a local model with 4 threads, on a 1-CPU Ray
        assert executor.cpus(node) == executor.node_cpus == 1  # capped at a machine's CPUs: never unschedulable
        grid.models[0] = replace(grid.models[0], cpus=1)
        result = executor.run(node)
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert not result.ok and result.retries == 0, result
    assert result.line.startswith("unknown model deployment 'm/a'"), result.line  # the command's own error
    log = (tmp_path / "out" / "grid" / "grid" / "logs").glob("*.log")
    assert "attempt 2" not in "".join(path.read_text() for path in log)


@pytest.mark.parametrize("name,cells,nodes", [("grid_example", 8, 12), ("grid_medhelm", 48, 72)])
def test_shipped_plans_are_valid(name, cells, nodes, mirror_dir):
    from helm_dspy.grid.check import check_grid

    grid = check_grid(resolve(options(plan=str(REPO_ROOT / "configs" / f"{name}.yaml"))))
    graph = build_graph(grid)
    assert len(graph) == nodes and sum(not isinstance(node, Evaluation) for node in graph) == cells


def test_request_caches_merge_without_overwriting(tmp_path):
    import sqlite3

    from helm_dspy.grid.artifacts import merge_cache

    def cache(path, rows):
        with sqlite3.connect(path) as connection:
            connection.execute('create table "unnamed" (key TEXT PRIMARY KEY, value BLOB)')
            connection.executemany("insert into unnamed values (?, ?)", rows)
        return path.read_bytes()

    (tmp_path / "driver").mkdir()
    cache(tmp_path / "driver" / "org.sqlite", [("a", b"driver")])
    incoming = cache(tmp_path / "task.sqlite", [("a", b"task"), ("b", b"task")])
    assert merge_cache({"org.sqlite": incoming, "new.sqlite": incoming}, tmp_path / "driver") == 3
    with sqlite3.connect(tmp_path / "driver" / "org.sqlite") as connection:
        assert dict(connection.execute("select key, value from unnamed")) == {"a": b"driver", "b": b"task"}


def test_quickstart_preset_is_a_one_model_grid(mirror_dir):
    from helm_dspy.grid.check import check_grid
    from helm_dspy.local.deployment import LOCAL_MODEL
    from helm_dspy.quickstart.run import QuickstartOptions, quickstart_grid

    grid = check_grid(
        quickstart_grid(
            QuickstartOptions(
                LOCAL_MODEL, scenarios=["medbullets", "head_qa"], optimizers=[BFRS], controls=["zeroshot-cot"]
            )
        )
    )
    assert grid.scenarios == ["medbullets:holdout=40", "head_qa"] and grid.max_parallel == 1  # 20 valid + 20 train
    assert [m.name for m in grid.methods] == ["zeroshot-cot", BFRS]
    assert grid.methods[1].settings.num_candidates == 0 and grid.methods[1].settings.max_labeled_demos == 0  # 2 passes
    assert (grid.max_val, grid.max_eval_instances, grid.program) == (20, 20, "predict")  # can discriminate (issue 13)
    assert [node.key for node in build_graph(grid)][:2] == [
        f"optimize medbullets:holdout=40 {LOCAL_MODEL} {BFRS}",
        f"evaluate medbullets:holdout=40 {LOCAL_MODEL}",
    ]


def test_the_local_model_is_held_by_one_node_at_a_time(mirror_dir):
    """The embedded model is one in-process llama.cpp instance: never two cells loading it at once."""
    from helm_dspy.grid.check import check_grid
    from helm_dspy.grid.schedule import Scheduler  # noqa: F401  (admission uses max_concurrent_calls)
    from helm_dspy.local.deployment import LOCAL_MODEL, N_THREADS_ENV, register_local_model
    from helm_dspy.quickstart.run import QuickstartOptions, quickstart_grid

    grid = quickstart_grid(
        QuickstartOptions(
            LOCAL_MODEL,
            scenarios=["medbullets"],
            optimizers=["BootstrapFewShotWithRandomSearch"],
            controls=[],
            num_threads=4,
        )
    )
    grid.max_parallel = 8
    os.environ[N_THREADS_ENV] = "3"
    try:
        register_local_model(LOCAL_MODEL, replace=True)
        checked = check_grid(grid).models[0]
    finally:
        del os.environ[N_THREADS_ENV]
        register_local_model(LOCAL_MODEL, replace=True)
    assert (checked.max_concurrent_calls, checked.cpus) == (1, 3)  # a Ray task of it asks for its 3 threads


def write_finished_run(suite_dir: Path, name: str, deployment: str, prompt_tokens: int, metric: str) -> None:
    """A finished HELM run folder as helm-run leaves it (the files the report and the spend read)."""
    run_dir = suite_dir / name
    run_dir.mkdir(parents=True)
    spec = {
        "name": f"s1:model={deployment}",
        "adapter_spec": {"model": deployment, "model_deployment": deployment},
        "scenario_spec": {"class_name": "not.a.Scenario", "args": {}},
    }
    (run_dir / "run_spec.json").write_text(json.dumps(spec))
    stats = [
        {"name": {"name": metric, "split": "test"}, "sum": 1.0, "count": 1},
        {"name": {"name": "num_prompt_tokens", "split": "test"}, "sum": prompt_tokens, "count": 1},
    ]
    (run_dir / "per_instance_stats.json").write_text(json.dumps([{"instance_id": "id1", "stats": stats}]))


def test_max_cost_usd_counts_the_evaluations_spend(tmp_path):
    from helm_dspy.grid.schedule import Spending
    from helm_dspy.scenarios.main_metric import FALLBACK_METRIC

    grid = fake_grid(tmp_path, max_parallel=1, max_cost_usd=0.5)
    grid.models = [ModelSpec(m.name, price=Price(1e6, 0)) for m in grid.models]  # $1 per prompt token
    suite_dir = Path(grid.output_path) / "runs" / grid.suite
    write_finished_run(suite_dir, "baseline_m_a", "m/a", 1, FALLBACK_METRIC)  # an earlier evaluation spent $1
    assert Spending(grid).total([]) == 1.0
    nodes = build_graph(grid)
    lines: list[str] = []
    Scheduler(grid, nodes, FakeExecutor({}), out=lines.append).run()
    assert all(node.status == "skipped" for node in nodes)
    assert any("max_cost_usd 0.5 reached ($1.00)" in line for line in lines)
    write_finished_run(suite_dir, "baseline_m_b", "m/b", 2, FALLBACK_METRIC)
    assert Spending(grid).total([]) == 3.0
