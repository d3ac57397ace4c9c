"""The report tells an optimizer's agent that is still the zero-shot program, and the zero-shot control, apart.

Fast tests build helm-run output folders by hand; the slow one goes through optimize, helm-run and report.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

MODEL = "openai/gpt-4o-2024-05-13"
SCENARIO = "medbullets:holdout=0.2"
IDS = [f"id{i}" for i in range(6)]
UNCHANGED = "= zero-shot program (unchanged)"
CONTROL = "control (zero-shot, not optimized)"


def write_run(suite: Path, slug: str | None, scores: list[float], agent: tuple[int, bool] | None) -> None:
    """One run folder as helm-run writes it: run_spec.json and per_instance_stats.json (test split only)."""
    model = f"{MODEL}-helmdspy-{slug}" if slug else MODEL
    name = f"medbullets:model={model.replace('/', '_')},holdout=0.2"
    folder = suite / name
    folder.mkdir(parents=True)
    scenario_spec = {"class_name": "helm_dspy.scenarios.medbullets.MedBulletsDSPyScenario", "args": {"holdout": "0.2"}}
    spec = {"name": name, "scenario_spec": scenario_spec, "adapter_spec": {"model": model}}
    (folder / "run_spec.json").write_text(json.dumps(spec))

    def stat(metric: str, value: float) -> dict:
        return {"name": {"name": metric, "split": "test"}, "count": 1, "sum": value, "min": value, "max": value}

    entries = []
    for instance, score in zip(IDS, scores, strict=True):
        stats = [stat("exact_match", score), stat("num_prompt_tokens", 100.0)]
        if slug:
            stats += [stat("dspy_lm_calls", 1.0), stat("dspy_prompt_tokens", 300.0)]
        if agent is not None:
            stats += [stat("dspy_agent_demos", agent[0]), stat("dspy_agent_instructions_changed", float(agent[1]))]
        entries.append({"instance_id": instance, "train_trial_index": 0, "stats": stats})
    (folder / "per_instance_stats.json").write_text(json.dumps(entries))


@pytest.fixture
def suite_dir(tmp_path) -> Path:
    suite = tmp_path / "benchmark_output" / "runs" / "marks"
    write_run(suite, None, [0, 0, 1, 0, 0, 1], None)
    write_run(suite, "miprov2", [1, 0, 1, 1, 0, 1], (0, False))  # optimizer kept the zero-shot program
    write_run(suite, "bfrs", [1, 1, 1, 1, 0, 1], (3, False))  # optimizer added demos
    write_run(suite, "zs-cot", [1, 0, 1, 1, 0, 1], (0, False))  # the control
    write_run(suite, "gepa", [0, 0, 1, 0, 0, 1], None)  # a run that did not report its agent
    return suite


def test_table_csv_json_and_plot_mark_unchanged_agents_and_the_control(suite_dir):
    import pandas as pd

    from helm_dspy.report.report import format_table, report

    rows, paths = report("marks", str(suite_dir.parent.parent))
    by_method = {row.method: row for row in rows}
    table = format_table(rows)
    lines = {line.split()[2]: line for line in table.splitlines()[1:] if line.startswith(SCENARIO)}
    assert lines["MIPROv2"].endswith(UNCHANGED)
    assert lines["zeroshot-cot"].endswith(CONTROL)
    assert lines["BootstrapFewShotWithRandomSearch"].endswith("3 demos")
    assert UNCHANGED not in lines["baseline"] + lines["GEPA"] + lines["BootstrapFewShotWithRandomSearch"]
    assert lines["GEPA"].endswith("1800/0")  # unknown agent: no claim either way
    footnotes = table.splitlines()[len(rows) + 1 :]
    assert len(footnotes) == 2 and footnotes[0].startswith(CONTROL) and footnotes[1].startswith(UNCHANGED)
    assert by_method["MIPROv2"].unchanged_zero_shot is True

    records = {record["method"]: record for record in json.loads(paths["json"].read_text())}
    assert {m: r["unchanged_zero_shot"] for m, r in records.items()} == {
        "baseline": False,
        "zeroshot-cot": False,
        "MIPROv2": True,
        "BootstrapFewShotWithRandomSearch": False,
        "GEPA": None,
    }
    assert {m: r["role"] for m, r in records.items()} == {
        "baseline": "baseline",
        "zeroshot-cot": "control",
        "MIPROv2": "method",
        "BootstrapFewShotWithRandomSearch": "method",
        "GEPA": "method",
    }
    assert (records["MIPROv2"]["agent_demos"], records["MIPROv2"]["agent_instructions_changed"]) == (0, False)
    assert (records["BootstrapFewShotWithRandomSearch"]["agent_demos"], records["GEPA"]["agent_demos"]) == (3, None)
    csv = pd.read_csv(paths["csv"]).set_index("method")
    assert {"role", "unchanged_zero_shot", "agent_demos", "agent_instructions_changed"} <= set(csv.columns)
    assert csv.loc["MIPROv2", "unchanged_zero_shot"] == True  # noqa: E712 (pandas reads a bool-or-empty column)
    assert csv.loc["BootstrapFewShotWithRandomSearch", "unchanged_zero_shot"] == False  # noqa: E712
    assert pd.isna(csv.loc["GEPA", "unchanged_zero_shot"])
    assert paths["png"].stat().st_size > 5000


def plot_and_inspect(monkeypatch, rows, path, inspect):
    """``report.plot(rows, path)`` with ``inspect(figure)`` called on the finished figure just before it is saved."""
    import matplotlib.figure

    from helm_dspy.report.report import plot

    save = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        inspect(figure)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return plot(rows, str(path))


def test_plot_labels_the_control_and_hatches_unchanged_agents(suite_dir, tmp_path, monkeypatch):
    from helm_dspy.report.report import HATCH, attach_agents, compare, read_suite

    runs = read_suite(str(suite_dir.parent.parent), "marks")
    rows = attach_agents(compare(runs), runs)
    hatched: list[tuple[str, float]] = []

    def bars(figure):
        for axis in figure.axes:
            hatched.extend((bar.get_hatch() or "", bar.get_height()) for bar in axis.patches)

    labels = plot_and_inspect(monkeypatch, rows, tmp_path / "plot.png", bars)
    assert labels[:2] == ["HELM prompt (baseline)", "DSPy zero-shot CoT (control)"]
    assert "DSPy MIPROv2" in labels and labels[-1] == f"hatched: agent {UNCHANGED}, not optimized"
    assert [height for hatch, height in hatched if hatch == HATCH] == [
        next(r.score for r in rows if r.method == "MIPROv2")
    ]
    assert (tmp_path / "plot.png").stat().st_size > 5000


def test_scenario_labels_of_the_plot_do_not_overlap(tmp_path, monkeypatch):
    """The lift's two entries side by side, four methods each: every tick label stays clear of its neighbour."""
    from helm_dspy.report.report import BASELINE, ReportRow, tick_label

    assert tick_label("head_qa:language=en,category=None") == "head_qa\nlanguage=en\ncategory=None"
    assert tick_label("medec") == "medec"
    methods = [BASELINE, "zeroshot-cot", "zeroshot-predict", "BootstrapFewShotWithRandomSearch"]
    rows = [
        ReportRow(scenario, "local/qwen2.5-coder-1.5b-instruct", method, "exact_match", 100, 0.4, 0.4, 0.0,
                  0.0, 0.0, 0.3, 0.5, {})
        for scenario in ("head_qa:language=en,category=None", "medbullets:holdout=100")
        for method in methods
    ]  # fmt: skip
    boxes = []

    def extents(figure):
        renderer = figure.canvas.get_renderer()
        boxes.extend(label.get_window_extent(renderer) for label in figure.axes[0].get_xticklabels())
        boxes.append(figure.axes[0].get_legend().get_window_extent(renderer))

    plot_and_inspect(monkeypatch, rows, tmp_path / "plot.png", extents)
    first, second, legend = boxes
    assert first.x1 < second.x0  # side by side, apart
    assert legend.y1 < min(first.y0, second.y0)  # the legend below every line of them


