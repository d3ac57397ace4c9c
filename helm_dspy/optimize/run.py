"""``helm-dspy optimize``: one HELM run entry + one deployment -> an optimized agent and its manifest.

Three steps: ``plan`` (deployments, keys, data, splits, the call estimate; spends nothing), ``execute``
(baseline, optimizer, final score through the LM bridge) and ``record`` (the agent and its manifest, atomically).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import dspy
from dspy.utils.callback import BaseCallback
from tqdm import tqdm

from helm_dspy.bridge.guard import ProviderDown
from helm_dspy.bridge.lm import LMBudgetExhausted, UsageCounter, helm_lm
from helm_dspy.bridge.session import HelmSession
from helm_dspy.core.agents import DEFAULT_AGENTS_DIR, AgentStore, scenario_key
from helm_dspy.core.manifest import Manifest
from helm_dspy.core.methods import METHOD_NAMES, Method, MethodSettings, get_method, program_shape
from helm_dspy.core.options import data_dir_option, option
from helm_dspy.core.prices import cost_usd, price_of
from helm_dspy.core.program import PROGRAM_SHAPES, build_program, describe_program
from helm_dspy.data import mirror
from helm_dspy.errors import UserError
from helm_dspy.helm_run_args import DEFAULT_LOCAL_PATH
from helm_dspy.local.deployment import register_local_models
from helm_dspy.optimize.agent_lock import hold_agent_lock, releases_agent_locks
from helm_dspy.optimize.dataset import OptimizationData, normalize_entry, prepare
from helm_dspy.optimize.objective import HelmMetric
from helm_dspy.version import __version__


@dataclass
class OptimizeOptions:
    """Everything ``helm-dspy optimize`` takes; each field is a flag (``core.options``)."""

    scenario: str = option(
        None,
        "a HELM run entry without model: medcalc_bench, medec, head_qa, medbullets (defaults to holdout=0.2), "
        "or any run spec, e.g. mmlu:subject=anatomy,holdout=100",
        required=True,
    )
    model: str = option(None, "HELM model deployment to optimize for (as in helm-run model=)", required=True)
    optimizer: str = option(None, f"one of: {', '.join(METHOD_NAMES)}", required=True, metavar="METHOD")
    prompt_model: str | None = option(
        None, "deployment for MIPROv2 instruction proposals, GEPA reflection, SIMBA rules (default --model)"
    )
    agents_dir: str = option(DEFAULT_AGENTS_DIR, "where agents are written")
    local_path: str = option(DEFAULT_LOCAL_PATH, "HELM's prod_env folder: deployments, credentials, cache")
    data_dir: str | None = data_dir_option()
    output_path: str = option("benchmark_output", "HELM output folder for scenario downloads")
    max_train: int | None = option(200, "at most N train examples, seeded sample", minimum=1)
    max_val: int | None = option(100, "at most N validation examples, seeded sample", minimum=1)
    program: str | None = option(
        None,
        "program shape: ChainOfThought (cot, default) or Predict; zero-shot methods fix it",
        choices=PROGRAM_SHAPES,
    )
    max_tokens: int = option(1024, "output cap per DSPy call", minimum=1)
    dry_run: bool = option(False, "print how many LM calls the run would make; spend nothing (needs no API key)")
    max_lm_calls: int | None = option(None, "stop cleanly (writing nothing) after N calls that reach the model")
    force: bool = option(False, "overwrite an existing agent")
    reuse_existing: bool = option(False, cli=False)
    """Return an existing agent's manifest instead of optimizing again (quickstart resumes this way)."""
    settings: MethodSettings = field(default_factory=MethodSettings)


@dataclass
class OptimizeResult:
    agent_path: Path | None
    manifest: dict


@dataclass
class Plan:
    """What one optimization will do, known before any model call."""

    options: OptimizeOptions
    entry: str
    method: Method
    shape: str
    prompt_model: str
    session: HelmSession
    data: OptimizationData
    scenario: str
    agent: Path
    estimate: dict[str, int]
    started: float


