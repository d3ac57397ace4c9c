"""Replace HELM's request retry decorator by one with the same 5 attempts and no waits (tests only)."""

from helm.proxy import retry

FAST_RETRY_REQUEST = retry.get_retry_decorator(
    "Request", max_attempts=5, wait_exponential_multiplier_seconds=0, retry_on_result=retry.retry_if_request_failed
)
retry.retry_request = FAST_RETRY_REQUEST

import helm.clients.auto_client as auto_client  # noqa: E402  (after the patch, so its import sees it too)

auto_client.retry_request = FAST_RETRY_REQUEST
