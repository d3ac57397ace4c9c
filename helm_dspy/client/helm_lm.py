"""A DSPy LM that sends every call through HELM's client layer for a named model deployment.

The user's ``prod_env/`` (``--local-path``) supplies model_deployments.yaml and credentials.conf, HELM's
sqlite request cache makes reruns free, and HELM's AutoClient does the retries. DSPy's own cache is off:
one cache (HELM's) is the source of truth for "was this call already paid for".
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import dspy
from dspy.lm15 import Message, Request, Response, TextPart, Usage
from dspy.utils.exceptions import LMError
from helm.common.request import Request as HelmRequest
from helm.common.request import RequestResult

from helm_dspy import secrets
from helm_dspy.errors import UserError

PROMPT_ONLY_CLIENTS = {
    "helm.clients.simple_client.SimpleClient",
    "helm.clients.vllm_client.VLLMClient",
}
"""HELM clients that read only ``request.prompt``: DSPy's chat messages are flattened for them."""

DEFAULT_MAX_TOKENS = 1024
"""DSPy's LM has no output cap by default; one MEDEC answer once ran to 3,658 tokens (NOTES.md)."""


class LMBudgetExhausted(LMError):
    """Raised for every call once ``--max-lm-calls`` model calls were made."""


class ProviderDown(LMError):
    """Raised without sending anything once a deployment is known to be failing (see ``CallGuard``)."""


MAX_CONSECUTIVE_FAILURES = 5
"""Failed calls in a row (each already retried by HELM) after which a deployment counts as down."""


@dataclass
class _DeploymentState:
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    down: str | None = None
    """The error that put the deployment down (None while it answers)."""


class CallGuard:
    """Makes HELM's retries the only ones: a call that failed after them is final.

    DSPy re-sends work on its own (its ParallelExecutor resubmits a job still running after 120 s, and HELM's
    retries of one failing call take 150 s), and a ``dspy=`` request is itself retried by HELM's AutoClient.
    So, per process: identical requests in flight at once are sent once; a request that failed is answered
    with its failure, not sent again; and a deployment whose first calls all failed, or that failed
    ``MAX_CONSECUTIVE_FAILURES`` calls in a row, is down: further calls fail at once with ``ProviderDown``.
    """

    def __init__(self, max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES):
        self.max_consecutive_failures = max_consecutive_failures
        self._lock = threading.Lock()
        self._states: dict[str, _DeploymentState] = {}
        self._failed: dict[str, RequestResult] = {}
        self._in_flight: dict[str, threading.Event] = {}

    def down(self, deployment: str) -> str | None:
        """The error that put ``deployment`` down, or None while it answers."""
        with self._lock:
            state = self._states.get(deployment)
            return state.down if state else None

    def send(self, deployment: str, request: HelmRequest, send: Callable[[], RequestResult]) -> RequestResult:
        key = json.dumps(asdict(request), sort_keys=True, default=str)
        while True:
            with self._lock:
                state = self._states.setdefault(deployment, _DeploymentState())
                if state.down is not None:
                    raise ProviderDown(f"{deployment} is down (not sent again): {state.down}")
                if key in self._failed:
                    return self._failed[key]
                flight = self._in_flight.get(key)
                if flight is None:
                    self._in_flight[key] = threading.Event()
                    break
            flight.wait()  # the same request is being sent: its outcome is ours (HELM's cache or the failure)
        result = None
        try:
            result = send()
            return result
        finally:
            self._settle(deployment, key, result)

    def _settle(self, deployment: str, key: str, result: RequestResult | None) -> None:
        with self._lock:
            state = self._states[deployment]
            if result is not None and result.success:
                state.successes += 1
                state.consecutive_failures = 0
            elif result is not None:
                state.failures += 1
                state.consecutive_failures += 1
                self._failed[key] = result
                if state.successes == 0 or state.consecutive_failures >= self.max_consecutive_failures:
                    state.down = " ".join(str(result.error or "no error text").split())
            self._in_flight.pop(key).set()


