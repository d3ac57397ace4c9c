"""Prompt-prefix KV states for the in-process llama.cpp model: returning to an earlier few-shot prefix is warm.

llama-cpp-python by itself reuses only the KV of the *previous* prompt: with few-shot prefixes A and B
alternating, every call is cold. ``PrefixKVCache`` keeps the KV state of recent prompts, keyed by their
tokens; before each chat completion it restores the one sharing the longest token prefix with the new prompt,
and llama-cpp-python's own prefix match then evaluates only the rest (the question).

Measured with ``python benchmarks/local_model.py`` (2 shared cores, the embedded Qwen2.5-Coder-1.5B Q4_K_M,
~1100-token prompts = ~1000-token HEAD-QA few-shot prefix + a ~50-token question, 4-token answers):

    mode (--mode)                    cold     warm    return after 1 / 4 / 8 prefixes  harness (warm calls)
    prefix (this module, default)   15.8 s   1.06 s  1.08 / 1.09 / 1.05 s = 1.02 / 1.02 / 0.99x warm    1.2 %
    none (previous prompt only)     15.5 s   1.07 s  15.5 s (= cold) after 1                            0.2 %
    builtin (LlamaRAMCache)         16.2 s   1.83 s  2.79 s after 1                                    35 %

Design, and why:

- States are llama.cpp's copy of sequence 0's KV cells (``llama_state_seq_get_data``/``set_data``):
  28,685 bytes a token (28 layers x 2 KV heads x 128 dims x K+V x f16, plus a small header), 29.7 MiB for
  a 1060-token prompt; saving one takes ~20 ms, restoring ~5 ms (an evaluated token costs ~15 ms).
- Not llama-cpp-python's ``LlamaRAMCache`` + ``Llama.set_cache``. Its lookup is also by longest token
  prefix, but after *every* generation it saves a full ``save_state()`` of prompt + completion, which copies
  the Python ``scores`` array (n_batch x n_vocab floats: 297 MiB for this model) that its capacity does not
  count: ~0.7 s a call (more than half a warm call), and each entry really holds ~320 MiB while counted
  as ~26 MiB, so its byte bound is ~12x off.
- Not llama.cpp sequence slots (several sequences resident in one context): llama-cpp-python decodes only
  sequence 0 and truncates with ``seq_id=-1`` (all sequences), so slots would need our own decode loop, and
  they would share the one ``n_ctx`` window instead of spare RAM.
- What is saved: the prompt up to its final batch, only when most of it was new to the context (at least
  ``MIN_NEW_TOKENS`` new tokens and ``MIN_NEW_SHARE`` of the prompt). A first call with a few-shot prefix
  leaves a state that any later prompt with that prefix restores and truncates to the shared part; warm
  calls (a short question after a known prefix) save nothing. A save costs ~0.1 % of the cold call it ends.
- Which states stay: a segmented LRU. A new state enters probation; a restored one moves to the protected
  segment (at most ``PROTECTED_SHARE`` of the budget), so a run of one-off zero-shot prompts evicts one-off
  states, not the few-shot prefixes in use. The budget (``kv_budget``) is ``KV_CACHE_SHARE`` of the memory
  left once the weights and the context's own KV are counted, at most ``MAX_CONTEXTS`` full contexts
  (3.5 GiB at n_ctx 8192), and at most ``MAX_ENTRIES`` states.
- Same text as without the cache (temperature 0): llama.cpp's CPU kernels compute a token's KV bit-for-bit
  the same only if its batch starts at a multiple of 4 and holds at least 8 tokens (measured: the same
  prompt cut into other small batches, as llama-cpp-python's previous-prompt reuse does, changes logits by
  up to 0.6 and, on one of five real prompts, the greedy answer). ``plan_batches`` therefore cuts every
  batch as a cold evaluation would be computed, states included, never reuses cells written by generation
  (one token a step), and gives up to ``ALIGN - 1`` reusable tokens for it; with that, the greedy answers
  of real interleaved few-shot prompts equal cold ones (tests/test_local_kv.py has the real-model check).
- Token keys come from rendering the messages with the same Jinja chat template (from the GGUF metadata) and
  tokenization as ``create_chat_completion``; chat messages render one after another and each ends with a
  special token, so a shared system/instruction+demos block is a shared token prefix (in one HELM prompt
  string, the shared text's tokens up to the last word before the question). A model whose chat format is
  not a GGUF template, or a recurrent/hybrid/sliding-window model (whose KV cannot be cut to a prefix),
  gets no prefix cache: llama-cpp-python's previous-prompt reuse only.

Not thread-safe by itself: every method runs under the model's call lock (``LlamaCppClient`` holds it), and
the exact-text guarantee assumes every call on the model goes through ``prepare`` (the client's default).
"""

