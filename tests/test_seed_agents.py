"""The 32 agents the seed project published load into our program and run on a real instance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dspy
import pytest
from test_optimize import write_deployment

from helm_dspy.bridge.lm import UsageCounter, helm_lm
from helm_dspy.bridge.session import HelmSession
from helm_dspy.core.program import load_program
from helm_dspy.errors import UserError
from helm_dspy.optimize.dataset import prepare
from helm_dspy.optimize.objective import HelmMetric

SEED_AGENTS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "seed-agents"
ENTRIES = {
    "medcalc_bench": "medcalc_bench:holdout=20",
    "medec": "medec",
    "head_qa": "head_qa",
    "medbullets": "medbullets:holdout=0.2",
}


def seed_agent_files() -> list[Path]:
    return sorted(SEED_AGENTS.glob("*/*/*.json"))


@pytest.fixture(scope="module")
def scenario_data(mirror_dir, tmp_path_factory):
    import os

    if not SEED_AGENTS.is_dir():
        pytest.skip("seed agents not found beside the checkout (../shared/reference/seed-agents)")
    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    root = tmp_path_factory.mktemp("seed")
    answers = root / "answers.json"
    write_deployment(root / "prod_env", "scripted/right", answers, mode="always_right")
    session = HelmSession(str(root / "prod_env"))
    data = {
        name: prepare(entry, "scripted/right", session, str(root / "out"), max_train=2, max_val=1)
        for name, entry in ENTRIES.items()
    }
    answers.write_text(
        json.dumps({" ".join(d.valid[0]["inputs"].split()): d.valid[0]["output"] for d in data.values()})
    )
    return session, data


def test_all_32_seed_agents_present():
    if not SEED_AGENTS.is_dir():
        message = f"seed agents not found at {SEED_AGENTS}"
        pytest.fail(message) if os.environ.get("CI", "").lower() == "true" else pytest.skip(message)
    assert len(seed_agent_files()) == 32


@pytest.mark.parametrize("path", seed_agent_files(), ids=lambda p: "/".join(p.parts[-3:]))
def test_seed_agent_runs_on_real_instance(scenario_data, path):
    session, data = scenario_data
    scenario = path.parts[-3]
    program = load_program(path)
    assert len(program.predict.demos) >= 1
    example = data[scenario].valid[0]
    usage = UsageCounter()
    with dspy.context(lm=helm_lm(session, "scripted/right", usage)):
        prediction = program(**example.inputs())
    assert prediction.output == example["output"]
    assert HelmMetric(data[scenario])(example, prediction) == 1.0
    messages = usage.calls  # one chat request holding the agent's demos
    assert messages == 1


def test_predict_shape_mismatch_is_one_line_error(tmp_path):
    files = seed_agent_files()
    if not files:
        pytest.skip("no seed agents")
    with pytest.raises(UserError, match="saved for program shape 'cot', not 'predict'"):
        load_program(files[0], shape="predict")
    bad = tmp_path / "bad.json"
    bad.write_text('{"something": 1}')
    with pytest.raises(UserError, match="neither a ChainOfThought nor a Predict state"):
        load_program(bad)
    pickled = tmp_path / "agent.pkl"
    pickled.write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match="pickled programs are never loaded"):
        load_program(pickled)
