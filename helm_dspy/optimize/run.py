"""``helm-dspy optimize``: one HELM run entry + one deployment -> an optimized agent and its manifest."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import dspy
from dspy.utils.callback import BaseCallback
from tqdm import tqdm

from helm_dspy import __version__
from helm_dspy.client.derived import scenario_key
from helm_dspy.client.helm_lm import HelmSession, LMBudgetExhausted, ProviderDown, UsageCounter, helm_lm
from helm_dspy.data import mirror
from helm_dspy.errors import UserError
from helm_dspy.optimize.agent_lock import hold_agent_lock, releases_agent_locks
from helm_dspy.optimize.dataset import normalize_entry, prepare
from helm_dspy.optimize.methods import MethodSettings, get_method
from helm_dspy.optimize.objective import HelmMetric
from helm_dspy.optimize.program import build_program, describe_program, program_state, write_json_atomic


@dataclass
class OptimizeOptions:
    scenario: str
    model: str
    optimizer: str
    prompt_model: str | None = None
    agents_dir: str = "agents"
    local_path: str = "prod_env"
    data_dir: str | None = None
    output_path: str = "benchmark_output"
    max_train: int | None = 200
    max_val: int | None = 100
    program: str | None = None
    max_tokens: int = 1024
    dry_run: bool = False
    max_lm_calls: int | None = None
    force: bool = False
    reuse_existing: bool = False
    """Return an existing agent's manifest instead of optimizing again (quickstart resumes this way)."""
    settings: MethodSettings = field(default_factory=MethodSettings)


@dataclass
class OptimizeResult:
    agent_path: Path | None
    manifest: dict


def agent_path(agents_dir: str, scenario: str, deployment: str, optimizer: str) -> Path:
    """``agents/{scenario}/{model}/{optimizer}.json``, where scenario is ``derived.scenario_key``."""
    return Path(agents_dir) / scenario / deployment / f"{optimizer}.json"


def manifest_path(agent: Path) -> Path:
    return agent.with_name(agent.stem + ".manifest.json")


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


