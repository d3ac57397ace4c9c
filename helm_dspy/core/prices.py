"""Dollar prices of HELM deployments and the cost of counted tokens.

Neutral ground (``core``): ``optimize`` writes ``usage.cost_usd`` into manifests, ``report`` shows a cost column and
``grid`` bounds a study's dollars, all from here. Prices are USD per 1M tokens: one given explicitly (a grid plan's
``price``, which the grid passes to its children in ``$HELM_DSPY_PRICES``), else litellm's bundled price table read
offline (``LITELLM_LOCAL_MODEL_COST_MAP=True``: no network).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BUNDLED_PRICES = "model_prices_and_context_window_backup.json"
"""litellm's offline price table, shipped inside the litellm package (DSPy installs litellm)."""
LITELLM_PROVIDERS = {"together": "together_ai", "google": "gemini", "mistralai": "mistral"}
"""HELM host organization -> litellm's provider prefix (where the names differ)."""
LITELLM_ORGS = {"meta": "meta-llama"}
"""HELM model creator -> the creator name in litellm's keys (together_ai/meta-llama/...)."""
PRICES_ENV = "HELM_DSPY_PRICES"
"""JSON ``{deployment: [input, output]}`` (USD per 1M tokens): prices a grid plan gives, for its children."""


@dataclass(frozen=True)
class Price:
    """USD per 1M input / output tokens."""

    input: float
    output: float
    source: str = "plan"

    def dollars(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


def litellm_keys(deployment: str, model_name: str | None) -> list[str]:
    """Keys to try in litellm's price table for a HELM deployment, most specific first."""
    host, _, _ = deployment.partition("/")
    creator, _, model = (model_name or deployment).partition("/")
    provider = LITELLM_PROVIDERS.get(host, host)
    keys = [deployment, model_name or deployment, model, deployment.partition("/")[2]]
    keys += [f"{provider}/{model}", f"{provider}/{LITELLM_ORGS.get(creator, creator)}/{model}"]
    return list(dict.fromkeys(key for key in keys if key))


@lru_cache(maxsize=1)
def _litellm_table() -> tuple[dict, dict[str, str]]:
    """litellm's bundled price file, read as JSON: the file ``LITELLM_LOCAL_MODEL_COST_MAP=True`` makes litellm use,
    without importing litellm (5 s on 2 cores, paid by every optimize cell that writes a manifest)."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("litellm")
    path = Path(spec.origin).parent / BUNDLED_PRICES if spec and spec.origin else None
    if path is None or not path.is_file():  # another litellm layout: ask litellm itself
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        table = litellm.model_cost
    else:
        table = json.loads(path.read_text(encoding="utf-8"))
    return table, {key.lower(): key for key in table if isinstance(table[key], dict)}


def litellm_price(deployment: str, model_name: str | None) -> Price | None:
    """USD per 1M tokens from litellm's bundled table (``LITELLM_LOCAL_MODEL_COST_MAP=True``: no network)."""
    table, lowered = _litellm_table()
    for candidate in litellm_keys(deployment, model_name):
        key = lowered.get(candidate.lower())
        entry = table.get(key) if key else None
        if entry and entry.get("input_cost_per_token") is not None and entry.get("output_cost_per_token") is not None:
            return Price(entry["input_cost_per_token"] * 1e6, entry["output_cost_per_token"] * 1e6, f"litellm:{key}")
    return None


def prices_env(prices: dict[str, Price]) -> dict[str, str]:
    """The environment that gives a child process these deployments' prices (empty when there are none)."""
    if not prices:
        return {}
    return {PRICES_ENV: json.dumps({d: [p.input, p.output] for d, p in prices.items()}, sort_keys=True)}


@lru_cache(maxsize=4)
def _given_prices(value: str) -> dict[str, Price]:
    try:
        return {str(d): Price(float(i), float(o), "plan") for d, (i, o) in json.loads(value).items()}
    except (ValueError, TypeError, AttributeError):
        return {}  # the grid writes it; a malformed value prices nothing


def price_of(deployment: str, model_name: str | None = None, given: Price | None = None) -> Price | None:
    """The price given, else the one ``$HELM_DSPY_PRICES`` gives (a grid plan's), else litellm's; None when none
    knows the deployment."""
    if given is not None:
        return given
    planned = _given_prices(os.environ.get(PRICES_ENV, "")).get(deployment)
    return planned if planned is not None else litellm_price(deployment, model_name)


def cost_usd(prompt_tokens: float, completion_tokens: float, price: Price | None) -> float | None:
    """``prompt_tokens`` x input price + ``completion_tokens`` x output price, in USD; None without a price."""
    if price is None:
        return None
    return round(price.dollars(prompt_tokens, completion_tokens), 6)
