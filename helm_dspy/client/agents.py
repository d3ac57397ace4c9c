"""Where agents come from: a local folder (default ``agents/``) or an https URL pinned by sha256.

``HELM_DSPY_AGENTS`` is a folder, or a URL template with ``{scenario}``, ``{model}`` and ``{method}``;
URLs need ``HELM_DSPY_AGENT_PINS``, a JSON file mapping each URL to the sha256 of its content.
Agents are JSON state only: nothing fetched is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path

from helm_dspy.errors import UserError

AGENTS_ENV = "HELM_DSPY_AGENTS"
PINS_ENV = "HELM_DSPY_AGENT_PINS"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "helm_dspy" / "agents"


def agents_source() -> str:
    return os.environ.get(AGENTS_ENV) or "agents"


def is_url(source: str) -> bool:
    return source.startswith(("https://", "file://"))


def local_agent_path(scenario: str, model: str, method: str, source: str | None = None) -> Path:
    return Path(source or agents_source()) / scenario / model / f"{method}.json"


def resolve_agent(scenario: str, model: str, method: str, source: str | None = None) -> Path | None:
    """A local path to the agent JSON (fetched and verified if remote), or None when there is none."""
    source = source or agents_source()
    if not is_url(source):
        path = local_agent_path(scenario, model, method, source)
        return path if path.is_file() else None
    url = source.format(scenario=scenario, model=model, method=method)
    return fetch_pinned(url, pinned_sha256(url))


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
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    temp = target.with_suffix(".tmp")
    temp.write_bytes(content)
    os.replace(temp, target)
    return target