def test_usage_metric_reports_the_agent_only_when_the_client_did():
    from helm_dspy.metrics.dspy_usage import DSPyUsageMetric

    def stats_for(details: dict) -> dict[str, float]:
        completion = SimpleNamespace(finish_reason=details)
        state = SimpleNamespace(result=SimpleNamespace(completions=[completion]))
        return {s.name.name: s.sum for s in DSPyUsageMetric().evaluate_generation(None, state, None, None)}

    reported = stats_for({"dspy_lm_calls": 1, "dspy_agent_demos": 2, "dspy_agent_instructions_changed": True})
    assert (reported["dspy_agent_demos"], reported["dspy_agent_instructions_changed"]) == (2.0, 1.0)
    assert "dspy_agent_demos" not in stats_for({"dspy_lm_calls": 1})  # unknown, not "0 demos"
    names = {m.name for m in DSPyUsageMetric().get_metadata()}
    assert {"dspy_agent_demos", "dspy_agent_instructions_changed"} <= names


def test_describe_program_is_shared_by_optimize_and_the_client():
    import dspy

    from helm_dspy.core.program import build_program, describe_program
    from helm_dspy.evaluate import agent_client
    from helm_dspy.optimize import run

    assert run.describe_program is describe_program is agent_client.describe_program
    program = build_program("cot")
    assert describe_program(program) == {"demos": 0, "instructions_changed": False}
    program.predictors()[0].demos = [dspy.Example(inputs="q", output="A")]
    assert describe_program(program)["demos"] == 1


