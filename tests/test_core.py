"""Unit tests of the neutral core and the bridge: registry, agent store, scenario keys, expanders, estimates,
HELM's metric on real rows, the request mapping, the call guard and the prompt seen in training and serving.

Fast tier: no helm-run, no model; HELM's own offline test doubles (``simple/model1``) where one is needed.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import dspy
import pytest
from dspy.lm15 import Config, Message, Request
from helm.benchmark.scenarios.scenario import ScenarioSpec
from helm.common.request import Request as HelmRequest
from helm.common.request import RequestResult

from helm_dspy.bridge.guard import CallGuard, ProviderDown
from helm_dspy.bridge.lm import HelmEngine, UsageCounter, chat_messages
from helm_dspy.bridge.session import HelmSession
from helm_dspy.core.agents import AgentStore, scenario_key
from helm_dspy.core.manifest import SCHEMA_VERSION, Manifest
from helm_dspy.core.methods import (
    METHODS,
    BootstrapFewShotWithRandomSearch,
    MethodSettings,
    MIPROv2,
    ZeroShotCoT,
    ZeroShotPredict,
    get_method,
    method_by_slug,
    method_class,
    program_shape,
)
from helm_dspy.core.program import build_program, describe_program
from helm_dspy.errors import UserError
from helm_dspy.evaluate.derived import derived_model_name, split_derived_model_name

# --- the method registry ---------------------------------------------------------------------------------


def test_every_method_has_one_name_slug_and_display_name():
    assert len({m.name for m in METHODS.values()}) == len({m.slug for m in METHODS.values()}) == len(METHODS) == 6
    assert len({m.display_name for m in METHODS.values()}) == 6
    for method in METHODS.values():
        assert method_by_slug(method.slug) is method
        assert split_derived_model_name(derived_model_name("openai/gpt-4o", method.name)) == (
            "openai/gpt-4o",
            method.name,
        )
    assert {m.name for m in METHODS.values() if m.zero_shot} == {"zeroshot-predict", "zeroshot-cot"}
    assert {m.name for m in METHODS.values() if m.uses_prompt_model} == {"MIPROv2", "GEPA", "SIMBA"}


@pytest.mark.parametrize("given_as,expected", [("optimizer", "unknown optimizer 'Adam'"), ("dspy=", "dspy=Adam names")])
def test_unknown_method_names_every_valid_one(given_as, expected):
    with pytest.raises(UserError) as error:
        method_class("Adam", given_as)
    assert str(error.value).startswith(expected) and all(name in str(error.value) for name in METHODS)


def test_program_shape_is_fixed_for_zero_shot_methods_only():
    assert program_shape(MIPROv2, None) == "cot" and program_shape(MIPROv2, "predict") == "predict"
    assert program_shape(ZeroShotPredict, None) == "predict" and program_shape(ZeroShotCoT, "cot") == "cot"
    with pytest.raises(UserError, match="zeroshot-cot is the 'cot' program.*use zeroshot-predict"):
        program_shape(ZeroShotCoT, "predict")


def test_gepa_refuses_auto_none_before_spending():
    with pytest.raises(UserError, match="GEPA needs --auto light"):
        get_method("GEPA", MethodSettings(auto="none")).check()
    get_method("GEPA", MethodSettings(auto="light")).check()


def test_zero_random_candidates_is_for_bfrs_only():
    with pytest.raises(UserError, match="MIPROv2 needs --num-candidates of at least 1"):
        get_method("MIPROv2", MethodSettings(auto="none", num_candidates=0, num_trials=3)).check()
    with pytest.raises(UserError, match="SIMBA needs --num-candidates"):
        get_method("SIMBA", MethodSettings(num_candidates=0)).check()
    get_method("BootstrapFewShotWithRandomSearch", MethodSettings(num_candidates=0)).check()


def test_bfrs_without_random_candidates_compares_zero_shot_with_one_bootstrap():
    """The quickstart's budget: 2 validation passes (zero-shot, 2 unshuffled demos); labeled-only with 0 labels
    repeats the zero-shot requests, which HELM's cache answers."""
    import dspy
    from dspy.utils import DummyLM

    examples = [dspy.Example(question=f"q{i}", answer="A").with_inputs("question") for i in range(9)]
    trainset, valset = examples[:4], examples[4:]
    lm = DummyLM([{"answer": "A"}] * 50)
    method = BootstrapFewShotWithRandomSearch(
        MethodSettings(num_candidates=0, max_bootstrapped_demos=2, max_labeled_demos=0, num_threads=1)
    )
    with dspy.context(lm=lm):
        best = method.compile(dspy.Predict("question -> answer"), trainset, valset, lambda e, p, t=None: 1.0)
    prompts = [json.dumps(entry["messages"]) for entry in lm.history]
    assert len(set(prompts)) == 2 * len(valset) + 2  # two programs on the valset + the teacher on 2 train examples
    assert len(prompts) == 3 * len(valset) + 2  # the labeled-only pass repeats the zero-shot one
    assert len(best.predictors()[0].demos) == 0  # a tie keeps the first candidate, the zero-shot program
    assert method.estimate_runs(train_size=4, val_size=5) == 3 * 5 + 4


