"""``helm-dspy report``: per scenario and base model, each method against HELM's baseline prompt.

Reads ``helm-run`` outputs only (run_spec.json, stats.json, per_instance_stats.json) and writes
``helm_dspy_report.{csv,json,png}`` into the suite folder (files, so helm-summarize ignores them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from helm.benchmark.scenarios.scenario import ScenarioSpec

from helm_dspy.core.files import atomic_path
from helm_dspy.core.methods import METHODS
from helm_dspy.core.prices import Price, cost_usd, price_of
from helm_dspy.errors import UserError
from helm_dspy.evaluate.derived import SCENARIO_SEPARATOR, split_derived_model_name
from helm_dspy.report.paired import bootstrap_ci, paired_bootstrap
from helm_dspy.scenarios.main_metric import main_metric_name

BASELINE = "baseline"
USAGE_STATS = (
    "num_prompt_tokens",
    "num_output_tokens",
    "dspy_lm_calls",
    "dspy_prompt_tokens",
    "dspy_completion_tokens",
)
AGENT_STATS = {"dspy_agent_demos": "demos", "dspy_agent_instructions_changed": "instructions_changed"}
"""Per-run facts DSPyUsageMetric reports about the agent that answered (the same on every instance)."""
ZERO_SHOT_PREFIX = "zeroshot-"
"""``dspy=zeroshot-cot`` / ``zeroshot-predict``: the control, the zero-shot DSPy program with no optimizing."""
UNCHANGED_NOTE = "= zero-shot program (unchanged)"
CONTROL_NOTE = "control (zero-shot, not optimized)"
ROLE_ORDER = {"baseline": 0, "control": 1, "method": 2}
HATCH = "//"


@dataclass
class Run:
    name: str
    scenario: str
    model: str
    method: str
    metric: str
    scores: dict[str, float]
    usage: dict[str, float] = field(default_factory=dict)
    agent: dict[str, float] = field(default_factory=dict)
    """``demos`` and ``instructions_changed`` of the agent the run used; empty for baselines and older runs."""
    max_eval_instances: int | None = None
    run_dir: Path | None = None
    """Where ``read_suite`` found the run: the fix-it commands name its suite and output folder."""
    deployment: str | None = None
    """The base model's HELM deployment (a derived one's base), for its price."""


@dataclass
class ReportRow:
    scenario: str
    model: str
    method: str
    metric: str
    n: int
    baseline: float
    score: float
    difference: float
    ci_low: float
    ci_high: float
    score_ci_low: float
    score_ci_high: float
    usage: dict[str, float]
    agent_demos: int | None = None
    agent_instructions_changed: bool | None = None
    cost_usd: float | None = None
    """The run's tokens x its deployment's price (litellm's bundled table); None where no price is known."""

    @property
    def role(self) -> str:
        """baseline (HELM's prompt), control (zero-shot DSPy, nothing optimized) or method (an optimizer's agent)."""
        if self.method == BASELINE:
            return "baseline"
        return "control" if self.method.startswith(ZERO_SHOT_PREFIX) else "method"

    @property
    def unchanged_zero_shot(self) -> bool | None:
        """An optimizer's agent that kept no demos and DSPy's default instruction: its score is zero-shot DSPy's.

        None when the run did not report its agent (a run made before helm-dspy reported it).
        """
        if self.role != "method":
            return False
        if self.agent_demos is None or self.agent_instructions_changed is None:
            return None
        return self.agent_demos == 0 and not self.agent_instructions_changed

    @property
    def note(self) -> str:
        if self.role == "control":
            return CONTROL_NOTE
        if self.unchanged_zero_shot:
            return UNCHANGED_NOTE
        if self.role == "method" and self.agent_demos is not None:
            return f"{self.agent_demos} demos" + (", new instruction" if self.agent_instructions_changed else "")
        return ""


def read_suite(output_path: str, suite: str, metric: str | None = None) -> list[Run]:
    suite_dir = Path(output_path) / "runs" / suite
    if not suite_dir.is_dir():
        raise UserError(f"suite {suite!r} does not exist: no folder {suite_dir}; run helm-run --suite {suite} first")
    runs = []
    for run_dir in sorted(p for p in suite_dir.iterdir() if (p / "run_spec.json").is_file()):
        if not (run_dir / "per_instance_stats.json").is_file():
            continue  # a failed run (e.g. missing agent): helm-run already reported it
        adapter_spec = json.loads((run_dir / "run_spec.json").read_text())["adapter_spec"]
        run = read_run(run_dir, metric)
        runs.append(replace(run, max_eval_instances=adapter_spec.get("max_eval_instances"), run_dir=run_dir))
    if not runs:
        raise UserError(f"suite {suite!r} in {suite_dir} holds no completed runs")
    return runs


def read_run(run_dir: Path, metric: str | None) -> Run:
    spec = json.loads((run_dir / "run_spec.json").read_text())
    model = spec["adapter_spec"]["model"]
    derived = split_derived_model_name(model)
    base_model, method = derived if derived else (model, BASELINE)
    scenario = scenario_of(spec["name"])
    scenario_spec = ScenarioSpec(spec["scenario_spec"]["class_name"], dict(spec["scenario_spec"].get("args") or {}))
    chosen = metric or main_metric_name(scenario_spec)  # what the optimizer's objective used too
    scores: dict[str, float] = {}
    usage: dict[str, float] = {}  # totals over the run's instances
    agent: dict[str, float] = {}  # per-run facts: the largest value any instance reported
    for entry in json.loads((run_dir / "per_instance_stats.json").read_text()):
        for stat in entry["stats"]:
            name = stat["name"]
            if name.get("split") != "test" or name.get("perturbation"):
                continue
            if name["name"] == chosen:
                scores[entry["instance_id"]] = stat["sum"] / max(stat["count"], 1)
            elif name["name"] in USAGE_STATS:
                usage[name["name"]] = usage.get(name["name"], 0.0) + stat["sum"]
            elif name["name"] in AGENT_STATS and stat["count"]:
                key = AGENT_STATS[name["name"]]
                agent[key] = max(agent.get(key, 0.0), stat["sum"] / stat["count"])
    if not scores:
        raise UserError(f"run {run_dir.name} has no per-instance {chosen!r} stat; pass --metric NAME")
    deployment = base_deployment(spec["adapter_spec"].get("model_deployment"), base_model, derived is not None)
    return Run(spec["name"], scenario, base_model, method, chosen, scores, usage, agent, deployment=deployment)


def base_deployment(deployment: str | None, base_model: str, derived: bool) -> str:
    """The deployment a run's model calls were priced at: a derived deployment names its base (or is its model's)."""
    if not deployment:
        return base_model
    if not derived:
        return deployment
    parts = deployment.split(SCENARIO_SEPARATOR)
    return next((p.partition("=")[2] for p in parts if p.startswith("deployment=")), base_model)


def run_tokens(usage: dict[str, float]) -> tuple[float, float]:
    """(prompt, completion) tokens of a run: DSPy's counts for a dspy= run, HELM's for a baseline."""
    tokens_in = usage.get("dspy_prompt_tokens") or usage.get("num_prompt_tokens", 0)
    tokens_out = usage.get("dspy_completion_tokens") or usage.get("num_output_tokens", 0)
    return tokens_in, tokens_out


def usage_cost(deployment: str, model: str, usage: dict[str, float], given: Price | None = None) -> float | None:
    """Dollars of a run's tokens at its deployment's price (given, a plan's or litellm's); None where none is known."""
    price = price_of(deployment, model, given)
    tokens_in, tokens_out = run_tokens(usage)
    return cost_usd(tokens_in, tokens_out, price) if price and (tokens_in or tokens_out) else None


def attach_costs(rows: list[ReportRow], runs: list[Run], prices: dict[str, Price] | None = None) -> list[ReportRow]:
    """Each row's dollars: its tokens x its deployment's price (``prices``, else ``core.prices.price_of``)."""
    deployments = {(run.scenario, run.model, run.method): run.deployment or run.model for run in runs}
    for row in rows:
        deployment = deployments.get((row.scenario, row.model, row.method), row.model)
        row.cost_usd = usage_cost(deployment, row.model, row.usage, (prices or {}).get(deployment))
    return rows


def scenario_of(run_name: str) -> str:
    """The run name without ``model=``, ``model_deployment=`` and ``dspy=``: runs to pair share it."""
    base, _, args = run_name.partition(":")
    kept = [a for a in args.split(",") if a and not a.startswith(("model=", "model_deployment=", "dspy="))]
    return f"{base}:{','.join(kept)}" if kept else base


def helm_run_command(run: Run, extra: str = "") -> str:
    """The ``helm-run`` command of ``run``'s entry on its base model (plus ``extra``), on the same instances.

    The scenario arguments come from the run name, holdout included; ``key=None`` parts are dropped: HELM
    writes its defaults that way and ``category=None`` in an entry would be the string "None" (0 instances).
    """
    import shlex

    name, _, args = run.scenario.partition(":")
    kept = [arg for arg in args.split(",") if arg and not arg.endswith("=None")]
    command = f"helm-run --run-entries {shlex.quote(f'{name}:' + ','.join([f'model={run.model}', *kept]) + extra)}"
    if run.max_eval_instances is not None:
        command += f" --max-eval-instances {run.max_eval_instances}"
    if run.run_dir is not None:
        output_path = run.run_dir.parent.parent.parent
        if output_path.resolve() != Path("benchmark_output").resolve():
            command += f" -o {shlex.quote(str(output_path))}"
        command += f" --suite {shlex.quote(run.run_dir.parent.name)}"
    return command


def compare(runs: list[Run], seed: int = 0) -> list[ReportRow]:
    baselines = {(run.scenario, run.model): run for run in runs if run.method == BASELINE}
    if all(run.method == BASELINE for run in runs):
        first = min(runs, key=lambda r: (r.scenario, r.model))
        raise UserError(
            f"nothing to compare: the suite holds only baseline runs ({len(runs)}), no dspy= run; "
            f"add one, e.g. {helm_run_command(first, ',dspy=zeroshot-cot')}"
        )
    rows = []
    for run in sorted(runs, key=lambda r: (r.scenario, r.model, r.method != BASELINE, r.method)):
        base = baselines.get((run.scenario, run.model))
        if base is None:
            raise UserError(
                f"no baseline run for {run.scenario} on {run.model} (method {run.method}); "
                f"add it with: {helm_run_command(run)}"
            )
        if not set(base.scores) & set(run.scores):
            raise UserError(
                f"{run.name} shares no instance with its baseline {base.name}; run both with the same "
                "--max-eval-instances and holdout= so they are paired"
            )
        paired = paired_bootstrap(base.scores, run.scores, seed)
        low, high = bootstrap_ci({i: run.scores[i] for i in set(run.scores) & set(base.scores)}, seed)
        rows.append(
            ReportRow(
                run.scenario,
                run.model,
                run.method,
                run.metric,
                paired.n,
                paired.baseline,
                paired.method,
                paired.difference,
                paired.ci_low,
                paired.ci_high,
                low,
                high,
                run.usage,
            )
        )
    return rows


def attach_agents(rows: list[ReportRow], runs: list[Run]) -> list[ReportRow]:
    """Copy each run's agent description onto its row (compare pairs scores; this says what was paired)."""
    agents = {(run.scenario, run.model, run.method): run.agent for run in runs}
    for row in rows:
        agent = agents.get((row.scenario, row.model, row.method)) or {}
        if "demos" in agent:
            row.agent_demos = int(agent["demos"])
        if "instructions_changed" in agent:
            row.agent_instructions_changed = bool(agent["instructions_changed"])
    return rows


def format_table(rows: list[ReportRow]) -> str:
    """The report as text; the agent column says which rows are the control or an unchanged zero-shot agent."""
    priced = any(r.cost_usd is not None for r in rows)  # the USD column only where some price is known
    header = (
        "scenario", "model", "method", "n", "score", "Δ vs baseline", "95% CI", *(("USD",) if priced else ()),
        "LM calls", "tokens in/out", "agent",
    )  # fmt: skip
    lines = [header]
    for r in in_display_order(rows):
        calls = r.usage.get("dspy_lm_calls")
        tokens_in, tokens_out = run_tokens(r.usage)
        usd = (f"{r.cost_usd:.4f}" if r.cost_usd is not None else "?",) if priced else ()
        lines.append(
            (
                r.scenario,
                r.model,
                r.method,
                str(r.n),
                f"{r.score:.3f}",
                "" if r.method == BASELINE else f"{r.difference:+.3f}",
                "" if r.method == BASELINE else f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]",
                *usd,
                f"{calls:.0f}" if calls is not None else f"{r.n}",
                f"{tokens_in:.0f}/{tokens_out:.0f}",
                r.note,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)
    return table + "".join(f"\n{line}" for line in footnotes(rows))


def footnotes(rows: list[ReportRow]) -> list[str]:
    """Why the marks matter, said once under the table (and in the plot's legend)."""
    notes = []
    if any(r.role == "control" for r in rows):
        notes.append(
            f"{CONTROL_NOTE}: the DSPy program with nothing optimized; "
            "an optimizer helps only where it beats this row, not merely the baseline."
        )
    if any(r.unchanged_zero_shot for r in rows):
        notes.append(
            f"{UNCHANGED_NOTE}: the optimizer kept no demos and DSPy's default instruction, so the row "
            "measures the zero-shot program of its shape (Predict or ChainOfThought), not optimization."
        )
    return notes


def in_display_order(rows: list[ReportRow]) -> list[ReportRow]:
    """Per scenario and model: baseline, then the control, then the optimizers (what each must beat comes first)."""
    return sorted(rows, key=lambda r: (r.scenario, r.model, ROLE_ORDER[r.role]))


def write_outputs(rows: list[ReportRow], suite_dir: Path) -> dict[str, Path]:
    import pandas as pd

    records = [
        {
            **{k: v for k, v in asdict(r).items() if k != "usage"},
            "role": r.role,
            "unchanged_zero_shot": r.unchanged_zero_shot,
            **r.usage,
        }
        for r in in_display_order(rows)
    ]
    paths = {ext: suite_dir / f"helm_dspy_report.{ext}" for ext in ("csv", "json", "png")}
    _atomic(paths["png"], lambda p: plot(rows, p))  # first: the step most likely to fail leaves no CSV/JSON
    _atomic(paths["csv"], lambda p: pd.DataFrame(records).to_csv(p, index=False))
    _atomic(paths["json"], lambda p: Path(p).write_text(json.dumps(records, indent=2) + "\n"))
    return paths


def tick_label(scenario: str) -> str:
    """A run entry's scenario on short lines (name, then one argument a line): side by side, full entries such as
    ``head_qa:language=en,category=None`` overran their neighbours."""
    name, _, arguments = scenario.partition(":")
    return "\n".join([name, *filter(None, arguments.split(","))])


def plot(rows: list[ReportRow], path: str) -> list[str]:
    """Grouped bars (scenarios x methods) with 95% bootstrap error bars, one panel per base model.

    Controls are labelled as such and bars of unchanged zero-shot agents are hatched, so no bar credits
    optimization for what the zero-shot program did. Returns the legend labels of the first panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch
    from matplotlib.transforms import offset_copy

    models = sorted({r.model for r in rows})
    scenarios = sorted({r.scenario for r in rows})
    others = {r.method for r in rows} - {BASELINE}
    controls = sorted(m for m in others if m.startswith(ZERO_SHOT_PREFIX))
    methods = [BASELINE, *controls, *sorted(others - set(controls))]
    labels: list[str] = []
    panels = []  # (axis, legend handles): legends are placed once the tick labels are laid out
    figure, axes = plt.subplots(
        len(models), 1, figsize=(max(6, 2.2 * len(scenarios) + 2), 3.6 * len(models)), squeeze=False
    )
    width = 0.8 / len(methods)
    for axis, model in zip(axes[:, 0], models, strict=True):
        handles = []  # plain swatches: a method's key must not look hatched because its first bar is
        for index, method in enumerate(methods):
            found = {r.scenario: r for r in rows if r.model == model and r.method == method}
            heights = [found[s].score if s in found else np.nan for s in scenarios]
            errors = [
                [found[s].score - found[s].score_ci_low if s in found else 0 for s in scenarios],
                [found[s].score_ci_high - found[s].score if s in found else 0 for s in scenarios],
            ]
            label = (
                "HELM prompt (baseline)"
                if method == BASELINE
                else (METHODS[method].display_name if method in METHODS else method)
            )
            if method in controls:
                label += " (control)"
            positions = np.arange(len(scenarios)) + (index - (len(methods) - 1) / 2) * width
            bars = axis.bar(positions, heights, width, yerr=errors, capsize=3)
            handles.append(Patch(facecolor=bars.patches[0].get_facecolor(), label=label))
            for bar, scenario in zip(bars.patches, scenarios, strict=True):
                if scenario in found and found[scenario].unchanged_zero_shot:
                    bar.set_hatch(HATCH)
                    bar.set_edgecolor("black")
        if any(r.unchanged_zero_shot for r in rows if r.model == model):
            key = f"hatched: agent {UNCHANGED_NOTE}, not optimized"
            handles.append(Patch(facecolor="white", edgecolor="black", hatch=HATCH, label=key))
        axis.set_xticks(np.arange(len(scenarios)), [tick_label(s) for s in scenarios], fontsize=8)
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("score (main metric)")
        axis.set_title(model)
        panels.append((axis, handles))
    figure.canvas.draw()  # lays out every panel's tick labels once: each legend goes below their lowest line
    renderer = figure.canvas.get_renderer()
    for axis, handles in panels:
        lowest = min(label.get_window_extent(renderer).y0 for label in axis.get_xticklabels())
        depth = (axis.get_window_extent(renderer).y0 - lowest) * 72 / figure.dpi + 6  # points: kept by tight_layout
        legend = axis.legend(
            handles=handles, fontsize=7, ncols=min(3, len(handles)), loc="upper center", bbox_to_anchor=(0.5, 0),
            bbox_transform=offset_copy(axis.transAxes, figure, y=-depth, units="points"),
        )  # fmt: skip
        labels = labels or [text.get_text() for text in legend.get_texts()]
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return labels


def _atomic(path: Path, write) -> None:
    """``write(temp_path)`` then rename it onto ``path`` (``core.files``: umask-respecting, never half a file)."""
    with atomic_path(path) as temp:
        write(str(temp))


def report(
    suite: str,
    output_path: str = "benchmark_output",
    metric: str | None = None,
    seed: int = 0,
    prices: dict[str, Price] | None = None,
):
    """The suite's comparison table, CSV/JSON and plot; ``prices`` (deployment -> USD per 1M tokens, a grid plan's)
    before litellm's table."""
    runs = read_suite(output_path, suite, metric)
    rows = attach_costs(attach_agents(compare(runs, seed), runs), runs, prices)
    paths = write_outputs(rows, Path(output_path) / "runs" / suite)
    return rows, paths
