"""One in-process llama.cpp model per GGUF file, shared by the HELM client and tokenizer.

In-process rather than llama.cpp's HTTP server: no port or child process to manage, and HELM's own
client layer (cache, retries, threads) wraps it; calls are serialized by a lock, since one llama.cpp
context cannot run two generations at once. Each loaded model also gets a ``PrefixKVCache`` (kv_cache.py):
KV states of recent prompt prefixes, in a budget from the memory the weights and context leave free.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from helm_dspy.errors import UserError
from helm_dspy.local.kv_cache import PrefixKVCache, kv_budget

_models: dict[tuple, object] = {}
_locks: dict[tuple, threading.Lock] = {}
_kv_caches: dict[tuple, PrefixKVCache] = {}
_registry_lock = threading.Lock()
SIMD_FEATURES = {"avx2": "AVX2", "avx512f": "AVX512", "avx512_vnni": "AVX512_VNNI"}
"""/proc/cpuinfo flag -> llama.cpp's ``llama_print_system_info`` name, for the instruction sets prompt reading uses."""
REBUILD_HINT = "pip cache remove llama_cpp_python && pip install --force-reinstall --no-deps llama-cpp-python"
KV_BYTES_PER_TOKEN_ESTIMATE = 28 * 1024  # Qwen2.5-1.5B: 28 layers x 2 KV heads x 128 dims x K+V x f16
HEADROOM_BYTES = 256 << 20


def usable_cpus() -> int:
    """CPUs this process may run on (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(path: Path, n_ctx: int) -> None:
    """Refuse before loading when the weights plus the KV cache for ``n_ctx`` cannot fit in free memory."""
    needed = path.stat().st_size + n_ctx * KV_BYTES_PER_TOKEN_ESTIMATE + HEADROOM_BYTES
    free = available_memory()
    if free is not None and needed > free:
        raise UserError(
            f"context size {n_ctx} needs about {needed / 2**30:.1f} GiB for {path.name}, but only "
            f"{free / 2**30:.1f} GiB is available; lower n_ctx or free memory"
        )


def cpu_flags() -> set[str]:
    """This CPU's feature flags (empty where /proc/cpuinfo is not there)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((set(line.split(":", 1)[1].split()) for line in cpuinfo if line.startswith("flags")), set())
    except OSError:
        return set()


def missing_cpu_features(system_info: str, flags: set[str]) -> list[str]:
    """Instruction sets the CPU has but this llama.cpp build does not use (a portable or foreign cached wheel:
    measured here, a build without AVX-512 reads prompts at about half the speed)."""
    enabled = (part for part in system_info.split("|") if part.strip().endswith("= 1"))  # "CPU : SSE3 = 1", "AVX2 = 1"
    built = {part.split("=")[0].split(":")[-1].strip() for part in enabled}
    return [name for flag, name in SIMD_FEATURES.items() if flag in flags and name not in built]


def warn_if_slow_build(llama_cpp) -> None:
    """One warning line when llama.cpp was built without an instruction set this CPU has."""
    missing = missing_cpu_features(llama_cpp.llama_print_system_info().decode(errors="replace"), cpu_flags())
    if missing:
        from helm.common.hierarchical_logger import hwarn

        hwarn(
            f"helm-dspy: llama.cpp was built without {', '.join(missing)}, which this CPU has, so prompts are read "
            f"up to 2x slower; rebuild it for this CPU: {REBUILD_HINT}"
        )


def prefix_cache_budget(path: Path, n_ctx: int) -> int:
    """Bytes of prompt-prefix KV states for this model: a share of the memory left after weights and context."""
    return kv_budget(n_ctx, KV_BYTES_PER_TOKEN_ESTIMATE, available_memory(), path.stat().st_size, HEADROOM_BYTES)


def _import_llama():
    try:
        import llama_cpp
    except ImportError:
        raise UserError("llama-cpp-python is not installed; run: pip install 'helm-dspy[local]'") from None
    return llama_cpp


def get_llama(path: Path, n_ctx: int, n_threads: int | None, vocab_only: bool = False):
    """The shared ``llama_cpp.Llama`` for this file and settings (loaded once) and its call lock."""
    key = (str(path), n_ctx, n_threads, vocab_only)
    with _registry_lock:
        if key not in _models:
            full = next((k for k in _models if k[0] == str(path) and not k[3]), None)
            if vocab_only and full is not None:
                return _models[full], _locks[full]  # a loaded model tokenizes as well
            llama_cpp = _import_llama()
            if not vocab_only:
                check_memory(path, n_ctx)
                budget = prefix_cache_budget(path, n_ctx)  # measured before loading: free memory excludes it
            try:
                with _quiet_stderr():  # llama.cpp logs context warnings to fd 2 even with verbose=False
                    _models[key] = llama_cpp.Llama(
                        model_path=str(path),
                        n_ctx=n_ctx,
                        n_threads=n_threads or usable_cpus(),
                        vocab_only=vocab_only,
                        verbose=False,
                    )
            except (ValueError, RuntimeError) as error:
                raise UserError(f"llama.cpp could not load {path} with n_ctx={n_ctx} ({error})") from None
            _locks[key] = threading.Lock()
            if not vocab_only:
                _kv_caches[key] = PrefixKVCache(budget)
                warn_if_slow_build(llama_cpp)
        return _models[key], _locks[key]


def get_prefix_cache(path: Path, n_ctx: int, n_threads: int | None) -> PrefixKVCache:
    """The prompt-prefix KV cache of the model ``get_llama(path, n_ctx, n_threads)`` (loading it if needed).

    Use it only while holding that model's lock.
    """
    get_llama(path, n_ctx, n_threads)
    return _kv_caches[(str(path), n_ctx, n_threads, False)]


@contextlib.contextmanager
def _quiet_stderr():
    """Silence native writes to file descriptor 2 while llama.cpp loads a model."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
