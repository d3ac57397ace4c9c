"""The embedded local model through LlamaCppClient: throughput, few-shot prefix reuse, and the harness's share.

Loads Qwen2.5-Coder-1.5B-Instruct Q4_K_M (the embedded GGUF) once and prints:

- llama.cpp's own limit on this CPU and thread count: a raw ``Llama.eval`` of a prompt batch and of single
  generated tokens, timed by llama.cpp's perf counters (``llama_perf_context``);
- prompt and generated tokens/s through ``LlamaCppClient.make_request`` (HELM request cache in a temporary
  folder, a new question each call so none is a cache hit);
- the cost of a cold few-shot prefix, a warm one (same prefix as the call before), and a return to a prefix
  after N other prefixes (N = 1, 4, 8 by default), each with the ratio to the warm call;
- the harness's share of each call's wall time: wall time of ``make_request`` minus llama.cpp's decode time
  (perf counters), so it counts Python, sampling, HELM's cache, chat templating and the prefix cache.

Prefixes are ~``--prefix-tokens`` tokens of real HEAD-QA questions with answers from the data mirror (a
system message of instructions + demos; the question is the user message), or synthetic medical sentences
when the mirror is absent. ``--mode builtin`` measures llama-cpp-python's ``LlamaRAMCache`` instead of
helm-dspy's prefix cache, ``--mode none`` neither. Goals (issue 13): a return to any of the last 8 prefixes
at most 2x a warm call; harness share under 5 %.

``--dspy-run N`` (off by default) first measures the harness's share of a whole ``helm-run`` process, as a user
runs it: ``helm-run --run-entries head_qa:model=local/qwen2.5-coder-1.5b-instruct,dspy=zeroshot-predict
--max-eval-instances N -n 1`` in a fresh temporary folder (empty agents folder: a zero-shot method needs no
agent file). Its wall time W against L, the sum of ``request_time`` of the model calls llama.cpp served (the
``LlamaCppClient`` entries of the run's fresh request cache: llama-cpp-python's ``create_chat_completion``
with our prefix-cache prepare, the first call also the model load), split by HELM's own log timestamps into
start-up, the requests (from ``scenario_state.json``: each agent request's ``request_time``), the HELM work
around them and the tail (metrics, files, exit). ``--dspy-only`` skips the in-process measurements.
Usage: ``python benchmarks/local_model.py`` (about 3 minutes on 2 idle cores; ``--help`` for options);
``--dspy-run 5 --dspy-only`` took 20 s (2 cores, the model file in the page cache).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

INSTRUCTIONS = (
    "You are a medical expert taking a multiple-choice exam. Read the question and the numbered options, "
    "then answer with the number of the correct option only."
)
SYNTHETIC = [
    "A {age}-year-old patient presents with {symptom} for {days} days.",
    "Laboratory tests show {finding}, and the physical examination is otherwise unremarkable.",
    "The most appropriate next step is {step}.",
]


@dataclass
class Call:
    label: str
    prefix: int
    others: int | None
    prompt_tokens: int
    evaluated: int
    generated: int
    wall_s: float
    prompt_eval_s: float
    generation_s: float

    @property
    def llama_s(self) -> float:
        return self.prompt_eval_s + self.generation_s

    @property
    def harness_s(self) -> float:
        return self.wall_s - self.llama_s


def perf(llama) -> tuple[float, int, float, int]:
    """llama.cpp's cumulative (prompt-eval ms, prompt tokens, generation ms, generated tokens)."""
    import llama_cpp

    data = llama_cpp.llama_perf_context(llama._ctx.ctx)
    return data.t_p_eval_ms, data.n_p_eval, data.t_eval_ms, data.n_eval