@releases_agent_locks
def optimize(options: OptimizeOptions, out=print) -> OptimizeResult:
    started = time.monotonic()
    if options.data_dir:
        mirror.set_data_dir(options.data_dir)
    entry = normalize_entry(options.scenario)
    settings = options.settings
    method = get_method(options.optimizer, settings)
    shape = "predict" if options.optimizer == "zeroshot-predict" else (options.program or method.program_shape)
    session = HelmSession(options.local_path)
    prompt_model = options.prompt_model or options.model
    for deployment in {options.model, prompt_model}:
        session.deployment(deployment)  # unknown deployment: one error line, also for --dry-run
        if not options.dry_run:  # a dry run spends nothing, so it needs no key
            session.check_credentials(deployment)
    data = prepare(
        entry,
        options.model,
        session,
        options.output_path,
        options.max_train,
        options.max_val,
        settings.seed,
    )
    scenario = scenario_key(data.run_spec.name, data.run_spec.scenario_spec)
    agent = agent_path(options.agents_dir, scenario, options.model, options.optimizer)
    if not options.dry_run:  # until optimize() returns: a second identical optimize refuses instead of paying twice
        hold_agent_lock(agent)
    if agent.exists() and options.reuse_existing and manifest_path(agent).exists():
        return OptimizeResult(agent, json.loads(manifest_path(agent).read_text()))
    if agent.exists() and not (options.force or options.dry_run or options.reuse_existing):  # resume: no manifest
        raise UserError(f"{agent} exists; pass --force to overwrite it")
    train_size, val_size = len(data.train), len(data.valid)
    runs = method.estimate_runs(train_size, val_size)
    baseline_runs = val_size
    final_runs = val_size if runs else 0
    estimate = {
        "task_model_calls": baseline_runs + runs + final_runs,
        "prompt_model_calls": method.estimate_prompt_model_calls(train_size),
    }
    estimate["total_lm_calls"] = estimate["task_model_calls"] + estimate["prompt_model_calls"]
    if options.dry_run:
        out(
            f"dry run: {options.optimizer} on {entry} with {options.model}: train {train_size}, valid {val_size}; "
            f"at most {estimate['total_lm_calls']} LM calls ({estimate['task_model_calls']} task-model, "
            f"{estimate['prompt_model_calls']} prompt-model; cached calls cost nothing); nothing run, nothing written"
        )
        return OptimizeResult(None, {"estimate": estimate, "train_size": train_size, "valid_size": val_size})

    usage = UsageCounter(max_new_calls=options.max_lm_calls)
    task_lm = helm_lm(session, options.model, usage, max_tokens=options.max_tokens)
    prompt_lm = task_lm if prompt_model == options.model else helm_lm(session, prompt_model, usage, options.max_tokens)
    metric = HelmMetric(data)
    parse_failures = ParseFailureCounter()
    progress = tqdm(total=estimate["total_lm_calls"], desc=f"{options.optimizer} LM calls", unit="call", leave=False)
    usage.on_call = lambda: progress.update(1)
    try:
        with dspy.context(lm=task_lm, callbacks=[parse_failures], adapter=dspy.ChatAdapter()):
            baseline = evaluate(build_program(shape), data.valid, metric, settings.num_threads)
            stop_if_provider_down(session, usage, (options.model, prompt_model))
            if parse_failures.count >= val_size and not usage.budget_exhausted:
                raise UserError(
                    f"{options.model} never returned a parsable answer ({parse_failures.count} of {val_size} "
                    "validation answers unparsable); check the deployment or raise --max-tokens"
                )
            optimized_program = method.compile(build_program(shape), data.train, data.valid, metric, prompt_lm)
            optimized = baseline if not runs else evaluate(optimized_program, data.valid, metric, settings.num_threads)
    except LMBudgetExhausted:
        pass  # some optimizers let it escape, others swallow it per example: both end below
    except ProviderDown:
        pass  # optimizers that let it escape: the line below says why
    finally:
        progress.close()
    stop_if_provider_down(session, usage, (options.model, prompt_model))
    if usage.budget_exhausted:
        raise UserError(
            f"stopped: --max-lm-calls {options.max_lm_calls} reached ({usage.new_calls} new calls); nothing written. "
            f"Rerun with a larger budget: the calls made so far are cached"
        )

    manifest = {
        "scenario": entry,
        "scenario_key": scenario,
        "run_spec": data.run_spec.name,
        "metric": metric.metric_name,
        "split_sizes": {"train": train_size, "valid": val_size, "test": len(data.splits.test)},
        "available_split_sizes": data.splits.sizes(),
        "split_sources": data.splits.sources,
        "train_ids_sha256": data.ids_hash("train"),
        "valid_ids_sha256": data.ids_hash("valid"),
        "data_files": mirror.file_record(entry.split(":", 1)[0]),  # mirror files read: sha256, rows, status
        "model": options.model,
        "prompt_model": prompt_model,
        "optimizer": options.optimizer,
        "program": shape,
        "settings": {**settings.as_dict(), "max_train": options.max_train, "max_val": options.max_val},
        "max_tokens": options.max_tokens,
        "seed": settings.seed,
        "baseline_valid_score": baseline,
        "optimized_valid_score": optimized,
        "unparsable_answers": parse_failures.count,
        "optimized_program": describe_program(optimized_program),
        "usage": {**usage.as_dict(), "cost_usd": None, "cost_note": "HELM clients report no price"},
        "estimate": estimate,
        "wall_time_s": round(time.monotonic() - started, 2),
        "versions": {"crfm-helm": version("crfm-helm"), "dspy": dspy.__version__, "helm-dspy": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    state = program_state(optimized_program)
    state["metadata"] = {
        "dependency_versions": {"dspy": dspy.__version__},
        "helm_dspy": {"manifest": manifest_path(agent).name},
    }
    write_json_atomic(agent, state)
    write_json_atomic(manifest_path(agent), manifest)
    return OptimizeResult(agent, manifest)


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
