"""One retry layer, HELM's: a model call that failed after HELM's retries is final for the whole process."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

from dspy.utils.exceptions import LMError
from helm.common.request import Request as HelmRequest
from helm.common.request import RequestResult


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
