"""HELM plugin entry point (``[helm]`` entry-point group): registers run specs, expanders, the local model,
and masks secrets in logs.

Cheap by design: HELM imports this at every ``helm-run`` start, so no data, model or network here.
"""

from helm_dspy import helm_run_args
from helm_dspy.bridge.credentials import load_credentials
from helm_dspy.errors import UserError, stop
from helm_dspy.evaluate import expander  # noqa: F401  (dspy=, registered at import)
from helm_dspy.local.deployment import register_local_models
from helm_dspy.scenarios import run_specs  # noqa: F401  (the four run specs and holdout=, registered at import)
from helm_dspy.secrets import install_excepthook_redaction, install_log_redaction

register_local_models()  # registry entries only: the model loads at its first request
install_log_redaction()  # HELM logs provider errors, which may quote a key, with tracebacks


def check_helm_run_credentials() -> None:
    """Under ``helm-run``: credentials.conf parses (one line, not pyparsing's traceback) and its keys are masked.

    HELM loads plugins before it reads credentials, so this is the first point that can say it in one line.
    """
    try:
        load_credentials(helm_run_args.local_path())
    except UserError as error:
        stop(str(error))


if helm_run_args.under_helm_run():
    install_excepthook_redaction()
    check_helm_run_credentials()
