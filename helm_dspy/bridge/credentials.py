"""credentials.conf and deployment registration as helm-run does them; light (no DSPy), so the plugin can use it."""

from __future__ import annotations

import os
import threading

from helm_dspy import secrets
from helm_dspy.errors import UserError

_registered_paths: set[str] = set()
_lock = threading.Lock()


def require_api_key(credentials, deployment, local_path: str) -> None:
    """A one-line UserError when ``deployment``'s client takes an API key and neither HELM source has one."""
    import inspect

    from helm.common.credentials_utils import provide_api_key
    from helm.common.object_spec import get_class_by_name

    try:
        client_class = get_class_by_name(deployment.client_spec.class_name)
    except (ImportError, AttributeError, ValueError):
        raise UserError(
            f"deployment {deployment.name!r}: client class {deployment.client_spec.class_name} not importable"
        ) from None
    parameters = inspect.signature(client_class.__init__).parameters
    if "api_key" not in parameters or "api_key" in deployment.client_spec.args:
        return
    host = deployment.name.split("/")[0]
    if provide_api_key(credentials, host, deployment.name) is None:
        env_name = f"{host.upper()}_API_KEY"
        if not os.environ.get(env_name):
            raise UserError(
                f'deployment {deployment.name!r} needs an API key: add {host}ApiKey: "..." to '
                f"{local_path}/credentials.conf (or set {env_name})"
            )


def register_helm_configs(local_path: str) -> None:
    """HELM's built-in configs plus ``local_path``'s YAML, once per process (HELM's calls are not idempotent)."""
    from helm.benchmark.config_registry import (
        register_builtin_configs_from_helm_package,
        register_configs_from_directory,
    )

    with _lock:
        if not _registered_paths:
            register_builtin_configs_from_helm_package()
        if local_path not in _registered_paths:
            register_configs_from_directory(local_path)
            _registered_paths.add(local_path)


def load_credentials(local_path: str):
    """credentials.conf (HOCON) as helm-run reads it, without HELM's print to stdout."""
    from pyhocon import ConfigFactory

    text = os.environ.get("HELM_CREDENTIALS")
    path = os.path.join(local_path, "credentials.conf")
    if text is None and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    try:
        credentials = ConfigFactory.parse_string(text or "")
    except Exception as error:  # pyhocon raises its own parse exceptions
        where = "HELM_CREDENTIALS" if os.environ.get("HELM_CREDENTIALS") is not None else path
        raise UserError(f"{where} is not valid HOCON ({type(error).__name__}); fix its syntax") from None
    secrets.remember_credentials(local_path, credentials)
    return credentials
