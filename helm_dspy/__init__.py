"""helm-dspy: optimize HELM prompts with DSPy and evaluate them inside HELM.

Importing the package registers the plugin, so ``helm-run --plugins helm_dspy`` works even where the
``helm`` entry point is not installed (a source checkout on PYTHONPATH). The cost is HELM's own run-spec
imports (about 0.6 s, measured by ``benchmarks/import_time.py``); no data, model or network is touched.
"""

from helm_dspy import plugin  # noqa: E402,F401  (registration happens at import)
from helm_dspy.version import __version__  # noqa: E402,F401