def mirror_questions() -> list[tuple[str, str]] | None:
    """(question with numbered options, answer number) from HEAD-QA's English train split, if available."""
    root = Path(os.environ.get("HELM_DSPY_DATA_DIR") or REPO.parent / "shared" / "data")
    path = root / "head_qa" / "HEAD_EN" / "train_HEAD_EN.json"
    if not path.is_file():
        return None
    exams = json.loads(path.read_text())["exams"].values()
    questions = [q for exam in exams for q in exam["data"] if not q["image"]]
    return [
        (f"Question: {q['qtext']}\n" + "\n".join(f"{a['aid']}. {a['atext']}" for a in q["answers"]), q["ra"])
        for q in questions
    ]


def synthetic_questions(count: int) -> list[tuple[str, str]]:
    symptoms = ["chest pain", "fever", "dyspnea", "abdominal pain", "headache", "cough", "fatigue", "rash"]
    findings = ["anemia", "leukocytosis", "hyponatremia", "elevated troponin", "proteinuria", "hypokalemia"]
    steps = ["an ECG", "a chest X-ray", "blood cultures", "an abdominal CT", "a lumbar puncture", "observation"]
    out = []
    for index in range(count):
        text = " ".join(SYNTHETIC).format(
            age=20 + index % 60,
            symptom=symptoms[index % len(symptoms)],
            days=1 + index % 9,
            finding=findings[index % len(findings)],
            step=steps[index % len(steps)],
        )
        options = "\n".join(f"{k + 1}. {steps[(index + k) % len(steps)]}" for k in range(4))
        out.append((f"Question: {text} What should be done?\n{options}", str(1 + index % 4)))
    return out


def build_prefixes(llama, questions, count: int, target_tokens: int) -> tuple[list[str], list[str]]:
    """``count`` system messages of ~target_tokens tokens (disjoint demos) and the remaining questions."""
    prefixes, cursor = [], 0
    for _ in range(count):
        demos: list[str] = []
        while True:
            text, answer = questions[cursor]
            cursor += 1
            demos.append(f"{text}\nAnswer: {answer}")
            system = INSTRUCTIONS + "\n\n" + "\n\n".join(demos)
            if len(llama.tokenize(system.encode(), add_bos=False, special=True)) >= target_tokens:
                break
        prefixes.append(system)
    return prefixes, [text for text, _ in questions[cursor:]]


