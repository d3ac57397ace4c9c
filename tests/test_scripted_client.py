"""The scripted HELM client (tests/scripted_client.py), driven through the product's LM bridge and HELM's AutoClient."""

from __future__ import annotations

import json

import dspy
import pytest
import yaml
from helm.common.request import Request as HelmRequest
from scripted_client import GARBAGE, MAGIC_INSTRUCTION, REASONING, UNKNOWN, WRONG, ScriptedClient

from helm_dspy.bridge.lm import HelmEngine, HelmLM, UsageCounter
from helm_dspy.bridge.session import HelmSession

QUESTIONS = {
    "What is 2 + 2?": "4",
    "Name the largest planet.": "Jupiter",
    "What colour is the sky at noon?": "blue",
    "Which organ pumps blood?": "heart",
    "How many legs does a spider have?": "8",
    "What is the chemical symbol of gold?": "Au",
    "Spell cat backwards.": "tac",
    "What is  the capital\nof   France?": "Paris",
    "What is the boiling point of water in C?": "100",
}
DEMO = dspy.Example(inputs="Demo question?", reasoning="Demo reasoning.", output="demo answer")
DEPLOYMENTS = {"scripted/oracle": "oracle", "scripted/always-right": "always_right", "scripted/garbage": "garbage"}


class RecordingEngine(HelmEngine):
    """The product's engine, keeping each HELM result so the tests can look at what the scripted client said."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.results = []

    def _send(self, helm_request):
        result = super()._send(helm_request)
        self.results.append(result)
        return result


@pytest.fixture(scope="module")
def helm_client(tmp_path_factory) -> HelmSession:
    """The product's HELM session over a tmp prod_env declaring the scripted deployments (own sqlite cache)."""
    root = tmp_path_factory.mktemp("scripted")
    answers = root / "answers.json"
    answers.write_text(json.dumps(QUESTIONS))
    prod_env = root / "prod_env"
    prod_env.mkdir()
    deployments = [
        {
            "name": name,
            "model_name": name,
            "client_spec": {
                "class_name": "scripted_client.ScriptedClient",
                "args": {"answers_path": str(answers), "mode": mode},
            },
        }
        for name, mode in DEPLOYMENTS.items()
    ]
    (prod_env / "model_deployments.yaml").write_text(yaml.safe_dump({"model_deployments": deployments}))
    return HelmSession(str(prod_env))


def make_lm(helm_client: HelmSession, deployment: str = "scripted/oracle") -> tuple[dspy.LM, RecordingEngine]:
    engine = RecordingEngine(helm_client, deployment, UsageCounter())
    lm = HelmLM(f"helm/{deployment}", engine=engine, cache=False, num_retries=0, temperature=0.0, max_tokens=200)
    return lm, engine


def predict(helm_client, program, deployment: str = "scripted/oracle", adapter=None, **inputs):
    lm, engine = make_lm(helm_client, deployment)
    with dspy.context(lm=lm, adapter=adapter or dspy.ChatAdapter()):
        return program(**inputs), engine


def test_oracle_without_help_is_wrong(helm_client):
    prediction, engine = predict(helm_client, dspy.ChainOfThought("inputs -> output"), inputs="What is 2 + 2?")
    assert prediction.output == WRONG
    assert prediction.reasoning == REASONING
    assert len(engine.results) == 1 and engine.results[0].success


def test_oracle_with_a_demo_is_gold(helm_client):
    program = dspy.ChainOfThought("inputs -> output")
    program.predict.demos = [DEMO]
    prediction, engine = predict(helm_client, program, inputs="Name the largest planet.")
    assert prediction.output == "Jupiter"
    assert len(engine.results) == 1


def test_oracle_with_magic_instructions_is_gold(helm_client):
    program = dspy.ChainOfThought("inputs -> output")
    program.predict.signature = program.predict.signature.with_instructions("Answer tersely. MAGIC")
    prediction, _ = predict(helm_client, program, inputs="What colour is the sky at noon?")
    assert prediction.output == "blue"


def test_gold_key_is_whitespace_collapsed(helm_client):
    program = dspy.Predict("inputs -> output")
    program.demos = [DEMO]
    prediction, _ = predict(helm_client, program, inputs="  What is the capital of\n\nFrance?  ")
    assert prediction.output == "Paris"


def test_unknown_inputs_answer_unknown(helm_client):
    program = dspy.ChainOfThought("inputs -> output")
    program.predict.demos = [DEMO]
    prediction, _ = predict(helm_client, program, inputs="A question nobody wrote down.")
    assert prediction.output == UNKNOWN


def test_always_right_needs_no_help(helm_client):
    program = dspy.ChainOfThought("inputs -> output")
    prediction, _ = predict(helm_client, program, "scripted/always-right", inputs="Which organ pumps blood?")
    assert prediction.output == "heart"


def test_garbage_cannot_be_parsed(helm_client):
    program = dspy.ChainOfThought("inputs -> output")
    lm, engine = make_lm(helm_client, "scripted/garbage")
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()), pytest.raises(dspy.AdapterParseError):
        program(inputs="What is 2 + 2?")
    assert engine.results and all(r.completions[0].text == GARBAGE for r in engine.results)
    assert all("[[ ##" not in r.completions[0].text for r in engine.results)


def test_identical_request_is_served_from_helm_cache(helm_client):
    program = dspy.ChainOfThought("inputs -> output")
    program.predict.demos = [DEMO]
    first, engine_1 = predict(helm_client, program, inputs="How many legs does a spider have?")
    second, engine_2 = predict(helm_client, program, inputs="How many legs does a spider have?")
    assert first.output == second.output == "8"
    assert [r.cached for r in engine_1.results] == [False]
    assert [r.cached for r in engine_2.results] == [True]
    assert engine_1.results[0].completions[0].text == engine_2.results[0].completions[0].text
    tokens = engine_2.results[0].completions[0].tokens
    assert [t.text for t in tokens] == engine_2.results[0].completions[0].text.split()