@dataclass
class Outcome:
    """What ``execute`` measured."""

    program: dspy.Module
    baseline: float
    optimized: float
    usage: UsageCounter
    unparsable: int
    metric_name: str


class ParseFailureCounter(BaseCallback):
    """Counts answers no adapter could parse (ChatAdapter, then its JSONAdapter fallback, both failed)."""

    def __init__(self):
        self.count = 0
        self._adapters: dict[str, str] = {}
        self._lock = threading.Lock()

    def on_adapter_parse_start(self, call_id, instance, inputs):
        self._adapters[call_id] = type(instance).__name__

    def on_adapter_parse_end(self, call_id, outputs, exception=None):
        adapter = self._adapters.pop(call_id, "")
        if exception is not None and adapter == "JSONAdapter":
            with self._lock:
                self.count += 1


def evaluate(program, examples, metric, num_threads: int) -> float:
    """Mean HELM-metric score on ``examples``; an answer that fails to parse scores 0."""
    evaluator = dspy.Evaluate(
        devset=examples,
        metric=metric,
        num_threads=num_threads,
        display_progress=False,
        max_errors=10**9,
        failure_score=0.0,
        provide_traceback=False,
    )
    return round(evaluator(program).score / 100.0, 4)


def stop_if_provider_down(session: HelmSession, usage: UsageCounter, deployments) -> None:
    """One error line, nothing written, when a deployment stopped answering (every call already retried by HELM)."""
    for deployment in dict.fromkeys(deployments):
        error = session.guard.down(deployment)
        if error is None or usage.budget_exhausted:
            continue
        if usage.calls == usage.failed_calls:
            what = f"every call to {deployment} failed ({usage.failed_calls} of {usage.calls})"
        else:
            what = f"{deployment} stopped answering ({usage.failed_calls} of {usage.calls} calls failed)"
        raise UserError(
            f"{what}; first error: {session.redact(' '.join(str(usage.first_error or error).split()))[:300]}; "
            "nothing written (calls that succeeded are cached: a rerun resumes)"
        )


def plan(options: OptimizeOptions) -> Plan:
    """Deployments, keys, data, splits and the call estimate; one error line for anything wrong, nothing spent."""
    started = time.monotonic()
    if options.data_dir:
        mirror.set_data_dir(options.data_dir)
    entry = normalize_entry(options.scenario)
    method = get_method(options.optimizer, options.settings)
    method.check()
    shape = program_shape(type(method), options.program)
    register_local_models()
    session = HelmSession(options.local_path)
    prompt_model = options.prompt_model or options.model
    for deployment in dict.fromkeys((options.model, prompt_model)):
        session.deployment(deployment)  # unknown deployment: one error line, also for --dry-run
        if not options.dry_run:  # a dry run spends nothing, so it needs no key
            session.check_credentials(deployment)
    settings = options.settings
    data = prepare(
        entry, options.model, session, options.output_path, options.max_train, options.max_val, settings.seed
    )
    scenario = scenario_key(data.run_spec.name, data.run_spec.scenario_spec)
    agent = AgentStore(options.agents_dir).path(scenario, options.model, options.optimizer)
    train_size, val_size = len(data.train), len(data.valid)
    runs = method.estimate_runs(train_size, val_size)
    estimate = {
        "task_model_calls": val_size + runs + (val_size if runs else 0),  # baseline + optimizer + final score
        "prompt_model_calls": method.estimate_prompt_model_calls(train_size, val_size),
    }
    estimate["total_lm_calls"] = estimate["task_model_calls"] + estimate["prompt_model_calls"]
    return Plan(options, entry, method, shape, prompt_model, session, data, scenario, agent, estimate, started)


