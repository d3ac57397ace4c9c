"""``helm-dspy quickstart``: a preset of ``helm-dspy grid`` (one model, the four scenarios, 2-core budgets).

Optimize -> helm-run (baseline, the zero-shot CoT control, methods) -> helm-summarize -> report, through the
grid's code path: resumable (finished agents and runs are skipped, every model call is in HELM's cache).
Defaults are sized for the embedded 1.5B model on a 2-core CPU so that methods can differ: 20 validation
examples to choose on and 20 test instances per scenario, one optimizer (BFRS) of the ``Predict`` program
(short answers: the model's time goes to reading prompts, not writing reasoning), and the zero-shot CoT control.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from helm_dspy.core.agents import DEFAULT_AGENTS_DIR
from helm_dspy.core.methods import BootstrapFewShotWithRandomSearch, ZeroShotCoT, method_class
from helm_dspy.core.options import data_dir_option, option
from helm_dspy.core.program import PROGRAM_SHAPES
from helm_dspy.data import mirror
from helm_dspy.errors import UserError
from helm_dspy.grid.check import check_grid
from helm_dspy.grid.plan import Grid, MethodSpec, ModelSpec
from helm_dspy.grid.presets import quickstart_entry, small_budget
from helm_dspy.grid.run import run_grid_plan
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

SCENARIOS = ("medcalc_bench", "medec", "head_qa", "medbullets")
OPTIMIZERS = (BootstrapFewShotWithRandomSearch.name,)
"""One optimizer by default; MIPROv2 (``--optimizers ...,MIPROv2``) also has the 1.5B model propose instructions."""
CONTROLS = (ZeroShotCoT.name,)
"""Evaluated beside the optimizers, never optimized: an optimizer helps only where it beats the zero-shot program."""


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
    max_eval_instances: int = option(20, "test instances per run", minimum=1)
    max_train: int = option(8, "train examples per optimization (BFRS bootstraps its demos from them)", minimum=1)
    max_val: int = option(20, "validation examples per optimization (what the optimizer chooses on)", minimum=1)
    max_tokens: int = option(384, "output cap per DSPy call, optimizing and serving", minimum=1)
    program: str = option(
        "predict",
        "program shape of the optimizers: predict (answer only; the default for a 1.5B model on a CPU) or cot",
        choices=PROGRAM_SHAPES,
    )
    suite: str = option("quickstart", "helm-run suite name")
    local_path: str = option(DEFAULT_LOCAL_PATH, "HELM prod_env folder")
    output_path: str = option("benchmark_output", "HELM output folder")
    agents_dir: str = option(DEFAULT_AGENTS_DIR, "where agents are written (helm-run reads them from there)")
    data_dir: str | None = data_dir_option()
    seed: int = option(1, "seed for sampling and optimizers")
    num_threads: int = option(1, "parallel model calls (1: one local model)", minimum=1)


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


def quickstart_grid(options: QuickstartOptions) -> Grid:
    """The quickstart as a grid: one model, one node at a time (one local model on 2 cores), 2-core budgets.

    Controls come first (evaluated, never optimized); pass the result through ``grid.check.check_grid``.
    """
    names = [c for c in options.controls if c not in options.optimizers] + list(options.optimizers)
    methods = [MethodSpec(name, small_budget(name, options.seed, options.num_threads)) for name in names]
    for method in methods:
        method_class(method.name)  # an unknown name: one line listing the methods
    return Grid(
        scenarios=[quickstart_entry(s, options.max_val, options.max_train) for s in options.scenarios],
        models=[ModelSpec(options.model, max_concurrent_calls=options.num_threads)],
        methods=methods,
        max_train=options.max_train,
        max_val=options.max_val,
        max_tokens=options.max_tokens,
        program=options.program,
        max_eval_instances=options.max_eval_instances,
        eval_num_threads=options.num_threads,
        seed=options.seed,
        suite=options.suite,
        local_path=options.local_path,
        agents_dir=options.agents_dir,
        output_path=options.output_path,
        data_dir=options.data_dir,
        executor="local",
        ray_address=None,
        max_parallel=1,
        max_cost_usd=None,
    )


def quickstart(options: QuickstartOptions, out=print) -> int:
    """The one-model grid at 2-core budgets (``quickstart_grid``), run by the grid's own code path;
    returns the exit code."""
    if options.data_dir:
        mirror.set_data_dir(options.data_dir)
    unknown = [s for s in options.scenarios if s not in SCENARIOS]
    if unknown:
        raise UserError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    options = replace(options, model=use_local_model_settings(options))
    grid = check_grid(quickstart_grid(options))
    controls = [c for c in options.controls if c not in options.optimizers]
    control = f" and the control {', '.join(controls)} (not optimized)" if controls else ""
    out(
        f"helm-dspy quickstart: {options.model}; scenarios {', '.join(options.scenarios)}; "
        f"methods {', '.join(options.optimizers)}{control}; {options.max_eval_instances} test instances each"
    )
    return run_grid_plan(grid, out)
