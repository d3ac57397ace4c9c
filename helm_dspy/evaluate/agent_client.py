"""The HELM client that answers each request by running a saved DSPy agent on the base model.

Unlike HELM's built-in DSPyClient it calls the model through helm-dspy's LM bridge (HELM's request cache,
so a repeated ``helm-run`` makes no new model calls; HELM's retries), reports token counts, keeps system
messages, honours the request's temperature, max_tokens and stop sequences, and returns an answer DSPy
cannot parse as an empty completion (scored 0, counted in ``dspy_parse_failures``) instead of failing.

Retries happen in one layer, HELM's, around each inner model call: a failure the inner call already retried
is final here (non-retriable for HELM's AutoClient around this client). While the base deployment answers,
one failed call scores 0 and is counted (``dspy_failed_lm_calls``); once it is down (``CallGuard``), the
request fails fatally, as HELM's own baseline run does. ``helm-run --disable-cache`` is honoured.
"""

from __future__ import annotations

import os
import threading
import time

import dspy
from helm.clients.client import Client
from helm.common.cache import BlackHoleCacheConfig, CacheConfig
from helm.common.hierarchical_logger import hwarn
from helm.common.request import ErrorFlags, GeneratedOutput, Request, RequestResult, Token
from helm.proxy.retry import NonRetriableException

from helm_dspy import helm_run_args
from helm_dspy.bridge.lm import UsageCounter, helm_lm
from helm_dspy.bridge.session import HelmSession
from helm_dspy.core.agents import AgentStore
from helm_dspy.core.program import describe_program
from helm_dspy.core.prompt import program_input
from helm_dspy.errors import UserError


class DSPyAgentClient(Client):
    """Runs ``agents/{scenario}/{base_deployment}/{method}.json`` for every request of one run."""

    _sessions: dict[tuple[str, bool], HelmSession] = {}
    _sessions_lock = threading.Lock()

    def __init__(
        self,
        cache_config: CacheConfig,
        base_deployment: str,
        method: str,
        scenario: str,
        holdout: dict | None = None,
    ):
        self.base_deployment = base_deployment
        self.method = method
        self.scenario = scenario
        self.holdout = holdout or {}
        self.local_path = _local_path_of(cache_config)
        self.use_cache = not isinstance(cache_config, BlackHoleCacheConfig)  # helm-run --disable-cache
        self.program = self._load_agent()
        self.agent = describe_program(self.program)  # per request below: the report marks unchanged agents

    def _load_agent(self) -> dspy.Module:
        try:
            return AgentStore.from_env().load(
                self.scenario, self.base_deployment, self.method, self.holdout, self.local_path
            )
        except UserError as error:
            raise NonRetriableException(str(error)) from None

    def _session(self) -> HelmSession:
        key = (self.local_path, self.use_cache)
        with self._sessions_lock:
            if key not in self._sessions:
                self._sessions[key] = HelmSession(self.local_path, register=False, cache=self.use_cache)
            return self._sessions[key]

    def make_request(self, request: Request) -> RequestResult:
        started = time.time()
        usage = UsageCounter()
        session = self._session()
        lm = helm_lm(
            session, self.base_deployment, usage, max_tokens=request.max_tokens, temperature=request.temperature
        )
        if request.stop_sequences:
            lm = lm.copy(stop=list(request.stop_sequences))
        parse_failure = False
        try:
            with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
                text = str(self.program(inputs=program_input(request)).output)
        except dspy.AdapterParseError:
            text, parse_failure = "", True
        except dspy.utils.exceptions.LMError as error:
            message = session.redact(str(error))
            if session.guard.down(self.base_deployment) is not None:
                # The inner call already went through HELM's retries: final, and fatal as for HELM's baseline.
                flags = ErrorFlags(is_retriable=False, is_fatal=True)
                return RequestResult(
                    success=False, cached=False, completions=[], embedding=[], error=message, error_flags=flags
                )
            hwarn(f"helm-dspy: one call of a {self.method} agent failed, scored 0 and counted: {message}")
            text = ""
        tokens = [Token(text=token, logprob=0.0) for token in text.split()]
        details = {
            "reason": "lm_error" if usage.failed_calls else "parse_failure" if parse_failure else "stop",
            "dspy_failed_lm_calls": usage.failed_calls,
            "dspy_parse_failure": parse_failure,
            "dspy_lm_calls": usage.calls,
            "dspy_new_lm_calls": usage.new_calls,
            "dspy_prompt_tokens": usage.prompt_tokens,
            "dspy_completion_tokens": usage.completion_tokens,
            "dspy_agent_demos": self.agent["demos"],
            "dspy_agent_instructions_changed": self.agent["instructions_changed"],
        }
        return RequestResult(
            success=True,
            cached=usage.calls > 0 and usage.new_calls == 0,
            request_time=time.time() - started,
            completions=[GeneratedOutput(text=text, logprob=0.0, tokens=tokens, finish_reason=details)],
            embedding=[],
        )


def _local_path_of(cache_config: CacheConfig) -> str:
    """helm-run's --local-path: HELM gives clients ``<local_path>/cache/<host>.sqlite`` as their cache."""
    path = getattr(cache_config, "path", None)
    if path:
        return os.path.dirname(os.path.dirname(os.path.abspath(path)))
    return helm_run_args.local_path()  # --disable-cache: no cache path to read it from
