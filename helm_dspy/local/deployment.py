"""The ``local/qwen2.5-coder-1.5b-instruct`` HELM deployment (registered at plugin import; loads nothing)."""

from __future__ import annotations

import os
from datetime import date

LOCAL_MODEL = "local/qwen2.5-coder-1.5b-instruct"
GGUF_MODEL = "local/gguf"
GGUF_ENV = "HELM_DSPY_GGUF"
"""Path of another GGUF file, served as deployment ``local/gguf``."""
CLIENT = "helm_dspy.local.client.LlamaCppClient"
TOKENIZER = "helm_dspy.local.client.LlamaCppTokenizer"
DEFAULT_N_CTX = 8192
N_CTX_ENV = "HELM_DSPY_N_CTX"
"""Context size of the local deployments (default 8192); also HELM's max_sequence_length for them."""
N_THREADS_ENV = "HELM_DSPY_N_THREADS"
"""llama.cpp threads (default: the CPUs this process may use)."""


def _positive_env(name: str, default: int | None) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:  # SystemExit: read at plugin import, where helm-run prints it
        raise SystemExit(f"helm-dspy: error: {name}={value!r} is not a positive integer; fix or unset it")
    return int(value)


def local_settings() -> tuple[int, int | None]:
    """(n_ctx, n_threads) for the local deployments, from the environment (``quickstart`` flags set it)."""
    return _positive_env(N_CTX_ENV, DEFAULT_N_CTX), _positive_env(N_THREADS_ENV, None)


def register_local_model(name: str = LOCAL_MODEL, model_path: str | None = None, replace: bool = False) -> None:
    """Register tokenizer, metadata and deployment for a llama.cpp model (the embedded one by default).

    ``replace`` re-registers an existing deployment with the current ``local_settings()``.
    """
    from helm.benchmark import model_deployment_registry as deployments
    from helm.benchmark import model_metadata_registry as metadata
    from helm.benchmark import tokenizer_config_registry as tokenizers
    from helm.benchmark.model_deployment_registry import ClientSpec, ModelDeployment
    from helm.benchmark.model_metadata_registry import (
        FULL_FUNCTIONALITY_TEXT_MODEL_TAG,
        INSTRUCTION_FOLLOWING_MODEL_TAG,
        TEXT_MODEL_TAG,
        ModelMetadata,
    )
    from helm.benchmark.tokenizer_config_registry import TokenizerConfig, TokenizerSpec

    n_ctx, n_threads = local_settings()
    args = {"model_path": model_path} if model_path else {}
    deployment = ModelDeployment(
        name=name,
        model_name=name,
        tokenizer_name=name,
        max_sequence_length=n_ctx,
        client_spec=ClientSpec(
            class_name=CLIENT, args={**args, "n_ctx": n_ctx, **({"n_threads": n_threads} if n_threads else {})}
        ),
    )
    if name in deployments.DEPLOYMENT_NAME_TO_MODEL_DEPLOYMENT:
        if replace:  # HELM has no unregister: swap the entry in its dict and list in place
            deployments.DEPLOYMENT_NAME_TO_MODEL_DEPLOYMENT[name] = deployment
            listed = deployments.ALL_MODEL_DEPLOYMENTS
            listed[:] = [deployment if known.name == name else known for known in listed]
        return
    tokenizers.register_tokenizer_config(
        TokenizerConfig(name=name, tokenizer_spec=TokenizerSpec(class_name=TOKENIZER, args=args), end_of_text_token="")
    )
    embedded = model_path is None
    metadata.register_model_metadata(
        ModelMetadata(
            name=name,
            creator_organization_name="Qwen (local)" if embedded else "local",
            display_name="Qwen2.5-Coder 1.5B Instruct (Q4_K_M, local)" if embedded else f"{name} (local GGUF)",
            description="Runs in-process with llama.cpp on CPU, no network: "
            + ("Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0 upstream)." if embedded else str(model_path)),
            access="open",
            release_date=date(2024, 11, 12) if embedded else None,
            tags=[TEXT_MODEL_TAG, FULL_FUNCTIONALITY_TEXT_MODEL_TAG, INSTRUCTION_FOLLOWING_MODEL_TAG],
        )
    )
    deployments.register_model_deployment(deployment)


def register_local_models() -> None:
    """The embedded model, and ``$HELM_DSPY_GGUF`` as ``local/gguf`` when set (registry entries only)."""
    register_local_model()  # the model loads at its first request
    if os.environ.get(GGUF_ENV):
        register_local_model(GGUF_MODEL, os.environ[GGUF_ENV])
