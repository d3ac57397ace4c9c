"""HELM instances -> DSPy examples: ``inputs`` is the prompt HELM's own adapter renders for the model.

A run entry (``medcalc_bench``, ``medbullets:holdout=0.2``, ``mmlu:subject=anatomy,holdout=100``) and a
deployment give HELM's RunSpec exactly as ``helm-run`` builds it; the gold ``output`` is the instance's
correct reference (for multiple choice, its letter, which is what HELM's prompt asks for).
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, replace

import dspy
from helm.benchmark.adaptation.request_state import RequestState
from helm.benchmark.run_spec import RunSpec
from helm.benchmark.scenarios.scenario import TEST_SPLIT, Instance, create_scenario, get_scenario_cache_path

from helm_dspy.bridge.session import HelmSession
from helm_dspy.core.prompt import program_input
from helm_dspy.errors import UserError
from helm_dspy.scenarios.run_specs import with_scenario_args  # also registers our run specs and holdout=
from helm_dspy.scenarios.splits import Splits

DEFAULT_HOLDOUTS = {"medbullets": "0.2"}
"""Run entries with no upstream train split get this holdout unless one is given (seed 42)."""


@dataclass
class OptimizationData:
    """What one optimization needs: HELM's run spec, DSPy train/valid examples and their request states."""

    entry: str
    run_spec: RunSpec
    splits: Splits
    train: list[dspy.Example]
    valid: list[dspy.Example]
    states: dict[str, RequestState]
    """Instance id -> HELM's RequestState (prompt, output mapping, instance): what the metric scores against."""

    def ids_hash(self, split: str) -> str:
        ids = "\n".join(sorted(example.instance_id for example in getattr(self, split)))
        return hashlib.sha256(ids.encode()).hexdigest()


def normalize_entry(entry: str) -> str:
    """Add the default holdout for benchmarks without a train split (recorded in the run entry)."""
    name = entry.split(":", 1)[0]
    if name in DEFAULT_HOLDOUTS and "holdout=" not in entry:
        return f"{entry}{',' if ':' in entry else ':'}holdout={DEFAULT_HOLDOUTS[name]}"
    return entry


def build_run_spec(entry: str, deployment_name: str, session: HelmSession) -> RunSpec:
    """HELM's RunSpec for ``entry`` on ``deployment_name``, built by HELM's run spec factory."""
    from helm.benchmark.run_spec_factory import construct_run_specs
    from helm.common.object_spec import parse_object_spec

    deployment = session.deployment(deployment_name)
    try:
        spec = parse_object_spec(entry)
    except Exception:
        raise UserError(f"cannot parse run entry {entry!r}; expected name or name:key=value,...") from None
    if "model" in spec.args or "model_deployment" in spec.args:
        raise UserError("give the model with --model, not inside --scenario")
    spec = replace(
        spec, args={**spec.args, "model": deployment.model_name or deployment_name, "model_deployment": deployment_name}
    )
    try:
        run_specs = construct_run_specs(spec)
    except SystemExit as error:  # our run spec functions and expanders stop helm-run this way: one line here too
        message = str(error.code)
        if not message.startswith("helm-dspy: error: "):
            raise
        raise UserError(message.removeprefix("helm-dspy: error: ")) from None
    except ValueError as error:
        if "Unknown run spec name" in str(error):
            raise UserError(
                f"unknown scenario {spec.class_name!r}: no HELM run spec has that name "
                "(e.g. medcalc_bench, medec, head_qa, medbullets, mmlu:subject=anatomy)"
            ) from None
        raise UserError(f"HELM rejected run entry {entry!r}: {error}") from None
    except TypeError as error:
        raise UserError(f"run entry {entry!r} has an argument its run spec does not take ({error})") from None
    if len(run_specs) != 1:
        raise UserError(f"run entry {entry!r} expands to {len(run_specs)} runs; pin every argument to one value")
    return run_specs[0]


