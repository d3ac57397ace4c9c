"""Test-only: HELM's request retries (5 attempts) without the 10-80 s waits between them.

Put this folder on PYTHONPATH of a subprocess (``helm-run``, ``helm-dspy``) so fault tests count the same
requests HELM's real schedule sends, in seconds instead of minutes. Nothing in the product imports it.
"""

import os

if os.environ.get("HELM_DSPY_TEST_FAST_RETRIES") == "1":
    import fast_retry_patch  # noqa: F401

if os.environ.get("HELM_DSPY_TEST_STRAGGLER_TIMEOUT"):  # DSPy resubmits jobs running longer than this (120 s)
    from dspy.utils import parallelizer

    defaults = list(parallelizer.ParallelExecutor.__init__.__defaults__)
    defaults[-2] = float(os.environ["HELM_DSPY_TEST_STRAGGLER_TIMEOUT"])  # timeout=120, then straggler_limit=3
    parallelizer.ParallelExecutor.__init__.__defaults__ = tuple(defaults)
