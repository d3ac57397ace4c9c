"""HELM plugin entry point (``[helm]`` entry-point group): registers run specs, masks secrets in logs.

Cheap by design: HELM imports this at every ``helm-run`` start, so no data, model or network here.
"""

import os

from helm_dspy import helm_run_args, run_specs  # noqa: F401  (registration happens at import)
from helm_dspy.local.deployment import GGUF_ENV, GGUF_MODEL, register_local_model
from helm_dspy.secrets import install_excepthook_redaction, install_log_redaction

register_local_model()  # registry entries only: the model loads at its first request
if os.environ.get(GGUF_ENV):  # any other GGUF file, as deployment local/gguf
    register_local_model(GGUF_MODEL, os.environ[GGUF_ENV])
install_log_redaction()  # HELM logs provider errors, which may quote a key, with tracebacks


def check_helm_run_credentials() -> None:
    """Under ``helm-run``: credentials.conf parses (one line, not pyparsing's traceback) and its keys are masked.

    HELM loads plugins before it reads credentials, so this is the first point that can say it in one line.
    """
    from helm_dspy.client.helm_lm import load_credentials
    from helm_dspy.errors import UserError

    try:
        load_credentials(helm_run_args.local_path())
    except UserError as error:  # SystemExit: helm-run prints the line, no traceback, nothing run
        raise SystemExit(f"helm-dspy: error: {error}") from None


if helm_run_args.under_helm_run():
    install_excepthook_redaction()
    check_helm_run_credentials()
