"""Optimize -> helm-run (baseline + methods) -> helm-summarize -> report, resumable, for the four scenarios.

Defaults are sized for the embedded 1.5B model on a 2-core CPU (about 30 minutes): few train/valid
examples, small optimizer budgets, a few test instances. Completed agents and runs are skipped on a
rerun, and every model call is in HELM's cache, so an interrupted quickstart continues where it stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from helm_dspy.client.agent_client import ZERO_SHOT_METHODS
from helm_dspy.data import mirror
from helm_dspy.errors import UserError
from helm_dspy.local.deployment import LOCAL_MODEL
from helm_dspy.optimize.methods import MethodSettings
from helm_dspy.optimize.run import OptimizeOptions, optimize

SCENARIOS = ("medcalc_bench", "medec", "head_qa", "medbullets")
OPTIMIZERS = ("BootstrapFewShotWithRandomSearch", "MIPROv2")
CONTROLS = ("zeroshot-cot",)
"""Evaluated beside the optimizers, never optimized: an optimizer helps only where it beats the zero-shot program."""
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def quickstart_entry(scenario: str) -> str:
    """Run entry used for both optimizing and evaluating (so holdouts match)."""
    if scenario == "medbullets":
        return "medbullets:holdout=0.2"
    if scenario == "medcalc_bench" and mirror.data_dir() is not None:
        return "medcalc_bench:holdout=20"  # the mirror has no MedCalc train split
    return scenario


def small_budget(optimizer: str, seed: int, num_threads: int) -> MethodSettings:
    """Budgets for a 2-core CPU: BFRS with 1 random candidate (4 programs), MIPROv2 with 2 candidates x 3 trials."""
    if optimizer == "MIPROv2":
        return MethodSettings(
            auto="none", num_candidates=2, num_trials=3, max_bootstrapped_demos=2, max_labeled_demos=2,
            seed=seed, num_threads=num_threads,
        )  # fmt: skip
    if optimizer == "BootstrapFewShotWithRandomSearch":
        return MethodSettings(
            num_candidates=1, max_bootstrapped_demos=2, max_labeled_demos=2, seed=seed, num_threads=num_threads
        )
    return MethodSettings(seed=seed, num_threads=num_threads)


@dataclass
class QuickstartOptions:
    model: str = LOCAL_MODEL
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    optimizers: list[str] = field(default_factory=lambda: list(OPTIMIZERS))
    controls: list[str] = field(default_factory=lambda: list(CONTROLS))
    max_eval_instances: int = 5
    max_train: int = 3
    max_val: int = 3
    max_tokens: int = 384
    suite: str = "quickstart"
    local_path: str = "prod_env"
    output_path: str = "benchmark_output"
    agents_dir: str = "agents"
    data_dir: str | None = None
    seed: int = 1
    num_threads: int = 1


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _run(command: list[str], log: Path) -> None:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ})
    if result.returncode != 0:
        raise UserError(f"{Path(command[0]).name} failed (exit {result.returncode}); see {log}")


def quickstart(options: QuickstartOptions, out=print) -> dict:
    started = time.monotonic()
    if options.data_dir:
        mirror.set_data_dir(options.data_dir)
    unknown = [s for s in options.scenarios if s not in SCENARIOS]
    if unknown:
        raise UserError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    from helm_dspy.client.derived import check_method

    for optimizer in [*options.optimizers, *options.controls]:
        try:
            check_method(optimizer)
        except UserError as error:
            raise UserError(str(error).replace("dspy=", "optimizer ")) from None
    os.environ["HELM_DSPY_AGENTS"] = options.agents_dir  # helm-run subprocesses read the agents we write
    Path(options.output_path).mkdir(parents=True, exist_ok=True)
    log = Path(options.output_path) / f"quickstart-{options.suite}.log"
    entries = {scenario: quickstart_entry(scenario) for scenario in options.scenarios}
    controls = [c for c in options.controls if c not in options.optimizers]
    methods = controls + list(options.optimizers)
    # Zero-shot methods have nothing to optimize: helm-run builds their program without an agent file.
    steps = [(s, o) for s in options.scenarios for o in options.optimizers if o not in ZERO_SHOT_METHODS]
    control = f" and the control {', '.join(controls)} (not optimized)" if controls else ""
    out(
        f"helm-dspy quickstart: {options.model}; scenarios {', '.join(options.scenarios)}; "
        f"methods {', '.join(options.optimizers)}{control}; {options.max_eval_instances} test instances each; log {log}"
    )

    run_entries = []
    for scenario in options.scenarios:
        base = f"{_with_model(entries[scenario], options.model)}"
        run_entries.append(base)
        run_entries += [f"{base},dspy={method}" for method in methods]
    # The whole job's bar (its ETA is the remaining-time estimate); each phase has its own bar below it.
    overall = tqdm(total=len(steps) + len(run_entries) + 2, desc="quickstart", unit="step", position=0)

    manifests = {}
    with tqdm(total=len(steps), desc="1/4 optimize", unit="agent", position=1, leave=False) as bar:
        for scenario, optimizer in steps:
            bar.set_postfix_str(f"{scenario} {optimizer}")
            result = _optimize_once(options, entries[scenario], optimizer)
            manifests[(scenario, optimizer)] = result
            bar.update(1)
            overall.update(1)

    common = ["--max-eval-instances", str(options.max_eval_instances), "--suite", options.suite]
    common += ["--local-path", options.local_path, "--output-path", options.output_path, "--skip-completed-runs"]
    with tqdm(total=len(run_entries), desc="2/4 helm-run", unit="run", position=1, leave=False) as bar:
        for entry in run_entries:
            bar.set_postfix_str(entry[:60])
            _run([_bin("helm-run"), "--run-entries", entry, *common, "-n", str(options.num_threads)], log)
            bar.update(1)
            overall.update(1)

    with tqdm(total=1, desc="3/4 helm-summarize", unit="step", position=1, leave=False) as bar:
        _run(
            [
                _bin("helm-summarize"), "--suite", options.suite, "--output-path", options.output_path,
                "--local-path", options.local_path, "--schema-path", str(schema_path()),
                "--summarizer-class-name", "helm_dspy.report.summarizer.DSPySummarizer",
            ],
            log,
        )  # fmt: skip
        bar.update(1)
        overall.update(1)

    from helm_dspy.report.report import format_table, report

    with tqdm(total=1, desc="4/4 report", unit="step", position=1, leave=False) as bar:
        rows, paths = report(options.suite, options.output_path)
        bar.update(1)
        overall.update(1)
    overall.close()
    out(format_table(rows))
    minutes = (time.monotonic() - started) / 60
    out(f"done in {minutes:.1f} min. Report: {paths['csv']}, {paths['json']}, {paths['png']}")
    out(f"view the leaderboard: helm-server --suite {options.suite} --output-path {options.output_path}")
    return {"rows": rows, "paths": paths, "minutes": minutes, "manifests": manifests}


def _with_model(entry: str, model: str) -> str:
    name, _, args = entry.partition(":")
    return f"{name}:model={model}" + (f",{args}" if args else "")


def schema_path() -> Path:
    """configs/schema_helm_dspy.yaml: beside the package in a checkout, else installed under share/helm-dspy."""
    installed = Path(sys.prefix) / "share" / "helm-dspy" / "schema_helm_dspy.yaml"
    for candidate in (REPO_CONFIGS / "schema_helm_dspy.yaml", installed):
        if candidate.is_file():
            return candidate
    raise UserError("configs/schema_helm_dspy.yaml not found; reinstall helm-dspy")


def _optimize_once(options: QuickstartOptions, entry: str, optimizer: str) -> dict:
    """Optimize unless a finished agent with a manifest is already there (resume)."""
    settings = small_budget(optimizer, options.seed, options.num_threads)
    request = OptimizeOptions(
        scenario=entry,
        model=options.model,
        optimizer=optimizer,
        agents_dir=options.agents_dir,
        local_path=options.local_path,
        output_path=options.output_path,
        max_train=options.max_train,
        max_val=options.max_val,
        max_tokens=options.max_tokens,
        settings=settings,
        reuse_existing=True,
    )
    return optimize(request, out=lambda line: None).manifest
