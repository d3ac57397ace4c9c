"""One exception type for mistakes a user can fix; the CLI prints it as one line (helm-run too, via ``stop``)."""

from typing import NoReturn

ERROR_PREFIX = "helm-dspy: error: "


class UserError(Exception):
    """Bad input or missing data: the message says what was wrong and what to do."""


def stop(message: str) -> NoReturn:
    """For code HELM calls (run spec functions, run expanders): helm-run prints a SystemExit's text as one
    line and exits before any run folder exists; ``helm-dspy`` turns it back into a UserError."""
    raise SystemExit(f"{ERROR_PREFIX}{message}")