def schedule(returns: list[int]) -> list[tuple[str, int, int | None]]:
    """(label, prefix index, other prefixes since its last use): each new prefix is cold exactly once."""
    plan: list[tuple[str, int, int | None]] = [("cold", 0, None), ("warm", 0, 0)]
    last_used = {0: 1}
    order = [0, 0]
    fresh = 1
    for want in sorted(returns):
        candidates = [p for p in last_used if len(set(order[last_used[p] + 1 :]) - {p}) <= want]
        target = min(candidates, key=lambda p: last_used[p])  # the prefix left longest ago
        while len(set(order[last_used[target] + 1 :]) - {target}) < want:
            plan.append(("cold", fresh, None))
            last_used[fresh] = len(order)
            order.append(fresh)
            fresh += 1
        others = len(set(order[last_used[target] + 1 :]) - {target})
        plan.append((f"return after {others}", target, others))
        last_used[target] = len(order)
        order.append(target)
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix-tokens", type=int, default=1000, help="tokens per few-shot prefix (1000)")
    parser.add_argument("--returns", default="1,4,8", help="return to a prefix after N others (1,4,8)")
    parser.add_argument("--answer-tokens", type=int, default=4, help="max tokens of each answer (4)")
    parser.add_argument("--gen-tokens", type=int, default=48, help="tokens generated by the throughput call (48)")
    parser.add_argument("--raw-tokens", type=int, default=None, help=(
        "prompt tokens for llama.cpp's own limit (default: --prefix-tokens, the client calls' context)"
    ))  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (the CPUs this process has)")
    parser.add_argument("--n-ctx", type=int, default=None, help="context size (the deployment's default)")
    parser.add_argument("--mode", choices=["prefix", "builtin", "none"], default="prefix", help=(
        "prefix: helm-dspy's prefix KV cache (default); builtin: llama-cpp-python's LlamaRAMCache; none: neither"
    ))  # fmt: skip
    parser.add_argument("--synthetic", action="store_true", help="synthetic text even if the data mirror exists")
    parser.add_argument("--dspy-run", type=int, default=0, metavar="N", help=(
        "also time a whole helm-run of head_qa with dspy=zeroshot-predict on N instances (0: off, the default)"
    ))  # fmt: skip
    parser.add_argument("--dspy-only", action="store_true", help="only the --dspy-run measurement (default N: 5)")
    args = parser.parse_args()
    returns = [int(n) for n in args.returns.split(",") if n.strip()]
    if args.dspy_only and not args.dspy_run:
        args.dspy_run = 5
    # before this process loads the model, so the two copies are never in memory together
    measured = dspy_run(args) if args.dspy_run else None
    if args.dspy_only:
        report_dspy(measured)
        return

    import llama_cpp
    from helm.common.cache import SqliteCacheConfig
    from helm.common.request import Request

    from helm_dspy.local.client import LlamaCppClient
    from helm_dspy.local.deployment import DEFAULT_N_CTX, LOCAL_MODEL
    from helm_dspy.local.llama import get_llama, get_prefix_cache, usable_cpus
    from helm_dspy.local.weights import resolve_model_path

    n_ctx, threads = args.n_ctx or DEFAULT_N_CTX, args.threads or usable_cpus()
    path = resolve_model_path(None)
    started = time.perf_counter()
    llama, lock = get_llama(path, n_ctx, threads)
    print(f"model {path.name}: loaded in {time.perf_counter() - started:.1f} s; {threads} threads, n_ctx {n_ctx}")

    # llama.cpp's own limit: one prompt batch, then single-token steps, no Python sampling or templating.
    questions = None if args.synthetic else mirror_questions()
    source = "HEAD-QA (data mirror)" if questions else "synthetic"
    questions = questions or synthetic_questions(2000)
    text = "\n\n".join(q for q, _ in questions[-200:])
    raw_tokens = args.raw_tokens or args.prefix_tokens
    raw = llama.tokenize(text.encode(), add_bos=False, special=True)[: raw_tokens + args.gen_tokens]
    with lock:
        llama.reset()
        llama._ctx.kv_cache_clear()
        before = perf(llama)
        llama.eval(raw[:raw_tokens])
        llama_cpp.llama_synchronize(llama._ctx.ctx)  # llama.cpp books a decode's time when it synchronizes
        for token in raw[raw_tokens:]:
            llama.eval([token])
            llama_cpp.llama_synchronize(llama._ctx.ctx)
        after = perf(llama)
        llama.reset()
        llama._ctx.kv_cache_clear()
    raw_prompt_tps = (after[1] - before[1]) / ((after[0] - before[0]) / 1000)
    raw_gen_tps = (after[3] - before[3]) / ((after[2] - before[2]) / 1000)

    prefixes_needed = max(p for _, p, _ in schedule(returns)) + 1
    prefixes, pool = build_prefixes(llama, questions, prefixes_needed, args.prefix_tokens)
    prefix_cache = get_prefix_cache(path, n_ctx, threads)
    if args.mode == "builtin":
        llama.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=prefix_cache.states.budget_bytes))
    calls: list[Call] = []
    with tempfile.TemporaryDirectory(prefix="local-model-bench-") as folder:
        client = LlamaCppClient(
            SqliteCacheConfig(str(Path(folder) / "local.sqlite")),
            n_ctx=n_ctx,
            n_threads=threads,
            prefix_cache=args.mode == "prefix",
        )

        def call(label: str, prefix: int, others: int | None, max_tokens: int, question: str) -> Call:
            messages = [{"role": "system", "content": prefixes[prefix]}, {"role": "user", "content": question}]
            request = Request(
                model=LOCAL_MODEL, model_deployment=LOCAL_MODEL, messages=messages, temperature=0.0,
                max_tokens=max_tokens,
            )  # fmt: skip
            before = perf(llama)
            start = time.perf_counter()
            result = client.make_request(request)
            wall = time.perf_counter() - start
            after = perf(llama)
            if not result.success or result.cached:
                raise SystemExit(f"request failed or cached: {result.error}")
            prompt_tokens = len(prefix_cache.prompt_tokens(llama, messages))
            return Call(
                label, prefix, others, prompt_tokens, after[1] - before[1], after[3] - before[3], wall,
                (after[0] - before[0]) / 1000, (after[2] - before[2]) / 1000,
            )  # fmt: skip

        # warm and return calls get questions of one token length, so their costs compare like with like
        lengths = [len(llama.tokenize(q.encode(), add_bos=False, special=True)) for q in pool]
        common = max(range(40, 81), key=lengths.count)
        same_length = iter(q for q, length in zip(pool, lengths, strict=True) if length == common)
        others_left = iter(q for q, length in zip(pool, lengths, strict=True) if length != common)
        for label, prefix, others in schedule(returns):
            question = next(others_left if label == "cold" else same_length)
            calls.append(call(label, prefix, others, args.answer_tokens, question))
            print(f"  {label:<16} prefix {prefix}: {calls[-1].wall_s:6.2f} s", flush=True)
        generation = call("generation", 0, None, args.gen_tokens, next(others_left) + "\nExplain your answer.")
        calls.append(generation)
    report(args, source, calls, raw_prompt_tps, raw_gen_tps, prefix_cache)
    if measured:
        report_dspy(measured)


