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
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from helm_dspy.core.agents import AGENTS_ENV, DEFAULT_AGENTS_DIR
from helm_dspy.core.methods import (
    BootstrapFewShotWithRandomSearch,
    MethodSettings,
    MIPROv2,
    ZeroShotCoT,
    method_class,
)
from helm_dspy.core.options import option
from helm_dspy.data import mirror
from helm_dspy.errors import UserError
from helm_dspy.helm_run_args import DEFAULT_LOCAL_PATH
from helm_dspy.local.deployment import (
    GGUF_ENV,
    GGUF_MODEL,
    LOCAL_MODEL,
    N_CTX_ENV,
    N_THREADS_ENV,
    register_local_model,
)
from helm_dspy.local.weights import resolve_model_path
from helm_dspy.optimize.run import OptimizeOptions, optimize
from helm_dspy.report.report import format_table, report

SCENARIOS = ("medcalc_bench", "medec", "head_qa", "medbullets")
OPTIMIZERS = (BootstrapFewShotWithRandomSearch.name, MIPROv2.name)
CONTROLS = (ZeroShotCoT.name,)
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
    if optimizer == MIPROv2.name:
        return MethodSettings(
            auto="none", num_candidates=2, num_trials=3, max_bootstrapped_demos=2, max_labeled_demos=2,
            seed=seed, num_threads=num_threads,
        )  # fmt: skip
    if optimizer == BootstrapFewShotWithRandomSearch.name:
        return MethodSettings(
            num_candidates=1, max_bootstrapped_demos=2, max_labeled_demos=2, seed=seed, num_threads=num_threads
        )
    return MethodSettings(seed=seed, num_threads=num_threads)


@dataclass
class QuickstartOptions:
    """Everything ``helm-dspy quickstart`` takes; each field is a flag (``core.options``)."""

    model: str = option(LOCAL_MODEL, "HELM deployment to use")
    gguf: str | None = option(None, "use this GGUF file instead (served as local/gguf)", metavar="PATH")
    n_ctx: int | None = option(None, "context size of the local model (default 8192; env HELM_DSPY_N_CTX)", minimum=1)
    n_threads: int | None = option(
        None, "llama.cpp threads (default: all usable CPUs; env HELM_DSPY_N_THREADS)", minimum=1
    )
    scenarios: list[str] = option(list(SCENARIOS), f"comma-separated subset of {','.join(SCENARIOS)}")
    optimizers: list[str] = option(list(OPTIMIZERS), "comma-separated optimize methods")
    controls: list[str] = option(
        list(CONTROLS), "comma-separated zero-shot methods evaluated as controls, never optimized"
    )
    max_eval_instances: int = option(5, "test instances per run", minimum=1)
    max_train: int = option(3, "train examples per optimization", minimum=1)
    max_val: int = option(3, "validation examples per optimization", minimum=1)
    max_tokens: int = option(384, "output cap per DSPy call while optimizing", minimum=1)
    suite: str = option("quickstart", "helm-run suite name")
    local_path: str = option(DEFAULT_LOCAL_PATH, "HELM prod_env folder")
    output_path: str = option("benchmark_output", "HELM output folder")
    agents_dir: str = option(DEFAULT_AGENTS_DIR, "where agents are written (helm-run reads them from there)")
    data_dir: str | None = option(
        None,
        "offline mirror folder (one subfolder per scenario, upstream file names); overrides HELM_DSPY_DATA_DIR. "
        "Without either, data is downloaded as HELM does.",
        metavar="DIR",
    )
    seed: int = option(1, "seed for sampling and optimizers")
    num_threads: int = option(1, "parallel model calls (1: one local model)", minimum=1)


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _run(command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise UserError(f"{Path(command[0]).name} failed (exit {result.returncode}); see {log}")


def use_local_model_settings(options: QuickstartOptions) -> str:
    """Apply ``--n-ctx``/``--n-threads``/``--gguf`` to the local deployments, here and in the helm-run children
    (which read them at plugin import); returns the deployment to use."""
    for value, env in ((options.n_ctx, N_CTX_ENV), (options.n_threads, N_THREADS_ENV)):
        if value is not None:
            os.environ[env] = str(value)
            register_local_model(LOCAL_MODEL, replace=True)
    if not options.gguf:
        return options.model
    path = resolve_model_path(options.gguf)
    os.environ[GGUF_ENV] = str(path)
    register_local_model(GGUF_MODEL, str(path))
    return GGUF_MODEL


def quickstart(options: QuickstartOptions, out=print) -> dict:
    started = time.monotonic()
    if options.data_dir:
        mirror.set_data_dir(options.data_dir)
    options = replace(options, model=use_local_model_settings(options))
    unknown = [s for s in options.scenarios if s not in SCENARIOS]
    if unknown:
        raise UserError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    for method in [*options.optimizers, *options.controls]:
        method_class(method)  # an unknown name: one line listing the methods
    agents_env = {AGENTS_ENV: options.agents_dir}  # helm-run reads agents where we write them
    Path(options.output_path).mkdir(parents=True, exist_ok=True)
    log = Path(options.output_path) / f"quickstart-{options.suite}.log"
    entries = {scenario: quickstart_entry(scenario) for scenario in options.scenarios}
    controls = [c for c in options.controls if c not in options.optimizers]
    methods = controls + list(options.optimizers)
    # Zero-shot methods have nothing to optimize: helm-run builds their program without an agent file.
    steps = [(s, o) for s in options.scenarios for o in options.optimizers if not method_class(o).zero_shot]
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
            _run([_bin("helm-run"), "--run-entries", entry, *common, "-n", str(options.num_threads)], log, agents_env)
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
