"""HELM plugin entry point (``[helm]`` entry-point group): registers run specs.

Cheap by design: HELM imports this at every ``helm-run`` start, so no data, model or network here.
"""

from helm_dspy import run_specs  # noqa: F401  (registration happens at import)