from __future__ import annotations

import ctypes
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KV_CACHE_SHARE = 0.25
"""Share of the memory left after the weights and the context's KV that prefix states may use."""
MAX_CONTEXTS = 16
"""At most this many full contexts' worth of states (n_ctx tokens each)."""
MAX_ENTRIES = 64
"""At most this many states (each lookup compares the prompt with every key)."""
MIN_NEW_TOKENS = 64
MIN_NEW_SHARE = 0.25
"""A prompt's state is saved only when this many of its tokens, and this share of them, were new."""
PROTECTED_SHARE = 0.75
"""Restored states (protected) keep at most this share of the budget; new ones (probation) the rest."""
ALIGN = 4
MIN_BATCH = 16
"""Batches start at multiples of ALIGN, hold at least MIN_BATCH tokens (measured limits: 4 and 8; plan_batches)."""


def kv_budget(n_ctx: int, bytes_per_token: int, free_bytes: int | None, weights_bytes: int, headroom_bytes: int) -> int:
    """Bytes the prefix states may hold: a share of what the weights and the live context leave free."""
    ceiling = MAX_CONTEXTS * n_ctx * bytes_per_token
    if free_bytes is None:  # unknown (not Linux): a small fixed budget, two full contexts
        return min(ceiling, 2 * n_ctx * bytes_per_token)
    spare = free_bytes - weights_bytes - n_ctx * bytes_per_token - headroom_bytes
    return max(0, min(ceiling, int(spare * KV_CACHE_SHARE)))


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the common prefix of two token arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


@dataclass(eq=False)
class Entry:
    tokens: np.ndarray
    state: Any
    size: int
    restores: int = 0


@dataclass
class Stats:
    lookups: int = 0
    restores: int = 0
    restored_tokens: int = 0
    saves: int = 0
    saved_bytes: int = 0
    evictions: int = 0
    oversized: int = 0
    overhead_s: float = 0.0
    """Time spent rendering, tokenizing, looking up, saving and restoring (not evaluating tokens)."""


@dataclass
class PrefixStates:
    """States keyed by token sequences: longest-prefix lookup, segmented LRU within a byte budget.

    Pure bookkeeping (the state is opaque here), so it is testable without a model.
    """

    budget_bytes: int
    max_entries: int = MAX_ENTRIES
    probation: OrderedDict[bytes, Entry] = field(default_factory=OrderedDict)
    protected: OrderedDict[bytes, Entry] = field(default_factory=OrderedDict)
    stats: Stats = field(default_factory=Stats)

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.probation.values()) + sum(e.size for e in self.protected.values())

    def __len__(self) -> int:
        return len(self.probation) + len(self.protected)

    def entries(self) -> list[Entry]:
        """Oldest first: probation, then protected (the eviction order)."""
        return [*self.probation.values(), *self.protected.values()]

    def longest(self, tokens: np.ndarray) -> tuple[Entry | None, int]:
        """The entry sharing the longest token prefix with ``tokens``, and that length (0: none)."""
        self.stats.lookups += 1
        best, best_length = None, 0
        for entry in self.entries():
            length = common_prefix(entry.tokens, tokens)
            if length > best_length:
                best, best_length = entry, length
        return best, best_length

    def add(self, tokens: np.ndarray, state: Any, size: int) -> Entry | None:
        """Store a state (as the newest probation entry); None when it alone exceeds the budget."""
        if size > self.budget_bytes:
            self.stats.oversized += 1
            return None
        key = np.asarray(tokens, dtype=np.int32).tobytes()
        self.probation.pop(key, None)
        self.protected.pop(key, None)
        entry = Entry(np.frombuffer(key, dtype=np.int32), state, size)
        self.probation[key] = entry
        self.stats.saves += 1
        self.stats.saved_bytes += size
        self._evict()
        return entry

    def restored(self, entry: Entry) -> None:
        """Mark ``entry`` as used: it becomes the newest protected entry."""
        key = entry.tokens.tobytes()
        self.probation.pop(key, None)
        self.protected.pop(key, None)
        self.protected[key] = entry
        entry.restores += 1
        protected_cap = int(self.budget_bytes * PROTECTED_SHARE)
        while len(self.protected) > 1 and sum(e.size for e in self.protected.values()) > protected_cap:
            old_key, old = self.protected.popitem(last=False)  # demoted, not dropped
            self.probation[old_key] = old
        self._evict()

    def _evict(self) -> None:
        total = self.bytes
        while self and (total > self.budget_bytes or len(self) > self.max_entries):
            segment = self.probation if self.probation else self.protected
            _, entry = segment.popitem(last=False)
            total -= entry.size
            self.stats.evictions += 1


