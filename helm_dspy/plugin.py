"""HELM plugin entry point (``[helm]`` entry-point group): registers run specs.

Cheap by design: HELM imports this at every ``helm-run`` start, so no data, model or network here.
"""

import os

from helm_dspy import run_specs  # noqa: F401  (registration happens at import)
from helm_dspy.local.deployment import GGUF_ENV, GGUF_MODEL, register_local_model

register_local_model()  # registry entries only: the model loads at its first request
if os.environ.get(GGUF_ENV):  # any other GGUF file, as deployment local/gguf
    register_local_model(GGUF_MODEL, os.environ[GGUF_ENV])
