"""Evaluate through HELM, end to end on real mirror data with the scripted model.

``helm-dspy optimize`` -> ``helm-run`` (baseline + two methods, 2 threads) -> ``helm-summarize`` -> ``helm-dspy report``
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import REPO_ROOT, leaderboard_tables, run_command
from test_optimize import write_deployment

from helm_dspy.core.methods import MethodSettings
from helm_dspy.optimize.run import OptimizeOptions, optimize

pytestmark = pytest.mark.slow  # helm-run, helm-summarize and Chromium

ENTRY = "medbullets:model=scripted/oracle,holdout=0.2"
SEED_AGENT = REPO_ROOT.parent / "shared" / "reference" / "seed-agents" / "medbullets" / "gpt-4o" / "MIPROv2.json"


def cache_rows(root: Path) -> int:
    with sqlite3.connect(root / "prod_env" / "cache" / "scripted.sqlite") as connection:
        return connection.execute("select count(*) from unnamed").fetchone()[0]


def helm(root: Path, *args: str):
    env = {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        "HELM_DSPY_DATA_DIR": os.environ["HELM_DSPY_DATA_DIR"],
    }
    return run_command(list(args), cwd=root, env=env)


def helm_run(root: Path, suite: str, *entries: str, instances: int = 8):
    return helm(
        root, "helm-run", "--run-entries", *entries, "--max-eval-instances", str(instances), "-n", "2", "--suite", suite
    )


def run_stats(root: Path, suite: str, run_name: str) -> dict[str, float]:
    stats = json.loads(
        (root / "benchmark_output" / "runs" / suite / run_name.replace("/", "_") / "stats.json").read_text()
    )
    return {
        s["name"]["name"]: s["sum"] / max(s["count"], 1)
        for s in stats
        if s["name"]["split"] == "test" and "perturbation" not in s["name"]
    }


@pytest.fixture(scope="module")
def workspace(mirror_dir, tmp_path_factory) -> Path:
    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.optimize.dataset import prepare, render, to_examples

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    root = tmp_path_factory.mktemp("evaluate")
    answers = root / "answers.json"
    answers.write_text("{}")
    write_deployment(root / "prod_env", "scripted/oracle", answers, tokenizer="simple/tokenizer1")
    session = HelmSession(str(root / "prod_env"))
    data = prepare("medbullets:holdout=0.2", "scripted/oracle", session, str(root / "benchmark_output"))
    test = to_examples(render(data.run_spec, data.splits.test, session))
    answers.write_text(json.dumps({" ".join(e["inputs"].split()): e["output"] for e in data.train + data.valid + test}))
    optimize(
        OptimizeOptions(
            scenario="medbullets",
            model="scripted/oracle",
            optimizer="BootstrapFewShotWithRandomSearch",
            agents_dir=str(root / "agents"),
            local_path=str(root / "prod_env"),
            output_path=str(root / "benchmark_output"),
            max_train=8,
            max_val=8,
            settings=MethodSettings(num_candidates=2, num_threads=2, seed=3),
        ),
        out=lambda line: None,
    )
    return root


@pytest.fixture(scope="module")
def suite(workspace) -> str:
    entries = [ENTRY, f"{ENTRY},dspy=BootstrapFewShotWithRandomSearch", f"{ENTRY},dspy=zeroshot-cot"]
    result = helm_run(workspace, "e2e", *entries)
    assert result.returncode == 0, result.stderr[-3000:]
    return "e2e"


def test_stats_per_run(workspace, suite):
    baseline = run_stats(workspace, suite, "medbullets:model=scripted_oracle,holdout=0.2")
    bfrs = run_stats(
        workspace, suite, "medbullets:model=scripted_oracle,holdout=0.2,dspy=BootstrapFewShotWithRandomSearch"
    )
    zero_shot = run_stats(workspace, suite, "medbullets:model=scripted_oracle,holdout=0.2,dspy=zeroshot-cot")
    assert baseline["exact_match"] == 0.0 and "dspy_lm_calls" not in baseline
    assert bfrs["exact_match"] == 1.0 and zero_shot["exact_match"] == 0.0  # demos help the scripted model
    for stats in (bfrs, zero_shot):
        assert stats["dspy_lm_calls"] == 1.0 and stats["dspy_parse_failures"] == 0.0
        assert stats["dspy_completion_tokens"] > 0 and stats["num_prompt_tokens"] > 1000  # HELM's tokenizer
    assert bfrs["num_instances"] == baseline["num_instances"] == 8


def test_same_instances_in_baseline_and_methods(workspace, suite):
    runs = workspace / "benchmark_output" / "runs" / suite
    ids = {
        run.name: sorted(
            s["instance"]["id"] for s in json.loads((run / "scenario_state.json").read_text())["request_states"]
        )
        for run in runs.iterdir()
        if (run / "scenario_state.json").is_file()
    }
    assert len(ids) == 3 and len({tuple(v) for v in ids.values()}) == 1


def test_rerun_makes_no_new_model_calls(workspace, suite):
    before = cache_rows(workspace)
    entries = [ENTRY, f"{ENTRY},dspy=BootstrapFewShotWithRandomSearch", f"{ENTRY},dspy=zeroshot-cot"]
    result = helm_run(workspace, "e2e-rerun", *entries)
    assert result.returncode == 0, result.stderr[-3000:]
    assert cache_rows(workspace) == before
    bfrs = "medbullets:model=scripted_oracle,holdout=0.2,dspy=BootstrapFewShotWithRandomSearch"
    assert run_stats(workspace, "e2e-rerun", bfrs)["exact_match"] == run_stats(workspace, suite, bfrs)["exact_match"]


@pytest.fixture(scope="module")
def summarized(workspace, suite) -> str:
    result = helm(
        workspace,
        "helm-summarize",
        "--suite",
        suite,
        "--schema-path",
        str(REPO_ROOT / "configs" / "schema_helm_dspy.yaml"),
        "--summarizer-class-name",
        "helm_dspy.report.summarizer.DSPySummarizer",
        "--local-path",
        "prod_env",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return suite


def test_summarize_shows_distinct_readable_rows(workspace, summarized):
    suite = summarized
    table = json.loads((workspace / "benchmark_output" / "runs" / suite / "groups" / "medbullets.json").read_text())[0]
    rows = {row[0]["value"]: row[1]["value"] for row in table["rows"]}
    assert rows == {
        "scripted/oracle": 0.0,
        "scripted/oracle — DSPy BootstrapFewShot+RandomSearch": 1.0,
        "scripted/oracle — DSPy zero-shot CoT": 0.0,
    }


def test_report_paired_ci_and_plot(workspace, suite):
    from PIL import Image

    result = helm(workspace, "helm-dspy", "report", "--suite", suite)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BootstrapFewShotWithRandomSearch" in result.stdout and "[+1.000, +1.000]" in result.stdout
    folder = workspace / "benchmark_output" / "runs" / suite
    rows = {row["method"]: row for row in json.loads((folder / "helm_dspy_report.json").read_text())}
    assert set(rows) == {"baseline", "BootstrapFewShotWithRandomSearch", "zeroshot-cot"}
    bfrs = rows["BootstrapFewShotWithRandomSearch"]
    assert (bfrs["n"], bfrs["baseline"], bfrs["score"], bfrs["difference"]) == (8, 0.0, 1.0, 1.0)
    assert bfrs["ci_low"] == bfrs["ci_high"] == 1.0
    assert bfrs["dspy_lm_calls"] == 8
    assert bfrs["agent_demos"] > 0 and bfrs["role"] == "method" and bfrs["unchanged_zero_shot"] is False
    assert rows["zeroshot-cot"]["role"] == "control" and "control (zero-shot, not optimized)" in result.stdout
    assert (folder / "helm_dspy_report.csv").read_text().startswith("scenario,model,method")
    with Image.open(folder / "helm_dspy_report.png") as image:
        image.verify()
    with Image.open(folder / "helm_dspy_report.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_seed_agent_runs_through_dspy_entry(workspace):
    target = workspace / "agents" / "medbullets" / "scripted" / "oracle" / "MIPROv2.json"
    shutil.copy(SEED_AGENT, target)
    result = helm_run(workspace, "seed", f"{ENTRY},dspy=MIPROv2", instances=3)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = run_stats(workspace, "seed", "medbullets:model=scripted_oracle,holdout=0.2,dspy=MIPROv2")
    assert stats["exact_match"] == 1.0  # the seed agent's 3 demos are help for the scripted model
    report = helm(workspace, "helm-dspy", "report", "--suite", "seed")
    assert report.returncode == 2 and "no baseline run for medbullets:holdout=0.2" in report.stderr
    assert len(report.stderr.strip().splitlines()) == 1
    assert not list((workspace / "benchmark_output" / "runs" / "seed").glob("helm_dspy_report*"))


def test_report_on_a_missing_suite_is_one_line(tmp_path):
    result = run_command(["helm-dspy", "report", "--suite", "nope", "-o", str(tmp_path / "out")], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("helm-dspy: error: suite 'nope' does not exist")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def _error_line(result) -> str:
    """helm-run stopped before any run: non-zero exit, no traceback, the last stderr line is ours."""
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("helm-dspy: error: ")
    return last


def test_missing_agent_prints_the_optimize_command(workspace):
    result = helm_run(workspace, "missing", ENTRY, f"{ENTRY},dspy=GEPA", instances=2)
    assert _error_line(result).endswith(
        "create it with: helm-dspy optimize --scenario medbullets:holdout=0.2 --model scripted/oracle --optimizer GEPA"
    )
    assert not (workspace / "benchmark_output" / "runs" / "missing").exists()  # not even the baseline ran


def test_malformed_or_foreign_agent_stops_the_run(workspace):
    import dspy

    agents = workspace / "agents" / "medbullets" / "scripted" / "oracle"
    (agents / "SIMBA.json").write_text("{not json")
    assert "is not readable JSON" in _error_line(helm_run(workspace, "malformed", f"{ENTRY},dspy=SIMBA", instances=2))
    predict_state = agents / "zeroshot-cot.json"
    predict_state.write_text(json.dumps({"traces": [], "train": [], "demos": [], "signature": {}, "lm": None}))
    result = helm_run(workspace, "shape", f"{ENTRY},dspy=zeroshot-cot", instances=2)
    assert "saved for program shape 'predict', not 'cot'" in _error_line(result)
    predict_state.unlink()
    foreign = agents / "GEPA.json"  # a ChainOfThought of another signature: DSPy would load it silently
    foreign.write_text(json.dumps(dspy.ChainOfThought("question, context -> answer").dump_state(), default=str))
    result = helm_run(workspace, "foreign", f"{ENTRY},dspy=GEPA", instances=2)
    assert "saved for fields ['question', 'context', 'reasoning', 'answer']" in _error_line(result)
    foreign.unlink()


def test_unknown_method_is_one_line(workspace):
    result = helm_run(workspace, "bad", f"{ENTRY},dspy=Adam", instances=1)
    assert "helm-dspy: error: dspy=Adam names no method" in _error_line(result)


def test_unparsable_answer_scores_zero_and_is_counted(workspace):
    write_deployment(workspace / "prod_env", "scripted/garbage", workspace / "answers.json", mode="garbage")
    entry = "medbullets:model=scripted/garbage,holdout=0.2,dspy=zeroshot-cot"
    result = helm_run(workspace, "garbage", entry, instances=3)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = run_stats(workspace, "garbage", entry.replace("scripted/garbage", "scripted_garbage"))
    assert stats["dspy_parse_failures"] == 1.0 and stats["exact_match"] == 0.0


def test_agent_from_pinned_url(workspace, tmp_path, monkeypatch):
    import hashlib

    import helm_dspy.core.agents as agents
    from helm_dspy.core.agents import AgentStore
    from helm_dspy.errors import UserError

    url = f"file://{SEED_AGENT.parent.parent}/{{model}}/{{method}}.json"
    monkeypatch.setenv("HELM_DSPY_AGENTS", url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pins = tmp_path / "pins.json"
    resolved = url.format(model="gpt-4o", method="MIPROv2")
    monkeypatch.setenv("HELM_DSPY_AGENT_PINS", str(pins))
    pins.write_text(json.dumps({resolved: hashlib.sha256(SEED_AGENT.read_bytes()).hexdigest()}))
    monkeypatch.setattr(agents, "CACHE_DIR", tmp_path / "cache")
    store = AgentStore.from_env()
    path = store.resolve("medbullets", "gpt-4o", "MIPROv2")
    assert path.read_bytes() == SEED_AGENT.read_bytes()
    pins.write_text(json.dumps({resolved: "0" * 64}))
    with pytest.raises(UserError, match="but the pin says"):
        store.resolve("medbullets", "gpt-4o", "MIPROv2")
    pins.write_text("{}")
    with pytest.raises(UserError, match="is not pinned"):
        store.resolve("medbullets", "gpt-4o", "MIPROv2")


@pytest.mark.parametrize("conf", ["medhelm_dspy_grid.conf", "medhelm_dspy_grid_offline.conf"])
def test_grid_conf_builds_every_run(workspace, conf, monkeypatch):
    """Every entry of the shipped grid parses with HELM's conf reader and builds a run spec."""
    from helm.benchmark.presentation.run_entry import read_run_entries
    from helm.benchmark.run_spec_factory import construct_run_specs
    from helm.common.object_spec import parse_object_spec

    from helm_dspy.bridge.session import HelmSession

    HelmSession(str(workspace / "prod_env"))
    agents = workspace / "grid-agents"
    for scenario in ("medcalc_bench", "medec", "head_qa", "medbullets"):
        for method in ("BootstrapFewShotWithRandomSearch", "MIPROv2", "GEPA"):  # run specs check their agents
            (agents / scenario / "scripted" / "oracle").mkdir(parents=True, exist_ok=True)
            shutil.copy(SEED_AGENT, agents / scenario / "scripted" / "oracle" / f"{method}.json")
    monkeypatch.setenv("HELM_DSPY_AGENTS", str(agents))
    text = (REPO_ROOT / "run_specs" / conf).read_text().replace("MODEL", "scripted/oracle")
    path = workspace / conf
    path.write_text(text)
    entries = read_run_entries([str(path)]).entries
    assert len(entries) == 4 * 6
    names = set()
    for entry in entries:
        (run_spec,) = construct_run_specs(parse_object_spec(entry.description))
        names.add(run_spec.adapter_spec.model)
        if "dspy=" in entry.description:
            assert run_spec.adapter_spec.max_tokens == 1024 and run_spec.adapter_spec.stop_sequences == []
    assert len(names) == 6  # the baseline model and one derived model per method


