"""The grid plan: a YAML file and flags merged into one checked ``Grid`` (flags win), before anything runs.

A wrong key, a value of the wrong type, an unknown method or deployment, a run entry HELM cannot build or a
malformed file is one ``UserError`` line; checking writes nothing (no ``prod_env`` folder, no cache).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helm_dspy.core.agents import DEFAULT_AGENTS_DIR
from helm_dspy.core.methods import MethodSettings, get_method, method_class, program_shape
from helm_dspy.core.prices import Price  # noqa: F401  (also re-exported: plans name prices)
from helm_dspy.errors import UserError
from helm_dspy.grid.options import SETTING_NAMES, GridOptions
from helm_dspy.helm_run_args import DEFAULT_LOCAL_PATH

DEFAULTS: dict[str, Any] = {
    "suite": "grid",
    "local_path": DEFAULT_LOCAL_PATH,
    "agents_dir": DEFAULT_AGENTS_DIR,
    "output_path": "benchmark_output",
    "data_dir": None,
    "executor": "local",
    "ray_address": None,
    "max_parallel": 2,
    "max_cost_usd": None,
    "seed": 0,
}
OPTIMIZE_DEFAULTS: dict[str, Any] = {"max_train": 200, "max_val": 100, "max_tokens": 1024, "program": None}
EVALUATION_DEFAULTS: dict[str, Any] = {"max_eval_instances": 100, "num_threads": 4}
TOP_KEYS = {*DEFAULTS, "scenarios", "models", "methods", "optimize", "evaluation"}
MODEL_KEYS = {"name", "prompt_model", "max_concurrent_calls", "price"}
PRICE_KEYS = {"input", "output"}
METHOD_KEYS = {"name", "settings"}
SCENARIO_KEYS_FIXED = {"scenario"}
TYPES: dict[str, tuple[type, ...]] = {
    "suite": (str,),
    "local_path": (str,),
    "agents_dir": (str,),
    "output_path": (str,),
    "data_dir": (str,),
    "executor": (str,),
    "ray_address": (str,),
    "max_parallel": (int,),
    "max_cost_usd": (int, float),
    "seed": (int,),
    "max_train": (int,),
    "max_val": (int,),
    "max_tokens": (int,),
    "program": (str,),
    "max_eval_instances": (int,),
    "num_threads": (int,),
    "prompt_model": (str,),
    "max_concurrent_calls": (int,),
    "input": (int, float),
    "output": (int, float),
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    prompt_model: str | None = None
    max_concurrent_calls: int | None = None
    price: Price | None = None
    cpus: int = 1
    """CPUs a node of this model occupies (a Ray task's ``num_cpus``): the in-process llama.cpp model's threads;
    an API model's node waits on the network (set by ``check_grid``)."""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    settings: MethodSettings

    @property
    def zero_shot(self) -> bool:
        return method_class(self.name).zero_shot


@dataclass
class Grid:
    """A checked plan: what to optimize and evaluate, where, and with which limits."""

    scenarios: list[str]
    models: list[ModelSpec]
    methods: list[MethodSpec]
    max_train: int
    max_val: int
    max_tokens: int
    program: str | None
    max_eval_instances: int
    eval_num_threads: int
    seed: int
    suite: str
    local_path: str
    agents_dir: str
    output_path: str
    data_dir: str | None
    executor: str
    ray_address: str | None
    max_parallel: int
    max_cost_usd: float | None
    dry_run: bool = False
    scenario_keys: dict[str, str] = field(default_factory=dict)
    """Run entry -> its agents/ folder (``core.agents.scenario_key``), filled by ``check_grid``."""

    def model(self, name: str) -> ModelSpec:
        return next(model for model in self.models if model.name == name)

    def prices(self) -> dict[str, Price]:
        """Deployment -> the plan's price, for the deployments that have one (others: litellm's table)."""
        return {model.name: model.price for model in self.models if model.price is not None}

    def call_limits(self) -> dict[str, int]:
        """Deployment -> its ``max_concurrent_calls``, for the deployments that have one."""
        return {model.name: model.max_concurrent_calls for model in self.models if model.max_concurrent_calls}


def read_plan(path: str | None) -> dict[str, Any]:
    """The plan file as a dict whose keys and value types are checked; {} without a file."""
    if path is None:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read grid plan {path} ({error.strerror or error})") from None
    try:
        payload = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"grid plan {path} is not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise UserError(f"grid plan {path} must be a mapping of keys ({', '.join(sorted(TOP_KEYS))})")
    _check_keys(payload, TOP_KEYS, f"grid plan {path}")
    for key in ("optimize", "evaluation"):
        section = payload.get(key)
        if section is None:
            continue
        allowed = {*OPTIMIZE_DEFAULTS, *SETTING_NAMES} if key == "optimize" else set(EVALUATION_DEFAULTS)
        _check_mapping(section, key)
        _check_keys(section, allowed, key)
        _check_settings_types(section, key)
    _check_settings_types({k: v for k, v in payload.items() if k in TYPES}, "grid plan")
    for key in ("scenarios", "models", "methods"):
        if key in payload and not isinstance(payload[key], list):
            raise UserError(f"grid plan key {key} must be a list")
    return payload


def _check_mapping(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a mapping")


def _check_keys(mapping: dict, allowed: set[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise UserError(f"unknown key {key!r} in {where}; expected one of: {', '.join(sorted(allowed))}")


def _setting_types() -> dict[str, tuple[type, ...]]:
    hints = typing.get_type_hints(MethodSettings)
    return {name: tuple(t for t in typing.get_args(hints[name]) if t is not type(None)) or (hints[name],)
            for name in SETTING_NAMES}  # fmt: skip


def _check_settings_types(mapping: dict, where: str) -> None:
    """Each value of ``mapping`` has its key's type (ints are no bools, floats accept ints)."""
    types = {**_setting_types(), **TYPES}
    for key, value in mapping.items():
        expected = types.get(key)
        if value is None or expected is None:
            continue
        if isinstance(value, bool) or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in expected)
            raise UserError(f"{where}: {key} must be {names}, not {value!r}")


def _scenario(item: Any, index: int) -> str:
    """A run entry from a string or a mapping ``{scenario: name, <arg>: value, ...}``."""
    if isinstance(item, str) and item.strip():
        return item.strip()
    if isinstance(item, dict) and isinstance(item.get("scenario"), str):
        args = ",".join(f"{key}={value}" for key, value in item.items() if key != "scenario")
        return item["scenario"] + (f":{args}" if args else "")
    raise UserError(f"scenarios[{index}] must be a run entry (e.g. medbullets:holdout=0.2) or {{scenario: ..., ...}}")


def _model(item: Any, index: int, options: GridOptions) -> ModelSpec:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise UserError(f"models[{index}] must be a deployment name or a mapping with name")
    _check_keys(item, MODEL_KEYS, f"models[{index}]")
    _check_settings_types({k: v for k, v in item.items() if k in TYPES}, f"models[{index}]")
    price = None
    if item.get("price") is not None:
        _check_mapping(item["price"], f"models[{index}].price")
        _check_keys(item["price"], PRICE_KEYS, f"models[{index}].price")
        _check_settings_types(item["price"], f"models[{index}].price")
        if set(item["price"]) != PRICE_KEYS:
            raise UserError(f"models[{index}].price needs input and output (USD per 1M tokens)")
        price = Price(float(item["price"]["input"]), float(item["price"]["output"]))
    limit = options.max_concurrent_calls or item.get("max_concurrent_calls")
    if limit is not None and limit < 1:
        raise UserError(f"models[{index}].max_concurrent_calls must be at least 1")
    return ModelSpec(item["name"], options.prompt_model or item.get("prompt_model"), limit, price)


def _method(item: Any, index: int, common: dict[str, Any], flags: dict[str, Any]) -> MethodSpec:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise UserError(f"methods[{index}] must be a method name or a mapping with name")
    _check_keys(item, METHOD_KEYS, f"methods[{index}]")
    own = item.get("settings") or {}
    _check_mapping(own, f"methods[{index}].settings")
    _check_keys(own, set(SETTING_NAMES), f"methods[{index}].settings")
    _check_settings_types(own, f"methods[{index}].settings")
    method_class(item["name"], given_as="method")
    settings = MethodSettings(**{**common, **own, **flags})
    get_method(item["name"], settings).check()
    return MethodSpec(item["name"], settings)


def resolve(options: GridOptions) -> Grid:
    """Plan file + flags -> a ``Grid`` (flags win); structure checked, nothing looked up in HELM yet."""
    plan = read_plan(options.plan)
    optimize_section = plan.get("optimize") or {}
    evaluation_section = plan.get("evaluation") or {}

    def pick(flag_value: Any, plan_value: Any, default: Any) -> Any:
        return flag_value if flag_value is not None else plan_value if plan_value is not None else default

    given = {k: v for k, v in dataclasses.asdict(options.settings).items() if v is not None}
    seed = pick(given.pop("seed", None), plan.get("seed"), DEFAULTS["seed"])
    common = {k: v for k, v in optimize_section.items() if k in SETTING_NAMES}
    common["seed"] = common.get("seed", seed)
    flags = {**given, **({"seed": options.settings.seed} if options.settings.seed is not None else {})}

    scenarios = options.scenarios or [_scenario(item, i) for i, item in enumerate(plan.get("scenarios") or [])]
    models = (
        [_model(name, i, options) for i, name in enumerate(options.models)]
        if options.models
        else [_model(item, i, options) for i, item in enumerate(plan.get("models") or [])]
    )
    methods = (
        [_method(name, i, common, flags) for i, name in enumerate(options.methods)]
        if options.methods
        else [_method(item, i, common, flags) for i, item in enumerate(plan.get("methods") or [])]
    )
    for what, values in (("scenarios", scenarios), ("models", models), ("methods", methods)):
        if not values:
            raise UserError(f"the grid has no {what}: give --{what} or a plan with {what}")
        names = [getattr(v, "name", v) for v in values]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise UserError(f"{duplicate!r} appears twice in {what}")
    top = {key: pick(getattr(options, key), plan.get(key), DEFAULTS[key]) for key in DEFAULTS if key != "seed"}
    optimize_values = {
        key: pick(getattr(options, key), optimize_section.get(key), default)
        for key, default in OPTIMIZE_DEFAULTS.items()
    }
    grid = Grid(
        scenarios=scenarios,
        models=models,
        methods=methods,
        **optimize_values,
        max_eval_instances=pick(
            options.max_eval_instances,
            evaluation_section.get("max_eval_instances"),
            EVALUATION_DEFAULTS["max_eval_instances"],
        ),
        eval_num_threads=pick(
            options.eval_num_threads, evaluation_section.get("num_threads"), EVALUATION_DEFAULTS["num_threads"]
        ),
        seed=seed,
        dry_run=options.dry_run,
        **top,
    )
    _check_values(grid)
    return grid


def _check_values(grid: Grid) -> None:
    from helm_dspy.grid.options import EXECUTORS

    if grid.executor not in EXECUTORS:
        raise UserError(f"executor must be one of {', '.join(EXECUTORS)}, not {grid.executor!r}")
    for key in ("max_train", "max_val", "max_tokens", "max_eval_instances", "eval_num_threads", "max_parallel"):
        if getattr(grid, key) < 1:
            raise UserError(f"{key} must be at least 1")
    if grid.max_cost_usd is not None and grid.max_cost_usd <= 0:
        raise UserError("max_cost_usd must be positive")
    for method in grid.methods:
        if not method.zero_shot:
            program_shape(method_class(method.name), grid.program)
    for entry in grid.scenarios:
        if "model=" in entry or "dspy=" in entry:
            raise UserError(f"scenario {entry!r}: give models with models/--models and methods with methods/--methods")
