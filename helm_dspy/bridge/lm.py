"""A DSPy LM that sends every call through HELM's client layer for a named model deployment.

The user's ``prod_env/`` (``--local-path``) supplies model_deployments.yaml and credentials.conf, HELM's
sqlite request cache makes reruns free, and HELM's AutoClient does the retries (``CallGuard`` makes them
the only ones). DSPy's own cache is off: one cache (HELM's) is the source of truth for "was this call paid for".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import dspy
from dspy.lm15 import Message, Request, Response, TextPart, Usage
from dspy.utils.exceptions import LMError
from helm.common.request import Request as HelmRequest
from helm.common.request import RequestResult

from helm_dspy.bridge import DEFAULT_MAX_TOKENS
from helm_dspy.bridge.limits import call_slot
from helm_dspy.bridge.session import HelmSession

PROMPT_ONLY_CLIENTS = {
    "helm.clients.simple_client.SimpleClient",
    "helm.clients.vllm_client.VLLMClient",
}
"""HELM clients that read only ``request.prompt``: DSPy's chat messages are flattened for them."""


class LMBudgetExhausted(LMError):
    """Raised for every call once ``--max-lm-calls`` model calls were made."""


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
            with call_slot(self.deployment_name):  # a grid's per-deployment limit, across all its processes
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
