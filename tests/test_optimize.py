"""``helm-dspy optimize`` end to end on real mirror data, driven by a scripted HELM client.

The scripted model (tests/scripted_client.py) answers the gold only when the prompt has help (a demo,
or an instruction containing MAGIC, which it writes itself when asked to propose instructions), so an
optimizer that adds demos or instructions can beat the zero-shot baseline, and one that does not cannot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helm_dspy.core.methods import MethodSettings
from helm_dspy.errors import UserError
from helm_dspy.optimize.run import OptimizeOptions, optimize

SCENARIO = "medbullets:holdout=0.2"


def write_deployment(
    prod_env: Path,
    name: str,
    answers: Path,
    mode: str = "oracle",
    client: str | None = None,
    tokenizer: str | None = None,
):
    prod_env.mkdir(parents=True, exist_ok=True)
    path = prod_env / "model_deployments.yaml"
    existing = yaml.safe_load(path.read_text())["model_deployments"] if path.exists() else []
    existing.append(
        {
            "name": name,
            "model_name": name,
            **({"tokenizer_name": tokenizer, "max_sequence_length": 100000} if tokenizer else {}),
            "client_spec": {
                "class_name": client or "scripted_client.ScriptedClient",
                "args": {} if client else {"answers_path": str(answers), "mode": mode},
            },
        }
    )
    path.write_text(yaml.safe_dump({"model_deployments": existing}))


@pytest.fixture(scope="module")
def workspace(mirror_dir, tmp_path_factory):
    """A prod_env with scripted deployments and the gold answers for every rendered medbullets prompt."""
    import os

    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.optimize.dataset import prepare

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    root = tmp_path_factory.mktemp("optimize")
    answers = root / "answers.json"
    answers.write_text("{}")
    prod_env = root / "prod_env"
    for name, mode in [("scripted/oracle", "oracle"), ("scripted/garbage", "garbage")]:
        write_deployment(prod_env, name, answers, mode)
    write_deployment(prod_env, "keyless/gpt-test", answers, client="helm.clients.openai_client.OpenAIClient")
    write_deployment(prod_env, "scripted/tokenized", answers, tokenizer="simple/tokenizer1")
    write_deployment(prod_env, "scripted/outage", answers, client="scripted_client.FailingClient")
    session = HelmSession(str(prod_env))
    data = prepare(SCENARIO, "scripted/oracle", session, str(root / "benchmark_output"))
    gold = {" ".join(e["inputs"].split()): e["output"] for e in data.train + data.valid}
    answers.write_text(json.dumps(gold))
    return root


def run(workspace: Path, optimizer: str, force: bool = False, **overrides) -> dict:
    settings = MethodSettings(
        num_threads=2,
        seed=overrides.pop("seed", 1),
        num_candidates=overrides.pop("num_candidates", None),
        bsize=4,
        max_steps=2,
    )
    options = OptimizeOptions(
        scenario=overrides.pop("scenario", SCENARIO),
        model=overrides.pop("model", "scripted/oracle"),
        optimizer=optimizer,
        agents_dir=overrides.pop("agents_dir", str(workspace / "agents")),
        local_path=str(workspace / "prod_env"),
        output_path=str(workspace / "benchmark_output"),
        max_train=overrides.pop("max_train", 8),
        max_val=overrides.pop("max_val", 8),
        force=force,
        settings=settings,
        **overrides,
    )
    return optimize(options, out=lambda line: None)


@pytest.mark.parametrize(
    "optimizer,extra",
    [
        ("BootstrapFewShotWithRandomSearch", {"num_candidates": 2}),
        ("MIPROv2", {}),
        ("GEPA", {}),
        ("SIMBA", {"num_candidates": 3}),
    ],
)
def test_optimizer_beats_baseline_and_reruns_from_cache(workspace, optimizer, extra):
    first = run(workspace, optimizer, force=True, **extra)
    manifest = first.manifest
    assert manifest["baseline_valid_score"] == 0.0  # the scripted model is wrong without help
    assert manifest["optimized_valid_score"] > manifest["baseline_valid_score"], manifest
    assert first.agent_path == workspace / "agents" / "medbullets" / "scripted/oracle" / f"{optimizer}.json"
    saved = json.loads(first.agent_path.read_text())
    assert "predict" in saved and "signature" in saved["predict"]
    on_disk = json.loads(first.agent_path.with_name(f"{optimizer}.manifest.json").read_text())
    assert on_disk["optimized_valid_score"] == manifest["optimized_valid_score"]
    for key in ("scenario", "split_sizes", "train_ids_sha256", "valid_ids_sha256", "model", "prompt_model", "settings"):
        assert key in on_disk, key
    assert on_disk["scenario"] == SCENARIO and on_disk["metric"] == "exact_match"
    assert on_disk["split_sizes"] == {"train": 8, "valid": 8, "test": 246}
    assert on_disk["versions"]["helm-dspy"] and on_disk["usage"]["lm_calls"] > 0
    assert set(on_disk["versions"]) == {"crfm-helm", "dspy", "helm-dspy"}
    assert (on_disk["optimizer"], on_disk["seed"], on_disk["prompt_model"]) == (optimizer, 1, "scripted/oracle")
    assert {"prompt_tokens", "completion_tokens", "new_lm_calls", "cached_lm_calls", "cost_usd"} <= set(
        on_disk["usage"]
    )
    assert on_disk["wall_time_s"] > 0 and on_disk["created"].endswith("+00:00")
    assert len(on_disk["train_ids_sha256"]) == len(on_disk["valid_ids_sha256"]) == 64
    program = on_disk["optimized_program"]
    assert program["demos"] >= 1 or program["instructions_changed"]  # what made the scripted model right
    again = run(workspace, optimizer, force=True, **extra)
    assert again.manifest["usage"]["new_lm_calls"] == 0, again.manifest["usage"]
    assert again.manifest["optimized_valid_score"] == manifest["optimized_valid_score"]


@pytest.mark.parametrize("optimizer", ["zeroshot-predict", "zeroshot-cot"])
def test_zero_shot_baselines_save_the_plain_program(workspace, optimizer):
    result = run(workspace, optimizer, force=True)
    assert result.manifest["optimized_valid_score"] == result.manifest["baseline_valid_score"] == 0.0
    state = json.loads(result.agent_path.read_text())
    assert ("predict" in state) == (optimizer == "zeroshot-cot")
    assert result.manifest["program"] == optimizer.split("-")[1]
    assert result.manifest["optimizer"] == optimizer and result.manifest["usage"]["lm_calls"] == 8  # the valid set
    again = run(workspace, optimizer, force=True)
    assert (
        again.manifest["usage"]["new_lm_calls"] == 0 and again.agent_path.read_text() == result.agent_path.read_text()
    )


def test_mipro_seed_zero_stays_zero(workspace, monkeypatch):
    """DSPy 3.4.1's MIPROv2.compile does ``seed or self.seed``, so seed=0 silently became 9."""
    from dspy.teleprompt import MIPROv2

    seeds = []
    original = MIPROv2._set_random_seeds

    def spy(self, seed):
        seeds.append(seed)
        return original(self, seed)

    monkeypatch.setattr(MIPROv2, "_set_random_seeds", spy)
    result = run(workspace, "MIPROv2", force=True, seed=0)
    assert seeds == [0] and result.manifest["seed"] == 0


