"""helm-dspy: optimize HELM prompts with DSPy and evaluate them inside HELM.

Kept import-free on purpose: HELM imports the plugin at every ``helm-run`` start.
"""

__version__ = "0.1.0"