def test_dspy_runs_are_served_with_the_cap_they_were_optimized_under(workspace, monkeypatch):
    """An agent's manifest ``max_tokens`` is its serving cap; zero-shot programs take the grid's, else 1024."""
    from helm.benchmark.run_spec_factory import construct_run_specs
    from helm.common.object_spec import parse_object_spec

    from helm_dspy.bridge import MAX_TOKENS_ENV
    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.core.agents import AgentStore

    HelmSession(str(workspace / "prod_env"))
    store = AgentStore(str(workspace / "cap-agents"))
    agent = store.path("medbullets", "scripted/oracle", "MIPROv2")
    agent.parent.mkdir(parents=True)
    shutil.copy(SEED_AGENT, agent)
    monkeypatch.setenv("HELM_DSPY_AGENTS", store.source)
    monkeypatch.delenv(MAX_TOKENS_ENV, raising=False)

    def cap(method: str) -> int:
        (run_spec,) = construct_run_specs(parse_object_spec(f"medbullets:model=scripted/oracle,dspy={method}"))
        return run_spec.adapter_spec.max_tokens

    assert cap("MIPROv2") == 1024  # no manifest (a seed agent): the default
    AgentStore.manifest_path(agent).write_text(json.dumps({"max_tokens": 300}))
    assert cap("MIPROv2") == 300
    assert cap("zeroshot-cot") == 1024
    monkeypatch.setenv(MAX_TOKENS_ENV, "200")  # what a grid gives its helm-run children
    assert (cap("zeroshot-cot"), cap("MIPROv2")) == (200, 300)