@pytest.mark.parametrize(
    "optimizer,extra", [("MIPROv2", {}), ("BootstrapFewShotWithRandomSearch", {"num_candidates": 2})]
)
def test_dry_run_estimate_bounds_actual_calls(workspace, optimizer, extra):
    estimate = run(workspace, optimizer, dry_run=True, seed=5, **extra).manifest["estimate"]
    actual = run(workspace, optimizer, force=True, seed=5, **extra).manifest["usage"]["lm_calls"]
    assert actual <= estimate["total_lm_calls"]
    assert actual >= estimate["total_lm_calls"] / 4, (actual, estimate)


def test_existing_agent_needs_force(workspace):
    run(workspace, "zeroshot-cot", force=True)
    with pytest.raises(UserError, match="--force"):
        run(workspace, "zeroshot-cot")


def test_budget_stops_cleanly_and_writes_nothing(workspace):
    with pytest.raises(UserError, match="--max-lm-calls 3 reached"):
        run(workspace, "BootstrapFewShotWithRandomSearch", True, seed=77, max_lm_calls=3, num_candidates=2)
    target = workspace / "agents-budget"
    with pytest.raises(UserError):
        optimize(
            OptimizeOptions(
                scenario=SCENARIO,
                model="scripted/oracle",
                optimizer="MIPROv2",
                agents_dir=str(target),
                local_path=str(workspace / "prod_env"),
                output_path=str(workspace / "benchmark_output"),
                max_train=8,
                max_val=8,
                max_lm_calls=3,
                settings=MethodSettings(seed=78, num_threads=2),
            ),
            out=lambda line: None,
        )
    assert not target.exists()


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"model": "scripted/garbage"}, "never returned a parsable answer"),
        ({"model": "scripted/outage"}, "every call to scripted/outage failed .*first error: .*503 Service Unavailable"),
        ({"model": "keyless/gpt-test"}, "needs an API key"),
        ({"model": "nobody/none"}, "unknown model deployment"),
        ({"scenario": "no_such_benchmark"}, "unknown scenario"),
        ({"scenario": "medbullets:holdout=0"}, "has no train or valid split"),
    ],
)
def test_bad_input_is_one_clear_error(workspace, overrides, message, tmp_path):
    with pytest.raises(UserError, match=message) as error:
        run(workspace, "MIPROv2", **{**overrides, "agents_dir": str(tmp_path / "agents")})
    assert "\n" not in str(error.value)
    assert not (tmp_path / "agents").exists()