def report(args, source: str, calls: list[Call], raw_prompt_tps: float, raw_gen_tps: float, prefix_cache) -> None:
    cold = [c for c in calls if c.label == "cold"]
    warm = next(c for c in calls if c.label == "warm")
    generation = calls[-1]
    print(f"\nmode {args.mode}; prefixes of {args.prefix_tokens}+ tokens from {source}; answers of "
          f"{args.answer_tokens} tokens max; warm and return calls: questions of equal length\n")  # fmt: skip
    header = f"{'call':<17}{'prefix':>6}{'prompt':>8}{'evald':>7}{'gen':>5}{'wall s':>9}{'llama s':>9}"
    print(header + f"{'harness s':>11}{'harness':>9}{'x warm':>8}")
    for c in calls:
        share = c.harness_s / c.wall_s if c.wall_s else 0.0
        print(
            f"{c.label:<17}{c.prefix:>6}{c.prompt_tokens:>8}{c.evaluated:>7}{c.generated:>5}{c.wall_s:>9.3f}"
            f"{c.llama_s:>9.3f}{c.harness_s:>11.3f}{share:>8.1%}{c.wall_s / warm.wall_s:>8.2f}"
        )
    cold_eval = sum(c.evaluated for c in cold)
    client_prompt_tps = cold_eval / sum(c.wall_s - c.generation_s for c in cold)
    llama_prompt_tps = cold_eval / sum(c.prompt_eval_s for c in cold)
    client_gen_tps = generation.generated / (generation.wall_s - generation.prompt_eval_s)
    llama_gen_tps = generation.generated / generation.generation_s
    print(f"\n{'throughput (tokens/s)':<34}{'prompt':>10}{'generated':>11}")
    print(f"{'llama.cpp raw eval (the limit)':<34}{raw_prompt_tps:>10.1f}{raw_gen_tps:>11.1f}")
    print(f"{'llama.cpp inside client calls':<34}{llama_prompt_tps:>10.1f}{llama_gen_tps:>11.1f}")
    print(f"{'through LlamaCppClient':<34}{client_prompt_tps:>10.1f}{client_gen_tps:>11.1f}")
    print(f"  (prompt: cold calls' evaluated tokens / wall minus generation; generated: the {generation.generated}"
          f"-token call, wall minus its prompt evaluation)\n")  # fmt: skip
    cold_s = sum(c.wall_s for c in cold) / len(cold)
    print(f"cold prefix {cold_s:.2f} s (mean of {len(cold)}), warm {warm.wall_s:.3f} s")
    returned = [c for c in calls if c.others]
    for c in returned:
        print(f"return after {c.others} other prefixes: {c.wall_s:.3f} s = {c.wall_s / warm.wall_s:.2f}x warm, "
              f"{c.wall_s / cold_s:.1%} of cold")  # fmt: skip
    total_wall = sum(c.wall_s for c in calls)
    total_harness = sum(c.harness_s for c in calls)
    short = [c for c in calls if c.label != "cold"]
    worst = max(short, key=lambda c: c.harness_s / c.wall_s)
    print(f"harness share: {total_harness / total_wall:.1%} of all wall time; warm/return calls "
          f"{sum(c.harness_s for c in short) / sum(c.wall_s for c in short):.1%} (worst {worst.label}: "
          f"{worst.harness_s / worst.wall_s:.1%})")  # fmt: skip
    stats = prefix_cache.stats
    if args.mode == "prefix":
        print(f"prefix cache: {stats.restores} restores ({stats.restored_tokens} tokens), {stats.saves} saves "
              f"({stats.saved_bytes / 2**20:.0f} MiB, {stats.saved_bytes / max(1, stats.saves) / 2**20:.1f} MiB "
              f"each), {stats.evictions} evictions, own time {stats.overhead_s:.3f} s; budget "
              f"{prefix_cache.states.budget_bytes / 2**30:.2f} GiB")  # fmt: skip
    ok_return = all(c.wall_s <= 2 * warm.wall_s for c in returned)
    ok_harness = sum(c.harness_s for c in short) / sum(c.wall_s for c in short) < 0.05
    print(f"goals: returns <= 2x warm: {'met' if ok_return else 'NOT met'}; harness share < 5 % (warm/return "
          f"calls): {'met' if ok_harness else 'NOT met'}")  # fmt: skip


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) +(.*?)\s*$")