def test_estimates_follow_the_optimizers_budget_formulas():
    bfrs = BootstrapFewShotWithRandomSearch(MethodSettings(num_candidates=16))
    assert bfrs.estimate_runs(train_size=20, val_size=10) == 19 * 10 + 17 * 20
    mipro = MIPROv2(MethodSettings(auto="light"))  # 6 candidates, 10 trials with demos, valset <= 100
    assert mipro.estimate_runs(train_size=10, val_size=30) == 30 * (1 + 10) + 4 * 10  # n-2 bootstrapped demo sets
    assert mipro.estimate_runs(train_size=10, val_size=200) == 100 + 10 * 35 + 2 * 100 + 4 * 10
    assert ZeroShotCoT().estimate_runs(100, 100) == 0


# --- the agent store ----------------------------------------------------------------------------------


def test_agent_store_round_trip_with_manifest(tmp_path):
    store = AgentStore(str(tmp_path / "agents"))
    program = build_program("cot")
    program.predictors()[0].demos = [dspy.Example(inputs="q", reasoning="r", output="A")]
    agent = store.save("medbullets", "openai/gpt-4o", "MIPROv2", program, {"optimizer": "MIPROv2"})
    assert agent == tmp_path / "agents" / "medbullets" / "openai/gpt-4o" / "MIPROv2.json"
    assert store.finished("medbullets", "openai/gpt-4o", "MIPROv2")
    assert store.read_manifest("medbullets", "openai/gpt-4o", "MIPROv2") == {"optimizer": "MIPROv2"}
    loaded = store.load("medbullets", "openai/gpt-4o", "MIPROv2")
    assert describe_program(loaded) == {"demos": 1, "instructions_changed": False}


def test_agent_store_zero_shot_needs_no_file_and_missing_agent_prints_the_command(tmp_path):
    store = AgentStore(str(tmp_path / "mine"))
    assert isinstance(store.load("head_qa", "m/x", "zeroshot-predict"), dspy.Predict)
    with pytest.raises(UserError) as error:
        store.load("head_qa", "m/x", "MIPROv2", {"holdout": "50"}, local_path=str(tmp_path / "env"))
    message = str(error.value)
    assert "helm-dspy optimize --scenario head_qa:holdout=50 --model m/x --optimizer MIPROv2" in message
    assert f"--local-path {tmp_path / 'env'}" in message and f"--agents-dir {tmp_path / 'mine'}" in message


def test_agent_store_refuses_a_file_of_another_shape_or_not_json(tmp_path):
    store = AgentStore(str(tmp_path))
    store.save("medec", "m/x", "zeroshot-predict", build_program("cot"), {})
    with pytest.raises(UserError, match="saved for program shape 'cot', not 'predict'"):
        store.load("medec", "m/x", "zeroshot-predict")
    store.path("medec", "m/x", "GEPA").write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(UserError, match="not a UTF-8 JSON state file"):
        store.load("medec", "m/x", "GEPA")


def test_manifest_reads_unversioned_manifests_as_version_1():
    fields = {name: None for name in Manifest.__dataclass_fields__ if name not in ("data_files", "schema_version")}
    old = Manifest.from_dict({**fields, "optimized_program": {"demos": 0, "instructions_changed": False}})
    assert old.schema_version == 1 and old.unchanged_zero_shot
    assert Manifest(**{**fields, "optimized_program": {"demos": 2}}).to_dict()["schema_version"] == SCHEMA_VERSION