def test_unknown_optimizer_lists_valid_ones(workspace):
    with pytest.raises(UserError, match="MIPROv2, BootstrapFewShotWithRandomSearch, GEPA, SIMBA"):
        run(workspace, "Adam")


def test_cli_runs_writes_agent_and_never_leaks_keys(workspace, tmp_path):
    """The console command on the scripted model: summary table, files, and no API key anywhere."""
    import os

    from conftest import REPO_ROOT, run_command

    secret = "sk-secret-never-written-123"
    prod_env = tmp_path / "prod_env"
    prod_env.mkdir()
    deployments = yaml.safe_load((workspace / "prod_env" / "model_deployments.yaml").read_text())
    keyed = {
        "class_name": "scripted_client.KeyedScriptedClient",
        "args": {"answers_path": str(workspace / "answers.json")},
    }
    deployments["model_deployments"].append(
        {"name": "scripted/keyed", "model_name": "scripted/keyed", "client_spec": keyed}
    )
    (prod_env / "model_deployments.yaml").write_text(yaml.safe_dump(deployments))
    args = ["helm-dspy", "optimize", "--scenario", SCENARIO, "--model", "scripted/keyed"]
    args += ["--optimizer", "BootstrapFewShotWithRandomSearch", "--num-candidates", "2", "--max-train", "6"]
    args += ["--max-val", "6", "--local-path", str(prod_env), "--agents-dir", str(tmp_path / "agents")]
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    env["HELM_DSPY_DATA_DIR"] = os.environ["HELM_DSPY_DATA_DIR"]
    keyless = run_command(args, cwd=tmp_path, env=env)  # the client takes a key: none configured is an error
    assert keyless.returncode == 2 and "needs an API key: add scriptedApiKey" in keyless.stderr
    (prod_env / "credentials.conf").write_text(f'scriptedApiKey: "{secret}"\n')
    result = run_command(args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BootstrapFewShotWithRandomSearch" in result.stdout and "valid score" in result.stdout
    written = list((tmp_path / "agents").rglob("*.json"))
    assert len(written) == 2
    for path in written + list(tmp_path.rglob("*.log")) + list((prod_env / "cache").glob("*.sqlite")):
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in result.stdout + result.stderr
    again = run_command(args, cwd=tmp_path, env=env)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0 and "--force" in again.stderr


def test_every_help_page_renders():
    """``helm-dspy --help`` and each verb's: argparse %-formats help strings, so a bare "95%" crashed the top page."""
    import argparse

    from helm_dspy.cli.main import build_parser

    parser = build_parser()
    assert "report" in parser.format_help()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"optimize", "report", "quickstart", "grid"} <= set(verbs)
    for name, verb in verbs.items():
        assert verb.format_help().startswith("usage: "), name