def load_splits(run_spec: RunSpec, output_path: str) -> Splits:
    """Train/valid/test through our scenario classes (any other scenario is wrapped for a holdout)."""
    scenario_spec = with_scenario_args(run_spec.scenario_spec)
    scenario = create_scenario(scenario_spec)
    return scenario.get_splits(get_scenario_cache_path(output_path, scenario.name))


def sample(instances: list[Instance], limit: int | None, seed: int) -> list[Instance]:
    """At most ``limit`` instances, chosen with a seeded RNG, in their original order."""
    if limit is None or len(instances) <= limit:
        return list(instances)
    keep = set(random.Random(seed).sample(range(len(instances)), limit))
    return [instance for index, instance in enumerate(instances) if index in keep]


def render(run_spec: RunSpec, instances: list[Instance], session: HelmSession) -> list[RequestState]:
    """HELM's adapter turns each instance into the request it would send (one per instance here)."""
    from helm.benchmark.adaptation.adapters.adapter_factory import AdapterFactory

    adapter = AdapterFactory.get_adapter(run_spec.adapter_spec, session.tokenizer_service)
    as_eval = [replace(instance, split=TEST_SPLIT) for instance in instances]  # HELM adapts eval splits only
    try:
        states = adapter.adapt(as_eval, parallelism=1)
    except UserError:
        raise
    except Exception as error:  # e.g. a tokenizer HELM must download (tiktoken, HF) on an offline machine
        model = run_spec.adapter_spec.model_deployment or run_spec.adapter_spec.model
        message = session.redact(" ".join(f"{type(error).__name__}: {error}".split()))[:300]
        raise UserError(
            f"HELM's adapter could not render prompts for {model} ({message}); if its tokenizer needs a download, "
            "run once online or pick a deployment whose tokenizer is local"
        ) from None
    by_id = {}
    for state in states:
        by_id.setdefault(state.instance.id, state)  # one request per instance for generation/joint MC
    return [by_id[instance.id] for instance in instances]


def gold_output(state: RequestState) -> str:
    """The correct reference as HELM expects the completion: its letter for multiple choice."""
    correct = [reference for reference in state.instance.references if reference.is_correct]
    if not correct:
        raise UserError(f"instance {state.instance.id} has no correct reference to optimize towards")
    if state.output_mapping:
        for letter, text in state.output_mapping.items():
            if text == correct[0].output.text:
                return letter
    return correct[0].output.text


def to_examples(states: list[RequestState]) -> list[dspy.Example]:
    return [
        dspy.Example(
            inputs=program_input(state.request), output=gold_output(state), instance_id=state.instance.id
        ).with_inputs("inputs")
        for state in states
    ]


def prepare(
    entry: str,
    deployment: str,
    session: HelmSession,
    output_path: str = "benchmark_output",
    max_train: int | None = None,
    max_val: int | None = None,
    seed: int = 0,
) -> OptimizationData:
    """Everything an optimizer needs for ``entry`` on ``deployment``."""
    from helm.benchmark.runner import set_benchmark_output_path

    entry = normalize_entry(entry)
    set_benchmark_output_path(os.path.abspath(output_path))  # as helm-run -o: where run specs load or cache data
    run_spec = build_run_spec(entry, deployment, session)
    splits = load_splits(run_spec, os.path.abspath(output_path))
    train = sample(splits.train, max_train, seed)
    valid = sample(splits.valid, max_val, seed + 1)
    if not train:
        raise UserError(f"{entry}: the train split is empty; use a holdout (e.g. {entry},holdout=0.2)")
    if not valid:
        raise UserError(f"{entry}: the valid split is empty; use a larger holdout or --max-val")
    train_states = render(run_spec, train, session)
    valid_states = render(run_spec, valid, session)
    states = {state.instance.id: state for state in train_states + valid_states}
    return OptimizationData(entry, run_spec, splits, to_examples(train_states), to_examples(valid_states), states)