# --- scenario keys and run expanders --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,spec,key",
    [
        ("head_qa", ScenarioSpec("helm_dspy.scenarios.head_qa.HeadQADSPyScenario", {"language": "en"}), "head_qa"),
        (
            "medcalc_bench:version=v1.0",
            ScenarioSpec("helm_dspy.scenarios.medcalc_bench.MedCalcBenchDSPyScenario", {"version": "v1.0"}),
            "medcalc_bench:version=v1.0",
        ),
        (
            "medbullets:holdout=0.2",
            ScenarioSpec("helm_dspy.scenarios.medbullets.MedBulletsDSPyScenario", {"holdout": "0.2"}),
            "medbullets",
        ),
        (
            "mmlu:subject=anatomy,holdout=100",
            ScenarioSpec(
                "helm_dspy.scenarios.holdout.HoldoutScenario",
                {
                    "scenario": {
                        "class_name": "helm.benchmark.scenarios.mmlu_scenario.MMLUScenario",
                        "args": {"subject": "anatomy"},
                    },
                    "holdout": "100",
                },
            ),
            "mmlu:subject=anatomy",
        ),
    ],
)
def test_scenario_key_keeps_non_default_args_and_drops_holdouts(name, spec, key):
    assert scenario_key(name, spec) == key


MODEL = "scripted/plain"
"""An offline test deployment with no tokenizer: HELM renders prompts without truncating (simple/model1's tiny
window makes HELM truncate MedCalc's long notes token by token, a minute per prompt)."""


@pytest.fixture
def simple_session(tmp_path, use_mirror):
    from test_optimize import write_deployment

    import helm_dspy.plugin  # noqa: F401  (run specs and expanders, as helm-run loads them)

    (tmp_path / "answers.json").write_text("{}")
    write_deployment(tmp_path / "prod_env", MODEL, tmp_path / "answers.json")
    return HelmSession(str(tmp_path / "prod_env"))


def test_holdout_and_dspy_expanders_build_the_run_spec(simple_session, tmp_path, monkeypatch):
    from helm.benchmark.run_spec_factory import construct_run_specs
    from helm.benchmark.runner import set_benchmark_output_path
    from helm.common.object_spec import parse_object_spec

    from helm_dspy.optimize.dataset import build_run_spec

    monkeypatch.setenv("HELM_DSPY_AGENTS", str(tmp_path / "agents"))
    set_benchmark_output_path(str(tmp_path / "benchmark_output"))
    entry = "medbullets:model=simple/model1,holdout=0.2,dspy=zeroshot-cot"  # as a helm-run run entry
    [spec] = construct_run_specs(parse_object_spec(entry))
    assert spec.name.endswith("holdout=0.2,dspy=zeroshot-cot")
    assert spec.scenario_spec.args["holdout"] == "0.2"
    assert spec.adapter_spec.model == "simple/model1-helmdspy-zs-cot"
    assert spec.adapter_spec.model_deployment == "simple/model1-helmdspy-zs-cot@medbullets@holdout=0.2"
    assert spec.adapter_spec.max_tokens == 1024 and spec.adapter_spec.stop_sequences == []
    assert spec.adapter_spec.output_mapping_pattern  # DSPy answers are more than a letter
    assert spec.metric_specs[-1].class_name == "helm_dspy.metrics.dspy_usage.DSPyUsageMetric"
    for bad, message in [("abc", "neither a count nor a fraction"), ("5000", "takes 5000 of 308")]:
        with pytest.raises(UserError, match=message):
            build_run_spec(f"medbullets:holdout={bad}", "simple/model1", simple_session)


# --- HELM's metric on real rows, through the objective ---------------------------------------------------


def test_helm_metric_scores_real_rows_as_helm_run_does(simple_session, tmp_path):
    from helm_dspy.optimize.dataset import prepare, render
    from helm_dspy.optimize.objective import HelmMetric

    data = prepare("medcalc_bench:holdout=20", MODEL, simple_session, str(tmp_path / "out"), 4, 4)
    lab = next(i for i in data.splits.test if i.extra_data and i.extra_data.get("category") == "lab")
    data.states.update({state.instance.id: state for state in render(data.run_spec, [lab], simple_session)})
    metric = HelmMetric(data)
    assert metric.metric_name == "medcalc_bench_accuracy_fixed"  # HELM's main metric, corrected
    middle = (float(lab.extra_data["lower_limit"]) + float(lab.extra_data["upper_limit"])) / 2
    assert metric.score(lab.id, str(middle)) == 1.0
    assert metric.score(lab.id, str(float(lab.extra_data["upper_limit"]) * 10 + 1)) == 0.0
    mc = prepare("medbullets:holdout=0.2", MODEL, simple_session, str(tmp_path / "out"), 2, 2)
    example = mc.valid[0]
    gold, wrong = example["output"], "A" if example["output"] != "A" else "B"
    assert HelmMetric(mc).score(example.instance_id, f"Reasoning... so the answer is {gold}.") == 1.0
    assert HelmMetric(mc).score(example.instance_id, wrong) == 0.0