def test_cli_help_explains_every_flag(tmp_path):
    from conftest import run_command

    result = run_command(["helm-dspy", "optimize", "--help"], cwd=tmp_path)
    assert result.returncode == 0
    for flag in [
        "--scenario",
        "--model",
        "--optimizer",
        "--prompt-model",
        "--agents-dir",
        "--local-path",
        "--data-dir",
    ]:
        assert flag in result.stdout
    for flag in ["--max-train", "--max-val", "--seed", "--num-threads", "--dry-run", "--max-lm-calls", "--auto"]:
        assert flag in result.stdout
    bad = run_command(
        ["helm-dspy", "optimize", "--scenario", "medec", "--model", "x/y", "--optimizer", "Nope"], tmp_path
    )
    assert (
        bad.returncode == 2 and "unknown optimizer 'Nope'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    )


def test_tokens_counted_by_the_deployments_helm_tokenizer(workspace):
    """simple/tokenizer1 counts characters: prompt tokens far exceed the scripted completions' word counts."""
    usage = run(workspace, "zeroshot-cot", True, model="scripted/tokenized").manifest["usage"]
    assert usage["lm_calls"] == 8
    assert usage["prompt_tokens"] > 8 * 1000  # medbullets prompts are thousands of characters
    assert 0 < usage["completion_tokens"] < usage["prompt_tokens"]


@pytest.mark.parametrize("entry,train_valid", [("simple_mcqa", 11), ("simple_mcqa:holdout=20", 20)])
def test_any_helm_run_spec_can_be_optimized(workspace, entry, train_valid):
    """HELM's own simple_mcqa (train split 11 questions; or a holdout of its test split), not one of our four."""
    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.optimize.dataset import prepare

    data = prepare(entry, "scripted/oracle", HelmSession(str(workspace / "prod_env")), str(workspace / "out"))
    assert len(data.train) + len(data.valid) == train_valid
    assert data.valid[0]["output"] in "AB" and data.valid[0]["inputs"].rstrip().endswith("Answer:")
    answers = workspace / "answers.json"
    gold = json.loads(answers.read_text())
    gold.update({" ".join(e["inputs"].split()): e["output"] for e in data.train + data.valid})
    answers.write_text(json.dumps(gold))
    result = run(workspace, "BootstrapFewShotWithRandomSearch", True, scenario=entry, num_candidates=2)
    assert result.manifest["optimized_valid_score"] > result.manifest["baseline_valid_score"]
    assert result.agent_path.parts[-4] == "simple_mcqa"  # agents/simple_mcqa/scripted/oracle/...json


def test_dry_run_needs_no_api_key(workspace, tmp_path):
    result = run(workspace, "MIPROv2", model="keyless/gpt-test", dry_run=True, agents_dir=str(tmp_path / "agents"))
    assert result.agent_path is None and result.manifest["estimate"]["total_lm_calls"] > 0
    assert not (tmp_path / "agents").exists()