@dataclass
class DspyRun:
    command: list[str]
    instances: int
    wall_s: float  # W: the helm-run process, start to exit
    first_log_s: float  # HELM's first log line (interpreter and imports done), from the process start
    execute: tuple[float, float]  # HELM's Executor.execute block (all requests), from the process start
    metrics: tuple[float, float] | None  # HELM's metrics block, from the process start
    done_s: float | None  # HELM's last log line ("Done."), from the process start
    from_log: bool  # False: the execute block estimated from request_datetime (whole seconds)
    agent_s: list[float]  # each instance's request_time in scenario_state.json (the DSPy agent client)
    llama_s: list[float]  # the llama.cpp calls of each instance (sums of the client's request_time)
    calls: int
    lm_calls: int = 0
    cached: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)


def helm_log(text: str) -> tuple[list[tuple[float, str]], dict[str, tuple[float, float]]]:
    """HELM's log lines (time.time() of each, message) and its ``name {`` ... ``} [t]`` blocks (first of each name)."""
    lines, blocks, stack = [], {}, []
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, as time.time()
        message = match[2]
        lines.append((when, message))
        if message.endswith(" {"):
            stack.append((message[:-2], when))
        elif message.startswith("} [") and stack:
            name, start = stack.pop()
            blocks.setdefault(name, (start, when))
    return lines, blocks