class PrefixKVCache:
    """Per-model prefix states; ``prepare`` runs under the model's lock before each chat completion."""

    def __init__(self, budget_bytes: int, max_entries: int = MAX_ENTRIES):
        self.states = PrefixStates(budget_bytes, max_entries)
        self._formatter: Any = None
        self._disabled: str | None = None
        self._clean = np.zeros(0, dtype=np.int32)
        """The last prompt prepared here: the context's cells past it come from generation, one token a step."""

    @property
    def stats(self) -> Stats:
        return self.states.stats

    def disabled_reason(self, llama) -> str | None:
        """Why this model gets no prefix cache (None: it does)."""
        if self._disabled is None:
            self._disabled = _unsupported(llama) or ""
        return self._disabled or None

    def prepare(self, llama, messages: list[dict]) -> None:
        """Before ``llama.create_chat_completion(messages=...)``: restore the best state, save a new one."""
        if self.disabled_reason(llama):
            return
        started = time.perf_counter()
        tokens = self.prompt_tokens(llama, messages)
        self.stats.overhead_s += time.perf_counter() - started
        if tokens is not None:
            self.prepare_tokens(llama, tokens)

    def prompt_tokens(self, llama, messages: list[dict]) -> np.ndarray | None:
        """The tokens ``create_chat_completion`` will evaluate for ``messages`` (as its chat handler does)."""
        if self._formatter is None:
            self._formatter = _jinja_formatter(llama) or False
        if not self._formatter:
            return None
        try:
            rendered = self._formatter(messages=messages)
        except Exception:  # the completion call reports template errors; no prefix cache for this one
            return None
        ids = llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        return np.asarray(ids, dtype=np.int32)

    def prepare_tokens(self, llama, tokens: np.ndarray) -> None:
        """Leave the context holding the longest reusable prefix of ``tokens``; save the prompt when mostly new.

        Every batch is cut as ``plan_batches`` says, so the KV cells and logits equal a cold evaluation's.
        """
        started = time.perf_counter()
        evaluating = 0.0
        n, batch = len(tokens), _batch_size(llama)
        if n < 2 or n >= llama.n_ctx():
            self._clean = tokens[:0]  # the completion call evaluates (or refuses) it all by itself
            return
        live = common_prefix(llama.input_ids[: llama.n_tokens], tokens)
        live = min(live, common_prefix(self._clean, tokens))  # past the last prompt: generated one at a time
        entry, shared = self.states.longest(tokens)
        plan = plan_batches(n, live, batch)
        if entry is not None:
            from_entry = plan_batches(n, shared, batch)
            if from_entry.start > plan.start:
                if not self._restore(llama, entry, from_entry.start):
                    return
                plan = from_entry
        if llama.n_tokens > plan.start:
            llama._ctx.kv_cache_seq_rm(-1, plan.start, -1)
            llama.n_tokens = plan.start
        self._clean = tokens
        if plan.pieces:
            eval_started = time.perf_counter()
            for begin, end in plan.pieces:
                llama.eval(tokens[begin:end].tolist())
            evaluating = time.perf_counter() - eval_started
            if plan.save:
                saved = _save_sequence(llama)
                if saved is not None:
                    self.states.add(tokens[: llama.n_tokens], *saved)
        self.stats.overhead_s += time.perf_counter() - started - evaluating

    def _restore(self, llama, entry: Entry, keep: int) -> bool:
        """Load ``entry``'s KV cells and keep its first ``keep`` tokens."""
        if not _load_sequence(llama, entry.state, entry.size):
            llama.reset()  # the context may hold part of the state: start the prompt from scratch
            llama._ctx.kv_cache_clear()
            self._clean = self._clean[:0]
            self._disabled = "llama.cpp refused a saved state"
            return False
        length = len(entry.tokens)
        llama.input_ids[:length] = entry.tokens
        llama.n_tokens = length
        llama._requires_eval = True  # logits are not part of the state: the next token must be decoded
        if keep < length:
            llama._ctx.kv_cache_seq_rm(-1, keep, -1)
            llama.n_tokens = keep
        self.states.restored(entry)
        self.stats.restores += 1
        self.stats.restored_tokens += keep
        return True