# --- the bridge --------------------------------------------------------------------------------------


def test_dspy_request_maps_to_one_helm_request(simple_session):
    engine = HelmEngine(simple_session, "simple/model1", UsageCounter(), random="rollout=3")
    request = Request(
        model="helm/simple/model1",
        system="You answer.",
        messages=[Message.user("Q?"), Message.assistant("A"), Message.user("Q2?")],
        config=Config(temperature=0.7, stop=("\n\n",)),
    )
    engine.use_messages = True  # a chat client (SimpleClient reads only the prompt: below)
    helm_request = engine.helm_request(request)
    assert helm_request.messages == chat_messages(request)
    assert [m["role"] for m in helm_request.messages] == ["system", "user", "assistant", "user"]
    assert (helm_request.temperature, helm_request.max_tokens, helm_request.stop_sequences) == (0.7, 1024, ["\n\n"])
    assert helm_request.random == "rollout=3" and helm_request.model_deployment == "simple/model1"
    engine.use_messages = False  # HELM clients that read only the prompt get the messages flattened
    assert engine.helm_request(request).prompt == "You answer.\n\nQ?\n\nA\n\nQ2?"


def _failed(error: str = "boom") -> RequestResult:
    return RequestResult(success=False, cached=False, completions=[], embedding=[], error=error)


def _ok() -> RequestResult:
    return RequestResult(success=True, cached=False, completions=[], embedding=[])