def dspy_run(args) -> DspyRun:
    """One ``helm-run`` of a ``dspy=zeroshot-predict`` run in a fresh folder; its timeline from its own outputs."""
    from helm.common.cache import get_all_from_sqlite

    from helm_dspy.local.deployment import LOCAL_MODEL, N_CTX_ENV, N_THREADS_ENV

    helm_run = Path(sys.executable).with_name("helm-run")
    if not helm_run.is_file():
        raise SystemExit(f"no helm-run beside {sys.executable}")
    with tempfile.TemporaryDirectory(prefix="local-model-dspy-run-") as folder:
        tmp = Path(folder)
        (tmp / "agents").mkdir()
        entry = f"head_qa:model={LOCAL_MODEL},dspy=zeroshot-predict"
        command = [
            str(helm_run), "--run-entries", entry, "--suite", "bench", "--max-eval-instances", str(args.dspy_run),
            "--local-path", str(tmp / "prod_env"), "--output-path", str(tmp / "benchmark_output"), "-n", "1",
        ]  # fmt: skip
        env = {**os.environ, "HELM_DSPY_AGENTS": str(tmp / "agents")}
        if args.threads:
            env[N_THREADS_ENV] = str(args.threads)
        if args.n_ctx:
            env[N_CTX_ENV] = str(args.n_ctx)
        print(f"helm-run of {entry} on {args.dspy_run} instances in {tmp} ...", flush=True)
        with open(tmp / "stdout.log", "w") as out, open(tmp / "stderr.log", "w") as err:
            t0 = time.time()
            started = time.perf_counter()
            code = subprocess.run(command, cwd=tmp, env=env, stdout=out, stderr=err).returncode
            wall = time.perf_counter() - started
        if code:
            tail = (tmp / "stderr.log").read_text()[-3000:] or (tmp / "stdout.log").read_text()[-3000:]
            raise SystemExit(f"helm-run exited with {code}:\n{tail}")
        states = sorted((tmp / "benchmark_output" / "runs" / "bench").glob("*/scenario_state.json"))
        if len(states) != 1:
            raise SystemExit(f"expected one scenario_state.json, found {len(states)}")
        results = [state["result"] for state in json.loads(states[0].read_text())["request_states"]]
        # the model calls: LlamaCppClient's entries in the run's (fresh) request cache, in the order they ran
        inner = [
            (value["request_datetime"], value["request_time"])
            for path in sorted((tmp / "prod_env" / "cache").glob("*.sqlite"))
            for key, value in get_all_from_sqlite(str(path))
            if key.get("model") == LOCAL_MODEL and "messages" in key and "request_time" in value
        ]
        lines, blocks = helm_log((tmp / "stdout.log").read_text())

    details = [(r.get("completions") or [{}])[0].get("finish_reason") or {} for r in results]
    new_calls = [d.get("dspy_new_lm_calls", 0) for d in details]
    run = DspyRun(
        command=["helm-run", *command[1:]],
        instances=len(results),
        wall_s=wall,
        first_log_s=lines[0][0] - t0 if lines else float("nan"),
        execute=(0.0, 0.0),
        metrics=None,
        done_s=next((when - t0 for when, message in reversed(lines) if message == "Done."), None),
        from_log=True,
        agent_s=[r.get("request_time", 0.0) for r in results],
        llama_s=[],
        calls=len(inner),
        lm_calls=sum(d.get("dspy_lm_calls", 0) for d in details),
        cached=sum(bool(r.get("cached")) for r in results),
        failed=sum(not r.get("success", False) for r in results),
    )
    if sum(new_calls) == len(inner):  # each instance's own calls, in order (-n 1: one request at a time)
        cursor = 0
        for count in new_calls:
            run.llama_s.append(sum(t for _, t in inner[cursor : cursor + count]))
            cursor += count
    else:
        run.notes.append(f"{len(inner)} cached model calls but {sum(new_calls)} dspy_new_lm_calls: per-request "
                         "split unknown, all model time put on the 1st request")  # fmt: skip
        run.llama_s = [sum(t for _, t in inner)] + [0.0] * (len(results) - 1)
    if "Executor.execute" in blocks:
        start, end = blocks["Executor.execute"]
        run.execute = (start - t0, end - t0)
    elif inner:
        run.from_log = False
        run.execute = (inner[0][0] - t0, inner[-1][0] + inner[-1][1] - t0)
    metrics = next((b for name, b in blocks.items() if re.fullmatch(r"\d+ metrics", name)), None)
    if metrics:
        run.metrics = (metrics[0] - t0, metrics[1] - t0)
    return run