@dataclass(frozen=True)
class Plan:
    start: int
    """Reuse the context's first ``start`` tokens."""
    pieces: tuple[tuple[int, int], ...]
    """Token ranges to evaluate now, one batch each; the completion call evaluates the rest in one batch."""
    save: bool
    """Save the state after ``pieces`` (their end is where the completion call starts)."""


def plan_batches(n: int, reusable: int, batch: int) -> Plan:
    """How to evaluate an ``n``-token prompt of which the context holds a ``reusable``-token prefix.

    llama.cpp's CPU kernels give bit-identical rows only when a batch starts at a multiple of ``ALIGN`` and
    holds at least ``MIN_BATCH`` tokens (a smaller batch takes another kernel). A cold evaluation cuts the
    prompt into ``batch``-token batches from 0, so its last batch may be small; the plan cuts batches that
    are all "large and aligned" except that same last small batch, which it reproduces exactly. It gives up
    up to ``ALIGN - 1`` reusable tokens (``MIN_BATCH`` at the end) for that; the completion call evaluates
    the final batch (it needs the last token's logits).
    """
    cold_last = batch * ((n - 1) // batch)  # where a cold evaluation's last batch starts
    final = cold_last if n - cold_last < MIN_BATCH else _align(n - MIN_BATCH)
    start = _align(min(reusable, final))
    new = n - start
    save = new >= MIN_NEW_TOKENS and new >= MIN_NEW_SHARE * n
    if not save and n - start <= batch and (start == final or n - cold_last >= MIN_BATCH):
        return Plan(start, (), False)  # the completion call's one batch is large and aligned (or cold's last)
    if 0 < final - start < MIN_BATCH:
        start = max(0, _align(final - MIN_BATCH))
        if final - start < MIN_BATCH:  # a prompt shorter than two batches' minimum: evaluate it all, as cold
            return Plan(0, (), False)
    units, count = (final - start) // ALIGN, -(-(final - start) // batch)
    pieces, begin = [], start
    for index in range(count):  # near-equal aligned pieces, each at most a batch and at least MIN_BATCH
        end = begin + ALIGN * (units // count + (index < units % count))
        pieces.append((begin, end))
        begin = end
    return Plan(start, tuple(pieces), save and bool(pieces))


def _align(position: int) -> int:
    return position - position % ALIGN


def _batch_size(llama) -> int:
    """Tokens per llama.cpp decode step (a batch larger than the micro-batch is split from its start)."""
    return min(llama.n_batch, getattr(llama.context_params, "n_ubatch", llama.n_batch) or llama.n_batch)


def _save_sequence(llama) -> tuple[Any, int] | None:
    """A copy of sequence 0's KV cells (ctypes buffer, its size), or None when llama.cpp cannot give one."""
    import llama_cpp

    ctx = llama._ctx.ctx
    size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
    if size <= 0:
        return None
    buffer = (ctypes.c_uint8 * size)()
    written = int(llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0))
    if written != size:
        return None
    return buffer, size


def _load_sequence(llama, state: Any, size: int) -> bool:
    """Put a saved copy back as sequence 0's KV cells (replacing them); False when llama.cpp refuses it."""
    import llama_cpp

    return int(llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, state, size, 0)) == size


def _unsupported(llama) -> str | None:
    import llama_cpp

    if getattr(llama, "_is_recurrent", False) or getattr(llama, "_is_hybrid", False):
        return "recurrent or hybrid model (its state cannot be cut to a prefix)"
    if llama_cpp.llama_model_n_swa(llama._model.model) > 0:
        return "sliding-window attention (old KV cells are dropped)"
    if llama.chat_handler is not None or not _template_name(llama):
        return f"chat format {llama.chat_format!r} is not a GGUF chat template"
    return None


def _template_name(llama) -> str | None:
    """The metadata key of the chat template ``create_chat_completion`` uses (None: not a GGUF template)."""
    chat_format = llama.chat_format or ""
    if not chat_format.startswith("chat_template."):
        return None
    name = "tokenizer.chat_template" if chat_format == "chat_template.default" else f"tokenizer.{chat_format}"
    return name if name in llama.metadata else None


def _jinja_formatter(llama):
    """The chat formatter ``Llama.__init__`` builds for the model's chat format (None: not a GGUF template)."""
    from llama_cpp import llama_chat_format

    name = _template_name(llama)
    if name is None or llama.chat_handler is not None:
        return None
    eos, bos = llama.token_eos(), llama.token_bos()
    return llama_chat_format.Jinja2ChatFormatter(
        template=llama.metadata[name],
        eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
