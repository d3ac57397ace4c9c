"""The agent store: where the agent of a (scenario, deployment, method) lives, and saving and loading it.

An agent is DSPy JSON state (never a pickle) at ``<agents>/<scenario>/<deployment>/<method>.json`` with its
manifest beside it. ``<agents>`` is a local folder (``--agents-dir`` for ``optimize``, ``$HELM_DSPY_AGENTS``
for ``helm-run``, default ``agents``) or an https URL template with ``{scenario}``, ``{model}`` and ``{method}``
whose content sha256 is pinned in the JSON file ``$HELM_DSPY_AGENT_PINS``. Optimizing writes here, evaluating
reads here: no other module spells an agent path.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dspy
from helm.benchmark.scenarios.scenario import ScenarioSpec
from helm.common.object_spec import get_class_by_name

from helm_dspy.core.files import atomic_path, write_json_atomic
from helm_dspy.core.methods import method_class
from helm_dspy.core.program import build_program, load_program, program_state
from helm_dspy.errors import UserError
from helm_dspy.helm_run_args import DEFAULT_LOCAL_PATH

AGENTS_ENV = "HELM_DSPY_AGENTS"
PINS_ENV = "HELM_DSPY_AGENT_PINS"
DEFAULT_AGENTS_DIR = "agents"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "helm_dspy" / "agents"
SCENARIO_ARGS_NOT_IN_KEY = ("holdout", "holdout_seed", "valid_fraction", "scenario")
"""Holdout arguments choose instances, not the prompt: agents are shared across them (the manifest says which)."""


def is_url(source: str) -> bool:
    return source.startswith(("https://", "file://"))


@dataclass(frozen=True)
class AgentStore:
    source: str = DEFAULT_AGENTS_DIR
    """A local folder, or a pinned URL template."""

    @classmethod
    def from_env(cls) -> AgentStore:
        """Where ``helm-run`` reads agents: ``$HELM_DSPY_AGENTS``, else ``agents``."""
        return cls(os.environ.get(AGENTS_ENV) or DEFAULT_AGENTS_DIR)

    @property
    def remote(self) -> bool:
        return is_url(self.source)

    def path(self, scenario: str, deployment: str, method: str) -> Path:
        """The local file of an agent (written by ``optimize``)."""
        if self.remote:
            raise UserError(f"agents at {self.source} are read-only; pass a local folder to write agents")
        return Path(self.source) / scenario / deployment / f"{method}.json"

    @staticmethod
    def manifest_path(agent: Path) -> Path:
        return agent.with_name(agent.stem + ".manifest.json")

    def finished(self, scenario: str, deployment: str, method: str) -> bool:
        """An agent with its manifest: a finished optimization (resumable commands skip it)."""
        agent = self.path(scenario, deployment, method)
        return agent.is_file() and self.manifest_path(agent).is_file()

    def read_manifest(self, scenario: str, deployment: str, method: str) -> dict:
        return json.loads(self.manifest_path(self.path(scenario, deployment, method)).read_text(encoding="utf-8"))

    def optimized_max_tokens(self, scenario: str, deployment: str, method: str) -> int | None:
        """The output cap the agent was optimized under (its manifest's ``max_tokens``); None without one."""
        if self.remote or not self.finished(scenario, deployment, method):
            return None
        try:
            return int(self.read_manifest(scenario, deployment, method)["max_tokens"])
        except (ValueError, KeyError, TypeError):
            return None

    def resolve(self, scenario: str, deployment: str, method: str) -> Path | None:
        """A local path to the agent JSON (fetched and verified if remote), or None when there is none."""
        if not self.remote:
            path = self.path(scenario, deployment, method)
            return path if path.is_file() else None
        url = self.source.format(scenario=scenario, model=deployment, method=method)
        return fetch_pinned(url, pinned_sha256(url))

    def save(self, scenario: str, deployment: str, method: str, program: dspy.Module, manifest: dict) -> Path:
        """Write the agent, then its manifest (the manifest marks it finished), both atomically."""
        agent = self.path(scenario, deployment, method)
        state = program_state(program)
        state["metadata"] = {
            "dependency_versions": {"dspy": dspy.__version__},
            "helm_dspy": {"manifest": self.manifest_path(agent).name},
        }
        write_json_atomic(agent, state)
        write_json_atomic(self.manifest_path(agent), manifest)
        return agent

    def load(
        self,
        scenario: str,
        deployment: str,
        method: str,
        holdout: dict | None = None,
        local_path: str = DEFAULT_LOCAL_PATH,
    ) -> dspy.Module:
        """The program of one ``dspy=`` run; a UserError when it is missing, malformed or of another shape.

        Zero-shot methods need no file (the plain program). For a missing agent the message is the exact
        ``helm-dspy optimize`` command that creates it.
        """
        kind = method_class(method)
        path = self.resolve(scenario, deployment, method)
        if path is not None:
            return load_program(path, kind.program_shape)
        if kind.zero_shot:
            return build_program(kind.program_shape)
        where = self.source if self.remote else str(Path(self.source) / scenario / deployment)
        holdout_args = ",".join(f"{key}={value}" for key, value in (holdout or {}).items())
        entry = f"{scenario}{(',' if ':' in scenario else ':') + holdout_args if holdout_args else ''}"
        agents_dir = "" if self.remote or self.source == DEFAULT_AGENTS_DIR else f" --agents-dir {self.source}"
        default_local = os.path.abspath(DEFAULT_LOCAL_PATH)
        local = "" if os.path.abspath(local_path) == default_local else f" --local-path {local_path}"
        raise UserError(
            f"no {method} agent for {scenario} on {deployment} in {where}; create it with: "
            f"helm-dspy optimize --scenario {entry} --model {deployment} --optimizer {method}{local}{agents_dir}"
        )


def scenario_key(run_spec_name: str, scenario_spec: ScenarioSpec) -> str:
    """``<run spec name>[:<non-default scenario args>]``: the agents/ folder of a scenario.

    ``head_qa`` (language=en is HELM's default), ``mmlu:subject=anatomy``, ``medcalc_bench:version=v1.0``;
    holdout arguments are left out (the agent manifest records them).
    """
    base = run_spec_name.split(":", 1)[0]
    inner = scenario_spec.args.get("scenario") if isinstance(scenario_spec.args.get("scenario"), dict) else None
    class_name = inner["class_name"] if inner else scenario_spec.class_name
    args = dict(inner.get("args", {})) if inner else dict(scenario_spec.args)
    defaults = _constructor_defaults(class_name)
    kept = {
        key: value
        for key, value in sorted(args.items())
        if value is not None
        and key not in SCENARIO_ARGS_NOT_IN_KEY
        and defaults.get(key, inspect.Parameter.empty) != value
    }
    return f"{base}:{','.join(f'{k}={v}' for k, v in kept.items())}" if kept else base


def _constructor_defaults(class_name: str) -> dict:
    try:
        scenario_class = get_class_by_name(class_name)
    except (ImportError, AttributeError, ValueError):
        return {}
    defaults: dict = {}
    for klass in reversed(scenario_class.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    return defaults


def pinned_sha256(url: str) -> str:
    pins_path = os.environ.get(PINS_ENV)
    if not pins_path:
        raise UserError(f"agent URL {url} has no sha256 pin; set {PINS_ENV} to a JSON file {{url: sha256}}")
    try:
        pins = json.loads(Path(pins_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{PINS_ENV}={pins_path} is not a readable JSON file ({error})") from None
    if url not in pins:
        raise UserError(f"agent URL {url} is not pinned in {pins_path}; add its sha256")
    return pins[url].lower()


def fetch_pinned(url: str, sha256: str) -> Path:
    """Download ``url`` once into the cache, keyed by its pin; a content mismatch is an error, never used."""
    target = CACHE_DIR / f"{sha256}.json"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
        return target
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https/file only, pinned)
            content = response.read()
    except OSError as error:
        raise UserError(f"cannot fetch agent {url} ({error})") from None
    actual = hashlib.sha256(content).hexdigest()
    if actual != sha256:
        raise UserError(f"agent {url} has sha256 {actual}, but the pin says {sha256}; refusing to use it")
    with atomic_path(target) as temp:
        temp.write_bytes(content)
    return target
