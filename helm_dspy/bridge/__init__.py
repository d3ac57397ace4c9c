"""DSPy <-> HELM: a DSPy LM whose calls go through HELM's deployments, credentials, cache and retries.

Imports no other helm-dspy package (only ``errors``, ``secrets``, ``helm_run_args``): both directions use it.
"""

DEFAULT_MAX_TOKENS = 1024
"""Output cap per DSPy call: DSPy's LM has none by default; one MEDEC answer once ran to 3,658 tokens (NOTES.md)."""
MAX_TOKENS_ENV = "HELM_DSPY_MAX_TOKENS"
"""The output cap a grid gives its helm-run children for ``dspy=`` programs that have no manifest (zero-shot)."""