@dataclass
class UsageCounter:
    """LM calls and tokens spent, counted per optimization (thread-safe). HELM's RequestResult carries no
    price, so cost is not counted here (the manifest says so)."""

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_new_calls: int | None = None
    budget_exhausted: bool = False
    first_error: str | None = None
    """HELM's error text of the first failed call (quoted when every call fails)."""
    on_call: object = None
    """Called after each call (e.g. to move a progress bar)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def new_calls(self) -> int:
        """Calls that reached the model (not answered from HELM's cache)."""
        return self.calls - self.cached_calls

    def reserve(self) -> None:
        with self._lock:
            if self.max_new_calls is not None and self.new_calls >= self.max_new_calls:
                self.budget_exhausted = True
                raise LMBudgetExhausted(f"--max-lm-calls {self.max_new_calls} reached")

    def add(
        self, cached: bool, success: bool, prompt_tokens: int, completion_tokens: int, error: str | None = None
    ) -> None:
        with self._lock:
            self.calls += 1
            self.cached_calls += int(cached)
            self.failed_calls += int(not success)
            if not success and self.first_error is None:
                self.first_error = error or "no error text"
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
        if callable(self.on_call):
            self.on_call()

    def as_dict(self) -> dict:
        return {
            "lm_calls": self.calls,
            "new_lm_calls": self.new_calls,
            "cached_lm_calls": self.cached_calls,
            "failed_lm_calls": self.failed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class HelmSession:
    """HELM's registries, credentials, tokenizers and AutoClient for one ``--local-path`` folder."""

    _registered_paths: set[str] = set()
    _lock = threading.Lock()

    def __init__(self, local_path: str = "prod_env", register: bool = True, cache: bool = True):
        from helm.benchmark.window_services.tokenizer_service import TokenizerService
        from helm.common.cache_backend_config import BlackHoleCacheBackendConfig, SqliteCacheBackendConfig
        from helm.common.local_context import LocalContext

        self.local_path = os.path.abspath(local_path)
        if register:  # helm-run has already registered them when a client builds a session
            register_helm_configs(self.local_path)
            import helm_dspy.plugin  # noqa: F401  (our run specs, expanders and the local deployment)
        self.credentials = load_credentials(self.local_path)  # parsed first: a bad file is one clear error
        secrets.install_log_redaction()
        backend = SqliteCacheBackendConfig(os.path.join(self.local_path, "cache")) if cache else None
        with contextlib.redirect_stdout(io.StringIO()):  # HELM prints "Looking in path" to stdout
            self.context = LocalContext(self.local_path, backend or BlackHoleCacheBackendConfig())
        self.client = self.context.client  # HELM's AutoClient: credentials, request cache, retries
        self.tokenizer_service = TokenizerService(self.context)
        self.guard = CallGuard()

    def redact(self, text: str) -> str:
        """``text`` with every configured secret masked (errors may echo keys): see ``helm_dspy.secrets``."""
        return secrets.redact(text)

    def check_credentials(self, deployment_name: str) -> None:
        """Fail before any call when the deployment's client needs an API key and none is configured."""
        require_api_key(self.credentials, self.deployment(deployment_name), self.local_path)

    def deployment(self, name: str):
        from helm.benchmark.model_deployment_registry import ALL_MODEL_DEPLOYMENTS, get_model_deployment

        try:
            return get_model_deployment(name)
        except ValueError:
            close = sorted(d.name for d in ALL_MODEL_DEPLOYMENTS if name.split("/")[-1] in d.name)[:5]
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise UserError(
                f"unknown model deployment {name!r}{hint}; declare it in {self.local_path}/model_deployments.yaml "
                "or pick one that helm-run knows"
            ) from None

    def count_tokens(self, deployment_name: str, text: str) -> int | None:
        """Tokens of ``text`` by the deployment's HELM tokenizer, or None when it declares none."""
        deployment = self.deployment(deployment_name)
        if not deployment.tokenizer_name or not text:
            return None
        from helm.common.tokenization_request import TokenizationRequest

        result = self.context.tokenize(TokenizationRequest(text=text, tokenizer=deployment.tokenizer_name))
        return len(result.tokens) if result.success else None


def require_api_key(credentials, deployment, local_path: str) -> None:
    """A one-line UserError when ``deployment``'s client takes an API key and neither HELM source has one."""
    import inspect

    from helm.common.credentials_utils import provide_api_key
    from helm.common.object_spec import get_class_by_name

    try:
        client_class = get_class_by_name(deployment.client_spec.class_name)
    except (ImportError, AttributeError, ValueError):
        raise UserError(
            f"deployment {deployment.name!r}: client class {deployment.client_spec.class_name} not importable"
        ) from None
    parameters = inspect.signature(client_class.__init__).parameters
    if "api_key" not in parameters or "api_key" in deployment.client_spec.args:
        return
    host = deployment.name.split("/")[0]
    if provide_api_key(credentials, host, deployment.name) is None:
        env_name = f"{host.upper()}_API_KEY"
        if not os.environ.get(env_name):
            raise UserError(
                f'deployment {deployment.name!r} needs an API key: add {host}ApiKey: "..." to '
                f"{local_path}/credentials.conf (or set {env_name})"
            )


def register_helm_configs(local_path: str) -> None:
    """HELM's built-in configs plus ``local_path``'s YAML, once per process (HELM's calls are not idempotent)."""
    from helm.benchmark.config_registry import (
        register_builtin_configs_from_helm_package,
        register_configs_from_directory,
    )

    with HelmSession._lock:
        if not HelmSession._registered_paths:
            register_builtin_configs_from_helm_package()
        if local_path not in HelmSession._registered_paths:
            register_configs_from_directory(local_path)
            HelmSession._registered_paths.add(local_path)


def load_credentials(local_path: str):
    """credentials.conf (HOCON) as helm-run reads it, without HELM's print to stdout."""
    from pyhocon import ConfigFactory

    text = os.environ.get("HELM_CREDENTIALS")
    path = os.path.join(local_path, "credentials.conf")
    if text is None and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    try:
        credentials = ConfigFactory.parse_string(text or "")
    except Exception as error:  # pyhocon raises its own parse exceptions
        where = "HELM_CREDENTIALS" if os.environ.get("HELM_CREDENTIALS") is not None else path
        raise UserError(f"{where} is not valid HOCON ({type(error).__name__}); fix its syntax") from None
    secrets.remember_credentials(local_path, credentials)
    return credentials


class HelmEngine:
    """DSPy 3.4 engine: one DSPy call -> one HELM ``Request`` through AutoClient (cache + retries)."""

    def __init__(self, session: HelmSession, deployment: str, usage: UsageCounter, random: str | None = None):
        self.session = session
        self.deployment_name = deployment
        self.deployment = session.deployment(deployment)
        self.model = self.deployment.model_name or deployment
        self.usage = usage
        self.random = random
        self.use_messages = self.deployment.client_spec.class_name not in PROMPT_ONLY_CLIENTS

    def with_random(self, random: str | None) -> HelmEngine:
        return HelmEngine(self.session, self.deployment_name, self.usage, random)

    def complete(self, request: Request) -> Response:
        self.usage.reserve()
        helm_request = self.helm_request(request)
        result = self.session.guard.send(self.deployment_name, helm_request, lambda: self._send(helm_request))
        text = result.completions[0].text if result.success and result.completions else ""
        prompt_tokens = self._prompt_tokens(helm_request) if result.success else 0
        completion_tokens = self._completion_tokens(result, text) if result.success else 0
        error = None if result.success else self.session.redact(str(result.error))
        self.usage.add(result.cached, result.success, prompt_tokens or 0, completion_tokens or 0, error)
        if not result.success:
            raise LMError(f"HELM request to {self.deployment_name} failed: {error}")
        return Response(
            id=None,
            model=request.model,
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens),
        )

    def helm_request(self, request: Request) -> HelmRequest:
        """DSPy's canonical request as the HELM ``Request`` for this deployment."""
        messages = chat_messages(request)
        config = request.config
        common = dict(
            model_deployment=self.deployment_name,
            model=self.model,
            temperature=0.0 if config.temperature is None else config.temperature,
            max_tokens=config.max_tokens or DEFAULT_MAX_TOKENS,
            stop_sequences=list(config.stop or ()),
            random=self.random,
        )
        if self.use_messages:
            return HelmRequest(messages=messages, **common)
        return HelmRequest(prompt="\n\n".join(m["content"] for m in messages), **common)

    def _send(self, helm_request: HelmRequest) -> RequestResult:
        """One call through HELM's AutoClient (its cache and retries); a raising client is a failed call."""
        try:
            return self.session.client.make_request(helm_request)
        except Exception as error:  # after HELM's retries, or at client construction (e.g. no API key)
            return RequestResult(
                success=False, cached=False, completions=[], embedding=[], error=f"{type(error).__name__}: {error}"
            )

    def _prompt_tokens(self, helm_request: HelmRequest) -> int | None:
        text = helm_request.prompt or "\n".join(m["content"] for m in helm_request.messages or [])
        return self.session.count_tokens(self.deployment_name, text)

    def _completion_tokens(self, result, text: str) -> int | None:
        if result.completions and result.completions[0].tokens:
            return len(result.completions[0].tokens)
        return self.session.count_tokens(self.deployment_name, text)

    def close(self) -> None:
        pass


def chat_messages(request: Request) -> list[dict[str, str]]:
    """DSPy's canonical request as HELM chat messages; the system message is kept."""
    messages = []
    if request.system:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        messages.append({"role": "system", "content": system})
    messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
    return messages


class HelmLM(dspy.LM):
    """``dspy.LM`` on a HelmEngine. Each optimizer rollout gets its own HELM ``Request.random``.

    Optimizers sample with ``lm.copy(rollout_id=i, temperature=1.0)``; engines never see rollout_id, so
    without this every rollout would be the same cached HELM completion.
    """

    def copy(self, **kwargs):
        new = super().copy(**kwargs)
        rollout = new.kwargs.get("rollout_id")
        if rollout is not None and isinstance(new._engine_spec, HelmEngine):
            new._engine_spec = new._engine_spec.with_random(f"rollout={rollout}")
        return new


def helm_lm(
    session: HelmSession,
    deployment: str,
    usage: UsageCounter,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = 0.0,
) -> HelmLM:
    """A DSPy LM for ``deployment``; its calls are counted in ``usage``."""
    engine = HelmEngine(session, deployment, usage)
    return HelmLM(
        f"helm/{deployment}",
        engine=engine,
        cache=False,
        num_retries=0,
        temperature=temperature,
        max_tokens=max_tokens,
    )
