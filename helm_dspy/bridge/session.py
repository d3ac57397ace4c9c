"""HELM's registries, credentials, tokenizers and AutoClient for one ``--local-path`` folder."""

from __future__ import annotations

import contextlib
import io
import os

from helm_dspy import secrets
from helm_dspy.bridge.credentials import load_credentials, register_helm_configs, require_api_key
from helm_dspy.bridge.guard import CallGuard
from helm_dspy.errors import UserError
from helm_dspy.helm_run_args import DEFAULT_LOCAL_PATH


class HelmSession:
    """HELM's registries, credentials, tokenizers and AutoClient for one ``--local-path`` folder."""

    def __init__(self, local_path: str = DEFAULT_LOCAL_PATH, register: bool = True, cache: bool = True):
        from helm.benchmark.window_services.tokenizer_service import TokenizerService
        from helm.common.cache_backend_config import BlackHoleCacheBackendConfig, SqliteCacheBackendConfig
        from helm.common.local_context import LocalContext

        self.local_path = os.path.abspath(local_path)
        if register:  # helm-run has already registered them when a client builds a session
            register_helm_configs(self.local_path)
        self.credentials = load_credentials(self.local_path)  # parsed first: a bad file is one clear error
        secrets.install_log_redaction()
        backend = SqliteCacheBackendConfig(os.path.join(self.local_path, "cache")) if cache else None
        with contextlib.redirect_stdout(io.StringIO()):  # HELM prints "Looking in path" to stdout
            self.context = LocalContext(self.local_path, backend or BlackHoleCacheBackendConfig())
        self.client = self.context.client  # HELM's AutoClient: credentials, request cache, retries
        self.tokenizer_service = TokenizerService(self.context)
        self.guard = CallGuard()

    def redact(self, text: str) -> str:
        """``text`` with every configured secret masked (errors may echo keys): see ``helm_dspy.secrets``."""
        return secrets.redact(text)

    def check_credentials(self, deployment_name: str) -> None:
        """Fail before any call when the deployment's client needs an API key and none is configured."""
        require_api_key(self.credentials, self.deployment(deployment_name), self.local_path)

    def deployment(self, name: str):
        from helm.benchmark.model_deployment_registry import ALL_MODEL_DEPLOYMENTS, get_model_deployment

        try:
            return get_model_deployment(name)
        except ValueError:
            close = sorted(d.name for d in ALL_MODEL_DEPLOYMENTS if name.split("/")[-1] in d.name)[:5]
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise UserError(
                f"unknown model deployment {name!r}{hint}; declare it in {self.local_path}/model_deployments.yaml "
                "or pick one that helm-run knows"
            ) from None

    def count_tokens(self, deployment_name: str, text: str) -> int | None:
        """Tokens of ``text`` by the deployment's HELM tokenizer, or None when it declares none."""
        deployment = self.deployment(deployment_name)
        if not deployment.tokenizer_name or not text:
            return None
        from helm.common.tokenization_request import TokenizationRequest

        result = self.context.tokenize(TokenizationRequest(text=text, tokenizer=deployment.tokenizer_name))
        return len(result.tokens) if result.success else None
