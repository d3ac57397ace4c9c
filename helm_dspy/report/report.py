"""``helm-dspy report``: per scenario and base model, each method against HELM's baseline prompt.

Reads ``helm-run`` outputs only (run_spec.json, stats.json, per_instance_stats.json) and writes
``helm_dspy_report.{csv,json,png}`` into the suite folder (files, so helm-summarize ignores them).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from helm_dspy.client.derived import METHOD_DISPLAY, split_derived_model_name
from helm_dspy.errors import UserError
from helm_dspy.report.paired import bootstrap_ci, paired_bootstrap

MAIN_METRICS = {"medcalc_bench": "medcalc_bench_accuracy_fixed", "medec": "medec_error_flag_accuracy"}
"""Scenario -> metric compared; others use exact_match. MedCalc uses the corrected figure."""
BASELINE = "baseline"
USAGE_STATS = (
    "num_prompt_tokens",
    "num_output_tokens",
    "dspy_lm_calls",
    "dspy_prompt_tokens",
    "dspy_completion_tokens",
)


@dataclass
class Run:
    name: str
    scenario: str
    model: str
    method: str
    metric: str
    scores: dict[str, float]
    usage: dict[str, float] = field(default_factory=dict)


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


def read_suite(output_path: str, suite: str, metric: str | None = None) -> list[Run]:
    suite_dir = Path(output_path) / "runs" / suite
    if not suite_dir.is_dir():
        raise UserError(f"suite {suite!r} does not exist: no folder {suite_dir}; run helm-run --suite {suite} first")
    runs = []
    for run_dir in sorted(p for p in suite_dir.iterdir() if (p / "run_spec.json").is_file()):
        if not (run_dir / "per_instance_stats.json").is_file():
            continue  # a failed run (e.g. missing agent): helm-run already reported it
        runs.append(read_run(run_dir, metric))
    if not runs:
        raise UserError(f"suite {suite!r} in {suite_dir} holds no completed runs")
    return runs


def read_run(run_dir: Path, metric: str | None) -> Run:
    spec = json.loads((run_dir / "run_spec.json").read_text())
    model = spec["adapter_spec"]["model"]
    derived = split_derived_model_name(model)
    base_model, method = derived if derived else (model, BASELINE)
    scenario = scenario_of(spec["name"])
    chosen = metric or MAIN_METRICS.get(scenario.split(":")[0], "exact_match")
    scores: dict[str, float] = {}
    usage: dict[str, float] = {}  # totals over the run's instances
    for entry in json.loads((run_dir / "per_instance_stats.json").read_text()):
        for stat in entry["stats"]:
            name = stat["name"]
            if name.get("split") != "test" or name.get("perturbation"):
                continue
            if name["name"] == chosen:
                scores[entry["instance_id"]] = stat["sum"] / max(stat["count"], 1)
            elif name["name"] in USAGE_STATS:
                usage[name["name"]] = usage.get(name["name"], 0.0) + stat["sum"]
    if not scores:
        raise UserError(f"run {run_dir.name} has no per-instance {chosen!r} stat; pass --metric NAME")
    return Run(spec["name"], scenario, base_model, method, chosen, scores, usage)


def scenario_of(run_name: str) -> str:
    """The run name without ``model=``, ``model_deployment=`` and ``dspy=``: runs to pair share it."""
    base, _, args = run_name.partition(":")
    kept = [a for a in args.split(",") if a and not a.startswith(("model=", "model_deployment=", "dspy="))]
    return f"{base}:{','.join(kept)}" if kept else base


def compare(runs: list[Run], seed: int = 0) -> list[ReportRow]:
    baselines = {(run.scenario, run.model): run for run in runs if run.method == BASELINE}
    rows = []
    for run in sorted(runs, key=lambda r: (r.scenario, r.model, r.method != BASELINE, r.method)):
        base = baselines.get((run.scenario, run.model))
        if base is None:
            raise UserError(
                f"no baseline run for {run.scenario} on {run.model} (method {run.method}); "
                f"add {run.scenario}{',' if ':' in run.scenario else ':'}model={run.model} to the suite"
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


def format_table(rows: list[ReportRow]) -> str:
    header = ("scenario", "model", "method", "n", "score", "Δ vs baseline", "95% CI", "LM calls", "tokens in/out")
    lines = [header]
    for r in rows:
        calls = r.usage.get("dspy_lm_calls")
        tokens_in = r.usage.get("dspy_prompt_tokens") or r.usage.get("num_prompt_tokens", 0)
        tokens_out = r.usage.get("dspy_completion_tokens") or r.usage.get("num_output_tokens", 0)
        lines.append(
            (
                r.scenario,
                r.model,
                r.method,
                str(r.n),
                f"{r.score:.3f}",
                "" if r.method == BASELINE else f"{r.difference:+.3f}",
                "" if r.method == BASELINE else f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]",
                f"{calls:.0f}" if calls is not None else f"{r.n}",
                f"{tokens_in:.0f}/{tokens_out:.0f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def write_outputs(rows: list[ReportRow], suite_dir: Path) -> dict[str, Path]:
    import pandas as pd

    records = [{**{k: v for k, v in asdict(r).items() if k != "usage"}, **r.usage} for r in rows]
    paths = {ext: suite_dir / f"helm_dspy_report.{ext}" for ext in ("csv", "json", "png")}
    _atomic(paths["png"], lambda p: plot(rows, p))  # first: the step most likely to fail leaves no CSV/JSON
    _atomic(paths["csv"], lambda p: pd.DataFrame(records).to_csv(p, index=False))
    _atomic(paths["json"], lambda p: Path(p).write_text(json.dumps(records, indent=2) + "\n"))
    return paths


def plot(rows: list[ReportRow], path: str) -> None:
    """Grouped bars (scenarios x methods) with 95% bootstrap error bars, one panel per base model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = sorted({r.model for r in rows})
    scenarios = sorted({r.scenario for r in rows})
    methods = [BASELINE] + sorted({r.method for r in rows} - {BASELINE})
    figure, axes = plt.subplots(
        len(models), 1, figsize=(max(6, 2.2 * len(scenarios) + 2), 3.6 * len(models)), squeeze=False
    )
    width = 0.8 / len(methods)
    for axis, model in zip(axes[:, 0], models, strict=True):
        for index, method in enumerate(methods):
            found = {r.scenario: r for r in rows if r.model == model and r.method == method}
            heights = [found[s].score if s in found else np.nan for s in scenarios]
            errors = [
                [found[s].score - found[s].score_ci_low if s in found else 0 for s in scenarios],
                [found[s].score_ci_high - found[s].score if s in found else 0 for s in scenarios],
            ]
            label = "HELM prompt (baseline)" if method == BASELINE else METHOD_DISPLAY.get(method, method)
            positions = np.arange(len(scenarios)) + (index - (len(methods) - 1) / 2) * width
            axis.bar(positions, heights, width, yerr=errors, capsize=3, label=label)
        axis.set_xticks(np.arange(len(scenarios)), scenarios, fontsize=8)
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("score (main metric)")
        axis.set_title(model)
        axis.legend(fontsize=7, ncols=min(3, len(methods)), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def _atomic(path: Path, write) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def report(suite: str, output_path: str = "benchmark_output", metric: str | None = None, seed: int = 0):
    runs = read_suite(output_path, suite, metric)
    rows = compare(runs, seed)
    paths = write_outputs(rows, Path(output_path) / "runs" / suite)
    return rows, paths