def test_leaderboard_in_headless_chromium(workspace, summarized):
    """helm-server on 127.0.0.1, the page in Debian's Chromium: baseline and method rows with their scores."""
    tables = leaderboard_tables(workspace, summarized, {"medbullets": "leaderboard_medbullets.png"})
    cells = {row[0]: row[1:] for row in tables["medbullets"]}
    assert set(cells) == {
        "scripted/oracle",
        "scripted/oracle — DSPy BootstrapFewShot+RandomSearch",
        "scripted/oracle — DSPy zero-shot CoT",
    }, tables
    assert cells["scripted/oracle — DSPy BootstrapFewShot+RandomSearch"][0] == "1"
    assert cells["scripted/oracle"][0] == "0" and cells["scripted/oracle — DSPy zero-shot CoT"][0] == "0"


def test_client_keeps_system_messages_honours_temperature_and_is_thread_safe(workspace, monkeypatch):
    """DSPyAgentClient directly: 16 concurrent requests (helm-run -n 16) each get their own gold answer."""
    from concurrent.futures import ThreadPoolExecutor

    from helm.common.cache import SqliteCacheConfig
    from helm.common.request import Request

    from helm_dspy.evaluate.agent_client import DSPyAgentClient

    monkeypatch.setenv("HELM_DSPY_AGENTS", str(workspace / "agents"))
    cache = SqliteCacheConfig(str(workspace / "prod_env" / "cache" / "direct.sqlite"))
    client = DSPyAgentClient(
        cache, "scripted/oracle", "BootstrapFewShotWithRandomSearch", "medbullets", {"holdout": "0.2"}
    )
    gold = list(json.loads((workspace / "answers.json").read_text()).items())[:16]
    model = "scripted/oracle-helmdspy-bfrs"

    def ask(item):
        inputs, answer = item
        request = Request(model=model, model_deployment=model, prompt=inputs, temperature=0.0, max_tokens=512)
        return client.make_request(request).completions[0].text, answer

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, gold))
    assert len(answers) == 16 and all(text == answer for text, answer in answers)

    system = "You are a careful examiner. SYSTEM-MARKER-7"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": gold[0][0]}]
    result = client.make_request(
        Request(model=model, model_deployment=model, messages=messages, temperature=0.35, max_tokens=512)
    )
    assert result.success and result.completions[0].finish_reason["dspy_lm_calls"] == 1
    with sqlite3.connect(workspace / "prod_env" / "cache" / "scripted.sqlite") as connection:
        keys = [json.loads(row[0]) for row in connection.execute("select key from unnamed")]
    sent = [key for key in keys if any(system in m["content"] for m in key.get("messages", []))]
    assert len(sent) == 1 and sent[0]["temperature"] == 0.35