def test_quickstart_evaluates_the_zero_shot_cot_control_without_optimizing_it():
    """Quickstart is a grid preset: the control is in every helm-run, never an optimize cell."""
    from helm_dspy.grid.cells import Evaluation, OptimizeCell, build_graph
    from helm_dspy.quickstart.run import QuickstartOptions, quickstart_grid

    grid = quickstart_grid(
        QuickstartOptions(
            model="m/x",
            scenarios=["medec", "head_qa"],
            optimizers=["BootstrapFewShotWithRandomSearch", "MIPROv2"],
            controls=["zeroshot-cot"],
        )
    )
    nodes = build_graph(grid)
    evaluations = [node for node in nodes if isinstance(node, Evaluation)]
    assert [e.scenario for e in evaluations] == ["medec", "head_qa"]
    assert all(e.methods == ["zeroshot-cot", "BootstrapFewShotWithRandomSearch", "MIPROv2"] for e in evaluations)
    cells = {(node.scenario, node.method.name) for node in nodes if isinstance(node, OptimizeCell)}
    assert {method for _, method in cells} == {"BootstrapFewShotWithRandomSearch", "MIPROv2"}

    named_twice = quickstart_grid(
        QuickstartOptions(
            model="m/x",
            scenarios=["medec"],
            optimizers=["BootstrapFewShotWithRandomSearch", "zeroshot-cot"],
            controls=["zeroshot-cot"],
        )
    )
    nodes = build_graph(named_twice)
    [evaluation] = [node for node in nodes if isinstance(node, Evaluation)]
    assert evaluation.methods == ["BootstrapFewShotWithRandomSearch", "zeroshot-cot"]  # named as a method: run once
    assert [node.method.name for node in nodes if isinstance(node, OptimizeCell)] == [
        "BootstrapFewShotWithRandomSearch"
    ]


@pytest.mark.slow
def test_report_marks_only_the_unchanged_agent_end_to_end(mirror_dir, tmp_path):
    """optimize (BFRS, its agent has demos) -> a hand-written agent with no demos -> helm-run -> helm-dspy report."""
    import os

    import dspy
    from conftest import REPO_ROOT, run_command
    from test_evaluate import ENTRY
    from test_optimize import write_deployment

    from helm_dspy.bridge.session import HelmSession
    from helm_dspy.core.methods import MethodSettings
    from helm_dspy.optimize.dataset import prepare, render, to_examples
    from helm_dspy.optimize.run import OptimizeOptions, optimize

    os.environ["HELM_DSPY_DATA_DIR"] = str(mirror_dir)
    answers = tmp_path / "answers.json"
    answers.write_text("{}")
    write_deployment(tmp_path / "prod_env", "scripted/oracle", answers, tokenizer="simple/tokenizer1")
    session = HelmSession(str(tmp_path / "prod_env"))
    data = prepare("medbullets:holdout=0.2", "scripted/oracle", session, str(tmp_path / "benchmark_output"))
    test = to_examples(render(data.run_spec, data.splits.test, session))
    answers.write_text(json.dumps({" ".join(e["inputs"].split()): e["output"] for e in data.train + data.valid + test}))
    result = optimize(
        OptimizeOptions(
            scenario="medbullets",
            model="scripted/oracle",
            optimizer="BootstrapFewShotWithRandomSearch",
            agents_dir=str(tmp_path / "agents"),
            local_path=str(tmp_path / "prod_env"),
            output_path=str(tmp_path / "benchmark_output"),
            max_train=4,
            max_val=4,
            settings=MethodSettings(num_candidates=1, num_threads=2, seed=3),
        ),
        out=lambda line: None,
    )
    assert result.manifest["optimized_program"]["demos"] > 0
    agents = result.agent_path.parent
    (agents / "MIPROv2.json").write_text(json.dumps(dspy.ChainOfThought("inputs -> output").dump_state(), default=str))

    methods = ("BootstrapFewShotWithRandomSearch", "MIPROv2", "zeroshot-cot")
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    entries = [ENTRY, *(f"{ENTRY},dspy={method}" for method in methods)]
    run = run_command(
        ["helm-run", "--run-entries", *entries, "--max-eval-instances", "4", "-n", "2", "--suite", "marks"],
        cwd=tmp_path,
        env={**env, "HELM_DSPY_AGENTS": str(tmp_path / "agents")},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = run_command(["helm-dspy", "report", "--suite", "marks"], cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr[-2000:]
    lines = {line.split()[2]: line for line in report.stdout.splitlines() if line.startswith("medbullets:")}
    assert lines["MIPROv2"].endswith(UNCHANGED) and lines["zeroshot-cot"].endswith(CONTROL)
    assert (
        UNCHANGED not in lines["BootstrapFewShotWithRandomSearch"]
        and "demos" in lines["BootstrapFewShotWithRandomSearch"]
    )
    folder = tmp_path / "benchmark_output" / "runs" / "marks"
    records = {r["method"]: r for r in json.loads((folder / "helm_dspy_report.json").read_text())}
    assert [m for m, r in records.items() if r["unchanged_zero_shot"]] == ["MIPROv2"]
    assert records["BootstrapFewShotWithRandomSearch"]["agent_demos"] == result.manifest["optimized_program"]["demos"]
    assert (
        records["zeroshot-cot"]["role"] == "control" and records["MIPROv2"]["score"] == records["zeroshot-cot"]["score"]
    )