def execute(plan: Plan) -> Outcome:
    """Baseline score, the optimizer, the optimized score; stops with one line on a dead provider or budget."""
    options, data, session = plan.options, plan.data, plan.session
    settings = options.settings
    usage = UsageCounter(max_new_calls=options.max_lm_calls)
    task_lm = helm_lm(session, options.model, usage, max_tokens=options.max_tokens)
    prompt_lm = (
        task_lm
        if plan.prompt_model == options.model
        else helm_lm(session, plan.prompt_model, usage, max_tokens=options.max_tokens)
    )
    metric = HelmMetric(data)
    parse_failures = ParseFailureCounter()
    deployments = (options.model, plan.prompt_model)
    progress = tqdm(
        total=plan.estimate["total_lm_calls"], desc=f"{options.optimizer} LM calls", unit="call", leave=False
    )
    usage.on_call = lambda: progress.update(1)
    program, baseline, optimized = build_program(plan.shape), 0.0, 0.0
    try:
        with dspy.context(lm=task_lm, callbacks=[parse_failures], adapter=dspy.ChatAdapter()):
            baseline = evaluate(build_program(plan.shape), data.valid, metric, settings.num_threads)
            stop_if_provider_down(session, usage, deployments)
            if parse_failures.count >= len(data.valid) and not usage.budget_exhausted:
                raise UserError(
                    f"{options.model} never returned a parsable answer ({parse_failures.count} of {len(data.valid)} "
                    "validation answers unparsable); check the deployment or raise --max-tokens"
                )
            program = plan.method.compile(build_program(plan.shape), data.train, data.valid, metric, prompt_lm)
            changed = not plan.method.zero_shot
            optimized = evaluate(program, data.valid, metric, settings.num_threads) if changed else baseline
    except LMBudgetExhausted:
        pass  # some optimizers let it escape, others swallow it per example: both end below
    except ProviderDown:
        pass  # optimizers that let it escape: the line below says why
    finally:
        progress.close()
    stop_if_provider_down(session, usage, deployments)
    if usage.budget_exhausted:
        raise UserError(
            f"stopped: --max-lm-calls {options.max_lm_calls} reached ({usage.new_calls} new calls); nothing written. "
            f"Rerun with a larger budget: the calls made so far are cached"
        )
    return Outcome(program, baseline, optimized, usage, parse_failures.count, metric.metric_name)


def manifest_cost(plan: Plan, usage: UsageCounter) -> dict:
    """``cost_usd`` (tokens x the deployment's price, every call counted: what the optimization costs from an empty
    cache) with the price and a note; ``cost_usd`` is None, and the note says why, where price or tokens are unknown."""
    deployments = list(dict.fromkeys((plan.options.model, plan.prompt_model)))
    prices = {d: price_of(d, plan.session.deployment(d).model_name) for d in deployments}
    unpriced = [d for d, price in prices.items() if price is None]
    untokenized = [d for d in deployments if not plan.session.deployment(d).tokenizer_name]
    if not untokenized and usage.calls > usage.failed_calls and not usage.prompt_tokens:
        untokenized = deployments  # a tokenizer HELM could not load (e.g. offline): nothing was counted
    price = prices[plan.options.model]
    fields: dict = {"price_usd_per_1m_tokens": None}
    if price is not None:
        fields["price_usd_per_1m_tokens"] = {"input": price.input, "output": price.output, "source": price.source}
    if unpriced:
        note = f"no known price for {', '.join(unpriced)} (litellm's bundled table)"
    elif untokenized:
        note = f"token counts unavailable: {', '.join(untokenized)} has no HELM tokenizer"
    elif len({(p.input, p.output) for p in prices.values() if p}) > 1:
        note = "task and prompt model tokens are counted together and their prices differ"
    else:
        dollars = cost_usd(usage.prompt_tokens, usage.completion_tokens, price)
        note = "prompt tokens x input price + completion tokens x output price; cached calls included"
        return {**fields, "cost_usd": dollars, "cost_note": note}
    return {**fields, "cost_usd": None, "cost_note": note}