def test_call_guard_sends_identical_requests_in_flight_once_and_never_resends_a_failure():
    guard, sent = CallGuard(), []
    first = HelmRequest(model="a/b", model_deployment="a/b", prompt="x")

    def slow_failure():
        sent.append(1)
        time.sleep(0.3)
        return _failed()

    guard.send("a/b", HelmRequest(model="a/b", model_deployment="a/b", prompt="ok"), _ok)  # the provider answers
    threads = [threading.Thread(target=guard.send, args=("a/b", first, slow_failure)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 1  # three identical requests in flight: one sent
    assert guard.send("a/b", first, slow_failure).error == "boom" and len(sent) == 1  # a failure is final
    assert guard.down("a/b") is None  # one failure of a provider that answers: not down


def test_call_guard_puts_a_deployment_down():
    guard = CallGuard(max_consecutive_failures=3)
    guard.send("dead/x", HelmRequest(model="dead/x", model_deployment="dead/x", prompt="1"), lambda: _failed("503"))
    assert guard.down("dead/x") == "503"  # its first call failed after HELM's retries
    with pytest.raises(ProviderDown, match="503"):
        guard.send("dead/x", HelmRequest(model="dead/x", model_deployment="dead/x", prompt="2"), _ok)
    guard.send("flaky/x", HelmRequest(model="flaky/x", model_deployment="flaky/x", prompt="0"), _ok)
    for index in range(3):
        guard.send("flaky/x", HelmRequest(model="flaky/x", model_deployment="flaky/x", prompt=str(index + 1)), _failed)
    assert guard.down("flaky/x") == "boom"  # three in a row after a success


# --- one prompt text, training and serving ---------------------------------------------------------------


def test_training_and_serving_see_the_same_text_for_a_chat_adapter_run_spec(simple_session, tmp_path):
    """The four MedHELM run specs render prompts; a chat-adapter run spec renders messages: one text for both."""
    from helm.benchmark.adaptation.adapter_spec import AdapterSpec
    from helm.benchmark.scenarios.scenario import Input

    from helm_dspy.core.prompt import program_input
    from helm_dspy.evaluate.agent_client import DSPyAgentClient
    from helm_dspy.optimize.dataset import build_run_spec, load_splits, render, to_examples

    for entry in ("medcalc_bench:holdout=20", "medec", "head_qa", "medbullets:holdout=0.2"):
        spec = build_run_spec(entry, MODEL, simple_session)
        states = render(spec, load_splits(spec, str(tmp_path / "out")).valid[:2], simple_session)
        assert [e["inputs"] for e in to_examples(states)] == [program_input(s.request) for s in states]
        assert all(state.request.prompt and not state.request.messages for state in states)
    chat = replace(spec, adapter_spec=AdapterSpec(**{**spec.adapter_spec.__dict__, "method": "chat"}))
    instances = [
        replace(
            i,
            input=Input(
                messages=[{"role": "system", "content": "You are a doctor."}, {"role": "user", "content": i.input.text}]
            ),
        )
        for i in load_splits(chat, str(tmp_path / "out")).valid[:2]
    ]
    states = render(chat, instances, simple_session)
    assert all(state.request.messages for state in states), "the chat adapter renders messages"
    trained = [example["inputs"] for example in to_examples(states)]
    served = [program_input(state.request) for state in states]  # what DSPyAgentClient passes as inputs
    assert trained == served and all(text.startswith("system: You are a doctor.") for text in trained)
    assert "program_input" in DSPyAgentClient.make_request.__code__.co_names


def test_options_are_built_from_one_definition():
    import argparse

    from helm_dspy.core.options import add_options, from_args
    from helm_dspy.optimize.run import OptimizeOptions

    parser = argparse.ArgumentParser()
    add_options(parser, OptimizeOptions)
    args = parser.parse_args(["--scenario", "medec", "--model", "m/x", "--optimizer", "SIMBA", "--bsize", "4"])
    options = from_args(OptimizeOptions, args)
    assert (options.scenario, options.settings.bsize, options.settings.num_threads, options.max_val) == (
        "medec",
        4,
        4,
        100,
    )
    with pytest.raises(UserError, match="--max-train must be at least 1"):
        from_args(
            OptimizeOptions,
            parser.parse_args(["--scenario", "s", "--model", "m", "--optimizer", "x", "--max-train", "0"]),
        )
    flags = {action.dest for action in parser._actions}
    settings = set(MethodSettings.__dataclass_fields__)
    assert settings <= flags  # every method knob is a flag, defined once on MethodSettings


def test_secrets_are_masked_in_log_records_and_tracebacks(monkeypatch):
    import logging

    from helm_dspy import secrets

    monkeypatch.setenv("ACME_API_KEY", "acme-secret-123456")
    secrets.install_log_redaction()
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = logging.getLogger("helm")
    handler = Keep()
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("Incorrect API key provided: Bearer sk-abcdefghijklmnopqrstuvwx and acme-secret-123456")
        except RuntimeError:
            logger.exception("provider said %s", "acme-secret-123456")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "Incorrect API key provided" in text and "Traceback" in text
    assert "acme-secret-123456" not in text and "sk-abcdefghijklmnopqrstuvwx" not in text
    assert json.dumps(secrets.redact("key=acme-secret-123456")) == '"key=***"'


def test_optimize_refuses_a_program_shape_its_method_cannot_serve(tmp_path):
    """Before: the agent was written, then `helm-run ... dspy=zeroshot-cot` refused it. Now: one line, up front."""
    from conftest import run_command

    args = ["helm-dspy", "optimize", "--scenario", "medbullets", "--model", "simple/model1"]
    result = run_command([*args, "--optimizer", "zeroshot-cot", "--program", "predict"], cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "zeroshot-cot is the 'cot' program; drop --program predict or use zeroshot-predict" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_list_options_are_comma_separated():
    import argparse

    from helm_dspy.core.options import add_options, from_args
    from helm_dspy.quickstart.run import QuickstartOptions

    parser = argparse.ArgumentParser()
    add_options(parser, QuickstartOptions)
    assert from_args(QuickstartOptions, parser.parse_args(["--scenarios", "medbullets"])).scenarios == ["medbullets"]
    default = from_args(QuickstartOptions, parser.parse_args([]))
    assert default.scenarios == ["medcalc_bench", "medec", "head_qa", "medbullets"] and default.n_ctx is None


def test_comma_lists_keep_a_run_entrys_arguments_together():
    from helm_dspy.core.options import split_list

    assert split_list("medbullets:holdout=0.2,holdout_seed=7,head_qa, mmlu:subject=anatomy") == [
        "medbullets:holdout=0.2,holdout_seed=7",
        "head_qa",
        "mmlu:subject=anatomy",
    ]
    assert split_list("MIPROv2,zeroshot-cot,") == ["MIPROv2", "zeroshot-cot"]


def test_options_round_trip_through_flags():
    """What the grid hands ``helm-dspy optimize`` is the options it meant (``to_args`` inverts ``from_args``)."""
    import argparse

    from helm_dspy.core.options import add_options, from_args, to_args
    from helm_dspy.optimize.run import OptimizeOptions

    options = OptimizeOptions(
        scenario="medbullets:holdout=0.2,holdout_seed=7",
        model="m/x",
        optimizer="MIPROv2",
        data_dir="/mirror",
        force=True,
        settings=MethodSettings(auto="none", num_candidates=2, num_trials=3, num_threads=1, seed=5),
    )
    parser = argparse.ArgumentParser()
    add_options(parser, OptimizeOptions)
    assert from_args(OptimizeOptions, parser.parse_args(to_args(options))) == options
