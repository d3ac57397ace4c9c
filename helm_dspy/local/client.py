"""HELM client and tokenizer for a GGUF model run in-process by llama.cpp (``local/...`` deployments)."""

from __future__ import annotations

import hashlib

from helm.clients.client import CachingClient
from helm.common.cache import CacheConfig
from helm.common.request import GeneratedOutput, Request, RequestResult, Token, wrap_request_time
from helm.common.tokenization_request import (
    DecodeRequest,
    DecodeRequestResult,
    TokenizationRequest,
    TokenizationRequestResult,
    TokenizationToken,
)
from helm.proxy.retry import NonRetriableException
from helm.tokenizers.tokenizer import Tokenizer

from helm_dspy.errors import UserError
from helm_dspy.local.deployment import DEFAULT_N_CTX
from helm_dspy.local.llama import get_llama, get_prefix_cache
from helm_dspy.local.weights import resolve_model_path

VOCAB_ONLY_N_CTX = 512  # llama.cpp still builds a (tiny) context for a vocab-only load; 0 fails


class LlamaCppClient(CachingClient):
    """Chat completions from a local GGUF model; HELM's request cache makes repeated requests free.

    Before each completion the model's ``PrefixKVCache`` restores the KV state of the longest known prefix of
    the prompt (an earlier few-shot block), so only the rest is evaluated, in batches cut as a cold evaluation
    cuts them: greedy answers equal a cold call's. ``prefix_cache=False`` turns it off: llama-cpp-python then
    reuses only the previous prompt's KV, from wherever the two prompts differ.
    """

    def __init__(
        self,
        cache_config: CacheConfig,
        model_path: str | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        prefix_cache: bool = True,
    ):
        super().__init__(cache_config=cache_config)
        self.model_path = model_path
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads) if n_threads else None
        self.prefix_cache = bool(prefix_cache)

    def _llama(self):
        """The model, its call lock, and its prefix KV cache (None when ``prefix_cache`` is off)."""
        try:
            path = resolve_model_path(self.model_path)
            llama, lock = get_llama(path, self.n_ctx, self.n_threads)
            prefixes = get_prefix_cache(path, self.n_ctx, self.n_threads) if self.prefix_cache else None
        except UserError as error:
            raise NonRetriableException(str(error)) from None
        return llama, lock, prefixes

    def make_request(self, request: Request) -> RequestResult:
        messages = request.messages or [{"role": "user", "content": request.prompt}]
        raw_request = {
            "model": request.model,
            "model_path": str(self.model_path or "embedded"),
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop_sequences),
            "top_p": request.top_p,
            "n": request.num_completions,
        }

        def do_it():
            llama, lock, prefixes = self._llama()
            seed = int(
                hashlib.sha256(str(request.random).encode()).hexdigest()[:8], 16
            )  # rollouts differ, reruns match
            completions = []
            with lock:
                for index in range(request.num_completions):
                    if prefixes is not None:
                        prefixes.prepare(llama, messages)
                    output = llama.create_chat_completion(
                        messages=messages,
                        temperature=request.temperature,
                        top_p=request.top_p,
                        max_tokens=request.max_tokens,
                        stop=list(request.stop_sequences) or None,
                        seed=seed + index,
                    )
                    choice = output["choices"][0]
                    completions.append(
                        {
                            "text": choice["message"]["content"] or "",
                            "finish_reason": choice.get("finish_reason"),
                            "completion_tokens": output["usage"]["completion_tokens"],
                            "prompt_tokens": output["usage"]["prompt_tokens"],
                        }
                    )
            return {"completions": completions}

        try:
            response, cached = self.cache.get(self.make_cache_key(raw_request, request), wrap_request_time(do_it))
        except NonRetriableException:
            raise
        except Exception as error:  # llama.cpp errors: report as a failed request, as HELM clients do
            return RequestResult(
                success=False, cached=False, error=f"llama.cpp error: {error}", completions=[], embedding=[]
            )
        llama, _ = get_llama(resolve_model_path(self.model_path), VOCAB_ONLY_N_CTX, None, vocab_only=True)
        completions = [
            GeneratedOutput(
                text=item["text"],
                logprob=0.0,
                tokens=[Token(text=piece, logprob=0.0) for piece in token_pieces(llama, item["text"])],
                finish_reason={"reason": item["finish_reason"]},
            )
            for item in response["completions"]
        ]
        return RequestResult(
            success=True,
            cached=cached,
            request_time=response["request_time"],
            request_datetime=response.get("request_datetime"),
            completions=completions,
            embedding=[],
        )


def token_pieces(llama, text: str) -> list[str]:
    """The model's own tokens of ``text`` (so HELM's token counts are the model's)."""
    if not text:
        return []
    ids = llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    return [llama.detokenize([token]).decode("utf-8", errors="replace") for token in ids]


class LlamaCppTokenizer(Tokenizer):
    """HELM tokenizer backed by the GGUF file's own vocabulary (loaded vocab-only: fast, small)."""

    def __init__(self, model_path: str | None = None):
        self.model_path = model_path

    def _llama(self):
        return get_llama(resolve_model_path(self.model_path), VOCAB_ONLY_N_CTX, None, vocab_only=True)[0]

    def tokenize(self, request: TokenizationRequest) -> TokenizationRequestResult:
        llama = self._llama()
        ids = llama.tokenize(request.text.encode("utf-8"), add_bos=False, special=True)
        if request.truncation:
            ids = ids[: request.max_length]
        if request.encode:
            tokens = [TokenizationToken(value=token) for token in ids]
        else:
            tokens = [TokenizationToken(value=llama.detokenize([t]).decode("utf-8", errors="replace")) for t in ids]
        return TokenizationRequestResult(success=True, cached=False, tokens=tokens, text=request.text)

    def decode(self, request: DecodeRequest) -> DecodeRequestResult:
        text = self._llama().detokenize(list(request.tokens)).decode("utf-8", errors="replace")
        return DecodeRequestResult(success=True, cached=False, text=text)