def record(plan: Plan, outcome: Outcome) -> OptimizeResult:
    """The agent and its manifest, both written atomically (the manifest last: it marks the agent finished)."""
    options, data = plan.options, plan.data
    manifest = Manifest(
        scenario=plan.entry,
        scenario_key=plan.scenario,
        run_spec=data.run_spec.name,
        metric=outcome.metric_name,
        model=options.model,
        prompt_model=plan.prompt_model,
        optimizer=options.optimizer,
        program=plan.shape,
        settings={**options.settings.as_dict(), "max_train": options.max_train, "max_val": options.max_val},
        max_tokens=options.max_tokens,
        seed=options.settings.seed,
        split_sizes={"train": len(data.train), "valid": len(data.valid), "test": len(data.splits.test)},
        available_split_sizes=data.splits.sizes(),
        split_sources=data.splits.sources,
        train_ids_sha256=data.ids_hash("train"),
        valid_ids_sha256=data.ids_hash("valid"),
        data_files=mirror.file_record(plan.entry.split(":", 1)[0]),
        baseline_valid_score=outcome.baseline,
        optimized_valid_score=outcome.optimized,
        unparsable_answers=outcome.unparsable,
        optimized_program=describe_program(outcome.program),
        usage={**outcome.usage.as_dict(), **manifest_cost(plan, outcome.usage)},
        estimate=plan.estimate,
        wall_time_s=round(time.monotonic() - plan.started, 2),
        versions={"crfm-helm": version("crfm-helm"), "dspy": dspy.__version__, "helm-dspy": __version__},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    ).to_dict()
    store = AgentStore(options.agents_dir)
    agent = store.save(plan.scenario, options.model, options.optimizer, outcome.program, manifest)
    return OptimizeResult(agent, manifest)


@releases_agent_locks
def optimize(options: OptimizeOptions, out=print) -> OptimizeResult:
    """Plan, then (unless a dry run or a finished agent to reuse) execute and record."""
    the_plan = plan(options)
    agent, store = the_plan.agent, AgentStore(options.agents_dir)
    if not options.dry_run:  # until optimize() returns: a second identical optimize refuses instead of paying twice
        hold_agent_lock(agent)
    if options.reuse_existing and agent.exists() and store.manifest_path(agent).exists():
        return OptimizeResult(agent, store.read_manifest(the_plan.scenario, options.model, options.optimizer))
    if agent.exists() and not (options.force or options.dry_run or options.reuse_existing):  # resume: no manifest
        raise UserError(f"{agent} exists; pass --force to overwrite it")
    if options.dry_run:
        estimate, data = the_plan.estimate, the_plan.data
        out(
            f"dry run: {options.optimizer} on {the_plan.entry} with {options.model}: train {len(data.train)}, "
            f"valid {len(data.valid)}; at most {estimate['total_lm_calls']} LM calls ({estimate['task_model_calls']} "
            f"task-model, {estimate['prompt_model_calls']} prompt-model; cached calls cost nothing); "
            "nothing run, nothing written"
        )
        return OptimizeResult(
            None, {"estimate": estimate, "train_size": len(data.train), "valid_size": len(data.valid)}
        )
    return record(the_plan, execute(the_plan))


def summary_table(result: OptimizeResult) -> str:
    m = result.manifest
    usage = m["usage"]
    rows = [
        ("", "valid score", "LM calls (new)", "tokens in/out", "time"),
        ("baseline (zero-shot)", f"{m['baseline_valid_score']:.3f}", "", "", ""),
        (
            m["optimizer"],
            f"{m['optimized_valid_score']:.3f}",
            f"{usage['lm_calls']} ({usage['new_lm_calls']})",
            f"{usage['prompt_tokens']}/{usage['completion_tokens']}",
            f"{m['wall_time_s']:.0f}s",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.append(f"{m['metric']} on {m['split_sizes']['valid']} valid instances; agent: {result.agent_path}")
    program = m["optimized_program"]
    if not program["demos"] and not program["instructions_changed"]:
        lines.append("no candidate beat the zero-shot program on the valid set: the agent is the zero-shot program")
    return "\n".join(lines)
