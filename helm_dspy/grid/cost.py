"""``--dry-run``: an upper bound on every cell's model calls, tokens and (where a price is known) dollars.

Calls come from optimize's own ``plan()`` estimate (each method's budget formula on the real split sizes) and,
for evaluation, instances x run entries. Tokens per call are bounded from the rendered prompts: the adapter's
fixed text + (1 + demos) x (longest rendered prompt + output cap), counted with the deployment's HELM tokenizer
when it has one, else as characters / 4 (stated in the output). Prices: the plan's ``price`` (USD per 1M tokens),
else litellm's bundled price table, read offline (``helm_dspy.core.prices``, shared with optimize's manifests
and the report).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from helm_dspy.bridge import DEFAULT_MAX_TOKENS
from helm_dspy.core.prices import LITELLM_ORGS, LITELLM_PROVIDERS, litellm_keys, litellm_price
from helm_dspy.core.program import build_program
from helm_dspy.core.prompt import program_input
from helm_dspy.grid.cells import Evaluation, OptimizeCell, agent_finished, build_graph
from helm_dspy.grid.commands import Paths, optimize_options
from helm_dspy.grid.plan import Grid, MethodSpec, Price
from helm_dspy.optimize.dataset import render
from helm_dspy.optimize.run import Plan, plan

__all__ = ["LITELLM_ORGS", "LITELLM_PROVIDERS", "litellm_keys", "litellm_price", "dry_run", "estimate_grid"]

CHARS_PER_TOKEN = 4
"""The approximation for deployments without a HELM tokenizer (English text averages about 4 characters/token)."""


@dataclass
class Estimate:
    node: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    dollars: float | None
    finished: bool = False


class TokenCounter:
    """Counts with the deployment's HELM tokenizer when it has one, else characters / 4; remembers which."""

    def __init__(self, the_plan: Plan):
        self.session = the_plan.session
        self.methods: dict[str, str] = {}

    def __call__(self, deployment: str, text: str) -> int:
        try:
            count = self.session.count_tokens(deployment, text)
        except Exception:  # a tokenizer that needs a download offline: fall back, and say so
            count = None
        self.methods[deployment] = "HELM tokenizer" if count is not None else f"chars/{CHARS_PER_TOKEN}"
        return count if count is not None else -(-len(text) // CHARS_PER_TOKEN)


def _longest(texts: list[str]) -> str:
    return max(texts, key=len) if texts else ""


def _overhead(shape: str) -> str:
    """The text DSPy's ChatAdapter adds around one call's inputs (field descriptions, markers)."""
    import dspy

    program = build_program(shape)
    predictor = program.predictors()[0]
    messages = dspy.ChatAdapter().format(predictor.signature, demos=[], inputs={"inputs": ""})
    return "\n".join(message["content"] for message in messages)


def estimate_grid(grid: Grid) -> tuple[list[Estimate], dict[str, str], dict[str, Price | None]]:
    """Per node: calls, tokens and dollars (upper bounds); how tokens were counted; the prices used."""
    prices: dict[str, Price | None] = {}
    estimates: list[Estimate] = []
    counted: dict[str, str] = {}
    for node in build_graph(grid):
        if isinstance(node, Evaluation):
            estimates.append(_evaluation_estimate(grid, node, prices, counted))
        else:
            estimates.append(_cell_estimate(grid, node, prices, counted))
    return estimates, counted, prices


def _price(grid: Grid, deployment: str, the_plan: Plan, prices: dict[str, Price | None]) -> Price | None:
    if deployment not in prices:
        spec = next((m for m in grid.models if m.name == deployment), None)
        prices[deployment] = spec.price if spec and spec.price else None
        if prices[deployment] is None:
            prices[deployment] = litellm_price(deployment, the_plan.session.deployment(deployment).model_name)
    return prices[deployment]


_PLANS: dict[tuple[str, str, str], Plan] = {}


def _plan(grid: Grid, scenario: str, model: str, method: MethodSpec) -> Plan:
    key = (scenario, model, method.name)
    if key not in _PLANS:
        options = optimize_options(grid, scenario, model, method, Paths.of(grid))
        _PLANS[key] = plan(replace(options, dry_run=True))
    return _PLANS[key]


def _per_call_prompt(the_plan: Plan, count: TokenCounter, deployment: str, demos: int, out_cap: int) -> int:
    texts = [example["inputs"] for example in the_plan.data.train + the_plan.data.valid]
    longest = count(deployment, _longest(texts))
    return count(deployment, _overhead(the_plan.shape)) + (1 + demos) * (longest + out_cap)


def _cell_estimate(grid: Grid, cell: OptimizeCell, prices, counted) -> Estimate:
    method = cell.method
    the_plan = _plan(grid, cell.scenario, cell.model, method)
    count = TokenCounter(the_plan)
    demos = method.settings.max_bootstrapped_demos + method.settings.max_labeled_demos
    per_call = _per_call_prompt(the_plan, count, cell.model, demos, grid.max_tokens)
    task, prompt = the_plan.estimate["task_model_calls"], the_plan.estimate["prompt_model_calls"]
    prompt_model = the_plan.prompt_model
    counted.update(count.methods)
    task_price = _price(grid, cell.model, the_plan, prices)
    prompt_price = _price(grid, prompt_model, the_plan, prices) if prompt else task_price
    dollars = None
    if task_price and prompt_price:
        dollars = task_price.dollars(task * per_call, task * grid.max_tokens)
        dollars += prompt_price.dollars(prompt * per_call, prompt * grid.max_tokens)
    calls = task + prompt
    return Estimate(cell.key, calls, calls * per_call, calls * grid.max_tokens, dollars, agent_finished(grid, cell))


def _evaluation_estimate(grid: Grid, evaluation: Evaluation, prices, counted) -> Estimate:
    method = next(iter(grid.methods))
    the_plan = _plan(grid, evaluation.scenario, evaluation.model, method)
    count = TokenCounter(the_plan)
    test = the_plan.data.splits.test  # every test instance: helm-run's sample is among them
    rendered = [program_input(state.request) for state in render(the_plan.data.run_spec, test, the_plan.session)]
    longest = count(evaluation.model, _longest(rendered))
    instances = min(grid.max_eval_instances, len(the_plan.data.splits.test))
    baseline_out = the_plan.data.run_spec.adapter_spec.max_tokens
    dspy_out = max(grid.max_tokens, DEFAULT_MAX_TOKENS)
    prompt_tokens = instances * longest
    completion_tokens = instances * baseline_out
    overhead = count(evaluation.model, _overhead("cot"))
    for spec in grid.methods:
        demos = 0 if spec.zero_shot else spec.settings.max_bootstrapped_demos + spec.settings.max_labeled_demos
        prompt_tokens += instances * (overhead + (1 + demos) * (longest + dspy_out))
        completion_tokens += instances * dspy_out
    counted.update(count.methods)
    price = _price(grid, evaluation.model, the_plan, prices)
    dollars = price.dollars(prompt_tokens, completion_tokens) if price else None
    calls = instances * (1 + len(grid.methods))
    return Estimate(evaluation.key, calls, prompt_tokens, completion_tokens, dollars)


def dry_run(grid: Grid, out) -> list[Estimate]:
    """Print the table of upper bounds and the grid's total; run nothing."""
    estimates, counted, prices = estimate_grid(grid)
    width = max(len(e.node) for e in estimates)
    out(f"{'node'.ljust(width)}  {'LM calls':>9}  {'tokens in':>11}  {'tokens out':>10}  {'USD':>9}")
    for e in estimates:
        usd = f"{e.dollars:9.2f}" if e.dollars is not None else "        ?"
        note = "  (agent exists: 0 new calls)" if e.finished else ""
        out(f"{e.node.ljust(width)}  {e.calls:9d}  {e.prompt_tokens:11d}  {e.completion_tokens:10d}  {usd}{note}")
    todo = [e for e in estimates if not e.finished]
    calls = sum(e.calls for e in todo)
    known = [e.dollars for e in todo if e.dollars is not None]
    unknown = len(todo) - len(known)
    total = f"${sum(known):.2f}" + (f" + {unknown} nodes with no known price" if unknown else "")
    out(f"{'total (at most)'.ljust(width)}  {calls:9d}  {sum(e.prompt_tokens for e in todo):11d}  "
        f"{sum(e.completion_tokens for e in todo):10d}  {total}")  # fmt: skip
    out("tokens: " + "; ".join(f"{d}: {how}" for d, how in sorted(counted.items())))
    shown = [f"{d}: {p.input:g}/{p.output:g} ({p.source})" if p else f"{d}: unknown" for d, p in sorted(prices.items())]
    out("prices (USD per 1M tokens in/out): " + "; ".join(shown))
    out(
        "dry run: upper bounds from each method's budget formula and the rendered prompts; cached calls cost nothing; "
        "nothing run"
    )
    return estimates