def report_dspy(run: DspyRun) -> None:
    n = run.instances
    execute_s = run.execute[1] - run.execute[0]
    agent, llama = sum(run.agent_s), sum(run.llama_s)
    helm_around = execute_s - agent
    tail = run.wall_s - run.execute[1]
    rest = max(1, n - 1)
    print(f"\nhelm-run, dspy= run: {' '.join(run.command)}")
    print(f"  {n} instances, {run.lm_calls} model calls ({run.calls} to llama.cpp), {run.cached} cached and "
          f"{run.failed} failed requests\n  llama s: LlamaCppClient request_time (the 1st call also loads the "
          f"model); harness: the rest\n")  # fmt: skip
    rows = [
        ("start-up: process to 1st HELM log", run.first_log_s, 0.0),
        ("start-up: HELM setup to requests", run.execute[0] - run.first_log_s, 0.0),
        ("1st request (model load)", run.agent_s[0], run.llama_s[0]),
        (f"requests 2..{n}", agent - run.agent_s[0], llama - run.llama_s[0]),
        ("HELM around the requests", helm_around, 0.0),
    ]
    if run.metrics and run.done_s:
        rows += [
            ("tail: to the metrics", run.metrics[0] - run.execute[1], 0.0),
            ("tail: metrics", run.metrics[1] - run.metrics[0], 0.0),
            ("tail: files to HELM's Done.", run.done_s - run.metrics[1], 0.0),
            ("tail: exit", run.wall_s - run.done_s, 0.0),
        ]
    else:
        rows.append(("tail: metrics, files, exit", tail, 0.0))
    rows += [
        ("whole process (W, L)", run.wall_s, llama),
        ("without start-up (1st request on)", run.wall_s - run.execute[0], llama),
        ("requests only (execute block)", execute_s, llama),
        (f"steady: requests 2..{n} + HELM", execute_s - run.agent_s[0], llama - run.llama_s[0]),
    ]
    print(f"{'phase':<36}{'wall s':>9}{'llama s':>9}{'harness s':>11}{'harness':>9}")
    for index, (label, wall, model) in enumerate(rows):
        if index == len(rows) - 4:
            print("-" * 74)
        share = (wall - model) / wall if wall > 0 else 0.0
        print(f"{label:<36}{wall:>9.3f}{model:>9.3f}{wall - model:>11.3f}{share:>8.1%}")
    later = run.llama_s[1:]
    if later:
        dspy_ms = (agent - run.agent_s[0] - sum(later)) / rest * 1000
        print(f"per request 2..{n} (mean): llama.cpp {sum(later) / rest * 1000:.0f} ms, agent client outside it "
              f"{dspy_ms:.0f} ms (DSPy adapter, bridge, HELM cache); HELM around each request "
              f"{helm_around / n * 1000:.0f} ms")  # fmt: skip
        load = run.llama_s[0] - statistics.median(later)
        print(f"1st call minus the median later one (model load, cold prompt prefix): {load:.2f} s")
    if not run.from_log:
        run.notes.append("no Executor.execute block in HELM's log: requests' span from request_datetime (+-1 s)")
    print(f"harness share of W: {1 - llama / run.wall_s:.1%}; without start-up "
          f"{1 - llama / (run.wall_s - run.execute[0]):.1%}; steady state (requests 2..{n}, HELM around all) "
          f"{1 - (llama - run.llama_s[0]) / (execute_s - run.agent_s[0]):.1%}")  # fmt: skip
    for note in run.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
