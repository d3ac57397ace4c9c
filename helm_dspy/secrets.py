"""Every secret the configuration holds, and masking it in everything helm-dspy prints, logs or writes.

Providers quote the credential in their errors ("Incorrect API key provided: Bearer sk-..."), and HELM logs
those errors with tracebacks, so masking has to cover HELM's own log output too: ``install_log_redaction``
puts a filter on HELM's, DSPy's and our loggers (and on the root handlers) while the plugin is loaded.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import traceback

MASK = "***"
SECRET_NAME = re.compile(r"(?i)(api_?key|token|secret|password|passwd|auth)")
"""Deployment argument and credentials.conf key names whose values are secrets."""
SECRET_ENV = re.compile(r"(?i).*(_API_KEY|_TOKEN|_SECRET|_SECRET_KEY|_PASSWORD)$")
KEY_SHAPES = (
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"),  # an Authorization header value
    re.compile(r"\b(sk-)[A-Za-z0-9_-]{12,}"),  # OpenAI-style keys, wherever they are quoted
)
MIN_SECRET_LENGTH = 6

_lock = threading.Lock()
_credential_values: dict[str, set[str]] = {}
"""Secrets read from each credentials.conf (by local path), added by ``remember_credentials``."""


def remember_credentials(local_path: str, credentials) -> None:
    """Record the string values of a parsed credentials.conf (all of them: HELM keys vary by provider)."""
    values = set()
    for key, value in _items(credentials):
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH and not key.endswith(("BaseUrl", "Endpoint")):
            values.add(value)
    with _lock:
        _credential_values[os.path.abspath(local_path)] = values


def _items(config, prefix: str = ""):
    try:
        entries = list(config.items())
    except AttributeError:
        return
    for key, value in entries:
        if hasattr(value, "items"):
            yield from _items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


_deployment_cache: tuple[int, set[str]] = (-1, set())


def deployment_secrets() -> set[str]:
    """Values of model deployments' client args named like a key, token or secret (HELM's registry).

    Cached by the registry's size: deployments are only ever added, and every log record asks.
    """
    global _deployment_cache
    try:
        from helm.benchmark.model_deployment_registry import ALL_MODEL_DEPLOYMENTS
    except ImportError:  # pragma: no cover (HELM is a dependency)
        return set()
    deployments = list(ALL_MODEL_DEPLOYMENTS)
    if _deployment_cache[0] == len(deployments):
        return _deployment_cache[1]
    found = set()
    for deployment in deployments:
        for name, value in (deployment.client_spec.args or {}).items():
            if SECRET_NAME.search(str(name)) and isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                found.add(value)
    _deployment_cache = (len(deployments), found)
    return found


def environment_secrets() -> set[str]:
    return {value for name, value in os.environ.items() if SECRET_ENV.match(name) and len(value) >= MIN_SECRET_LENGTH}


def all_secrets() -> list[str]:
    with _lock:
        values = set().union(*_credential_values.values()) if _credential_values else set()
    values |= deployment_secrets() | environment_secrets()
    return sorted(values, key=len, reverse=True)  # longest first: a key that contains another is masked whole


def redact(text: str) -> str:
    """``text`` with every known secret, and anything shaped like a bearer token or API key, masked."""
    if not text:
        return text
    for secret in all_secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    for shape in KEY_SHAPES:
        text = shape.sub(lambda match: match.group(1) + MASK, text)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask secrets in a log record's message and in its traceback (formatted here, then masked)."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: leave it to logging's own error handling
        return record
    if record.exc_info:
        message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        record.exc_info = None
        record.exc_text = None
    record.msg = redact(message)
    record.args = ()
    return record


_installed = False


def install_log_redaction() -> None:
    """Mask secrets in every log record of this process: HELM's, DSPy's, LiteLLM's and ours (idempotent).

    A record factory sees each record once, whichever logger or handler it goes to; nothing is read here.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        return redact_record(make_record(*args, **kwargs))

    logging.setLogRecordFactory(redacting_factory)


def install_excepthook_redaction() -> None:
    """Mask secrets in the traceback Python prints for an uncaught exception (helm-run's last words)."""
    import sys

    previous = sys.excepthook
    if getattr(previous, "helm_dspy_redacting", False):
        return

    def redacting_excepthook(kind, value, trace) -> None:
        sys.stderr.write(redact("".join(traceback.format_exception(kind, value, trace))))

    redacting_excepthook.helm_dspy_redacting = True  # type: ignore[attr-defined]
    sys.excepthook = redacting_excepthook