def test_non_str_fields_get_parsable_json(helm_client):
    prediction, _ = predict(helm_client, dspy.Predict("inputs -> hints: list[str]"), inputs="What is 2 + 2?")
    assert prediction.hints == [MAGIC_INSTRUCTION]
    signature = "inputs -> count: int, ratio: float, flag: bool, notes: dict[str, int], pick: Literal['x', 'y']"
    prediction, _ = predict(helm_client, dspy.Predict(signature), inputs="What is 2 + 2?")
    assert (prediction.count, prediction.ratio, prediction.flag, prediction.notes, prediction.pick) == (
        1,
        1.0,
        True,
        {},
        "x",
    )


def test_optimizer_signatures_get_magic(helm_client):
    advice = dspy.Predict("module_names: list[str] -> discussion: str, module_advice: dict[str, str]")
    prediction, _ = predict(helm_client, advice, module_names=["predict", "other"])
    assert "MAGIC" in prediction.discussion
    assert prediction.module_advice == {"predict": MAGIC_INSTRUCTION, "other": MAGIC_INSTRUCTION}
    proposer = dspy.ChainOfThought("task_demos, basic_instruction -> proposed_instruction")
    prediction, _ = predict(helm_client, proposer, task_demos="...", basic_instruction="Answer.")
    assert "MAGIC" in prediction.proposed_instruction


def test_json_adapter_prompts_get_a_json_object(helm_client):
    program = dspy.ChainOfThought("inputs -> output")
    program.predict.demos = [DEMO]
    prediction, engine = predict(helm_client, program, adapter=dspy.JSONAdapter(), inputs="Spell cat backwards.")
    assert prediction.output == "tac"
    assert json.loads(engine.results[-1].completions[0].text)["reasoning"] == REASONING


def flat_prompt(signature, demos, inputs: str) -> str:
    messages = dspy.ChatAdapter().format(dspy.ensure_signature(signature), demos, {"inputs": inputs})
    return "\n\n".join(m["content"] for m in messages)


def raw_call(helm_client, deployment="scripted/oracle", **request) -> str:
    result = helm_client.client.make_request(HelmRequest(model_deployment=deployment, model=deployment, **request))
    assert result.success and len(result.completions) == 1
    return result.completions[0].text


def test_plain_prompt_requests(helm_client):
    adapter = dspy.ChatAdapter()
    signature = dspy.ChainOfThought("inputs -> output").predict.signature
    question = "What is the chemical symbol of gold?"
    text = raw_call(helm_client, prompt=flat_prompt(signature, [], question))
    assert adapter.parse(signature, text) == {"reasoning": REASONING, "output": WRONG}
    text = raw_call(helm_client, prompt=flat_prompt(signature, [DEMO], question))
    assert adapter.parse(signature, text)["output"] == "Au"
    text = raw_call(helm_client, prompt=flat_prompt(signature.with_instructions("Be exact. MAGIC"), [], question))
    assert adapter.parse(signature, text)["output"] == "Au"
    assert raw_call(helm_client, "scripted/always-right", prompt=question) == "Au"  # no DSPy fields: whole prompt
    assert raw_call(helm_client, "scripted/garbage", prompt=flat_prompt(signature, [], question)) == GARBAGE
    messages = [{"role": "user", "content": flat_prompt(signature, [DEMO], question)}]  # DSPy text, no system role
    assert adapter.parse(signature, raw_call(helm_client, messages=messages))["output"] == "Au"


def test_sampled_rollouts_are_sometimes_lucky(helm_client):
    signature = dspy.ChainOfThought("inputs -> output").predict.signature
    prompt = flat_prompt(signature, [], "Name the largest planet.")
    outputs = {
        random: dspy.ChatAdapter().parse(
            signature, raw_call(helm_client, prompt=prompt, temperature=1.0, random=random)
        )
        for random in (f"rollout={i}" for i in range(12))
    }
    assert {o["output"] for o in outputs.values()} == {"Jupiter", WRONG}  # right by luck for some rollouts only
    again = raw_call(helm_client, prompt=prompt, temperature=1.0, random="rollout=0")
    assert dspy.ChatAdapter().parse(signature, again) == outputs["rollout=0"]
    assert raw_call(helm_client, prompt=prompt, temperature=0.0, random="rollout=0").count(WRONG) == 1  # not sampled
    assert WRONG in raw_call(helm_client, prompt=prompt, temperature=1.0)  # sampled, but no rollout id


def test_gepa_reflection_prompt_gets_a_magic_instruction(helm_client):
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    prompt = InstructionProposalSignature.prompt_renderer(
        {"current_instruction_doc": "Answer.", "dataset_with_feedback": [{"Inputs": "q", "Feedback": "wrong"}]}
    )
    text = raw_call(helm_client, messages=[{"role": "user", "content": prompt}])
    assert InstructionProposalSignature.output_extractor(text)["new_instruction"] == MAGIC_INSTRUCTION


def test_answers_file_is_reread_and_bad_mode_is_refused(tmp_path):
    answers = tmp_path / "answers.json"
    answers.write_text("{}")
    client = ScriptedClient(cache_config=None, answers_path=str(answers), mode="always_right")
    assert client.answers() == {}
    answers.write_text(json.dumps({"What   is 1+1?": "2", "x": "y"}))
    assert client.answers()["What is 1+1?"] == "2"
    with pytest.raises(ValueError, match="mode"):
        ScriptedClient(cache_config=None, answers_path=str(answers), mode="sometimes")
